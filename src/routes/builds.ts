// docker build: POST /v1/images/build takes a build context as the body and builds it — answered in
// JSON when done, streamed as NDJSON or server-sent events, or as an async job — and /v1/builds
// shows, follows and cancels builds. Only the token that started a build (and admins) see it.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Readable } from 'node:stream'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { Type } from 'typebox'
import type { Principal } from '../access/ownership.ts'
import { isFinal, type BuildEntry } from '../builds/build.ts'
import { receiveContext } from '../builds/context.ts'
import { receiveMultipartContext } from '../builds/multipart.ts'
import { describeBuild, wireBuildEvent } from '../builds/views.ts'
import { BerthError } from '../errors.ts'
import { EventStream, NDJSON, SSE, lastEventSeq, negotiate, notAcceptable, pipeSubscription, sendStream } from '../http/event-stream.ts'
import { ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'
import { located } from '../schemas/headers.ts'
import { BuildEvent, BuildJob, BuildParams, BuildQuery, BuiltImage } from '../schemas/builds.ts'
import { PullHeaders } from '../schemas/jobs.ts'

/** Images live on a single host's engine: on Swarm these answer 501 (the OpenAPI document says so). */

const BUILD_MEDIA = ['application/json', NDJSON, SSE] as const
const EVENT_MEDIA = [SSE, NDJSON] as const
/** What a build context may be sent as: a tar, optionally gzip-compressed (the engine unpacks either). */
export const CONTEXT_TYPES = ['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip', 'application/octet-stream']

// The build route's query and headers, coerced from text as every route's are; its body is the
// context stream itself, which no schema validates (the schema is there for the OpenAPI document).
const textAjv = addFormats.default(new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, strict: false, coerceTypes: 'array' }))

function principalOf (request: FastifyRequest): Principal {
  return request.principal as Principal
}

const builds: FastifyPluginAsyncTypebox = async (app) => {
  const limits = app.config.limits
  // Within this plugin only: a context comes as a stream, never parsed or buffered by fastify.
  app.addContentTypeParser([...CONTEXT_TYPES, 'multipart/form-data'], (_request, payload, done) => { done(null, payload) })
  app.addContentTypeParser('*', (_request, _payload, done) => {
    done(new BerthError('unsupported_media_type', 'send the build context as application/x-tar (optionally gzip-compressed)', { accepts: CONTEXT_TYPES }))
  })

  app.post('/v1/images/build', {
    config: { scope: 'build', part: 'builds' },
    validatorCompiler: ({ schema, httpPart }) => httpPart === 'body' ? () => true : textAjv.compile(schema),
    schema: {
      tags: ['builds'],
      summary: 'Build an image (docker build)',
      description: 'The body is the build context: a tar (optionally gzip-compressed) holding the Dockerfile and the files it uses, as `tar -c . | curl --data-binary @- …` sends it. ' +
        'Or a form (multipart/form-data): a `dockerfile` field and the files, each at the path its file name gives. ' +
        'Options are query parameters, as `docker build` flags. Every FROM, COPY/ADD --from and ONBUILD --from image must be on the image allow-list (checked before the engine sees the context); ' +
        'RUN steps have no network unless policy allows it, and an ADD of a URL needs it too; the context and the build time are limited (BERTH_BUILD_CONTEXT_LIMIT, BERTH_BUILD_TIMEOUT_MS).\n\n' +
        'berth reads the context once and sends the engine a tar of its own, never the client\'s, so the Dockerfile policy checked is the one the engine builds: names cleaned (a `..` segment is refused), each path once, ' +
        'only regular files, directories and links, nothing below a file or a link, hard links only to earlier files, the Dockerfile and `.dockerignore` regular files, no setuid bits, owners or extended attributes. ' +
        'A context that breaks a rule is `400 invalid_build_context`, with the `reason` and the `entry`.\n\n' +
        '`Accept: application/x-ndjson` or `text/event-stream` streams the build as BuildEvents: each step, its output, cache hits, then the image or a problem with the failing step and its output. ' +
        '`?async=true` (or `Prefer: respond-async`) answers 202 with the build as a job at once. A client that leaves a build it waits for cancels it. ' +
        'A build that fails or is cancelled leaves no image and no container.',
      operationId: 'buildImage',
      querystring: BuildQuery,
      headers: PullHeaders,
      body: {
        content: {
          'application/x-tar': { schema: { type: 'string', format: 'binary', description: 'The build context: a tar of the Dockerfile and the files it uses.' } },
          'application/gzip': { schema: { type: 'string', format: 'binary', description: 'The build context as a gzip-compressed tar.' } },
          'multipart/form-data': {
            schema: {
              type: 'object',
              description: 'The build context as a form: the Dockerfile, and the files it uses, each at the path its file name gives (`curl -F "files=@app.py;filename=src/app.py"`).',
              properties: {
                dockerfile: { type: 'string', description: 'The Dockerfile\'s text (or a file).' },
                files: { type: 'array', items: { type: 'string', format: 'binary' }, description: 'The files of the context.' }
              },
              required: ['dockerfile']
            }
          }
        }
      },
      response: {
        200: {
          description: 'The built image; or, per Accept, the build as it happens.',
          content: {
            'application/json': { schema: ref(BuiltImage) },
            [NDJSON]: { schema: ref(BuildEvent) },
            [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is a BuildEvent, each `id` a sequence number.' }) }
          }
        },
        202: located({ description: 'Started as an async build (Location: the build).', content: { 'application/json': { schema: ref(BuildJob) } } }),
        ...problems(...ENGINE, 'invalid_build_context', 'policy_denied', 'build_failed', 'build_cancelled', 'rate_limited', 'not_acceptable', 'push_failed')
      }
    } as never
  }, async (request, reply) => {
    const query = request.query as BuildQuery
    request.audit({ ...(query.tag === undefined ? {} : { image: query.tag[0], tags: query.tag }) })
    const body = request.body
    if (!(body instanceof Readable)) throw new BerthError('unsupported_media_type', 'send the build context as application/x-tar (optionally gzip-compressed)', { accepts: CONTEXT_TYPES })
    const declared = Number(request.headers['content-length'])
    if (Number.isFinite(declared) && declared > limits.buildContextBytes) {
      throw new BerthError('payload_too_large', `the build context is larger than the limit of ${limits.buildContextBytes} bytes (BERTH_BUILD_CONTEXT_LIMIT)`, { limit: limits.buildContextBytes })
    }
    const preferAsync = /(^|,)\s*respond-async\s*(;|,|$)/i.test([request.headers.prefer ?? ''].flat().join(','))
    const isAsync = query.async || preferAsync
    const media = isAsync ? 'application/json' : negotiate(request.headers.accept, BUILD_MEDIA)
    if (media === null) throw notAcceptable(BUILD_MEDIA)
    const signal = app.streams.signal(reply)
    const receiving = { limit: limits.buildContextBytes, dockerfile: query.dockerfile, signal }
    const context = /^multipart\/form-data/i.test(request.headers['content-type'] ?? '')
      ? await receiveMultipartContext(body, request.headers, receiving)
      : await receiveContext(body, receiving)
    let spec
    try {
      spec = await app.imageAccess.admitBuild(principalOf(request), query, { text: context.dockerfile, path: context.dockerfilePath })
    } catch (error) {
      await context.remove()
      throw error
    }
    const build = app.builds.start({
      spec,
      context,
      summary: { tags: spec.tags.map(tag => tag.reference), dockerfile: query.dockerfile, target: query.target ?? null, platform: query.platform ?? null, contextSize: context.size }
    }, principalOf(request).name)
    request.audit({ build: build.id })
    if (isAsync) {
      reply.code(202).header('location', `/v1/builds/${build.id}`)
      if (preferAsync) reply.header('preference-applied', 'respond-async')
      return describeBuild(build, request.id)
    }
    // The client waits for this build: when it leaves, the build is cancelled at the engine.
    signal.addEventListener('abort', () => { app.builds.cancel(build, 'its client went away', app.config.engine.timeoutMs).catch(() => {}) }, { once: true })
    if (media === 'application/json') {
      const image = await build.outcome()
      request.audit({ imageId: image.id })
      return image
    }
    const instance = request.url.split('?')[0] ?? request.url
    const stream = new EventStream(media, { heartbeatMs: app.config.streams.heartbeatMs })
    pipeSubscription<BuildEntry>(stream, {
      signal,
      subscribe: listener => build.subscribe(0, listener),
      render: ({ seq, event }) => {
        if (event.type === 'built') request.audit({ imageId: event.image.id })
        return { data: wireBuildEvent(build, event, request.id, instance), id: String(seq), last: isFinal(event) }
      }
    })
    return await sendStream(reply, media, stream)
  })

  app.get('/v1/builds', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['builds'],
      summary: 'List builds',
      description: 'The builds of this token (every token\'s for an admin) under way or ended within BERTH_JOB_RETENTION_MS, newest first.',
      operationId: 'listBuilds',
      response: { 200: Type.Array(ref(BuildJob), { description: 'The builds.' }), ...problems() }
    }
  }, async (request) => app.builds.list(principalOf(request)).map(build => describeBuild(build, request.id)))

  app.get('/v1/builds/:id', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['builds'],
      summary: 'Show a build',
      description: 'Its state, the step it is at, and the built image or the problem it ended with.',
      operationId: 'getBuild',
      params: BuildParams,
      response: { 200: ref(BuildJob), ...problems('not_found') }
    }
  }, async (request) => describeBuild(app.builds.get(request.params.id, principalOf(request)), request.id))

  app.get('/v1/builds/:id/events', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['builds'],
      summary: 'Follow a build\'s events',
      description: 'What happened so far (at most the last 1000 output lines), then live until the final `built` or `error` event. ' +
        'Server-sent events by default, NDJSON on request. With Last-Event-ID, only the events after it.',
      operationId: 'followBuild',
      params: BuildParams,
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ description: 'Resume after this event id.' })) }),
      response: {
        200: {
          description: 'The build\'s BuildEvents.',
          content: {
            [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is a BuildEvent, each `id` its sequence number.' }) },
            [NDJSON]: { schema: ref(BuildEvent) }
          }
        },
        ...problems('not_found', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    const build = app.builds.get(request.params.id, principalOf(request))
    const media = negotiate(request.headers.accept, EVENT_MEDIA)
    if (media === null) throw notAcceptable(EVENT_MEDIA)
    const after = lastEventSeq(request.headers['last-event-id'])
    const instance = request.url.split('?')[0] ?? request.url
    const stream = new EventStream(media, { heartbeatMs: app.config.streams.heartbeatMs })
    pipeSubscription<BuildEntry>(stream, {
      signal: app.streams.signal(reply),
      subscribe: listener => build.subscribe(after, listener),
      render: ({ seq, event }) => ({ data: wireBuildEvent(build, event, request.id, instance), id: String(seq), last: isFinal(event) })
    })
    if (build.finished) stream.finish()
    return await sendStream(reply, media, stream)
  })

  app.delete('/v1/builds/:id', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['builds'],
      summary: 'Cancel a build',
      description: 'The build ends as `cancelled`: the engine stops its step, and this answers once its container and the images it made are gone. ' +
        'A build that already ended is answered as it is.',
      operationId: 'cancelBuild',
      params: BuildParams,
      response: { 200: ref(BuildJob), ...problems('not_found') }
    }
  }, async (request) => {
    const build = app.builds.get(request.params.id, principalOf(request))
    request.audit({ build: build.id })
    await app.builds.cancel(build, 'it was cancelled', app.config.engine.timeoutMs * 2)
    return describeBuild(build, request.id)
  })
}

export default builds
