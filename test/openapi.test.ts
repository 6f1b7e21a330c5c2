// The committed openapi/openapi.yaml is the product's contract: it must match what the app serves.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { renderOpenApi } from '../scripts/openapi-document.ts'
import { build } from './helpers.ts'

t.test('openapi/openapi.yaml is up to date (regenerate with npm run openapi)', async t => {
  const committed = readFileSync(new URL('../openapi/openapi.yaml', import.meta.url), 'utf8')
  t.equal(committed, await renderOpenApi())
})

t.test('/openapi.json is OpenAPI 3.1 with named components, bearer security and every operation documented', async t => {
  const app = await build(t)
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(response.statusCode, 200)
  const doc = response.json()
  t.equal(doc.openapi, '3.1.0')
  t.same(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes.bearer.description })
  for (const name of ['Problem', 'Container', 'ContainerSummary', 'RunRequest', 'PortBinding', 'PullRequest', 'PulledImage', 'ImageSummary', 'Image', 'StateChange']) {
    t.ok(doc.components.schemas[name], `components.schemas.${name}`)
  }
  t.notOk(JSON.stringify(doc).includes('def-'), 'no anonymous def-N components')
  const operations = Object.entries(doc.paths as Record<string, Record<string, { operationId?: string, summary?: string, tags?: string[], security?: unknown[] }>>)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, ...operation })))
  t.ok(operations.length >= 12, `${operations.length} operations`)
  for (const operation of operations) {
    t.ok(operation.operationId && operation.summary && operation.tags?.length, `${operation.method} ${operation.path} has operationId, summary, tags`)
    t.equal(Boolean(operation.security), operation.path.startsWith('/v1/'), `${operation.method} ${operation.path}: bearer security exactly on /v1`)
  }
  const run = doc.paths['/v1/containers'].post
  t.equal(run.requestBody.content['application/json'].schema.$ref, '#/components/schemas/RunRequest')
  t.equal(run.responses['409'].content['application/json'].schema.$ref, '#/components/schemas/Problem')
})

t.test('Swagger UI is served at /docs', async t => {
  const app = await build(t)
  const response = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /text\/html/)
  t.match(response.body, /swagger-ui/)
})
