// /v1/images: docker pull, docker images, docker image inspect, docker rmi.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { checkPullRef, imageFrom } from '../policy.ts'
import { problemResponses, ref } from '../schemas/common.ts'
import { Image, ImageParams, ImageRemoval, ImageSummary, ListImagesQuery, PulledImage, PullRequest, RemoveImageQuery } from '../schemas/images.ts'
import { Type } from 'typebox'

const images: FastifyPluginAsyncTypebox = async (app) => {
  const policy = app.config.policy

  app.post('/v1/images/pull', {
    config: { scope: 'write' },
    schema: {
      tags: ['images'],
      summary: 'Pull an image (docker pull)',
      description: 'Pulls one image by tag or digest; no tag means `latest`, never every tag. A pull that fails part-way answers pull_failed, never success.',
      operationId: 'pullImage',
      body: ref(PullRequest),
      response: { 200: ref(PulledImage), ...problemResponses(400, 401, 403, 404, 429, 502, 503) }
    }
  }, async (request) => {
    const image = checkPullRef(policy, request.body.image)
    // A client that goes away cancels its pull at the engine.
    const abort = new AbortController()
    request.raw.once('close', () => { if (!request.raw.complete || request.raw.destroyed) abort.abort() })
    return await app.pulls.run(() => app.engine.pullImage(image, {
      ...(request.body.platform ? { platform: request.body.platform } : {}),
      ...(request.body.auth ? { auth: request.body.auth } : {}),
      signal: abort.signal
    }))
  })

  app.get('/v1/images', {
    config: { scope: 'read' },
    schema: {
      tags: ['images'],
      summary: 'List images (docker images)',
      operationId: 'listImages',
      querystring: ListImagesQuery,
      response: { 200: Type.Array(ref(ImageSummary)), ...problemResponses(400, 401, 503) }
    }
  }, async (request) => await app.engine.listImages({
    ...(request.query.reference === undefined ? {} : { reference: request.query.reference }),
    ...(request.query.dangling === undefined ? {} : { dangling: request.query.dangling }),
    ...(request.query.label === undefined ? {} : { labels: request.query.label })
  }))

  app.get('/v1/images/:ref', {
    config: { scope: 'read' },
    schema: {
      tags: ['images'],
      summary: 'Inspect an image (docker image inspect)',
      operationId: 'inspectImage',
      params: ImageParams,
      response: { 200: ref(Image), ...problemResponses(400, 401, 404, 503) }
    }
  }, async (request) => await app.engine.inspectImage(engineReference(request.params.ref)))

  app.delete('/v1/images/:ref', {
    // Images are shared by every token's containers: removing one is an admin's call.
    config: { scope: 'admin' },
    schema: {
      tags: ['images'],
      summary: 'Remove an image (docker rmi)',
      description: '409 image_in_use when a container uses it, unless force=true.',
      operationId: 'removeImage',
      params: ImageParams,
      querystring: RemoveImageQuery,
      response: { 200: ref(ImageRemoval), ...problemResponses(400, 401, 403, 404, 409, 503) }
    }
  }, async (request) => await app.engine.removeImage(engineReference(request.params.ref), { force: request.query.force }))
}

// An id (full or short) goes to the engine as it is; a reference is validated and made explicit.
function engineReference (input: string): string {
  if (/^(sha256:)?[a-f0-9]{12,64}$/.test(input)) return input
  const parsed = imageFrom(input, 'params/ref')
  return parsed.kind === 'id' ? parsed.id : parsed.ref.reference
}

export default images
