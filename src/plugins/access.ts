// Provides `app.ownership` and `app.containers`: who may see what berth made, and containers as
// one requester may use them (lookup, run under policy and quota). Needs `app.engine`.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { ContainerAccess } from '../access/containers.ts'
import { Ownership } from '../access/ownership.ts'
import { Quotas } from '../access/quotas.ts'

declare module 'fastify' {
  interface FastifyInstance {
    ownership: Ownership
    containers: ContainerAccess
  }
}

export default fp<{ config: Config }>(async (app, { config }) => {
  const ownership = new Ownership(config.deployment)
  const quotas = new Quotas(app.engine, ownership, config.policy.quota, name => app.tokens.named(name)?.quota)
  app.decorate('ownership', ownership)
  app.decorate('containers', new ContainerAccess(app.engine, ownership, config.policy, quotas))
}, { name: 'berth-access', dependencies: ['berth-engine', 'berth-auth'] })
