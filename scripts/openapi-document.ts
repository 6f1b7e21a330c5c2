// Renders berth's OpenAPI document as YAML, from an app built with the default configuration.
import { stringify } from 'yaml'
import { buildApp } from '../src/app.ts'
import { makeConfig } from '../src/config.ts'
import { DockerHost, docker } from '../src/engine/docker/backend.ts'
import { composeFrom } from '../src/engine/parts.ts'

export async function renderOpenApi (): Promise<string> {
  // The engine is never called: building the app only collects the routes.
  const app = await buildApp(makeConfig(), { engine: await composeFrom(docker, new DockerHost({ socketPath: '/nonexistent.sock', timeoutMs: 1000 })) })
  await app.ready()
  const document = app.swagger()
  await app.close()
  // Written as YAML 1.1 would need it, which YAML 1.2 readers read the same: a string a 1.1 reader
  // takes for something else (`no` and `yes` are booleans there, `2026-01-01` a timestamp) is quoted.
  // Many readers (PyYAML, SnakeYAML, Go's yaml.v2) read 1.1, and `restart.policy: no` became `false`.
  return stringify(document, { strict: false, version: '1.1' })
}
