// The composition root: buildApp(config, deps) registers everything berth serves, in order.
// It never listens; src/server.ts does that, and tests call buildApp directly.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyError } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import helmet from 'helmet'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import type { Config } from './config.ts'
import { BACKENDS, backendsSentence } from './capabilities.ts'
import type { Engine, EngineKind } from './engine/types.ts'
import { BerthError, problemOf } from './errors.ts'
import access from './plugins/access.ts'
import auth from './plugins/auth.ts'
import capabilities from './plugins/capabilities.ts'
import enginePlugin from './plugins/engine.ts'
import metrics from './plugins/metrics.ts'
import pullJobsPlugin from './plugins/pull-jobs.ts'
import streams from './plugins/streams.ts'
import containers from './routes/containers.ts'
import events from './routes/events.ts'
import health from './routes/health.ts'
import images from './routes/images.ts'
import jobs from './routes/jobs.ts'
import logs from './routes/logs.ts'
import nodes from './routes/nodes.ts'
import { commonSchemas } from './schemas/common.ts'
import { containerSchemas } from './schemas/containers.ts'
import { imageSchemas } from './schemas/images.ts'
import { jobSchemas } from './schemas/jobs.ts'
import { logSchemas } from './schemas/logs.ts'
import { nodeSchemas } from './schemas/nodes.ts'
import { RequestLog, pathOf } from './request-log.ts'
import { version } from './version.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface AppDeps {
  engine: Engine
  /** A pino logger; none means silent (tests). */
  logger?: FastifyBaseLogger
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export async function buildApp (config: Config, deps: AppDeps) {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: config.limits.bodyLimit,
    // Accept a caller's request id when it is safe to echo into logs and headers; otherwise make one.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    logController: new RequestLog(),
    routerOptions: { maxParamLength: 600, ignoreTrailingSlash: true },
    return503OnClosing: true,
    forceCloseConnections: 'idle'
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('config', config)
  for (const schema of [...commonSchemas, ...imageSchemas, ...containerSchemas, ...jobSchemas, ...logSchemas, ...nodeSchemas]) app.addSchema(schema)

  // Bodies are validated as sent (a "8080" is not a port); query strings and params are text, so they are coerced.
  const ajvOptions: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }
  const bodyAjv = addFormats.default(new Ajv({ ...ajvOptions, coerceTypes: false }))
  const textAjv = addFormats.default(new Ajv({ ...ajvOptions, coerceTypes: 'array' }))
  for (const schema of Object.values(app.getSchemas())) {
    bodyAjv.addSchema(schema as object)
    textAjv.addSchema(schema as object)
  }
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema))

  // Every route answers its problems with the same Problem schema: fastify would build that
  // serializer once per route and status (149 builds, 14 distinct). One per distinct shape saves
  // 5 MB of resident memory and startup time (measured with bench/); descriptions do not serialise.
  const buildSerializer = SerializerSelector()(app.getSchemas(), {})
  const serializers = new Map<string, (data: unknown) => string>()
  app.setSerializerCompiler((route) => {
    const { description: _, ...shape } = route.schema as Record<string, unknown>
    const key = JSON.stringify(shape)
    let serializer = serializers.get(key)
    if (serializer === undefined) {
      serializer = buildSerializer({ schema: route.schema, method: route.method, url: route.url, httpStatus: route.httpStatus ?? 'default' })
      serializers.set(key, serializer)
    }
    return serializer
  })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toBerthError(error)
    if (problem.statusCode >= 500) request.log.error({ err: error, code: problem.code }, problem.message)
    else request.log.info({ code: problem.code }, problem.message)
    return reply.code(problem.statusCode).headers(problem.headers).type('application/problem+json')
      .send(problemOf(problem, request.id, pathOf(request)))
  })
  app.setNotFoundHandler((request, reply) => {
    const problem = new BerthError('not_found', `no route ${request.method} ${pathOf(request)}`)
    return reply.code(404).type('application/problem+json').send(problemOf(problem, request.id, pathOf(request)))
  })
  // While closing, each response ends its connection: a keep-alive connection that was busy when
  // close began would otherwise stay open after its response and hold the shutdown until killed.
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
    if (closing) reply.header('connection', 'close')
  })
  // JSON only: Fastify would otherwise hand a text/plain body to validation as a string.
  app.removeContentTypeParser('text/plain')

  // Before everything that serves requests, so that every request is measured.
  await app.register(metrics, { public: config.auth.metricsPublic })

  // helmet's middleware is built once: @fastify/helmet builds it anew on every request, which cost
  // more than all of berth's other hooks together and churned the heap (measured with bench/).
  const securityHeaders = helmet({
    // Swagger UI loads its own scripts and styles from /docs; nothing from elsewhere.
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        // berth serves plain HTTP: helmet's default upgrade-insecure-requests makes a browser that
        // reaches it by a non-loopback name fetch Swagger UI's own assets over https, and the page stays blank.
        upgradeInsecureRequests: null
      }
    }
  })
  app.addHook('onRequest', (request, reply, done) => { securityHeaders(request.raw, reply.raw, () => done()) })

  // Swagger goes before the routes, or they are missing from the document.
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'berth',
        version,
        description: 'A typed, documented, secure HTTP API in front of a Docker Engine or a Docker Swarm cluster: pull, list, run, stop and start containers. ' +
          'Each operation lists the engine backends that have it in `x-berth-backends`; on the others it answers 501 not_supported.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' }
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A berth token (BERTH_TOKENS); scopes read, write, admin.' } } },
      tags: [
        { name: 'containers', description: 'docker ps, run -d, inspect, start, stop, restart, rm' },
        { name: 'images', description: 'docker pull, images, image inspect, rmi' },
        { name: 'jobs', description: 'Async pulls: state, events, cancel' },
        { name: 'events', description: 'docker events, as server-sent events' },
        { name: 'nodes', description: 'docker node ls: the machines containers run on' },
        { name: 'health', description: 'Liveness and readiness' }
      ]
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transform: ({ schema, url, route }) => {
      const config = route.config as { scope?: string, backends?: readonly EngineKind[], unsupported?: string } | undefined
      // Routes that need a scope say so in the document, so Swagger UI's Authorize applies to them.
      const secured = config?.scope === undefined ? schema : { ...schema, security: [{ bearer: [] }] }
      // Every operation names the backends that have it; one that some lack says so in words too.
      const backends = config?.backends
      const described = backends === undefined
        ? { ...secured, 'x-berth-backends': [...BACKENDS] }
        : { ...secured, 'x-berth-backends': [...backends], description: [secured.description, backendsSentence(backends, config?.unsupported)].filter(Boolean).join('\n\n') }
      return { schema: described as typeof schema, url }
    }
  })
  await app.register(auth, { auth: config.auth })
  // The document and Swagger UI are open by default (they hold no data); BERTH_DOCS_PUBLIC=false closes them.
  const docsScope = config.auth.docsPublic ? undefined : 'read' as const
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { persistAuthorization: false, deepLinking: true },
    ...(docsScope === undefined ? {} : { uiHooks: { onRequest: async (request) => { await app.authenticate(request, docsScope) } } })
  })
  app.get('/openapi.json', { schema: { hide: true }, config: { scope: docsScope } }, async () => app.swagger())

  await app.register(enginePlugin, { engine: app.metrics.meter(deps.engine), limits: config.limits })
  await app.register(capabilities)
  await app.register(access, { config })
  await app.register(streams)
  await app.register(pullJobsPlugin, { jobs: config.jobs })
  await app.register(rateLimit, {
    max: config.limits.rateLimitPerMinute,
    timeWindow: 60_000,
    // After auth (onRequest), so the limit is per token rather than per address.
    hook: 'preHandler',
    keyGenerator: (request) => request.principal === null ? `ip:${request.ip}` : `token:${request.principal.name}`,
    allowList: (request) => !request.url.startsWith('/v1/'),
    errorResponseBuilder: (_request, context) => new BerthError('rate_limited', `rate limit of ${context.max} requests a minute reached; retry in ${context.after}`)
  })

  await app.register(health)
  await app.register(images)
  await app.register(containers)
  await app.register(logs)
  await app.register(jobs)
  await app.register(events)
  await app.register(nodes)
  return app
}

// Everything thrown becomes one of berth's codes; an error berth did not expect is a 500 whose
// message stays in the log, not in the reply.
function toBerthError (error: FastifyError): BerthError {
  if (error instanceof BerthError) return error
  if (error.validation) {
    const location = error.validationContext ?? 'request'
    const errors = error.validation.map(issue => {
      // "must NOT have additional properties" says nothing useful until it names the field.
      const params = issue.params as { additionalProperty?: string } | undefined
      // ajv names a key that fails propertyNames on the error itself, not in its params.
      const key = (issue as { propertyName?: string }).propertyName
      if (params?.additionalProperty !== undefined) return { location, path: `${issue.instancePath}/${params.additionalProperty}`, message: 'is not a known field' }
      if (key !== undefined) return { location, path: `${issue.instancePath}/${key}`, message: 'is not a valid name here' }
      return { location, path: issue.instancePath, message: issue.message ?? 'is invalid' }
    })
    const first = errors[0]
    const detail = first === undefined ? error.message : `${first.location}${first.path} ${first.message}`
    return new BerthError('validation_failed', detail, { errors })
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return new BerthError('payload_too_large', 'the request body is larger than the limit')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new BerthError('unsupported_media_type', 'send the body as application/json')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return new BerthError('validation_failed', 'the JSON body is empty')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return new BerthError('validation_failed', 'the Content-Length does not match the body')
  }
  if (error.statusCode === 400) return new BerthError('validation_failed', error instanceof SyntaxError ? 'the body is not valid JSON' : error.message)
  if (error.statusCode === 404) return new BerthError('not_found', error.message)
  if (error.statusCode === 413) return new BerthError('payload_too_large', error.message)
  if (error.statusCode === 415) return new BerthError('unsupported_media_type', error.message)
  return new BerthError('internal_error', 'berth failed unexpectedly; the request id leads to the cause in its log', {}, { cause: error })
}
