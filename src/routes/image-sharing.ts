// Sharing images: docker tag, untag (docker rmi of one name), docker push — answered in JSON when
// done or streamed like pulls — and, for admins, docker image prune and docker system df.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { Principal } from '../access/ownership.ts'
import type { PushProgress } from '../engine/types.ts'
import { BerthError, problemOf } from '../errors.ts'
import { EventStream, NDJSON, SSE, negotiate, notAcceptable, sendStream } from '../http/event-stream.ts'
import { ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'
import { DiskUsage, PruneReport, PruneRequest, PushedImage, PushEvent, PushRequest, TaggedImage, TagRequest, UntagRequest } from '../schemas/builds.ts'
import { ImageRemoval } from '../schemas/images.ts'

const PUSH_MEDIA = ['application/json', NDJSON, SSE] as const

function principalOf (request: FastifyRequest): Principal {
  return request.principal as Principal
}

const imageSharing: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/v1/images/tag', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['images'],
      summary: 'Tag an image (docker tag)',
      description: 'Gives the image `source` names (an id or a reference) the name `tag`. The name must be on the image allow-list; ' +
        'a non-admin token may only take a name that is free or names an image it built — and a name in another token\'s push namespace never ' +
        '(BERTH_PUSH_NAMESPACE, `{deployment}/{token}` by default: `registry/default/alice/…` is alice\'s), while one in its own it may always take.',
      operationId: 'tagImage',
      body: ref(TagRequest),
      response: { 201: ref(TaggedImage, 'Tagged.'), ...problems(...ENGINE, 'image_not_found', 'policy_denied') }
    }
  }, async (request, reply) => {
    request.audit({ image: request.body.source, tags: [request.body.tag] })
    const tagged = await app.imageAccess.tag(principalOf(request), request.body.source, request.body.tag)
    request.audit({ imageId: tagged.id })
    return await reply.code(201).send(tagged)
  })

  app.post('/v1/images/untag', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['images'],
      summary: 'Remove a name from an image (docker rmi NAME)',
      description: 'Removes one `repo:tag` name. The image goes with its last name, unless a container uses it (409 image_in_use). ' +
        'A non-admin token may only remove names of images it built, or names in its own push namespace.',
      operationId: 'untagImage',
      body: ref(UntagRequest),
      response: { 200: ref(ImageRemoval, 'What was untagged and deleted.'), ...problems(...ENGINE, 'image_not_found', 'image_in_use', 'policy_denied') }
    }
  }, async (request) => {
    request.audit({ image: request.body.image })
    const removal = await app.imageAccess.untag(principalOf(request), request.body.image)
    request.audit({ untagged: removal.untagged, deleted: removal.deleted })
    return removal
  })

  app.post('/v1/images/push', {
    config: { scope: 'build', part: 'builds' },
    schema: {
      tags: ['images'],
      summary: 'Push an image (docker push)',
      description: 'Pushes one tag to its registry and answers the digest the registry stored: `repo@digest` names exactly this image from then on. ' +
        'A non-admin token pushes only to repositories in its push namespace, in any registry on the allow-list (BERTH_PUSH_NAMESPACE, by default ' +
        '`{deployment}/{token}`: token alice of deployment default pushes `registry/default/alice/…`); anything else is 403 policy_denied, rule pushNamespace, ' +
        'before the engine is asked. An admin pushes any name on the allow-list.\n\n' +
        'Credentials: `auth`, or the server\'s for that registry (BERTH_REGISTRY_AUTH_FILE). A registry that refuses them is push_failed with `reason: registry_auth`.\n\n' +
        '`Accept: application/x-ndjson` or `text/event-stream` streams PushEvents; errors before the engine takes the push are plain problem responses, after that the last event. ' +
        'A client that leaves stops the push.',
      operationId: 'pushImage',
      body: ref(PushRequest),
      response: {
        200: {
          description: 'Pushed; or, per Accept, the push as it happens.',
          content: {
            'application/json': { schema: ref(PushedImage) },
            [NDJSON]: { schema: ref(PushEvent) },
            [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is a PushEvent.' }) }
          }
        },
        ...problems(...ENGINE, 'image_not_found', 'policy_denied', 'push_failed', 'rate_limited', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    request.audit({ image: request.body.image })
    const target = app.imageAccess.pushRef(principalOf(request), request.body.image)
    const media = negotiate(request.headers.accept, PUSH_MEDIA)
    if (media === null) throw notAcceptable(PUSH_MEDIA)
    const signal = app.streams.signal(reply)
    // The engine's first word (a layer's progress) says it took the push; until then a failure is a plain problem response.
    let onProgress: (progress: PushProgress) => void = () => {}
    let accepted: () => void = () => {}
    const taken = new Promise<void>(resolve => { accepted = resolve })
    const pushing = app.pullSlots.run(() => app.engine.part('builds').push(target, {
      ...(request.body.auth === undefined ? {} : { auth: request.body.auth }),
      signal,
      onProgress: progress => {
        accepted()
        onProgress(progress)
      }
    }))
    const pushed = pushing.then(image => {
      request.audit({ digest: image.digest })
      return image
    })
    if (media === 'application/json') return await pushed
    await Promise.race([taken, pushed])
    const instance = request.url.split('?')[0] ?? request.url
    const stream = new EventStream(media, { heartbeatMs: app.config.streams.heartbeatMs })
    let seq = 0
    onProgress = layer => stream.send({ type: 'progress', layer }, { id: String(++seq), droppable: true })
    pushed.then(image => stream.send({ type: 'pushed', image }, { id: String(++seq) }),
      (error: unknown) => {
        const problem = error instanceof BerthError ? error : new BerthError('internal_error', 'the push failed unexpectedly', {}, { cause: error })
        stream.send({ type: 'error', problem: problemOf(problem, request.id, instance) }, { id: String(++seq) })
      }).finally(() => stream.finish())
    return await sendStream(reply, media, stream)
  })

  app.post('/v1/images/prune', {
    // Images are shared by every token: only an admin decides which go.
    config: { scope: 'admin', part: 'disk' },
    schema: {
      tags: ['images'],
      summary: 'Remove unused images and build cache (docker image prune)',
      description: 'Removes untagged images no container uses (with `all`, every image no container uses), optionally only those with the given labels, ' +
        'and the engine\'s build cache (with the classic builder, untagged intermediate images are its cache and go with the first part).',
      operationId: 'pruneImages',
      body: ref(PruneRequest),
      response: { 200: ref(PruneReport, 'What was removed.'), ...problems(...ENGINE) }
    }
  }, async (request) => {
    const body = request.body
    const images = await app.engine.part('disk').pruneImages({ dangling: body.all !== true, ...(body.label === undefined ? {} : { labels: body.label }) })
    const cache = body.buildCache === false ? { deleted: [], spaceReclaimed: 0 } : await app.engine.part('disk').pruneBuildCache()
    request.audit({ deleted: images.deleted })
    return { images: images.deleted, buildCache: cache.deleted, spaceReclaimed: images.spaceReclaimed + cache.spaceReclaimed }
  })

  app.get('/v1/system/df', {
    config: { scope: 'admin', part: 'disk' },
    schema: {
      tags: ['images'],
      summary: 'Disk usage (docker system df)',
      description: 'What images, containers, volumes and the build cache take on the engine\'s disk, and what a prune would free.',
      operationId: 'diskUsage',
      response: { 200: ref(DiskUsage, 'Disk usage.'), ...problems(...ENGINE) }
    }
  }, async () => await app.engine.part('disk').usage())
}

export default imageSharing
