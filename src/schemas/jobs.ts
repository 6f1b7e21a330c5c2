// Pull progress and pull jobs: the events a pull streams, and an async pull job as GET /v1/jobs/{id} shows it.
import { Type, type Static } from 'typebox'
import { Problem, ref } from './common.ts'
import { NodePull, PulledImage } from './images.ts'

export const LayerProgress = Type.Object({
  id: Type.String({ description: 'The layer\'s short id, as `docker pull` prints it.' }),
  phase: Type.Enum(['waiting', 'downloading', 'verifying', 'downloaded', 'extracting', 'complete', 'exists', 'retrying'], {
    type: 'string',
    description: 'Where the layer is. `exists`: already on the engine, nothing to do.'
  }),
  current: Type.Integer({ minimum: 0, description: 'Bytes done in this phase (downloaded, or extracted).' }),
  total: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'The layer\'s compressed size; null until known.' }),
  node: Type.Optional(Type.String({ description: 'On a cluster: the node it is pulled onto (each node pulls its own copy).' }))
}, { $id: 'LayerProgress', additionalProperties: false, description: 'One layer of a pull.' })

const image = Type.String({ description: 'The reference being pulled, tag made explicit.' })

export const PullEvent = Type.Union([
  Type.Object({ type: Type.Literal('queued'), image }, { additionalProperties: false, description: 'Waiting for a pull slot (BERTH_MAX_CONCURRENT_PULLS).' }),
  Type.Object({ type: Type.Literal('started'), image }, { additionalProperties: false, description: 'The engine took the pull: the registry served the manifest.' }),
  Type.Object({
    type: Type.Literal('progress'),
    layer: ref(LayerProgress),
    fraction: Type.Number({ minimum: 0, maximum: 1, description: 'Overall progress over all layers, by size; never goes back.' }),
    layers: Type.Object({
      total: Type.Integer({ description: 'Layers in the image.' }),
      done: Type.Integer({ description: 'Layers complete or already on the engine.' })
    }, { additionalProperties: false, description: 'Layer counts.' })
  }, { additionalProperties: false, description: 'A layer moved on.' }),
  Type.Object({
    type: Type.Literal('node'),
    node: NodePull.properties.node,
    state: NodePull.properties.state,
    reason: NodePull.properties.reason,
    detail: NodePull.properties.detail
  }, { additionalProperties: false, description: 'On a cluster: the pull is over on one node, pulled or failed (and why); the others go on.' }),
  Type.Object({ type: Type.Literal('pulled'), image: ref(PulledImage) }, { additionalProperties: false, description: 'Final: the pulled image.' }),
  Type.Object({ type: Type.Literal('error'), problem: ref(Problem) }, { additionalProperties: false, description: 'Final: why the pull failed (pull_failed, pull_cancelled, …), the same body an error response has.' })
], {
  $id: 'PullEvent',
  description: 'One event of a streamed pull: NDJSON lines, or the `data` of server-sent events (whose `id` resumes with Last-Event-ID). ' +
    'The last event is `pulled` or `error`, never both; a pull that fails part-way ends with `error`.'
})

export const PullJob = Type.Object({
  id: Type.String({ description: 'Job id.' }),
  kind: Type.Literal('pull', { description: 'What the job does.' }),
  state: Type.Enum(['queued', 'pulling', 'succeeded', 'failed', 'cancelled'], { type: 'string', description: 'Where the job is.' }),
  image,
  platform: Type.Union([Type.String(), Type.Null()], { description: 'The platform asked for, if any.' }),
  owner: Type.String({ description: 'The token that started the job; only it (and admins) can see it.' }),
  createdAt: Type.String({ format: 'date-time', description: 'When the job was started.' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it ended; it is kept for BERTH_JOB_RETENTION_MS after that.' }),
  progress: Type.Object({
    fraction: Type.Number({ minimum: 0, maximum: 1, description: 'Overall progress over all layers.' }),
    layers: Type.Array(ref(LayerProgress), { description: 'Every layer\'s latest state.' })
  }, { additionalProperties: false, description: 'Progress so far.' }),
  result: Type.Union([ref(PulledImage), Type.Null()], { description: 'The pulled image, once succeeded.' }),
  error: Type.Union([ref(Problem), Type.Null()], { description: 'Why it failed or was cancelled.' }),
  links: Type.Object({
    self: Type.String({ description: 'This job.' }),
    events: Type.String({ description: 'Its events: what happened so far, then live (NDJSON or server-sent events).' })
  }, { additionalProperties: false, description: 'Where to follow the job.' })
}, { $id: 'PullJob', additionalProperties: false, description: 'An async pull. Identical pulls under way share one engine pull; cancelling a job stops the engine pull once no other job or client shares it.' })
export type PullJob = Static<typeof PullJob>

export const PullQuery = Type.Object({
  async: Type.Optional(Type.Boolean({ default: false, description: 'Answer 202 with a job at once instead of waiting (also `Prefer: respond-async`).' }))
}, { additionalProperties: false })

export const PullHeaders = Type.Object({
  prefer: Type.Optional(Type.String({ description: '`respond-async`: the same as async=true (RFC 7240).' }))
})

export const JobParams = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f-]{36}$', description: 'Job id.' })
})

export const jobSchemas = [LayerProgress, PullEvent, PullJob]
