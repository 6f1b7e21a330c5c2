// Everything the swarm backend reads of its manager, through these few functions: a service, the
// services matching filters, the tasks of some services (or all), and the nodes. While the
// watch-fed copy (./copy.ts) is current they are answered from it, within what it holds (the
// services of berth's deployment and their tasks, the nodes), and the manager is not asked; a
// question about something else (everybody's services, who holds a port), or one asked with
// `fresh`, goes to the manager. `fresh` is for the changes berth makes: a change is made against
// the manager's latest word, and its waits read the manager's tasks as they move. Once a change is
// made, `changed` resolves when the copy holds it (read-your-writes).
import { BerthError } from '../../errors.ts'
import type { SwarmApi } from './api.ts'
import type { SwarmCopy } from './copy.ts'
import { factsOf, type ServiceFacts } from './events.ts'
import { nodeRefOf, type NodeRef, type SwarmNode, type SwarmService, type SwarmTask } from './mapping.ts'

/** How long node names, addresses and states are reused when showing where tasks run. */
const NODES_TTL_MS = 2000

/** Whether a read must ask the manager even while the copy is current. */
export interface ReadOptions {
  fresh?: boolean
}

export class ClusterReads {
  readonly #api: SwarmApi
  readonly #copy: SwarmCopy | null
  #nodes: { list: SwarmNode[], refs: Map<string, NodeRef>, expires: number } | null = null
  /** Facts of the services berth has seen, for the events of services that are gone by then. */
  readonly #facts = new Map<string, ServiceFacts>()

  constructor (api: SwarmApi, copy: SwarmCopy | null = null) {
    this.#api = api
    this.#copy = copy
  }

  /** The copy, when it may answer now. */
  #current (options: ReadOptions): SwarmCopy | null {
    return options.fresh !== true && this.#copy?.current === true ? this.#copy : null
  }

  /** Resolves once the copy holds what berth just changed of this service (at once when it is not current). */
  async changed (serviceId: string): Promise<void> {
    await this.#copy?.refreshService(serviceId)
  }

  /** A service by id, unique id prefix or name; not_found as a container. */
  async service (idOrName: string, options: ReadOptions = {}): Promise<SwarmService> {
    const held = this.#current(options)?.service(idOrName)
    if (held !== undefined) {
      this.#facts.set(held.ID, factsOf(held))
      return held
    }
    const service = await this.#api.get<SwarmService>(`/services/${encodeURIComponent(idOrName)}`, {}, { subject: 'container', target: idOrName })
    this.#facts.set(service.ID, factsOf(service))
    return service
  }

  /** The services whose labels match every filter, and with exactly this name when one is given. */
  async services (filters: { labels?: string[], name?: string } = {}): Promise<SwarmService[]> {
    const copy = this.#current({})
    if (copy !== null && copy.covers(filters.labels ?? [])) return copy.services(filters)
    const services = await this.#api.get<SwarmService[]>('/services', {
      filters: { ...(filters.labels?.length ? { label: filters.labels } : {}), ...(filters.name ? { name: [filters.name] } : {}) }
    }, { subject: 'container', target: 'containers' })
    for (const service of services) this.#facts.set(service.ID, factsOf(service))
    // The manager's name filter matches prefixes: berth's is exact.
    return filters.name === undefined ? services : services.filter(service => service.Spec.Name === filters.name)
  }

  /** The tasks of these services; null for every task (the manager's filter refuses a service that is gone). */
  async tasks (serviceIds: string[] | null, options: ReadOptions = {}): Promise<SwarmTask[]> {
    const copy = this.#current(options)
    if (copy !== null && serviceIds !== null && serviceIds.every(id => copy.holds(id))) return copy.tasks(serviceIds)
    if (serviceIds === null) return await this.#api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' })
    if (serviceIds.length === 0) return []
    return await this.#api.get<SwarmTask[]>('/tasks', { filters: { service: serviceIds } }, { subject: 'container', target: serviceIds.join(', ') })
  }

  /** The nodes as the manager sees them now. */
  async nodes (): Promise<SwarmNode[]> {
    const copy = this.#current({})
    if (copy !== null) return copy.nodes()
    const nodes = await this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' })
    this.#nodes = { list: nodes, refs: new Map(nodes.map(node => [node.ID, nodeRefOf(node)])), expires: Date.now() + NODES_TTL_MS }
    return nodes
  }

  /** What is known of each node (name, address, state), read again when stale or when a task names a node not seen yet. */
  async nodeRefs (tasks: SwarmTask[] = []): Promise<Map<string, NodeRef>> {
    const copy = this.#current({})
    if (copy !== null) return copy.nodeRefs()
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
