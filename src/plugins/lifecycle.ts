// Provides `app.lifecycle`: the sweeper that removes exited autoRemove containers nobody waited for
// and expires containers, and through which an expiry is moved (so the two never cross). It starts
// when the app is ready and stops when it closes. Needs `app.engine` and `app.ownership`.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { Sweeper } from '../lifecycle/sweeper.ts'

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Sweeper
  }
}

export default fp<{ lifecycle: Config['lifecycle'], now?: () => number }>(async (app, options) => {
  const sweeper = new Sweeper(app.engine, app.ownership, {
    intervalMs: options.lifecycle.sweepIntervalMs,
    autoRemoveGraceMs: options.lifecycle.autoRemoveGraceMs,
    concurrency: options.lifecycle.concurrency,
    log: app.log,
    // A test drives the sweeper's clock to an expiry or the end of a grace period instead of waiting for it.
    ...(options.now === undefined ? {} : { now: options.now })
  })
  app.decorate('lifecycle', sweeper)
  app.addHook('onReady', async () => { sweeper.start() })
  app.addHook('preClose', async () => { sweeper.stop() })
}, { name: 'berth-lifecycle', dependencies: ['berth-engine', 'berth-access'] })
