// Answers 501 not_supported for a route whose `config.backends` does not name the engine berth
// drives: after authentication (a client learns nothing before it has a token), before validation
// (an operation that does not exist here has no body worth checking). Needs `app.engine`.
import fp from 'fastify-plugin'
import { notSupported } from '../engine/capabilities.ts'
import { pathOf } from '../http/request-log.ts'

export default fp(async (app) => {
  const kind = app.engine.kind
  app.addHook('preValidation', async (request) => {
    const { backends, unsupported } = request.routeOptions.config
    if (backends === undefined || backends.includes(kind)) return
    throw notSupported(kind, `${request.method} ${pathOf(request)} is not supported by the ${kind} backend${unsupported === undefined ? '' : `: ${unsupported}`}`)
  })
}, { name: 'berth-capabilities', dependencies: ['berth-engine'] })
