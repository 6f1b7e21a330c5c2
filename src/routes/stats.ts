// GET /v1/containers/{idOrName}/stats: docker stats — CPU %, memory used and limit, network and block
// I/O, processes — as one reading (JSON) or a stream of them (NDJSON, SSE). A token sees only its own.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import type { Principal } from '../access/ownership.ts'
import { BerthError } from '../errors.ts'
import { NDJSON, SSE, negotiate, notAcceptable, sendStream } from '../http/event-stream.ts'
import { eventBody } from '../http/output-stream.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { ReplicaQuery } from '../schemas/common.ts'
import { ContainerStats } from '../schemas/stats.ts'

const STATS_MEDIA = ['application/json', NDJSON, SSE] as const

const stats: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/containers/:idOrName/stats', {
    config: { scope: 'read', part: 'stats' },
    schema: {
      tags: ['containers'],
      summary: 'Resource usage of a container (docker stats)',
      description: 'One reading in JSON (`docker stats --no-stream`; the engine takes about a second, to have a previous reading to compare CPU time with), ' +
        'or, with `Accept: application/x-ndjson` or `text/event-stream`, a reading about every second until the container stops or the client leaves. ' +
        'Computed as the Docker CLI computes them. On a cluster: one replica\'s (`replica`), or without one the sum over the running replicas.',
      operationId: 'containerStats',
      params: ContainerParams,
      querystring: ReplicaQuery,
      response: {
        200: {
          description: 'A reading, or readings as they come.',
          content: {
            'application/json': { schema: ref(ContainerStats) },
            [NDJSON]: { schema: ref(ContainerStats) },
            [SSE]: { schema: { type: 'string', description: 'Server-sent events; each `data` is a ContainerStats.' } }
          }
        },
        ...problems(...CONTAINER, 'container_not_running', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    const media = negotiate(request.headers.accept, STATS_MEDIA)
    if (media === null) throw notAcceptable(STATS_MEDIA)
    const container = await app.containers.find(request.principal as Principal, request.params.idOrName)
    // A container that does not run has no usage to read: the engine would answer zeros.
    if (!container.running) throw new BerthError('container_not_running', `container ${container.id} is not running: it uses nothing`)
    const signal = app.streams.signal(reply)
    const { replica } = request.query
    const readings = await app.engine.part('stats').stats(container.id, { stream: media !== 'application/json', signal, ...(replica === undefined ? {} : { replica }) })
    if (media === 'application/json') {
      const first = await readings[Symbol.asyncIterator]().next()
      if (first.done === true) throw new BerthError('container_not_running', `container ${container.id} stopped before it could be read`)
      return first.value
    }
    return await sendStream(reply as unknown as FastifyReply, media, eventBody(readings, media, app.config.streams.heartbeatMs))
  })
}

export default stats
