// The OpenAPI 3.1 document, generated from the routes (so it goes before them, or they are missing
// from it), served at /openapi.json, and Swagger UI at /docs. Shared schemas keep their $id as
// component names instead of def-0.
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { backendsWith, lackingSentence } from '../engine/index.ts'
import type { PartName } from '../engine/parts.ts'
import { withResponseHeaders } from '../schemas/headers.ts'
import { withProblemSchemas } from '../schemas/problems.ts'
import { version } from '../version.ts'

export default fp<{ docsPublic: boolean }>(async (app, options) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'berth',
        version,
        description: 'A typed, documented, secure HTTP API in front of a Docker Engine, a Docker Swarm cluster or a Kubernetes cluster: pull, list, run, stop and start containers. ' +
          'Each operation lists the engine backends that have it in `x-berth-backends` (the backends whose parts include what it needs); on the others it answers 501 not_supported, saying why. ' +
          'A path asked with a method it has no operation for answers 405 method_not_allowed with `Allow` (`components.responses.MethodNotAllowed`).\n\n' +
          'Agents: the Model Context Protocol is served on `POST /mcp` (streamable HTTP, stateless, the same bearer tokens). Its tools (run, ps, inspect, logs, exec, ' +
          'files_in, files_out, stop, start, rm, wait) call these operations as the agent\'s token, and take their schemas; `/mcp` is no operation here, as MCP is a protocol of its own.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' }
      },
      // Relative: the document is served by the berth it describes, so its origin is the server.
      servers: [{ url: '/', description: 'The berth serving this document' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A berth token (BERTH_TOKENS); scopes read, write, admin, build.' } } },
      tags: [
        { name: 'containers', description: 'docker ps, run -d, inspect, start, stop, restart, rm' },
        { name: 'images', description: 'docker pull, images, image inspect, rmi' },
        { name: 'jobs', description: 'Async pulls: state, events, cancel' },
        { name: 'builds', description: 'docker build, and builds as jobs: state, events, cancel' },
        { name: 'events', description: 'docker events, as server-sent events' },
        { name: 'nodes', description: 'docker node ls: the machines containers run on' },
        { name: 'volumes', description: 'docker volume create, ls, inspect, rm' },
        { name: 'networks', description: 'docker network create, ls, inspect, rm, connect, disconnect' },
        { name: 'files', description: 'docker cp: files in and out of containers' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    // Said of the whole document: each code's problem as a schema, and the response headers as
    // components that the answers carrying them refer to.
    transformObject: (documents) => 'openapiObject' in documents ? withProblemSchemas(withResponseHeaders(documents.openapiObject)) : documents.swaggerObject,
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transform: ({ schema, url, route }) => {
      const config = route.config as { scope?: string, part?: PartName } | undefined
      // Routes that need a scope say so in the document, so Swagger UI's Authorize applies to them;
      // the public ones say that they need nothing.
      const secured = { ...schema, security: config?.scope === undefined ? [] : [{ bearer: [] }] }
      // Every operation names the backends that have the part it needs; one that some lack says so in words too.
      const part = config?.part ?? 'containers'
      const lacking = lackingSentence(part)
      const described = {
        ...secured,
        'x-berth-backends': backendsWith(part),
        ...(lacking === undefined ? {} : { description: [secured.description, lacking].filter(Boolean).join('\n\n') })
      }
      return { schema: described as typeof schema, url }
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
