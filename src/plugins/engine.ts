// Provides `app.engine`: the container engine berth drives, handed in so tests can choose it,
// closed with the app. Also the per-app caps on concurrent pulls and runs.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import type { Engine } from '../engine/types.ts'
import { Limiter } from '../limiter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine
    pulls: Limiter
    runs: Limiter
  }
}

export default fp<{ engine: Engine, limits: Config['limits'] }>(async (app, { engine, limits }) => {
  app.decorate('engine', engine)
  app.decorate('pulls', new Limiter('pulls', limits.maxConcurrentPulls))
  app.decorate('runs', new Limiter('runs', limits.maxConcurrentRuns))
  app.addHook('onClose', async () => { await engine.close?.() })
}, { name: 'berth-engine' })
