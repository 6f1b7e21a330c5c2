// Liveness and readiness: /healthz says the process answers, /readyz that the engine does too.
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
      summary: 'Engine is reachable',
      description: 'Asks the engine now; 503 engine_unavailable when it does not answer within the engine timeout.',
      operationId: 'readyz',
      response: { 200: ref(Health, 'The engine answers; its version and the negotiated API version.'), ...problems(...ENGINE) }
    }
  }, async () => ({ status: 'ready', engine: await app.engine.info() }))
}

export default health
