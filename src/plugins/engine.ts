// Provides `app.engine`: the container engine berth drives, handed in so tests can choose it,
// metered, and closed with the app. Also the slots that cap how many pulls and runs go to the
// engine at once (`app.pullSlots`, `app.runSlots`), watched by the metrics.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import type { Engine } from '../engine/types.ts'
import { Limiter } from '../http/limiter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine
    pullSlots: Limiter
    runSlots: Limiter
  }
}

export default fp<{ engine: Engine, limits: Config['limits'] }>(async (app, { engine, limits }) => {
  app.decorate('engine', app.metrics.meter(engine))
  const pullSlots = new Limiter('pulls', limits.maxConcurrentPulls)
  const runSlots = new Limiter('runs', limits.maxConcurrentRuns)
  app.metrics.watch('pulls', pullSlots)
  app.metrics.watch('runs', runSlots)
  app.decorate('pullSlots', pullSlots)
  app.decorate('runSlots', runSlots)
  app.addHook('onClose', async () => { await engine.close?.() })
}, { name: 'berth-engine', dependencies: ['berth-metrics'] })
