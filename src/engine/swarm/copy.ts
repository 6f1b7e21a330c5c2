// The swarm backend's watch-fed copy of its manager, in the one shape of copy the backends share
// (src/engine/copy.ts): the services of berth's deployment, every task of them, and the nodes. A
// session opens the manager's events of services and nodes first, then lists; a service event is
// answered by reading that service again (it is forgotten, with its tasks, once the manager says it
// is gone), a node event by reading the nodes again. The manager publishes no events of tasks, so the
// session reads the task list again every `pollMs` (that read is also how a hung manager is found),
// and berth's own writes ask for the same reads and wait for them (read-your-writes). Whatever ends
// a session (the stream broke or ended, a read failed) makes the copy not current until the next one
// has listed again. It answers what the swarm backend's reads (./reads.ts) ask the manager for while
// it is current: a service by id, name or prefix, the services matching filters, the tasks of some
// services, the nodes.
import { BerthError } from '../../errors.ts'
import { Refresher, WatchedCopy, matchesLabels, type CopySession } from '../copy.ts'
import { readEvents, type RawEvent } from '../docker/copy.ts'
import { Inbox } from '../inbox.ts'
import type { SwarmApi } from './api.ts'
import { nodeRefOf, type NodeRef, type SwarmNode, type SwarmService, type SwarmTask } from './mapping.ts'

export interface SwarmCopyOptions {
  /** The services it holds: those whose labels match every filter (berth's deployment). Every service when absent. */
  labels?: string[]
  /** How often the task list is read again, which no event announces; 1 s by default. */
  pollMs?: number
  /** How many services are read at once; 4 by default. */
  concurrency?: number
  retryMs?: { first: number, max: number }
}

export class SwarmCopy {
  readonly #api: SwarmApi
  readonly #copy: WatchedCopy
  readonly #labels: string[]
  readonly #pollMs: number
  readonly #concurrency: number
  #services = new Map<string, SwarmService>()
  /** Service name → id. */
  #names = new Map<string, string>()
  /** Service id → its tasks, as the manager listed them last. */
  #tasks = new Map<string, SwarmTask[]>()
  #nodes: SwarmNode[] = []
  #nodeRefs: Map<string, NodeRef> | null = null
  #refresher: Refresher | null = null
  /** Task lists are read by the poll and after a service changed, and may end out of order: the latest begun wins. */
  #taskReads = 0
  #tasksFrom = 0

  constructor (api: SwarmApi, options: SwarmCopyOptions = {}) {
    this.#api = api
    this.#labels = options.labels ?? []
    this.#pollMs = options.pollMs ?? 1000
    this.#concurrency = options.concurrency ?? 4
    this.#copy = new WatchedCopy({
      what: 'the manager\'s services, tasks and nodes',
      session: async session => { await this.#session(session) },
      ...(options.retryMs === undefined ? {} : { retryMs: options.retryMs })
    })
  }

  start (): void {
    this.#copy.start()
  }

  async stop (): Promise<void> {
    await this.#copy.stop()
  }

  /** Whether reads may be answered from the copy now. */
  get current (): boolean {
    return this.#copy.current
  }

  get generation (): number {
    return this.#copy.generation
  }

  /** Resolves once the copy is current, or rejects with engine_unavailable and why by the deadline. */
  async ready (timeoutMs: number): Promise<void> {
    await this.#copy.ready(timeoutMs)
  }

  // ---- berth's own writes: each resolves once what it changed is in the copy (at once when the copy is not current)

  async refreshService (id: string): Promise<void> {
    await this.#refresher?.request(`s:${id}`)
  }

  /** Resolves once a read of the task list that began after this call is in the copy. */
  async refreshTasks (): Promise<void> {
    await this.#refresher?.request('tasks')
  }

  async refreshNodes (): Promise<void> {
    await this.#refresher?.request('nodes')
  }

  // ---- reads (only while current: the parts ask the manager otherwise)

  /** A service by id, name, or unique id prefix; undefined when there is none, ambiguous_id when a prefix matches several. */
  service (idOrName: string): SwarmService | undefined {
    const exact = this.#services.get(idOrName)
    if (exact !== undefined) return exact
    const named = this.#names.get(idOrName)
    if (named !== undefined) return this.#services.get(named)
    let found: SwarmService | undefined
    for (const [id, service] of this.#services) {
      if (!id.startsWith(idOrName)) continue
      if (found !== undefined) throw new BerthError('ambiguous_id', `${idOrName} matches more than one container; give more of the id`)
      found = service
    }
    return found
  }

  /** The services whose labels match every filter, and with exactly this name when one is given. */
  services (filters: { labels?: string[], name?: string } = {}): SwarmService[] {
    const labels = filters.labels ?? []
    return [...this.#services.values()].filter(service =>
      (filters.name === undefined || service.Spec.Name === filters.name) && matchesLabels(service.Spec.Labels ?? {}, labels))
  }

  /** The tasks of these services; of every service it holds for null. */
  tasks (serviceIds: string[] | null): SwarmTask[] {
    const ids = serviceIds ?? [...this.#tasks.keys()]
    return ids.flatMap(id => this.#tasks.get(id) ?? [])
  }

  nodes (): SwarmNode[] {
    return this.#nodes
  }

  /** What is known of each node (name, address, state), by id. */
  nodeRefs (): Map<string, NodeRef> {
    this.#nodeRefs ??= new Map(this.#nodes.map(node => [node.ID, nodeRefOf(node)]))
    return this.#nodeRefs
  }

  /** Whether it holds this service (by its full id). */
  holds (serviceId: string): boolean {
    return this.#services.has(serviceId)
  }

  /**
   * Whether a question about services matching `labels` can be answered from it: only when it asks
   * about services it holds (berth's deployment), not about everybody's.
   */
  covers (labels: readonly string[]): boolean {
    return this.#labels.every(label => labels.includes(label))
  }

  // ---- the session

  async #session ({ signal, synced }: CopySession): Promise<void> {
    const local = new AbortController()
    const stop = (): void => { local.abort() }
    signal.addEventListener('abort', stop, { once: true })
    let failure: unknown = null
    const fail = (error: unknown): void => {
      failure ??= error
      local.abort()
    }
    const refresher = new Refresher(async key => { await this.#read(key) }, { concurrency: this.#concurrency, failed: fail })
    let poll: NodeJS.Timeout | undefined
    try {
      // The events first: a change made while the lists are read is then among the events that follow.
      const stream = await this.#api.stream('/events', { filters: { type: ['service', 'node'] } }, { target: 'events', signal: local.signal })
      const inbox = new Inbox<RawEvent>()
      readEvents(stream, inbox).catch(fail)
      await this.#load()
      if (failure !== null) throw failure
      this.#refresher = refresher
      await Promise.all(inbox.drain().map(async event => { await this.#apply(event, refresher) }))
      if (failure !== null) throw failure
      synced()
      // No event says a task changed: its list is read again now and then, one read at a time.
      poll = setInterval(() => { refresher.request('tasks').catch(() => {}) }, this.#pollMs)
      for (let event = await inbox.take(); event !== undefined; event = await inbox.take()) {
        this.#apply(event, refresher).catch(() => {})
      }
      if (failure !== null) throw failure
      if (!signal.aborted) throw new BerthError('engine_unavailable', 'the manager ended its event stream (it may be restarting)', {}, { headers: { 'retry-after': '5' } })
    } finally {
      clearInterval(poll)
      this.#refresher = null
      refresher.close()
      local.abort()
      signal.removeEventListener('abort', stop)
    }
  }

  async #apply (event: RawEvent, refresher: Refresher): Promise<void> {
    const id = event.Actor?.ID ?? ''
    if (event.Type === 'service' && id !== '') await refresher.request(`s:${id}`)
    else if (event.Type === 'node') await refresher.request('nodes')
  }

  /** Lists the services, their tasks and the nodes, then puts them in place of what was held. */
  async #load (): Promise<void> {
    const [services, tasks, nodes] = await Promise.all([
      this.#api.get<SwarmService[]>('/services', this.#labels.length > 0 ? { filters: { label: this.#labels } } : {}, { subject: 'container', target: 'containers' }),
      this.#api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' }),
      this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' })
    ])
    this.#services = new Map()
    this.#names = new Map()
    for (const service of services) this.#setService(service)
    this.#tasksFrom = ++this.#taskReads
    this.#setTasks(tasks)
    this.#setNodes(nodes)
  }

  #setNodes (nodes: SwarmNode[]): void {
    this.#nodes = nodes
    this.#nodeRefs = null
  }

  async #read (key: string): Promise<void> {
    if (key === 'tasks') {
      await this.#readTasks()
      return
    }
    if (key === 'nodes') {
      this.#setNodes(await this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' }))
      return
    }
    const id = key.slice(2)
    let service: SwarmService | null
    try {
      service = await this.#api.get<SwarmService>(`/services/${encodeURIComponent(id)}`, {}, { subject: 'container', target: id })
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
      service = null
    }
    if (service === null || !matchesLabels(service.Spec.Labels ?? {}, this.#labels)) {
      this.#forgetService(id)
      return
    }
    this.#setService(service)
    // A new or changed service has new tasks: they are read before the change is said to be in the copy.
    await this.#readTasks()
  }

  async #readTasks (): Promise<void> {
    const read = ++this.#taskReads
    const tasks = await this.#api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' })
    if (read < this.#tasksFrom) return
    this.#tasksFrom = read
    this.#setTasks(tasks)
  }

  #setService (service: SwarmService): void {
    const before = this.#services.get(service.ID)
    if (before !== undefined) this.#names.delete(before.Spec.Name ?? before.ID)
    this.#services.set(service.ID, service)
    this.#names.set(service.Spec.Name ?? service.ID, service.ID)
  }

  #forgetService (id: string): void {
    const before = this.#services.get(id)
    if (before === undefined) return
    this.#services.delete(id)
    this.#names.delete(before.Spec.Name ?? id)
    this.#tasks.delete(id)
  }

  /** The tasks of the services it holds, from a list of every task. */
  #setTasks (tasks: SwarmTask[]): void {
    const byService = new Map<string, SwarmTask[]>()
    for (const task of tasks) {
      if (!this.#services.has(task.ServiceID)) continue
      const list = byService.get(task.ServiceID)
      if (list === undefined) byService.set(task.ServiceID, [task])
      else list.push(task)
    }
    this.#tasks = byService
  }
}
