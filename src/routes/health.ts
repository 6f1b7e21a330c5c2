// Liveness and readiness: /healthz says the process answers, /readyz that the engine does too and
// that what berth reads from (its watch-fed copy of the engine, where the backend keeps one) is current.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'

const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/healthz', {
    schema: { tags: ['health'], summary: 'Process is alive', operationId: 'healthz', response: { 200: ref(Health, 'berth answers.') } }
  }, async () => ({ status: 'ok' }))

  app.get('/readyz', {
    schema: {
      tags: ['health'],
      summary: 'Engine is reachable and berth\'s copy of it current',
      description: 'Asks the engine now, and waits (up to the engine timeout) for berth\'s watch-fed copy of the engine to be current: it is not after a gap in the engine\'s event stream (a reconnect, an engine restart) until it has listed again. 503 engine_unavailable when the engine does not answer or the copy is still catching up.',
      operationId: 'readyz',
      response: { 200: ref(Health, 'The engine answers; its version and the negotiated API version.'), ...problems(...ENGINE) }
    }
  }, async () => ({ status: 'ready', engine: await app.engine.info() }))
}

export default health
