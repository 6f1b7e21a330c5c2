// Renders berth's OpenAPI document as YAML, from an app built with the default configuration.
import { buildApp } from '../src/app.ts'
import { makeConfig } from '../src/config.ts'
import { DockerEngine } from '../src/engine/docker/engine.ts'

export async function renderOpenApi (): Promise<string> {
  // The engine is never called: building the app only collects the routes.
  const app = await buildApp(makeConfig(), { engine: new DockerEngine({ socketPath: '/nonexistent.sock', timeoutMs: 1000 }) })
  await app.ready()
  const yaml = app.swagger({ yaml: true })
  await app.close()
  return yaml
}
