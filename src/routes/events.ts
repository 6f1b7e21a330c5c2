// GET /v1/events: docker events for containers and images as server-sent events, limited to what the
// token may see, resumable with Last-Event-ID, and carried across engine restarts.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BerthError } from '../errors.ts'
import { EventStream, SSE, negotiate, notAcceptable, sendStream } from '../http/event-stream.ts'
import { followEvents, publicEvent, visibleTo } from '../events/feed.ts'
import type { Principal } from '../access/ownership.ts'
import { ENGINE, problems } from '../schemas/problems.ts'

const events: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/events', {
    config: { scope: 'read' },
    schema: {
      tags: ['events'],
      summary: 'Follow container and image changes (docker events)',
      description: 'Server-sent events, one Event per `data`, from now on — or, with Last-Event-ID, from right after that event, as far back as the engine remembers. ' +
        'A token that is not admin sees image events and its own containers\' events. When the engine goes away berth reconnects by itself and resumes where it was, ' +
        'without repeating an event; comments (`: …`) mark heartbeats and reconnects.',
      operationId: 'followEvents',
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 64, description: 'Resume after this event id.' })) }),
      response: {
        // Declared as every stream's SSE body is: a string, whose description names the schema of each `data`.
        200: { description: 'The events.', content: { [SSE]: { schema: Type.String({ description: 'Server-sent events; each `data` is an Event, each `id` its cursor (send it back as Last-Event-ID to resume).' }) } } },
        ...problems(...ENGINE, 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    if (negotiate(request.headers.accept, [SSE]) === null) throw notAcceptable([SSE])
    const principal = request.principal as Principal
    const lastEventId = request.headers['last-event-id']
    const signal = app.streams.signal(reply)
    let stream: EventStream | null = null
    // Opened before the response starts: an engine that is not there is a 503, not an empty stream.
    const feed = await followEvents(app.engine, {
      ...(typeof lastEventId === 'string' ? { after: lastEventId } : {}),
      signal,
      onConnection: (state, error) => {
        if (state === 'lost') request.log.warn({ err: error }, 'engine event stream lost; reconnecting')
        stream?.comment(state === 'lost' ? 'engine connection lost; reconnecting' : 'engine connection restored')
      }
    }).catch((error: unknown) => {
      if (error instanceof BerthError && error.code === 'validation_failed' && lastEventId !== undefined) {
        throw new BerthError('validation_failed', 'Last-Event-ID is not an event id berth gave out', { errors: [{ location: 'headers', path: '/last-event-id', message: 'is not an event id' }] })
      }
      throw error
    })
    const body = stream = new EventStream(SSE, { heartbeatMs: app.config.streams.heartbeatMs })
    const pump = async (): Promise<void> => {
      try {
        for await (const event of feed) {
          if (visibleTo(app.ownership, principal, event)) body.send(publicEvent(event), { id: event.cursor })
        }
      } catch (error) {
        request.log.warn({ err: error }, 'event stream ended by an error')
      } finally {
        body.finish()
      }
    }
    pump().catch(() => {})
    return await sendStream(reply, SSE, body)
  })
}

export default events
