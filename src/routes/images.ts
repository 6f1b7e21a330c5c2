// /v1/images: docker pull, docker images, docker image inspect, docker rmi.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { EventStream, NDJSON, SSE, negotiate, notAcceptable, pipeSubscription, sendStream } from '../http/event-stream.ts'
import type { AuditTarget } from '../plugins/audit.ts'
import type { Principal } from '../access/ownership.ts'
import { engineReference } from '../access/images.ts'
import { checkPullRef } from '../access/policy.ts'
import { isFinal, type PullEntry, type PullSpec } from '../pulls/shared-pull.ts'
import { describeJob, wirePullEvent } from '../pulls/views.ts'
import { ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'
import { located } from '../schemas/headers.ts'
import { ImageDetails, ImageParams, ImageRemoval, ImageSummary, ListImagesQuery, PulledImage, PullRequest, RemoveImageQuery } from '../schemas/images.ts'
import { PullEvent, PullHeaders, PullJob, PullQuery } from '../schemas/jobs.ts'
import { Type } from 'typebox'

const PULL_MEDIA = ['application/json', NDJSON, SSE] as const

const images: FastifyPluginAsyncTypebox = async (app) => {
  const policy = app.config.policy

  app.post('/v1/images/pull', {
    config: { scope: 'write', part: 'images' },
    schema: {
      tags: ['images'],
      summary: 'Pull an image (docker pull)',
      description: 'Pulls one image by tag or digest; no tag means `latest`, never every tag. A pull that fails part-way answers pull_failed, never success.\n\n' +
        '`Accept: application/x-ndjson` or `text/event-stream` streams the pull as PullEvents: per-layer progress with an overall fraction, ' +
        'then the pulled image or a problem. Errors before the engine takes the pull are plain problem responses; after that, the last event.\n\n' +
        '`?async=true` (or `Prefer: respond-async`) answers 202 with a PullJob at once. Identical pulls under way share one engine pull; ' +
        'a client that leaves stops the engine pull only when nobody else (client or job) follows it.',
      operationId: 'pullImage',
      body: ref(PullRequest),
      querystring: PullQuery,
      headers: PullHeaders,
      response: {
        200: {
          description: 'The pulled image; or, per Accept, the pull as it happens.',
          content: {
            'application/json': { schema: ref(PulledImage) },
            [NDJSON]: { schema: ref(PullEvent) },
            [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is a PullEvent, each `id` a sequence number.' }) }
          }
        },
        202: located({ description: 'Started as an async job (Location: the job).', content: { 'application/json': { schema: ref(PullJob) } } }),
        ...problems(...ENGINE, 'policy_denied', 'image_not_found', 'pull_failed', 'pull_cancelled', 'rate_limited', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    request.audit({ image: request.body.image })
    const spec: PullSpec = {
      ref: checkPullRef(policy, request.body.image),
      ...(request.body.platform ? { platform: request.body.platform } : {}),
      ...(request.body.auth ? { auth: request.body.auth } : {})
    }
    const preferAsync = /(^|,)\s*respond-async\s*(;|,|$)/i.test([request.headers.prefer ?? ''].flat().join(','))
    if (request.query.async === true || preferAsync) {
      const job = app.pullJobs.start(spec, (request.principal as Principal).name)
      request.audit({ job: job.id })
      reply.code(202).header('location', `/v1/jobs/${job.id}`)
      if (preferAsync) reply.header('preference-applied', 'respond-async')
      return describeJob(job, request.id)
    }
    const media = negotiate(request.headers.accept, PULL_MEDIA)
    if (media === null) throw notAcceptable(PULL_MEDIA)
    // This request holds the pull while its client is there; the last one to leave cancels it at the engine.
    const follower = app.pullJobs.follow(spec)
    const signal = app.streams.signal(reply)
    signal.addEventListener('abort', () => { follower.release() }, { once: true })
    if (media === 'application/json') {
      try {
        const pulled = await follower.pull.outcome()
        request.audit(pulledTarget(pulled))
        return pulled
      } finally {
        follower.release()
      }
    }
    // Until the engine takes the pull, a failure is an ordinary error response with its own status.
    const first = await follower.pull.first()
    if (first.type === 'error') {
      follower.release()
      throw first.error
    }
    const instance = request.url.split('?')[0] ?? request.url
    const stream = new EventStream(media, { heartbeatMs: app.config.streams.heartbeatMs })
    pipeSubscription<PullEntry>(stream, {
      signal,
      subscribe: listener => follower.pull.subscribe(0, Infinity, listener),
      render: ({ seq, event }) => {
        // The audit line is written when the stream ends, so it names what the stream delivered.
        if (event.type === 'pulled') request.audit(pulledTarget(event.image))
        return { data: wirePullEvent(event, request.id, instance), id: String(seq), droppable: event.type === 'progress', last: isFinal(event) }
      },
      onClose: () => { follower.release() }
    })
    return await sendStream(reply, media, stream)
  })

  app.get('/v1/images', {
    config: { scope: 'read', part: 'images' },
    schema: {
      tags: ['images'],
      summary: 'List images (docker images)',
      description: 'Each with its labels, size, and how many containers the token may see use it.',
      operationId: 'listImages',
      querystring: ListImagesQuery,
      response: { 200: Type.Array(ref(ImageSummary), { description: 'The images.' }), ...problems(...ENGINE) }
    }
  }, async (request) => {
    // One engine call after the other: a request holds at most one engine connection at a time.
    const list = await app.engine.part('images').list({
      ...(request.query.reference === undefined ? {} : { reference: request.query.reference }),
      ...(request.query.dangling === undefined ? {} : { dangling: request.query.dangling }),
      ...(request.query.label === undefined ? {} : { labels: request.query.label })
    })
    const usage = await app.imageAccess.usage(request.principal as Principal)
    return list.map(image => ({ ...image, containers: usage.get(image.id) ?? 0 }))
  })

  app.get('/v1/images/:ref', {
    config: { scope: 'read', part: 'images' },
    schema: {
      tags: ['images'],
      summary: 'Inspect an image (docker image inspect, docker history)',
      description: 'The image with its labels, size, history (the steps that made it) and the containers the token may see that use it.',
      operationId: 'inspectImage',
      params: ImageParams,
      response: { 200: ref(ImageDetails, 'The image.'), ...problems(...ENGINE, 'image_not_found') }
    }
  }, async (request) => {
    const image = await app.engine.part('images').inspect(engineReference(request.params.ref, 'params/ref'))
    const history = await app.engine.part('images').history(image.id)
    return { ...image, history, usedBy: await app.imageAccess.usedBy(request.principal as Principal, image.id) }
  })

  app.delete('/v1/images/:ref', {
    // Images are shared by every token's containers: removing one is an admin's call.
    config: { scope: 'admin', part: 'imageRemoval' },
    schema: {
      tags: ['images'],
      summary: 'Remove an image (docker rmi)',
      description: '409 image_in_use when a container uses it, unless force=true.',
      operationId: 'removeImage',
      params: ImageParams,
      querystring: RemoveImageQuery,
      response: { 200: ref(ImageRemoval, 'Removed: what was untagged and deleted.'), ...problems(...ENGINE, 'image_not_found', 'image_in_use') }
    }
  }, async (request) => {
    const removal = await app.engine.part('imageRemoval').remove(engineReference(request.params.ref, 'params/ref'), { force: request.query.force ?? false })
    request.audit({ untagged: removal.untagged, deleted: removal.deleted })
    return removal
  })
}

function pulledTarget (image: { reference: string, id: string, digest: string | null }): AuditTarget {
  return { image: image.reference, imageId: image.id, digest: image.digest }
}

export default images
