// The swarm backend's expiry part. A container's expiry is in its service's labels, fixed at run; a
// moved end (PUT …/expiry) is kept in the cluster beside it, as a Swarm config labelled with the
// service's id and the new end — berth's bookkeeping, in the managers' own store, so every berth (and
// one restarted) reads the same. A service's labels are not changed for it: an update of a service
// replaces its tasks. The newest lease wins; older ones go.
import { LABEL_DEPLOYMENT, LABEL_EXPIRES_AT, LABEL_EXPIRY_ACTION, LABEL_LEASE_FOR, LABEL_MANAGED } from '../../access/ownership.ts'
import { expiryOf } from '../docker/mapping.ts'
import type { ExpiryPart } from '../parts.ts'
import type { ExpiringContainer } from '../types.ts'
import type { SwarmCluster } from './cluster.ts'
import { summaryOf } from './mapping.ts'

interface Lease {
  config: string
  service: string
  expiresAt: string
  /** When it was written (ms), from its name: the newest wins. */
  written: number
}

interface SwarmConfig {
  ID: string
  Spec: { Name: string, Labels?: Record<string, string> }
}

export class SwarmExpiry implements ExpiryPart {
  readonly #cluster: SwarmCluster

  constructor (cluster: SwarmCluster) {
    this.#cluster = cluster
  }

  async list (labels: string[]): Promise<ExpiringContainer[]> {
    const [services, leases] = await Promise.all([this.#cluster.reads.services({ labels: [...labels, LABEL_EXPIRY_ACTION] }), this.#leases([...labels, LABEL_LEASE_FOR])])
    const latest = latestLeases(leases)
    const ids = new Set(services.map(service => service.ID))
    // The moved ends of services that are gone (removed, also behind berth's back) are forgotten.
    for (const lease of leases) if (!ids.has(lease.service)) await this.#remove(lease.config).catch(() => {})
    if (services.length === 0) return []
    const tasks = await this.#cluster.reads.tasks(services.map(service => service.ID))
    const nodes = await this.#cluster.reads.nodeRefs(tasks)
    return services.flatMap(service => {
      const summary = summaryOf(service, tasks, nodes)
      const { expiry } = expiryOf(summary.labels, latest.get(service.ID)?.expiresAt)
      return expiry === undefined ? [] : [{ id: service.ID, name: summary.name, state: summary.state, labels: summary.labels, expiry }]
    })
  }

  async set (id: string, expiresAt: string): Promise<void> {
    const service = await this.#cluster.reads.service(id)
    const before = await this.#leases([`${LABEL_LEASE_FOR}=${service.ID}`])
    const deployment = service.Spec.Labels?.[LABEL_DEPLOYMENT]
    const labels = { [LABEL_MANAGED]: 'true', ...(deployment === undefined ? {} : { [LABEL_DEPLOYMENT]: deployment }), [LABEL_LEASE_FOR]: service.ID, [LABEL_EXPIRES_AT]: expiresAt }
    const name = `berth-lease-${service.ID.slice(0, 12)}-${Date.now()}`
    await this.#cluster.api.request({ method: 'POST', path: '/configs/create', body: { Name: name, Labels: labels, Data: Buffer.from(expiresAt).toString('base64') }, target: name })
    for (const lease of before) await this.#remove(lease.config).catch(() => {})
  }

  /** The moved end of one service's time to live, when it was moved. */
  async movedEnd (serviceId: string): Promise<string | undefined> {
    return latestLeases(await this.#leases([`${LABEL_LEASE_FOR}=${serviceId}`])).get(serviceId)?.expiresAt
  }

  async #leases (labels: string[]): Promise<Lease[]> {
    const configs = await this.#cluster.api.get<SwarmConfig[]>('/configs', { filters: { label: labels } }, { target: 'configs' })
    return configs.flatMap(config => {
      const service = config.Spec.Labels?.[LABEL_LEASE_FOR]
      const expiresAt = config.Spec.Labels?.[LABEL_EXPIRES_AT]
      const written = Number(/-(\d+)$/.exec(config.Spec.Name)?.[1])
      return service === undefined || expiresAt === undefined ? [] : [{ config: config.ID, service, expiresAt, written }]
    })
  }

  async #remove (id: string): Promise<void> {
    await this.#cluster.api.request({ method: 'DELETE', path: `/configs/${encodeURIComponent(id)}`, target: id })
  }
}

function latestLeases (leases: Lease[]): Map<string, Lease> {
  const latest = new Map<string, Lease>()
  for (const lease of leases) {
    const known = latest.get(lease.service)
    if (known === undefined || lease.written > known.written) latest.set(lease.service, lease)
  }
  return latest
}
