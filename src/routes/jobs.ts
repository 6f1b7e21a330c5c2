// /v1/jobs: async pull jobs — their state, their events (replayed, then live), and cancelling them.
// A token that is not admin sees only the jobs it started: any other is "not found".
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { EventStream, NDJSON, SSE, lastEventSeq, negotiate, notAcceptable, pipeSubscription, sendStream } from '../http/event-stream.ts'
import type { Principal } from '../access/ownership.ts'
import { isFinal, type PullEntry } from '../pulls/shared-pull.ts'
import { describeJob, wirePullEvent } from '../pulls/views.ts'
import { ref } from '../schemas/common.ts'
import { problems } from '../schemas/problems.ts'
import { JobParams, PullEvent, PullJob } from '../schemas/jobs.ts'

// Jobs are pulls into the engine's image store (on a cluster, the nodes'): they need the images part.

const EVENT_MEDIA = [SSE, NDJSON] as const

const jobs: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/jobs/:id', {
    config: { scope: 'read', part: 'images' },
    schema: {
      tags: ['jobs'],
      summary: 'Show a pull job',
      description: 'Its state, progress so far, and the pulled image or the problem it ended with. Finished jobs are kept for BERTH_JOB_RETENTION_MS.',
      operationId: 'getJob',
      params: JobParams,
      response: { 200: ref(PullJob), ...problems('not_found') }
    }
  }, async (request) => describeJob(app.pullJobs.get(request.params.id, request.principal as Principal), request.id))

  app.get('/v1/jobs/:id/events', {
    config: { scope: 'read', part: 'images' },
    schema: {
      tags: ['jobs'],
      summary: 'Follow a pull job\'s events',
      description: 'What happened so far (each layer\'s latest state within a phase), then live until the final `pulled` or `error` event. ' +
        'Server-sent events by default, NDJSON on request. With Last-Event-ID, only the events after it.',
      operationId: 'followJob',
      params: JobParams,
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ description: 'Resume after this event id.' })) }),
      response: {
        200: {
          description: 'The job\'s PullEvents.',
          content: {
            [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is a PullEvent, each `id` its sequence number.' }) },
            [NDJSON]: { schema: ref(PullEvent) }
          }
        },
        ...problems('not_found', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    const job = app.pullJobs.get(request.params.id, request.principal as Principal)
    const media = negotiate(request.headers.accept, EVENT_MEDIA)
    if (media === null) throw notAcceptable(EVENT_MEDIA)
    const after = lastEventSeq(request.headers['last-event-id'])
    const instance = request.url.split('?')[0] ?? request.url
    const stream = new EventStream(media, { heartbeatMs: app.config.streams.heartbeatMs })
    pipeSubscription<PullEntry>(stream, {
      signal: app.streams.signal(reply),
      subscribe: listener => job.subscribe(after, listener),
      render: ({ seq, event }) => ({ data: wirePullEvent(event, request.id, instance), id: String(seq), droppable: event.type === 'progress', last: isFinal(event) })
    })
    // The replay above was synchronous: a job that has ended has said all it will.
    if (job.finished) stream.finish()
    return await sendStream(reply, media, stream)
  })

  app.delete('/v1/jobs/:id', {
    config: { scope: 'write', part: 'images' },
    schema: {
      tags: ['jobs'],
      summary: 'Cancel a pull job',
      description: 'The job ends as `cancelled`. Its engine pull is stopped — and this answers once it has stopped, so no half-pulled image is left — ' +
        'unless another job or client shares it, which then goes on. A job that already ended is answered as it is.',
      operationId: 'cancelJob',
      params: JobParams,
      response: { 200: ref(PullJob), ...problems('not_found') }
    }
  }, async (request) => {
    const job = app.pullJobs.get(request.params.id, request.principal as Principal)
    request.audit({ image: job.pull.ref.reference })
    await app.pullJobs.cancel(job, app.config.engine.timeoutMs)
    return describeJob(job, request.id)
  })
}

export default jobs
