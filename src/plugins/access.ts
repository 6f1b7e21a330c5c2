// Provides `app.ownership`, `app.containers` and `app.volumes`: who may see what berth made, and
// containers (lookup, run under policy and quota) and volumes as one requester may use them. Needs `app.engine`.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { ContainerAccess } from '../access/containers.ts'
import { Ownership } from '../access/ownership.ts'
import { Quotas } from '../access/quotas.ts'
import { VolumeAccess } from '../access/volumes.ts'

declare module 'fastify' {
  interface FastifyInstance {
    ownership: Ownership
    containers: ContainerAccess
    volumes: VolumeAccess
  }
}

export default fp<{ config: Config }>(async (app, { config }) => {
  const ownership = new Ownership(config.deployment)
  const quotas = new Quotas(app.engine, ownership, config.policy.quota, name => app.tokens.named(name)?.quota)
  app.decorate('ownership', ownership)
  app.decorate('containers', new ContainerAccess(app.engine, ownership, config.policy, quotas))
  app.decorate('volumes', new VolumeAccess(app.engine, ownership))
}, { name: 'berth-access', dependencies: ['berth-engine', 'berth-auth'] })
