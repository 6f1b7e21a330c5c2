// Answers 501 not_supported for a route whose `config.part` the backend berth drives lacks, with the
// backend's reason: after authentication (a client learns nothing before it has a token), before
// validation (an operation that does not exist here has no body worth checking). Needs `app.engine`.
import fp from 'fastify-plugin'
import type { PartName } from '../engine/parts.ts'
import { lacking } from '../engine/parts.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The part of a backend this operation needs; absent means containers, which every backend has. */
    part?: PartName
  }
}

export default fp(async (app) => {
  const engine = app.engine
  app.addHook('preValidation', async (request) => {
    const part = request.routeOptions.config.part
    if (part === undefined) return
    const why = engine.why(part)
    if (why !== undefined) throw lacking(engine.kind, part, why)
  })
}, { name: 'berth-capabilities', dependencies: ['berth-engine'] })
