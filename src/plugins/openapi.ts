// The OpenAPI 3.1 document, generated from the routes (so it goes before them, or they are missing
// from it), served at /openapi.json, and Swagger UI at /docs. Shared schemas keep their $id as
// component names instead of def-0.
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { version } from '../version.ts'

export default fp<{ docsPublic: boolean }>(async (app, options) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'berth',
        version,
        description: 'A typed, documented, secure HTTP API in front of a Docker Engine: pull, list, run, stop and start containers.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' }
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A berth token (BERTH_TOKENS); scopes read, write, admin.' } } },
      tags: [
        { name: 'containers', description: 'docker ps, run -d, inspect, start, stop, restart, rm' },
        { name: 'images', description: 'docker pull, images, image inspect, rmi' },
        { name: 'jobs', description: 'Async pulls: state, events, cancel' },
        { name: 'events', description: 'docker events, as server-sent events' },
        { name: 'volumes', description: 'docker volume create, ls, inspect, rm' },
        { name: 'networks', description: 'docker network create, ls, inspect, rm, connect, disconnect' },
        { name: 'files', description: 'docker cp: files in and out of containers' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transform: ({ schema, url, route }) => {
      // Routes that need a scope say so in the document, so Swagger UI's Authorize applies to them.
      const scope = (route.config as { scope?: string } | undefined)?.scope
      return { schema: scope === undefined ? schema : { ...schema, security: [{ bearer: [] }] } as typeof schema, url }
    }
  })
  // The document and Swagger UI are open by default (they hold no data); BERTH_DOCS_PUBLIC=false closes them.
  const docsScope = options.docsPublic ? undefined : 'read' as const
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { persistAuthorization: false, deepLinking: true },
    ...(docsScope === undefined ? {} : { uiHooks: { onRequest: async (request) => { await app.authenticate(request, docsScope) } } })
  })
  app.get('/openapi.json', { schema: { hide: true }, config: { scope: docsScope } }, async () => app.swagger())
}, { name: 'berth-openapi', dependencies: ['berth-auth'] })
