// The composition root: buildApp(config, deps) registers everything berth serves, in order, top
// down: how requests are read and answered, who is asking, the engine and what sits on it, then
// the routes. It never listens; src/server.ts does that, and tests call buildApp directly.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import rateLimit from '@fastify/rate-limit'
import websocket from '@fastify/websocket'
import type { Config } from './config.ts'
import type { Backend } from './engine/parts.ts'
import type { TokenStore } from './access/token-store.ts'
import { BerthError } from './errors.ts'
import { clientErrorHandler } from './http/client-error.ts'
import { RequestLog } from './http/request-log.ts'
import access from './plugins/access.ts'
import audit from './plugins/audit.ts'
import auth from './plugins/auth.ts'
import capabilities from './plugins/capabilities.ts'
import buildsPlugin from './plugins/builds.ts'
import enginePlugin from './plugins/engine.ts'
import lifecyclePlugin from './plugins/lifecycle.ts'
import mcp from './plugins/mcp.ts'
import metrics from './plugins/metrics.ts'
import openapi from './plugins/openapi.ts'
import problems from './plugins/problems.ts'
import pullJobsPlugin from './plugins/pull-jobs.ts'
import securityHeaders from './plugins/security-headers.ts'
import serializers from './plugins/serializers.ts'
import streams from './plugins/streams.ts'
import validation from './plugins/validation.ts'
import builds from './routes/builds.ts'
import containers from './routes/containers.ts'
import containerSpec from './routes/container-spec.ts'
import events from './routes/events.ts'
import health from './routes/health.ts'
import images from './routes/images.ts'
import imageSharing from './routes/image-sharing.ts'
import jobs from './routes/jobs.ts'
import logs from './routes/logs.ts'
import nodes from './routes/nodes.ts'
import exec from './routes/exec.ts'
import files from './routes/files.ts'
import lifecycle from './routes/lifecycle.ts'
import networks from './routes/networks.ts'
import stats from './routes/stats.ts'
import volumes from './routes/volumes.ts'
import { buildSchemas } from './schemas/builds.ts'
import { commonSchemas } from './schemas/common.ts'
import { containerSchemas } from './schemas/containers.ts'
import { containerSpecSchemas } from './schemas/container-spec.ts'
import { imageSchemas } from './schemas/images.ts'
import { jobSchemas } from './schemas/jobs.ts'
import { logSchemas } from './schemas/logs.ts'
import { nodeSchemas } from './schemas/nodes.ts'
import { execSchemas } from './schemas/exec.ts'
import { lifecycleSchemas } from './schemas/lifecycle.ts'
import { networkSchemas } from './schemas/networks.ts'
import { statsSchemas } from './schemas/stats.ts'
import { volumeSchemas } from './schemas/volumes.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface AppDeps {
  engine: Backend
  /** A pino logger; none means silent (tests). */
  logger?: FastifyBaseLogger
  /** The clock of time windows (failed authentications, pull-job retention, the sweeper's expiries and grace), in ms; Date.now unless a test moves time itself. */
  now?: () => number
  /** The tokens in use, when something reloads them (server.ts); by default config.auth.tokens, fixed. */
  tokens?: TokenStore
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export async function buildApp (config: Config, deps: AppDeps) {
  const requestLog = new RequestLog()
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: config.limits.bodyLimit,
    // Accept a caller's request id when it is safe to echo into logs and headers; otherwise make one.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    logController: requestLog,
    routerOptions: { maxParamLength: 600, ignoreTrailingSlash: true },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Receiving a request is bounded, sending a response is not (log follow, events and pulls stream
    // for as long as they last). Node checks the bounds only every connectionsCheckingInterval (30 s
    // by default, so a slowloris lived ~85 s): check every quarter of the shorter bound, at most 1 s.
    requestTimeout: config.limits.requestTimeoutMs,
    http: {
      headersTimeout: config.limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(Math.min(config.limits.headersTimeoutMs, config.limits.requestTimeoutMs) / 4)))
    },
    clientErrorHandler: clientErrorHandler(config.limits)
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.decorate('config', config)
  app.addHook('onRequest', async (request, reply) => { requestLog.watch(request, reply) })

  // While closing, each response ends its connection: a keep-alive connection that was busy when
  // close began would otherwise stay open after its response and hold the shutdown until killed.
  // So does an answer given before the request's body has arrived (a 401, a 413): the connection
  // would otherwise stay open for as long as the client takes to send a body nobody reads.
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
    if (closing || request.raw.complete === false) reply.header('connection', 'close')
  })

  // Reading and answering requests. Problems first, so that every route (/metrics too) answers
  // its errors as problem+json; metrics next, so that every request is measured.
  await app.register(problems)
  await app.register(metrics, { public: config.auth.metricsPublic })
  await app.register(validation, { schemas: [...commonSchemas, ...imageSchemas, ...containerSchemas, ...jobSchemas, ...logSchemas, ...nodeSchemas, ...volumeSchemas, ...lifecycleSchemas, ...networkSchemas, ...buildSchemas, ...containerSpecSchemas, ...execSchemas, ...statsSchemas] })
  await app.register(serializers)
  await app.register(securityHeaders)
  // Interactive terminals (exec) upgrade to WebSockets; a client's frame is stdin or a resize, never
  // large. Before auth: its hooks must see every upgrade request, also one refused for its token,
  // so that the connection is closed after the refusal.
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 } })

  // Who is asking, and the document of what they may ask (before the routes, or they are missing from it).
  await app.register(audit)
  await app.register(auth, { auth: config.auth, ...(deps.tokens === undefined ? {} : { tokens: deps.tokens }), ...(deps.now === undefined ? {} : { now: deps.now }) })
  await app.register(openapi, { docsPublic: config.auth.docsPublic })

  // The engine, and what berth keeps on top of it.
  await app.register(enginePlugin, { engine: deps.engine, limits: config.limits })
  await app.register(capabilities)
  await app.register(access, { config, ...(deps.now === undefined ? {} : { now: deps.now }) })
  await app.register(streams)
  // A token removed or changed by a reload stops working at once: on its open streams too.
  const stopRevoking = app.tokens.onChange(() => {
    const ended = app.streams.end(request => !app.stillAuthorised(request))
    if (ended > 0) app.log.info({ streams: ended }, 'ended the streams of tokens no longer in use')
  })
  app.addHook('onClose', async () => { stopRevoking() })
  await app.register(pullJobsPlugin, { jobs: config.jobs, ...(deps.now === undefined ? {} : { now: deps.now }) })
  await app.register(lifecyclePlugin, { lifecycle: config.lifecycle, ...(deps.now === undefined ? {} : { now: deps.now }) })
  await app.register(buildsPlugin, { config })
  await app.register(rateLimit, {
    max: config.limits.rateLimitPerMinute,
    timeWindow: 60_000,
    // After auth (onRequest), so the limit is per token rather than per address.
    hook: 'preHandler',
    keyGenerator: (request) => request.principal === null ? `ip:${request.ip}` : `token:${request.principal.name}`,
    allowList: (request) => !request.url.startsWith('/v1/'),
    errorResponseBuilder: (_request, context) => new BerthError('rate_limited', `rate limit of ${context.max} requests a minute reached; retry in ${context.after}`)
  })

  // Tools for agents (MCP) call the routes below: it learns them as they are added.
  await app.register(mcp)

  await app.register(health)
  await app.register(images)
  await app.register(containers)
  await app.register(logs)
  await app.register(jobs)
  await app.register(events)
  await app.register(nodes)
  await app.register(volumes)
  await app.register(lifecycle)
  await app.register(networks)
  await app.register(builds)
  await app.register(imageSharing)
  await app.register(containerSpec)
  await app.register(exec)
  await app.register(stats)
  await app.register(files)
  return app
}
