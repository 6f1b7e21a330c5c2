// Everything the swarm backend reads from the manager, through these few functions: a service, the
// services matching filters, the tasks of some services (or all), and the nodes. One place to read
// from, so a watch-fed copy of the services, tasks and nodes can later answer these instead of the
// manager, without the parts noticing.
import { BerthError } from '../../errors.ts'
import type { SwarmApi } from './api.ts'
import { factsOf, type ServiceFacts } from './events.ts'
import { nodeRefOf, type NodeRef, type SwarmNode, type SwarmService, type SwarmTask } from './mapping.ts'

/** How long node names, addresses and states are reused when showing where tasks run. */
const NODES_TTL_MS = 2000

export class ClusterReads {
  readonly #api: SwarmApi
  #nodes: { list: SwarmNode[], refs: Map<string, NodeRef>, expires: number } | null = null
  /** Facts of the services berth has seen, for the events of services that are gone by then. */
  readonly #facts = new Map<string, ServiceFacts>()

  constructor (api: SwarmApi) {
    this.#api = api
  }

  /** A service by id, unique id prefix or name; not_found as a container. */
  async service (idOrName: string): Promise<SwarmService> {
    const service = await this.#api.get<SwarmService>(`/services/${encodeURIComponent(idOrName)}`, {}, { subject: 'container', target: idOrName })
    this.#facts.set(service.ID, factsOf(service))
    return service
  }

  /** The services whose labels match every filter, and with exactly this name when one is given. */
  async services (filters: { labels?: string[], name?: string } = {}): Promise<SwarmService[]> {
    const services = await this.#api.get<SwarmService[]>('/services', {
      filters: { ...(filters.labels?.length ? { label: filters.labels } : {}), ...(filters.name ? { name: [filters.name] } : {}) }
    }, { subject: 'container', target: 'containers' })
    for (const service of services) this.#facts.set(service.ID, factsOf(service))
    // The manager's name filter matches prefixes: berth's is exact.
    return filters.name === undefined ? services : services.filter(service => service.Spec.Name === filters.name)
  }

  /** The tasks of these services; null for every task (the manager's filter refuses a service that is gone). */
  async tasks (serviceIds: string[] | null): Promise<SwarmTask[]> {
    if (serviceIds === null) return await this.#api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' })
    if (serviceIds.length === 0) return []
    return await this.#api.get<SwarmTask[]>('/tasks', { filters: { service: serviceIds } }, { subject: 'container', target: serviceIds.join(', ') })
  }

  /** The nodes as the manager sees them now. */
  async nodes (): Promise<SwarmNode[]> {
    const nodes = await this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' })
    this.#nodes = { list: nodes, refs: new Map(nodes.map(node => [node.ID, nodeRefOf(node)])), expires: Date.now() + NODES_TTL_MS }
    return nodes
  }

  /** What is known of each node (name, address, state), read again when stale or when a task names a node not seen yet. */
  async nodeRefs (tasks: SwarmTask[] = []): Promise<Map<string, NodeRef>> {
    const cached = this.#nodes
    const missing = tasks.some(task => task.NodeID && !cached?.refs.has(task.NodeID))
    if (cached !== null && cached.expires > Date.now() && !missing) return cached.refs
    const nodes = await this.nodes()
    return new Map(nodes.map(node => [node.ID, nodeRefOf(node)]))
  }

  /** A service's facts, asking the manager when they are not known yet; null when it is gone. */
  async serviceFacts (id: string): Promise<ServiceFacts | null> {
    const known = this.#facts.get(id)
    if (known !== undefined) return known
    try {
      return factsOf(await this.service(id))
    } catch (error) {
      if (error instanceof BerthError && error.code === 'not_found') return null
      throw error
    }
  }
}
