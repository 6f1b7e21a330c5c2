// The swarm backend's containers: a container is a service, its replicas are tasks the manager
// schedules over the nodes. A run answers when its replicas run, or says why they cannot (a host-mode
// port no eligible node has free, constraints, resources, an image a node cannot get, a volume that
// lives elsewhere) and removes the service again: nothing is left pending. Stop scales to none and
// remembers the count; start brings it back.
import { BerthError } from '../../errors.ts'
import { notSupported, type ContainersPart } from '../parts.ts'
import { pullFailureReason, toAuthConfig, expiryOf } from '../docker/mapping.ts'
import { engineTime } from '../docker/streams.ts'
import { PortConflictError } from '../types.ts'
import type { Container, ContainerSummary, ListContainersOptions, LogEntry, LogOptions, RunSpec, StateChange } from '../types.ts'
import { graceMs, type SwarmCluster } from './cluster.ts'
import type { SwarmExpiry } from './expiry.ts'
import { LABEL_REPLICAS, containerOfService, isLive, isLost, isStopped, latestTasks, replicaCount, serviceSpecOf, summaryOf, type SwarmService } from './mapping.ts'
import { choosePorts, publishedPorts, refuseTimeout, withHolder } from './ports.ts'
import { readServiceLogs } from './streams.ts'
import type { SwarmVolumes } from './volumes.ts'

/** How many ports of a host port range a run tries before it answers port_conflict. */
const MAX_RANGE_ATTEMPTS = 16
/** A change reads the manager's latest word, not the copy's: its waits count tasks against it. */
const FRESH = { fresh: true }

export class SwarmContainers implements ContainersPart {
  readonly #cluster: SwarmCluster
  readonly #expiry: SwarmExpiry
  /** Where named volumes live; null without agents (the volumes part then refuses runs that mount one). */
  readonly #volumes: SwarmVolumes | null

  constructor (cluster: SwarmCluster, expiry: SwarmExpiry, volumes: SwarmVolumes | null) {
    this.#cluster = cluster
    this.#expiry = expiry
    this.#volumes = volumes
  }

  /** What a service cannot be asked for; volumes and networks are the parts' to refuse. */
  check (spec: RunSpec): void {
    const pinned = spec.ports.find(port => port.hostIp !== undefined && port.hostIp !== '0.0.0.0' && port.hostIp !== '::')
    if (pinned !== undefined) {
      throw notSupported('swarm', `Swarm publishes a port on every address of a node; binding port ${pinned.container} to host IP ${pinned.hostIp} is not possible ` +
        '(with BERTH_ALLOWED_HOST_IPS set, allow 0.0.0.0 to publish on a cluster)')
    }
    if (spec.gpus !== undefined) {
      throw notSupported('swarm', 'gpus: a Swarm task gets GPUs only as generic resources its nodes advertise, which berth does not ask for; ' +
        'place the run on GPU nodes with a constraint (placement.constraints: node.labels.gpu==true)')
    }
    if (spec.network === 'none') throw notSupported('swarm', 'network none: a Swarm task always has a network; leave network out, or join one of the token\'s networks')
    const agent = this.#cluster.agents?.port
    const taken = agent === undefined ? undefined : spec.ports.find(port => port.host === agent)
    if (taken !== undefined) {
      throw new BerthError('policy_denied', `host port ${agent} is where berth's agent listens on every node; publish another port`, { rule: 'hostPorts' })
    }
  }

  async list (options: ListContainersOptions): Promise<ContainerSummary[]> {
    const named = await this.#cluster.reads.services({ ...(options.labels ? { labels: options.labels } : {}), ...(options.name ? { name: options.name } : {}) })
    if (named.length === 0) return []
    const tasks = await this.#cluster.reads.tasks(named.map(service => service.ID))
    const nodes = await this.#cluster.reads.nodeRefs(tasks)
    return named.map(service => summaryOf(service, tasks, nodes))
      .filter(summary => options.all || summary.state === 'running')
      .filter(summary => options.status === undefined || options.status.length === 0 || options.status.includes(summary.state))
      .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
  }

  async inspect (idOrName: string): Promise<Container> {
    const service = await this.#cluster.reads.service(idOrName)
    const tasks = await this.#cluster.reads.tasks([service.ID])
    const container = containerOfService(service, tasks, await this.#cluster.reads.nodeRefs(tasks))
    // Only a container run with an expiry can have had its end moved: only then is there more to ask.
    if (container.expiry === undefined) return container
    const moved = await this.#expiry.movedEnd(service.ID)
    return moved === undefined ? container : { ...container, ...expiryOf(container.labels, moved) }
  }

  async run (spec: RunSpec): Promise<Container> {
    const constraints = await this.#volumePlacement(spec.mounts, spec.replicas ?? 1)
    const image = await this.#pinnedImage(spec)
    const auth = this.#auth(spec)
    const { publishMode } = this.#cluster.options
    // In ingress mode the manager would choose a port from its own range (30000-32767), which the
    // policy never judged: berth chooses, from the range a single engine would (the policy's).
    const ranged = spec.ports.some(port => port.hostRange !== undefined || (port.host === undefined && publishMode === 'ingress'))
    const tried = new Set<number>()
    for (let attempt = 1; ; attempt++) {
      const chosenPorts = ranged ? await choosePorts(this.#cluster, spec.ports, tried) : undefined
      const body = serviceSpecOf(spec, { publishMode, image, constraints, ...(chosenPorts ? { chosenPorts } : {}) })
      const { ID: id } = await this.#cluster.api.request<{ ID: string }>({
        method: 'POST', path: '/services/create', body, ...(auth ? { auth } : {}), subject: 'container', target: spec.name ?? 'container'
      }).catch(async (error: unknown) => { throw await withHolder(this.#cluster, error, null) })
      try {
        await this.#cluster.awaitReplicas(id, spec.replicas ?? 1, new Set(), publishedPorts(body))
      } catch (error) {
        // A run that cannot run leaves nothing behind: not the service, nor a task of it on any node.
        await this.#cluster.discard(id)
        if (ranged && error instanceof PortConflictError && attempt < MAX_RANGE_ATTEMPTS && chosenPorts !== undefined && chosenPorts.size > 0) continue
        throw await withHolder(this.#cluster, error, id)
      }
      return await this.inspect(id)
    }
  }

  async start (id: string): Promise<StateChange> {
    const service = await this.#cluster.reads.service(id, FRESH)
    const tasks = await this.#cluster.reads.tasks([service.ID], FRESH)
    const nodes = await this.#cluster.reads.nodeRefs(tasks)
    const count = replicaCount(service)
    const running = latestTasks(service, tasks).filter(task => task.Status.State === 'running' && !isLost(task, nodes)).length
    if (!isStopped(service) && running >= count) return { changed: false }
    await this.#cluster.update(service.ID, spec => {
      const { [LABEL_REPLICAS]: _, ...labels } = spec.Labels ?? {}
      spec.Labels = labels
      if (isStopped(service)) spec.Mode = { Replicated: { Replicas: count } }
      // Replicas that ended (restart "no"), or were lost with their node, come back only as new tasks.
      else spec.TaskTemplate.ForceUpdate = (spec.TaskTemplate.ForceUpdate ?? 0) + 1
    })
    try {
      await this.#cluster.awaitReplicas(service.ID, count, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec))
    } catch (error) {
      // Like a container whose start failed, it stays as it was: stopped.
      await this.#scaleToNone(service.ID, count).catch(() => {})
      throw await withHolder(this.#cluster, error, service.ID)
    }
    return { changed: true }
  }

  async stop (id: string, options: { timeout?: number }): Promise<StateChange> {
    refuseTimeout(options.timeout)
    const service = await this.#cluster.reads.service(id, FRESH)
    const tasks = await this.#cluster.reads.tasks([service.ID], FRESH)
    const live = tasks.some(isLive)
    if (!isStopped(service)) await this.#scaleToNone(service.ID, replicaCount(service))
    // Like docker stop, done when the replicas are: their host ports are free again then.
    await this.#cluster.awaitNoneLive(service.ID, graceMs(service.Spec))
    return { changed: live && !isStopped(service) }
  }

  async restart (id: string, options: { timeout?: number }): Promise<StateChange> {
    refuseTimeout(options.timeout)
    const service = await this.#cluster.reads.service(id, FRESH)
    const tasks = await this.#cluster.reads.tasks([service.ID], FRESH)
    const count = replicaCount(service)
    await this.#cluster.update(service.ID, spec => {
      const { [LABEL_REPLICAS]: _, ...labels } = spec.Labels ?? {}
      spec.Labels = labels
      spec.Mode = { Replicated: { Replicas: count } }
      spec.TaskTemplate.ForceUpdate = (spec.TaskTemplate.ForceUpdate ?? 0) + 1
    })
    try {
      await this.#cluster.awaitReplicas(service.ID, count, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec), graceMs(service.Spec))
    } catch (error) {
      throw await withHolder(this.#cluster, error, service.ID)
    }
    return { changed: true }
  }

  async remove (id: string, options: { force: boolean }): Promise<void> {
    const service = await this.#cluster.reads.service(id, FRESH)
    if (!options.force) {
      const tasks = await this.#cluster.reads.tasks([service.ID], FRESH)
      const nodes = await this.#cluster.reads.nodeRefs(tasks)
      if (tasks.some(task => task.Status.State === 'running' && task.DesiredState === 'running' && !isLost(task, nodes))) {
        throw new BerthError('container_running', `container ${id} is running; stop it first or remove it with force=true`)
      }
    }
    await this.#cluster.removeService(service.ID, graceMs(service.Spec))
  }

  async scale (id: string, replicas: number): Promise<StateChange> {
    const service = await this.#cluster.reads.service(id, FRESH)
    const count = replicaCount(service)
    if (count === replicas) return { changed: false }
    if (replicas > 1) await this.#volumePlacement(mountsOf(service), replicas)
    if (isStopped(service)) {
      // A stopped container keeps the count for its next start.
      await this.#cluster.update(service.ID, spec => { spec.Labels = { ...spec.Labels, [LABEL_REPLICAS]: String(replicas) } })
      return { changed: true }
    }
    const tasks = await this.#cluster.reads.tasks([service.ID], FRESH)
    await this.#cluster.update(service.ID, spec => { spec.Mode = { Replicated: { Replicas: replicas } } })
    try {
      if (replicas > count) await this.#cluster.awaitReplicas(service.ID, replicas, new Set(tasks.map(task => task.ID)), publishedPorts(service.Spec), undefined, false)
    } catch (error) {
      // Added replicas that cannot run are taken back: the container runs as many as before.
      await this.#cluster.update(service.ID, spec => { spec.Mode = { Replicated: { Replicas: count } } }).catch(() => {})
      throw await withHolder(this.#cluster, error, service.ID)
    }
    return { changed: true }
  }

  async logs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const service = await this.#cluster.reads.service(idOrName)
    const now = BigInt(Date.now()) * 1_000_000n
    // The manager has no `until`: berth drops later lines, and ends a followed stream at that time.
    const follow = options.follow && (options.until === undefined || options.until > now)
    let signal = options.signal
    if (follow && options.until !== undefined) {
      const until = AbortSignal.timeout(Number((options.until - now) / 1_000_000n))
      signal = signal === undefined ? until : AbortSignal.any([signal, until])
    }
    const stream = await this.#cluster.api.stream(`/services/${encodeURIComponent(service.ID)}/logs`, {
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
      nodes: await this.#cluster.reads.nodeRefs(),
      ...(signal ? { signal } : {})
    })
  }

  /** Scales to none, remembering how many replicas to start again. */
  async #scaleToNone (id: string, count: number): Promise<void> {
    await this.#cluster.update(id, spec => {
      spec.Mode = { Replicated: { Replicas: 0 } }
      spec.Labels = { ...spec.Labels, [LABEL_REPLICAS]: String(count) }
    })
  }

  /**
   * The constraint that places a run where its named volumes live: a volume is data on one node, so a
   * run that mounts one runs there, as one replica (more would run there too and share it, or each see
   * a copy of their own elsewhere).
   */
  async #volumePlacement (mounts: Array<{ type: string, source: string }>, replicas: number): Promise<string[]> {
    const named = mounts.filter(mount => mount.type === 'volume').map(mount => mount.source)
    if (named.length === 0 || this.#volumes === null) return []
    if (replicas > 1) {
      throw new BerthError('placement_failed', `a named volume lives on one node, so a container that mounts one (${named.join(', ')}) runs one replica, there; ` +
        `${replicas} replicas would share it or each see another copy: give each replica a volume of its own (one container each)`, { reason: 'volume' })
    }
    const nodes = new Set<string>()
    for (const name of named) {
      const home = await this.#volumes.home(name)
      if (home !== null) nodes.add(home.id)
    }
    if (nodes.size > 1) {
      throw new BerthError('placement_failed', `the volumes ${named.join(', ')} live on different nodes: a container runs on one`, { reason: 'volume' })
    }
    return [...nodes].map(node => `node.id==${node}`)
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
      const found = await this.#cluster.api.request<{ Descriptor?: { digest?: string } }>({
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
    return toAuthConfig(spec.auth ?? this.#cluster.options.registryAuth?.[registry], registry)
  }
}

function mountsOf (service: SwarmService): Array<{ type: string, source: string }> {
  return (service.Spec.TaskTemplate.ContainerSpec.Mounts ?? []).map(mount => ({ type: mount.Type, source: mount.Source ?? '' }))
}
