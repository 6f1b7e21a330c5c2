// GET /v1/containers/{idOrName}/logs: docker logs — stdout and stderr apart, tail, since/until,
// timestamps, follow — as plain text or NDJSON. A token sees only its own containers' logs.
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { NDJSON, negotiate, notAcceptable, sendStream } from '../http/event-stream.ts'
import type { Principal } from '../access/ownership.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { LogEntry, LogsQuery } from '../schemas/logs.ts'
import { parseTime } from '../http/times.ts'

const TEXT = 'text/plain'
const LOG_MEDIA = [TEXT, NDJSON] as const

const logs: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/containers/:idOrName/logs', {
    config: { scope: 'read' },
    schema: {
      tags: ['containers'],
      summary: 'Read or follow a container\'s output (docker logs)',
      description: 'Plain text by default, as `docker logs` prints it; NDJSON LogEntry lines (stdout and stderr told apart) with `Accept: application/x-ndjson`. ' +
        'With follow=true the response stays open until the container stops or the client leaves.',
      operationId: 'containerLogs',
      params: ContainerParams,
      querystring: LogsQuery,
      response: {
        200: {
          description: 'The output, line by line.',
          content: {
            [TEXT]: { schema: Type.String({ description: 'One line per output line; with timestamps=true each begins with its time and a space.' }) },
            [NDJSON]: { schema: ref(LogEntry) }
          }
        },
        ...problems(...CONTAINER, 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    const media = negotiate(request.headers.accept, LOG_MEDIA)
    if (media === null) throw notAcceptable(LOG_MEDIA)
    const { idOrName } = request.params
    const { follow = false, tail = 'all', since, until, timestamps = false } = request.query
    const now = Date.now()
    const options = {
      follow,
      timestamps,
      ...(tail === 'all' ? {} : { tail: Number(tail) }),
      ...(since === undefined ? {} : { since: parseTime(since, 'since', now) }),
      ...(until === undefined ? {} : { until: parseTime(until, 'until', now) })
    }
    const container = await app.containers.find(request.principal as Principal, idOrName)
    const signal = app.streams.signal(reply)
    const entries = await app.engine.containers.logs(container.id, { ...options, signal })
    const body = Readable.from(render(entries, media === NDJSON), { objectMode: false })
    return await sendStream(reply, media === TEXT ? 'text/plain; charset=utf-8' : NDJSON, body)
  })
}

async function * render (entries: AsyncIterable<LogEntry>, ndjson: boolean): AsyncGenerator<string> {
  for await (const entry of entries) {
    yield ndjson ? JSON.stringify(entry) + '\n' : `${entry.time === undefined ? '' : entry.time + ' '}${entry.line}\n`
  }
}

export default logs
