// Renders berth's OpenAPI document as YAML, from an app built with the default configuration.
import { buildApp } from '../src/app.ts'
import { makeConfig } from '../src/config.ts'
import { DockerHost, docker } from '../src/engine/docker/backend.ts'
import { composeFrom } from '../src/engine/parts.ts'

export async function renderOpenApi (): Promise<string> {
  // The engine is never called: building the app only collects the routes.
  const app = await buildApp(makeConfig(), { engine: await composeFrom(docker, new DockerHost({ socketPath: '/nonexistent.sock', timeoutMs: 1000 })) })
  await app.ready()
  const yaml = app.swagger({ yaml: true })
  await app.close()
  return yaml
}
