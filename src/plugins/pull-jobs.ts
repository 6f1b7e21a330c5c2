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

export interface PullJobsPluginOptions {
  jobs: Config['jobs']
  /** The clock retention is measured on; Date.now by default. */
  now?: () => number
}

export default fp<PullJobsPluginOptions>(async (app, { jobs, now }) => {
  const pullJobs = new PullJobs(app.engine, app.pullSlots, { retentionMs: jobs.retentionMs, maxJobs: jobs.maxJobs, ...(now === undefined ? {} : { now }) })
  app.decorate('pullJobs', pullJobs)
  app.addHook('preClose', async () => { pullJobs.close() })
}, { name: 'berth-pull-jobs', dependencies: ['berth-engine'] })
