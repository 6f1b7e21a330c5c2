// Provides `app.ownership`, `app.containers`, `app.volumes` and `app.networks`: who may see what
// berth made, and containers (lookup, run under policy and quota), volumes and networks as one
// requester may use them. Needs `app.engine`.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { ContainerAccess } from '../access/containers.ts'
import { Ownership } from '../access/ownership.ts'
import { Quotas } from '../access/quotas.ts'
import { VolumeAccess } from '../access/volumes.ts'
import { NetworkAccess } from '../access/networks.ts'

declare module 'fastify' {
  interface FastifyInstance {
    ownership: Ownership
    containers: ContainerAccess
    volumes: VolumeAccess
    networks: NetworkAccess
  }
}

export default fp<{ config: Config, now?: () => number }>(async (app, { config, now }) => {
  const ownership = new Ownership(config.deployment)
  const quotas = new Quotas(app.engine, ownership, config.policy.quota, name => app.tokens.named(name)?.quota)
  app.decorate('ownership', ownership)
  const containers = new ContainerAccess(app.engine, ownership, config.policy, quotas, now)
  app.decorate('containers', containers)
  app.decorate('volumes', new VolumeAccess(app.engine, ownership, quotas))
  app.decorate('networks', new NetworkAccess(app.engine, ownership, containers))
}, { name: 'berth-access', dependencies: ['berth-engine', 'berth-auth'] })
