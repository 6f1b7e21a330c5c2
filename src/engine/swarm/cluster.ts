// A Docker Swarm cluster driven through one manager, as berth's containers part: a container is a
// service, its replicas are tasks the manager schedules over the nodes. A run answers when its
// replicas run, or says why they cannot (a host-mode port no eligible node has free, constraints,
// resources, an image a node cannot get) and removes the service again: nothing is left pending.
// Stop scales to none and remembers the count; start brings it back.
import { setTimeout as sleep } from 'node:timers/promises'
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { notSupported, type ContainersPart } from '../parts.ts'
import { pullFailureReason, toAuthConfig } from '../docker/mapping.ts'
import { engineTime } from '../docker/streams.ts'
import { DockerTransport } from '../docker/transport.ts'
import { chooseHostPorts } from '../host-ports.ts'
import { PortConflictError } from '../types.ts'
import type {
  Container, ContainerSummary, EngineEvent, EngineInfo, EventsOptions, ListContainersOptions, LogEntry, LogOptions, Node, PortRequest, RunSpec, StateChange
} from '../types.ts'
import { SwarmApi } from './api.ts'
import { OutOfSequenceError } from './errors.ts'
import { factsOf, swarmEvents, type ServiceFacts } from './events.ts'
import {
  LABEL_REPLICAS, containerOfService, isLive, isStopped, latestTasks, nodeAddress, nodeOf, replicaCount, serviceSpecOf, summaryOf,
  type NodeRef, type ServiceSpec, type SwarmNode, type SwarmService, type SwarmTask
} from './mapping.ts'
import { describeTasks, placementFailure } from './placement.ts'
import { readServiceLogs } from './streams.ts'

export interface SwarmEngineOptions {
  /** A manager's socket. */
  socketPath: string
  timeoutMs: number
  publishMode: 'host' | 'ingress'
  /** How long a run, start, restart or scale waits for its replicas to run. */
  placementTimeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
  /** How often task states are read while waiting for them. */
  pollMs?: number
  /** How often the event stream reads task states (the manager publishes no task events). */
  eventPollMs?: number
}

/** How long node names and addresses are reused when showing where tasks run. */
const NODES_TTL_MS = 5000
/** How many ports of a host port range a run tries before it answers port_conflict. */
const MAX_RANGE_ATTEMPTS = 16
const UPDATE_ATTEMPTS = 5

export class SwarmCluster implements ContainersPart {
  readonly #options: SwarmEngineOptions
  readonly #api: SwarmApi
  readonly #pollMs: number
  #nodes: { refs: Map<string, NodeRef>, expires: number } | null = null
  /** Facts of the services berth has seen, for the events of services that are gone by then. */
  readonly #facts = new Map<string, ServiceFacts>()

  constructor (options: SwarmEngineOptions) {
    this.#options = options
    this.#api = new SwarmApi(new DockerTransport(options))
    this.#pollMs = options.pollMs ?? 100
  }

  /** The manager answers, and is a manager of an active swarm (a worker or a lone engine is not enough). */
  async info (): Promise<EngineInfo> {
    const info = await this.#api.transport.info()
    await this.#api.get('/swarm', {}, { target: 'swarm' })
    return info
  }

  /** What a service cannot be asked for; volumes and expiry are the parts' to refuse. */
  check (spec: RunSpec): void {
    if (spec.autoRemove) {
      throw notSupported('swarm', 'autoRemove is not supported on a Swarm cluster: a service\'s tasks are kept and replaced by the orchestrator; remove the container when done')
    }
    const pinned = spec.ports.find(port => port.hostIp !== undefined && port.hostIp !== '0.0.0.0' && port.hostIp !== '::')
    if (pinned !== undefined) {
      throw notSupported('swarm', `Swarm publishes a port on every address of a node; binding port ${pinned.container} to host IP ${pinned.hostIp} is not possible ` +
        '(with BERTH_ALLOWED_HOST_IPS set, allow 0.0.0.0 to publish on a cluster)')
    }
  }

  async listNodes (): Promise<Node[]> {
    const nodes = await this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' })
    this.#rememberNodes(nodes)
    return nodes.map(nodeOf).sort((a, b) => a.name.localeCompare(b.name))
  }

  async list (options: ListContainersOptions): Promise<ContainerSummary[]> {
    const services = await this.#api.get<SwarmService[]>('/services', {
      filters: { ...(options.labels?.length ? { label: options.labels } : {}), ...(options.name ? { name: [options.name] } : {}) }
    }, { subject: 'container', target: 'containers' })
    // The manager's name filter matches prefixes: berth's is exact.
    const named = options.name === undefined ? services : services.filter(service => service.Spec.Name === options.name)
    if (named.length === 0) return []
    const tasks = await this.#tasks(named.map(service => service.ID))
    const nodes = await this.#nodeRefs(tasks)
    const summaries = named.map(service => {
      this.#facts.set(service.ID, factsOf(service))
      return summaryOf(service, tasks, nodes)
    })
    return summaries
      .filter(summary => options.all || summary.state === 'running')
      .filter(summary => options.status === undefined || options.status.length === 0 || options.status.includes(summary.state))
      .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
  }

  async inspect (idOrName: string): Promise<Container> {
    const service = await this.#service(idOrName)
    const tasks = await this.#tasks([service.ID])
    return containerOfService(service, tasks, await this.#nodeRefs(tasks))
  }

  async run (spec: RunSpec): Promise<Container> {
    const image = await this.#pinnedImage(spec)
    const auth = this.#auth(spec)
    // In ingress mode the manager would choose a port from its own range (30000-32767), which the
    // policy never judged: berth chooses, from the range a single engine would (the policy's).
    const ranged = spec.ports.some(port => port.hostRange !== undefined || (port.host === undefined && this.#options.publishMode === 'ingress'))
    const tried = new Set<number>()
    for (let attempt = 1; ; attempt++) {
      const chosenPorts = ranged ? await this.#choosePorts(spec.ports, tried) : undefined
      const body = serviceSpecOf(spec, { publishMode: this.#options.publishMode, image, ...(chosenPorts ? { chosenPorts } : {}) })
      const { ID: id } = await this.#api.request<{ ID: string }>({
        method: 'POST', path: '/services/create', body, ...(auth ? { auth } : {}), subject: 'container', target: spec.name ?? 'container'
      }).catch(async (error: unknown) => { throw await this.#withHolder(error, null) })
      try {
        await this.#awaitReplicas(id, spec.replicas ?? 1, new Set(), publishedPorts(body))
      } catch (error) {
        // A run that cannot run leaves nothing behind: not the service, nor a task of it on any node.
        await this.#discard(id)
        if (ranged && error instanceof PortConflictError && attempt < MAX_RANGE_ATTEMPTS && chosenPorts !== undefined && chosenPorts.size > 0) continue
        throw await this.#withHolder(error, id)
      }
      return await this.inspect(id)
    }
  }

  async start (id: string): Promise<StateChange> {
    const service = await this.#service(id)
    const tasks = await this.#tasks([service.ID])
    const count = replicaCount(service)
    const running = latestTasks(service, tasks).filter(task => task.Status.State === 'running').length
    if (!isStopped(service) && running >= count) return { changed: false }
    await this.#update(service.ID, spec => {
      const { [LABEL_REPLICAS]: _, ...labels } = spec.Labels ?? {}
      spec.Labels = labels
      if (isStopped(service)) spec.Mode = { Replicated: { Replicas: count } }
      // Replicas that ended (restart "no") come back only as new tasks.
      else spec.TaskTemplate.ForceUpdate = (spec.TaskTemplate.ForceUpdate ?? 0) + 1
    })
    try {
      await this.#awaitReplicas(service.ID, count, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec))
    } catch (error) {
      // Like a container whose start failed, it stays as it was: stopped.
      await this.#scaleToNone(service.ID, count).catch(() => {})
      throw await this.#withHolder(error, service.ID)
    }
    return { changed: true }
  }

  async stop (id: string, options: { timeout?: number }): Promise<StateChange> {
    refuseTimeout(options.timeout)
    const service = await this.#service(id)
    const tasks = await this.#tasks([service.ID])
    const live = tasks.some(isLive)
    if (!isStopped(service)) await this.#scaleToNone(service.ID, replicaCount(service))
    // Like docker stop, done when the replicas are: their host ports are free again then.
    await this.#awaitNoneLive(service.ID, this.#graceMs(service.Spec))
    return { changed: live && !isStopped(service) }
  }

  async restart (id: string, options: { timeout?: number }): Promise<StateChange> {
    refuseTimeout(options.timeout)
    const service = await this.#service(id)
    const tasks = await this.#tasks([service.ID])
    const count = replicaCount(service)
    await this.#update(service.ID, spec => {
      const { [LABEL_REPLICAS]: _, ...labels } = spec.Labels ?? {}
      spec.Labels = labels
      spec.Mode = { Replicated: { Replicas: count } }
      spec.TaskTemplate.ForceUpdate = (spec.TaskTemplate.ForceUpdate ?? 0) + 1
    })
    try {
      await this.#awaitReplicas(service.ID, count, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec), this.#graceMs(service.Spec))
    } catch (error) {
      throw await this.#withHolder(error, service.ID)
    }
    return { changed: true }
  }

  async remove (id: string, options: { force: boolean }): Promise<void> {
    const service = await this.#service(id)
    if (!options.force) {
      const tasks = await this.#tasks([service.ID])
      if (tasks.some(task => task.Status.State === 'running' && task.DesiredState === 'running')) {
        throw new BerthError('container_running', `container ${id} is running; stop it first or remove it with force=true`)
      }
    }
    await this.#removeService(service.ID, this.#graceMs(service.Spec))
  }

  async scale (id: string, replicas: number): Promise<StateChange> {
    const service = await this.#service(id)
    const count = replicaCount(service)
    if (count === replicas) return { changed: false }
    if (isStopped(service)) {
      // A stopped container keeps the count for its next start.
      await this.#update(service.ID, spec => { spec.Labels = { ...spec.Labels, [LABEL_REPLICAS]: String(replicas) } })
      return { changed: true }
    }
    const tasks = await this.#tasks([service.ID])
    await this.#update(service.ID, spec => { spec.Mode = { Replicated: { Replicas: replicas } } })
    try {
      if (replicas > count) await this.#awaitReplicas(service.ID, replicas, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec), undefined, false)
    } catch (error) {
      // Added replicas that cannot run are taken back: the container runs as many as before.
      await this.#update(service.ID, spec => { spec.Mode = { Replicated: { Replicas: count } } }).catch(() => {})
      throw await this.#withHolder(error, service.ID)
    }
    return { changed: true }
  }

  async logs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const service = await this.#service(idOrName)
    const now = BigInt(Date.now()) * 1_000_000n
    // The manager has no `until`: berth drops later lines, and ends a followed stream at that time.
    const follow = options.follow && (options.until === undefined || options.until > now)
    let signal = options.signal
    if (follow && options.until !== undefined) {
      const until = AbortSignal.timeout(Number((options.until - now) / 1_000_000n))
      signal = signal === undefined ? until : AbortSignal.any([signal, until])
    }
    const stream = await this.#api.stream(`/services/${encodeURIComponent(service.ID)}/logs`, {
      follow,
      stdout: true,
      stderr: true,
      timestamps: true,
      details: true,
      tail: options.tail === undefined ? 'all' : String(options.tail),
      ...(options.since === undefined ? {} : { since: engineTime(options.since) })
    }, { subject: 'container', target: idOrName, ...(signal ? { signal } : {}) })
    return readServiceLogs(stream, {
      tty: service.Spec.TaskTemplate.ContainerSpec.TTY ?? false,
      timestamps: options.timestamps,
      ...(options.until === undefined ? {} : { until: options.until }),
      nodes: await this.#nodeRefs([]),
      ...(signal ? { signal } : {})
    })
  }

  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    return await swarmEvents({
      api: this.#api,
      service: async (id) => await this.#serviceFacts(id),
      nodes: async () => await this.#nodeRefs([]),
      pollMs: this.#options.eventPollMs ?? 1000
    }, options)
  }

  // ---- services and tasks

  async #service (idOrName: string): Promise<SwarmService> {
    const service = await this.#api.get<SwarmService>(`/services/${encodeURIComponent(idOrName)}`, {}, { subject: 'container', target: idOrName })
    this.#facts.set(service.ID, factsOf(service))
    return service
  }

  async #serviceFacts (id: string): Promise<ServiceFacts | null> {
    const known = this.#facts.get(id)
    if (known !== undefined) return known
    try {
      return factsOf(await this.#service(id))
    } catch (error) {
      if (error instanceof BerthError && error.code === 'not_found') return null
      throw error
    }
  }

  /** The tasks of these services; null for every task (the manager's filter refuses a service that is gone). */
  async #tasks (serviceIds: string[] | null): Promise<SwarmTask[]> {
    if (serviceIds === null) return await this.#api.get<SwarmTask[]>('/tasks', {}, { target: 'tasks' })
    return await this.#api.get<SwarmTask[]>('/tasks', { filters: { service: serviceIds } }, { subject: 'container', target: serviceIds.join(', ') })
  }

  /**
   * Changes a service, from its latest version: the manager refuses an update made against an older
   * one (another update came in between), and then it is read again and the change made once more.
   */
  async #update (id: string, change: (spec: ServiceSpec) => void): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const service = await this.#service(id)
      const spec = structuredClone(service.Spec)
      change(spec)
      try {
        await this.#api.request({
          method: 'POST',
          path: `/services/${encodeURIComponent(id)}/update`,
          // The registry credentials given at run stay with the service: its nodes pull with them again.
          query: { version: service.Version.Index, registryAuthFrom: 'spec' },
          body: spec,
          subject: 'container',
          target: id
        })
        return
      } catch (error) {
        if (!(error instanceof OutOfSequenceError) || attempt >= UPDATE_ATTEMPTS) throw error
      }
    }
  }

  /** Scales to none, remembering how many replicas to start again. */
  async #scaleToNone (id: string, count: number): Promise<void> {
    await this.#update(id, spec => {
      spec.Mode = { Replicated: { Replicas: 0 } }
      spec.Labels = { ...spec.Labels, [LABEL_REPLICAS]: String(count) }
    })
  }

  /**
   * Waits until `replicas` replicas run (or ran and ended: a command that exits at once has run), or
   * a task the operation made shows it cannot run. Only tasks not in `before` are new; with `fresh`
   * only new tasks count, as after a start or restart.
   */
  async #awaitReplicas (id: string, replicas: number, before: Set<string>, ports: number[], extraMs = 0, fresh = true): Promise<void> {
    const deadline = Date.now() + this.#options.placementTimeoutMs + extraMs
    for (;;) {
      const tasks = await this.#tasks([id])
      const added = tasks.filter(task => !before.has(task.ID))
      for (const task of added) {
        const failure = placementFailure(task, ports)
        if (failure !== null) throw failure
      }
      const ran = new Set(tasks.filter(task => {
        if (fresh && before.has(task.ID)) return false
        if (task.Status.State === 'running') return task.DesiredState === 'running'
        return !before.has(task.ID) && (task.Status.State === 'complete' || task.Status.State === 'failed') && Boolean(task.Status.ContainerStatus?.ContainerID)
      }).map(task => task.Slot ?? task.ID))
      if (ran.size >= replicas) return
      if (Date.now() >= deadline) {
        const nodes = await this.#nodeRefs(added)
        const waiting = added.filter(task => task.DesiredState === 'running')
        throw new BerthError('placement_timeout', `the cluster did not run ${replicas} ${replicas === 1 ? 'replica' : 'replicas'} within ${this.#options.placementTimeoutMs} ms: ` +
          describeTasks(waiting, nodeId => (nodeId === undefined ? null : nodes.get(nodeId)?.name ?? nodeId)), { replicas, running: ran.size })
      }
      await sleep(this.#pollMs)
    }
  }

  /**
   * Waits until no task of the service runs or is about to, and those scaled away are deleted: the
   * manager does not place a replica in a slot whose old task is still being removed (bounded: a
   * node that is down never reports).
   */
  async #awaitNoneLive (id: string, graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs + this.#options.timeoutMs
    while (Date.now() < deadline) {
      if (!(await this.#tasks([id])).some(task => isLive(task) || task.DesiredState === 'remove')) return
      await sleep(this.#pollMs)
    }
  }

  /** Removes the service and waits (bounded) until its tasks are gone from every node that answers. */
  async #removeService (id: string, graceMs: number): Promise<void> {
    await this.#api.request({ method: 'DELETE', path: `/services/${encodeURIComponent(id)}`, subject: 'container', target: id })
    const deadline = Date.now() + graceMs + this.#options.timeoutMs
    while (Date.now() < deadline) {
      const tasks = await this.#tasks(null)
      if (!tasks.some(task => task.ServiceID === id)) return
      await sleep(this.#pollMs)
    }
  }

  async #discard (id: string): Promise<void> {
    try {
      const service = await this.#service(id)
      await this.#removeService(id, this.#graceMs(service.Spec))
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    }
  }

  // A stop waits up to the replicas' grace period before the nodes kill them.
  #graceMs (spec: ServiceSpec): number {
    const grace = spec.TaskTemplate.ContainerSpec.StopGracePeriod
    return grace === undefined ? 10_000 : grace / 1e6
  }

  // ---- ports, images, nodes

  /**
   * Host ports from a range (the policy's) for the ports that have no fixed one: the manager has no
   * ranges, so berth picks ports no service publishes, trying others when a node has one taken.
   */
  async #choosePorts (ports: PortRequest[], tried: Set<number>): Promise<Map<number, number>> {
    const services = await this.#api.get<SwarmService[]>('/services', {}, { target: 'services' })
    return chooseHostPorts(ports, services.flatMap(service => publishedPorts(service.Spec)), tried)
  }

  /**
   * The image pinned to its registry digest, as `docker service create` does, so every node runs the
   * same image. When the manager cannot ask the registry (an image only on the nodes), it runs as named.
   */
  async #pinnedImage (spec: RunSpec): Promise<string> {
    if (spec.image.kind === 'id') return spec.image.id
    const ref = spec.image.ref
    if (ref.digest !== undefined || spec.pull === 'never') return ref.reference
    const auth = this.#auth(spec)
    try {
      const found = await this.#api.request<{ Descriptor?: { digest?: string } }>({
        method: 'GET', path: `/distribution/${ref.reference}/json`, ...(auth ? { auth } : {}), subject: 'image', target: ref.reference
      })
      const digest = found.Descriptor?.digest
      return digest === undefined ? ref.reference : `${ref.reference}@${digest}`
    } catch (error) {
      if (error instanceof BerthError && error.code === 'image_not_found') {
        throw new BerthError('image_not_found', `image ${ref.reference} is not in its registry`, { image: ref.reference })
      }
      if (error instanceof BerthError && error.code === 'engine_unavailable') throw error
      if (error instanceof BerthError && pullFailureReason(error.message) === 'registry_auth') {
        throw new BerthError('pull_failed', `the registry refused access to ${ref.reference}: give registry credentials (auth, or BERTH_REGISTRY_AUTH_FILE)`,
          { image: ref.reference, reason: 'registry_auth' })
      }
      // The manager cannot reach the registry, or the image is in none: the nodes may still have it.
      return ref.reference
    }
  }

  #auth (spec: RunSpec): Record<string, string> | undefined {
    if (spec.image.kind !== 'ref') return undefined
    const registry = spec.image.ref.registry
    return toAuthConfig(spec.auth ?? this.#options.registryAuth?.[registry], registry)
  }

  /** Names the service holding a conflicting port, when it is one: its labels say who may be told. */
  async #withHolder (error: unknown, self: string | null): Promise<unknown> {
    if (!(error instanceof PortConflictError) || error.port === null) return error
    const port = error.port
    let holder: SwarmService | undefined
    if (error.holder !== null) {
      holder = await this.#service(error.holder.id).catch(() => undefined)
    } else {
      const services = await this.#api.get<SwarmService[]>('/services', {}, { target: 'services' }).catch(() => [])
      holder = services.find(service => service.ID !== self && publishedPorts(service.Spec).includes(port))
    }
    if (holder === undefined) return new PortConflictError(port, null, error.message, error)
    return new PortConflictError(port, { id: holder.ID, name: holder.Spec.Name ?? holder.ID, labels: holder.Spec.Labels ?? {} }, error.message, error)
  }

  async #nodeRefs (tasks: SwarmTask[]): Promise<Map<string, NodeRef>> {
    const cached = this.#nodes
    const missing = tasks.some(task => task.NodeID && !cached?.refs.has(task.NodeID))
    if (cached !== null && cached.expires > Date.now() && !missing) return cached.refs
    return this.#rememberNodes(await this.#api.get<SwarmNode[]>('/nodes', {}, { target: 'nodes' }))
  }

  #rememberNodes (nodes: SwarmNode[]): Map<string, NodeRef> {
    const refs = new Map(nodes.map(node => [node.ID, { name: node.Description?.Hostname ?? node.ID, address: nodeAddress(node) }]))
    this.#nodes = { refs, expires: Date.now() + NODES_TTL_MS }
    return refs
  }
}

/**
 * A node stops a task with the grace period the task was started with: a stop cannot shorten it for
 * replicas already running, so it is not offered rather than ignored.
 */
function refuseTimeout (timeout: number | undefined): void {
  if (timeout === undefined) return
  throw notSupported('swarm', 'on a Swarm cluster replicas stop with the grace period they were started with: give stopTimeout when running the container, and stop or restart without a timeout')
}

/** The host ports a service publishes (fixed ones; the manager picks the others per node). */
function publishedPorts (spec: ServiceSpec): number[] {
  return (spec.EndpointSpec?.Ports ?? []).flatMap(port => port.PublishedPort === undefined ? [] : [port.PublishedPort])
}
