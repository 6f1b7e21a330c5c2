// Provides `app.engine`: the backend berth drives, handed in so tests can choose it, every part of it
// metered (calls by `part.operation`), and closed with the app. Also the slots that cap how many
// pulls and runs go to the engine at once (`app.pullSlots`, `app.runSlots`), watched by the metrics.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import type { Backend, OptionalPart, Parts } from '../engine/parts.ts'
import { Limiter } from '../http/limiter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    engine: Backend
    pullSlots: Limiter
    runSlots: Limiter
  }
}

export default fp<{ engine: Backend, limits: Config['limits'] }>(async (app, { engine, limits }) => {
  app.decorate('engine', metered(engine, app.metrics.meter))
  const pullSlots = new Limiter('pulls', limits.maxConcurrentPulls)
  const runSlots = new Limiter('runs', limits.maxConcurrentRuns)
  app.metrics.watch('pulls', pullSlots)
  app.metrics.watch('runs', runSlots)
  app.decorate('pullSlots', pullSlots)
  app.decorate('runSlots', runSlots)
  app.addHook('onClose', async () => { await engine.close() })
}, { name: 'berth-engine', dependencies: ['berth-metrics'] })

/** The backend with each of its parts metered, each part wrapped once. */
function metered (backend: Backend, meter: <E extends object>(target: E, part: string) => E): Backend {
  const core = meter({ info: backend.info, events: backend.events }, 'engine')
  const parts = new Map<OptionalPart, unknown>()
  return {
    kind: backend.kind,
    info: core.info,
    events: core.events,
    containers: meter(backend.containers, 'containers'),
    part: <N extends OptionalPart>(name: N): Parts[N] => {
      let part = parts.get(name) as Parts[N] | undefined
      if (part === undefined) {
        part = meter(backend.part(name), name)
        parts.set(name, part)
      }
      return part
    },
    has: backend.has,
    why: backend.why,
    close: backend.close
  }
}
