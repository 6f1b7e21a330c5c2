// Provides `app.pullJobs`: berth's pulls, shared between identical requests and kept as async jobs.
// Every pull under way is cancelled at the engine when berth closes.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { PullJobs } from '../pulls/jobs.ts'

declare module 'fastify' {
  interface FastifyInstance {
    pullJobs: PullJobs
  }
}

export default fp<{ jobs: Config['jobs'] }>(async (app, { jobs }) => {
  const pullJobs = new PullJobs(app.engine, app.pullSlots, { retentionMs: jobs.retentionMs, maxJobs: jobs.maxJobs })
  app.decorate('pullJobs', pullJobs)
  app.addHook('preClose', async () => { pullJobs.close() })
}, { name: 'berth-pull-jobs', dependencies: ['berth-engine'] })
