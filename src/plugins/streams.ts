// Provides `app.streams`: the signal a streaming response ends on — its client going away, or berth
// closing. Open streams would otherwise hold a graceful shutdown open for as long as they last.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BerthClosing, ClientLeft } from '../http/aborts.ts'

export interface Streams {
  /** Aborts when the response closes (the client left, or it ended: ClientLeft) or when the app closes (BerthClosing). */
  signal (reply: FastifyReply): AbortSignal
  /** Ends the open streams whose request `which` picks (their token was revoked, say); answers how many. */
  end (which: (request: FastifyRequest) => boolean): number
  /** How many responses are tied to engine work now (streams, and pulls answered in JSON). */
  readonly open: number
}

declare module 'fastify' {
  interface FastifyInstance {
    streams: Streams
  }
}

export default fp(async (app) => {
  const open = new Map<AbortController, FastifyRequest>()
  app.decorate('streams', {
    signal (reply: FastifyReply): AbortSignal {
      const controller = new AbortController()
      open.set(controller, reply.request)
      const done = (): void => {
        open.delete(controller)
        controller.abort(new ClientLeft())
      }
      reply.raw.once('close', done)
      controller.signal.addEventListener('abort', () => {
        open.delete(controller)
        reply.raw.off('close', done)
      }, { once: true })
      return controller.signal
    },
    end (which: (request: FastifyRequest) => boolean): number {
      let ended = 0
      for (const [controller, request] of [...open]) {
        if (which(request)) {
          controller.abort()
          ended++
        }
      }
      return ended
    },
    get open () {
      return open.size
    }
  })
  // Before the server stops accepting: streams end cleanly, so closing does not wait on them.
  app.addHook('preClose', async () => {
    for (const controller of [...open.keys()]) controller.abort(new BerthClosing())
  })
}, { name: 'berth-streams' })
