// Provides `app.builds` and `app.imageAccess`: berth's builds (a few at a time, each within the time
// limit, kept as jobs) and images as one requester may build, name and share them. Every build under
// way is cancelled at the engine when berth closes.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { ImageAccess } from '../access/images.ts'
import { Builds } from '../builds/builds.ts'
import { Limiter } from '../http/limiter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    builds: Builds
    buildSlots: Limiter
    imageAccess: ImageAccess
  }
}

export default fp<{ config: Config }>(async (app, { config }) => {
  const slots = new Limiter('builds', config.limits.maxConcurrentBuilds, config.limits.maxConcurrentBuilds * 8)
  const builds = new Builds(app.engine, slots, { retentionMs: config.jobs.retentionMs, maxBuilds: config.jobs.maxJobs, timeoutMs: config.limits.buildTimeoutMs })
  app.decorate('buildSlots', slots)
  app.decorate('builds', builds)
  app.decorate('imageAccess', new ImageAccess(app.engine, app.ownership, config.policy))
  app.addHook('preClose', async () => { await builds.close(config.engine.timeoutMs) })
}, { name: 'berth-builds', dependencies: ['berth-engine', 'berth-access'] })
