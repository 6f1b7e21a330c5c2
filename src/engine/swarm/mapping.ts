// Swarm's objects in berth's words, and berth's run spec as a service spec: pure functions, no I/O.
// A berth container on a cluster is a service; its replicas are the service's tasks.
import { LABEL_AUTO_REMOVE, LABEL_DEPLOYMENT, LABEL_MANAGED, LABEL_OWNER } from '../../access/ownership.ts'
import { expiryOf } from '../docker/mapping.ts'
import type {
  Container, ContainerState, ContainerSummary, Node, Placement, PortBinding, Protocol, RestartPolicy, RunSpec, Task, TaskState
} from '../types.ts'

/** The replicas a stopped service returns to when started: kept on the service while it runs none. */
export const LABEL_REPLICAS = 'io.berth.replicas'

export interface SwarmPort {
  Protocol?: string
  TargetPort?: number
  PublishedPort?: number
  PublishMode?: 'ingress' | 'host'
}

export interface SwarmMount {
  Type: string
  Source?: string
  Target: string
  ReadOnly?: boolean
  /** A named volume the node makes when it is missing there, with these labels. */
  VolumeOptions?: { Labels?: Record<string, string> }
  TmpfsOptions?: { SizeBytes?: number }
}

export interface ServiceSpec {
  /** Without one, the manager makes one up (as docker run does). */
  Name?: string
  Labels?: Record<string, string>
  TaskTemplate: {
    ContainerSpec: {
      Image: string
      Labels?: Record<string, string>
      Command?: string[]
      Args?: string[]
      Env?: string[]
      Dir?: string
      User?: string
      TTY?: boolean
      Mounts?: SwarmMount[]
      StopGracePeriod?: number
      Hostname?: string
      Init?: boolean
      ReadOnly?: boolean
      StopSignal?: string
      Ulimits?: Array<{ Name: string, Soft: number, Hard: number }>
    }
    Resources?: {
      Limits?: { NanoCPUs?: number, MemoryBytes?: number }
      Reservations?: { NanoCPUs?: number, MemoryBytes?: number }
    }
    RestartPolicy?: { Condition?: 'none' | 'on-failure' | 'any', MaxAttempts?: number, Delay?: number }
    Placement?: { Constraints?: string[], Preferences?: Array<{ Spread?: { SpreadDescriptor: string } }> }
    Networks?: Array<{ Target: string, Aliases?: string[] }>
    ForceUpdate?: number
  }
  Mode?: { Replicated?: { Replicas?: number } }
  UpdateConfig?: Record<string, unknown>
  EndpointSpec?: { Mode?: string, Ports?: SwarmPort[] }
}

export interface SwarmService {
  ID: string
  Version: { Index: number }
  CreatedAt: string
  UpdatedAt: string
  Spec: ServiceSpec
  Endpoint?: { Ports?: SwarmPort[] }
}

export interface SwarmTask {
  ID: string
  Version?: { Index: number }
  CreatedAt: string
  UpdatedAt?: string
  ServiceID: string
  Slot?: number
  NodeID?: string
  DesiredState: string
  Status: {
    Timestamp: string
    State: TaskState
    Message?: string
    Err?: string
    ContainerStatus?: { ContainerID?: string, ExitCode?: number }
    PortStatus?: { Ports?: SwarmPort[] }
  }
}

export interface SwarmNode {
  ID: string
  Spec: { Role?: string, Availability?: string, Labels?: Record<string, string> }
  Description?: {
    Hostname?: string
    Platform?: { Architecture?: string, OS?: string }
    Resources?: { NanoCPUs?: number, MemoryBytes?: number }
    Engine?: { EngineVersion?: string, Labels?: Record<string, string> }
  }
  Status?: { State?: string, Addr?: string }
  ManagerStatus?: { Leader?: boolean, Addr?: string }
}

/** What berth knows of a node when it shows where a task runs, and reaches its agent. */
export interface NodeRef {
  id: string
  name: string
  address: string | null
  /** ready, down, disconnected or unknown, as the manager last said. */
  state: string
  availability: string
}

export function nodeRefOf (node: SwarmNode): NodeRef {
  return {
    id: node.ID,
    name: node.Description?.Hostname ?? node.ID,
    address: nodeAddress(node),
    state: node.Status?.State ?? 'unknown',
    availability: node.Spec.Availability ?? 'active'
  }
}

/** A node the manager has lost: what runs there is out of reach, and may not run at all. */
export function isNodeLost (node: NodeRef | undefined): boolean {
  return node !== undefined && (node.state === 'down' || node.state === 'disconnected')
}

/** A task the manager still shows as placed or running on a node it has lost: lost with it, never running. */
export function isLost (task: SwarmTask, nodes: Map<string, NodeRef>): boolean {
  return isLive(task) && task.NodeID !== undefined && isNodeLost(nodes.get(task.NodeID))
}

/** A task that will, or may still, run: not yet placed or started, or running. */
const LIVE: ReadonlySet<TaskState> = new Set(['new', 'allocated', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting', 'running'])
const STARTING: ReadonlySet<TaskState> = new Set(['new', 'allocated', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting'])

export function isLive (task: SwarmTask): boolean {
  return LIVE.has(task.Status.State)
}

export interface ServiceOptions {
  publishMode: 'host' | 'ingress'
  /** The image as the service runs it: the reference, pinned to its registry digest when berth found it. */
  image: string
  /** Host ports berth picked from a range, by index into spec.ports. */
  chosenPorts?: Map<number, number>
  /** Constraints berth adds to the run's: the node its named volumes live on. */
  constraints?: string[]
}

export function serviceSpecOf (spec: RunSpec, options: ServiceOptions): ServiceSpec {
  const reservations = spec.reservations
  return {
    ...(spec.name === undefined ? {} : { Name: spec.name }),
    Labels: spec.labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: options.image,
        // The task's containers carry the labels too: on a node they are berth's, and whose.
        Labels: spec.labels,
        ...(spec.entrypoint ? { Command: spec.entrypoint } : {}),
        ...(spec.command ? { Args: spec.command } : {}),
        Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
        ...(spec.workingDir ? { Dir: spec.workingDir } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.tty ? { TTY: true } : {}),
        ...(spec.stopTimeout === undefined ? {} : { StopGracePeriod: spec.stopTimeout * 1e9 }),
        ...(spec.hostname === undefined ? {} : { Hostname: spec.hostname }),
        ...(spec.init === undefined ? {} : { Init: spec.init }),
        ...(spec.readOnly === undefined ? {} : { ReadOnly: spec.readOnly }),
        ...(spec.stopSignal === undefined ? {} : { StopSignal: spec.stopSignal }),
        ...(spec.ulimits?.nofile === undefined ? {} : { Ulimits: [{ Name: 'nofile', Soft: spec.ulimits.nofile.soft, Hard: spec.ulimits.nofile.hard }] }),
        Mounts: [
          // A named volume lives on one node, where the run is placed (options.constraints); were it
          // missing there, the node makes it with its owner's labels. Binds keep their policy-checked path.
          ...spec.mounts.map((mount): SwarmMount => ({
            Type: mount.type,
            Source: mount.source,
            Target: mount.target,
            ReadOnly: mount.readOnly,
            ...(mount.type === 'volume' ? { VolumeOptions: { Labels: ownershipLabels(spec.labels) } } : {})
          })),
          // A task has no --shm-size: a tmpfs of that size over /dev/shm is what it sets.
          ...(spec.shmSize === undefined ? [] : [{ Type: 'tmpfs', Target: '/dev/shm', TmpfsOptions: { SizeBytes: spec.shmSize } }])
        ]
      },
      Resources: {
        Limits: {
          ...(spec.memory ? { MemoryBytes: spec.memory } : {}),
          ...(spec.cpus ? { NanoCPUs: Math.round(spec.cpus * 1e9) } : {})
        },
        Reservations: {
          ...(reservations?.memory ? { MemoryBytes: reservations.memory } : {}),
          ...(reservations?.cpus ? { NanoCPUs: Math.round(reservations.cpus * 1e9) } : {})
        }
      },
      RestartPolicy: restartPolicyOf(spec.restart),
      Placement: {
        Constraints: [...(spec.placement?.constraints ?? []), ...(options.constraints ?? [])],
        Preferences: (spec.placement?.spread ?? []).map(descriptor => ({ Spread: { SpreadDescriptor: descriptor } }))
      },
      ...(spec.network === undefined || spec.network === 'bridge' ? {} : { Networks: [{ Target: spec.network, ...(spec.aliases?.length ? { Aliases: spec.aliases } : {}) }] }),
      ForceUpdate: 0
    },
    Mode: { Replicated: { Replicas: spec.replicas ?? 1 } },
    // A restart replaces every task at once and is done when they run, like `docker restart`.
    UpdateConfig: { Parallelism: 0, Delay: 0, FailureAction: 'continue', Monitor: 0, Order: 'stop-first' },
    EndpointSpec: {
      // No virtual IP on a network of the run's own: its name and aliases resolve to the replicas'
      // addresses (DNS round robin), as a container's alias resolves on a bridge. Ingress ports need one.
      ...(spec.network !== undefined && spec.network !== 'bridge' && !(options.publishMode === 'ingress' && spec.ports.length > 0) ? { Mode: 'dnsrr' } : {}),
      Ports: spec.ports.map((port, index) => {
        const published = port.host ?? options.chosenPorts?.get(index)
        return {
          Protocol: port.protocol,
          TargetPort: port.container,
          ...(published === undefined ? {} : { PublishedPort: published }),
          PublishMode: options.publishMode
        }
      })
    }
  }
}

/** berth's labels of who owns it, for what the nodes make for it (a named volume). */
function ownershipLabels (labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([key]) => key === LABEL_MANAGED || key === LABEL_DEPLOYMENT || key === LABEL_OWNER))
}

/**
 * What each restart policy is on a cluster (measured on Engine 20.10, README "Run it on a cluster"):
 * a replicated service whose restart condition is the policy's. `always` and `unless-stopped` come back
 * whenever they end, on another node when theirs is lost; `on-failure` comes back after a failure — a
 * lost node is one — at most maxRetries times; `no` ends for good, and a node lost takes it with it.
 * Not Swarm's replicated jobs, though the engine has them: a job cannot be stopped, scaled or started
 * again (only run anew by an update), so a run that may finish would answer stop, start and scale
 * unlike every other run; a service whose condition is `none` ends as a job does (its tasks' exit
 * codes and logs stay), and wait, ps -a and the sweeper read it as one.
 */
function restartPolicyOf (restart: RunSpec['restart']): NonNullable<ServiceSpec['TaskTemplate']['RestartPolicy']> {
  switch (restart.policy) {
    case 'no': return { Condition: 'none' }
    case 'on-failure': return { Condition: 'on-failure', ...(restart.maxRetries ? { MaxAttempts: restart.maxRetries } : {}) }
    default: return { Condition: 'any' }
  }
}

function restartOf (policy: ServiceSpec['TaskTemplate']['RestartPolicy']): Container['restart'] {
  const condition = policy?.Condition ?? 'any'
  const name: RestartPolicy = condition === 'none' ? 'no' : condition === 'on-failure' ? 'on-failure' : 'always'
  return { policy: name, maxRetries: policy?.MaxAttempts ?? 0 }
}

/** The latest task of each replica (slot), among the slots the service runs when started. */
export function latestTasks (service: SwarmService, tasks: SwarmTask[]): SwarmTask[] {
  const count = replicaCount(service)
  const latest = new Map<number, SwarmTask>()
  for (const task of tasks) {
    if (task.ServiceID !== service.ID) continue
    const slot = task.Slot ?? 0
    if (slot > count) continue
    const seen = latest.get(slot)
    if (seen === undefined || newer(task, seen)) latest.set(slot, task)
  }
  return [...latest.values()].sort((a, b) => (a.Slot ?? 0) - (b.Slot ?? 0))
}

function newer (a: SwarmTask, b: SwarmTask): boolean {
  const byCreation = Date.parse(a.CreatedAt) - Date.parse(b.CreatedAt)
  return byCreation !== 0 ? byCreation > 0 : (a.Version?.Index ?? 0) > (b.Version?.Index ?? 0)
}

/** The replicas the service runs when started: its spec's, or those remembered while it is stopped. */
export function replicaCount (service: SwarmService): number {
  const replicas = service.Spec.Mode?.Replicated?.Replicas ?? 1
  if (replicas > 0) return replicas
  const remembered = Number(service.Spec.Labels?.[LABEL_REPLICAS])
  return Number.isInteger(remembered) && remembered > 0 ? remembered : 1
}

export function isStopped (service: SwarmService): boolean {
  return (service.Spec.Mode?.Replicated?.Replicas ?? 1) === 0
}

/**
 * A service's state in the words of `docker ps`: running while any replica runs (on a node the manager
 * has not lost); exited when stopped (scaled to none) or when its tasks ended, or were lost with their
 * nodes, and none replaces them; created while its replicas wait to be placed or start; restarting
 * while they are replaced after failing.
 */
export function stateOf (service: SwarmService, latest: SwarmTask[], all: SwarmTask[], nodes: Map<string, NodeRef>): ContainerState {
  if (latest.some(task => runs(task, nodes))) return 'running'
  if (isStopped(service)) return 'exited'
  const starting = latest.filter(task => task.DesiredState === 'running' && STARTING.has(task.Status.State) && !isLost(task, nodes))
  if (starting.length === 0) return 'exited'
  const failedBefore = all.some(task => task.ServiceID === service.ID && (task.Status.State === 'failed' || task.Status.State === 'rejected'))
  return failedBefore ? 'restarting' : 'created'
}

/** A replica that runs: running, meant to, and on a node the manager has not lost. */
function runs (task: SwarmTask, nodes: Map<string, NodeRef>): boolean {
  return task.Status.State === 'running' && task.DesiredState === 'running' && !isLost(task, nodes)
}

function statusOf (service: SwarmService, state: ContainerState, latest: SwarmTask[], nodes: Map<string, NodeRef>): string {
  const count = replicaCount(service)
  const running = runningCount(latest, nodes)
  const problem = latest.find(task => task.DesiredState === 'running' && task.Status.Err)?.Status.Err
  const lost = latest.filter(task => isLost(task, nodes)).map(task => nodes.get(task.NodeID as string)?.name ?? task.NodeID)
  const why = [...(problem === undefined ? [] : [problem]), ...(lost.length === 0 ? [] : [`lost with ${[...new Set(lost)].join(', ')} (down)`])].map(text => `; ${text}`).join('')
  if (isStopped(service)) return `Stopped (${count} ${count === 1 ? 'replica' : 'replicas'} when started)`
  if (state === 'exited') {
    if (lost.length > 0 && latest.every(task => isLost(task, nodes) || !task.Status.ContainerStatus?.ContainerID)) return `Lost with ${[...new Set(lost)].join(', ')} (down)`
    const code = exitCodeOf(latest, nodes)
    return `Exited${code === null ? '' : ` (${code})`}${why}`
  }
  return `${state === 'running' ? 'Up' : state === 'restarting' ? 'Restarting' : 'Starting'}: ${running}/${count} running${why}`
}

function runningCount (latest: SwarmTask[], nodes: Map<string, NodeRef>): number {
  return latest.filter(task => runs(task, nodes)).length
}

/** The exit code of the replica that ended last (a lost one has none). */
function exitCodeOf (latest: SwarmTask[], nodes: Map<string, NodeRef>): number | null {
  const ended = latest.filter(task => task.Status.ContainerStatus?.ContainerID && !isLive(task) && !isLost(task, nodes))
  const last = ended.sort((a, b) => Date.parse(b.Status.Timestamp) - Date.parse(a.Status.Timestamp))[0]
  return last?.Status.ContainerStatus?.ExitCode ?? null
}

export function taskOf (task: SwarmTask, nodes: Map<string, NodeRef>): Task {
  const node = task.NodeID ? nodes.get(task.NodeID) : undefined
  const ended = !isLive(task) && task.Status.ContainerStatus?.ContainerID
  const lost = isLost(task, nodes)
  return {
    id: task.ID,
    slot: task.Slot ?? null,
    node: node?.name ?? null,
    address: node?.address ?? null,
    // What the manager last heard from a node it has lost is no news: the replica is lost with it.
    state: lost ? 'lost' : task.Status.State,
    desiredState: task.DesiredState,
    error: lost ? `its node ${node?.name ?? task.NodeID} is ${node?.state ?? 'down'}` : task.Status.Err ?? null,
    exitCode: ended ? task.Status.ContainerStatus?.ExitCode ?? null : null,
    ports: task.Status.State === 'running' && !lost ? taskPorts(task, node) : [],
    since: task.Status.Timestamp
  }
}

function taskPorts (task: SwarmTask, node: NodeRef | undefined): PortBinding[] {
  return dedupe((task.Status.PortStatus?.Ports ?? []).flatMap(port => port.PublishedPort === undefined || port.TargetPort === undefined
    ? []
    : [{ container: port.TargetPort, host: port.PublishedPort, protocol: (port.Protocol ?? 'tcp') as Protocol, hostIp: node?.address ?? '' }]))
}

/**
 * Where the service answers: each running task's host-mode ports on its node's address; ingress
 * ports on every node (hostIp ""). While nothing runs, none, as a stopped container on one host.
 */
function servicePorts (service: SwarmService, tasks: Task[]): PortBinding[] {
  const fromTasks = tasks.flatMap(task => task.ports)
  if (fromTasks.length === 0 && !tasks.some(task => task.state === 'running')) return []
  const ingress = (service.Endpoint?.Ports ?? []).filter(port => port.PublishMode !== 'host')
  return sortPorts(dedupe([
    ...ingress.flatMap(port => port.TargetPort === undefined ? [] : [{ container: port.TargetPort, host: port.PublishedPort ?? null, protocol: (port.Protocol ?? 'tcp') as Protocol, hostIp: '' }]),
    ...fromTasks
  ]))
}

function dedupe (ports: PortBinding[]): PortBinding[] {
  const seen = new Map<string, PortBinding>()
  for (const port of ports) seen.set(`${port.container}/${port.protocol}/${port.host ?? ''}/${port.hostIp}`, port)
  return [...seen.values()]
}

function sortPorts (ports: PortBinding[]): PortBinding[] {
  return ports.sort((a, b) => a.container - b.container || (a.host ?? 0) - (b.host ?? 0) || a.hostIp.localeCompare(b.hostIp))
}

/** The image as it was asked for: the digest berth pinned it to is reported apart. */
export function imageParts (image: string): { image: string, digest: string | null } {
  const at = image.indexOf('@')
  if (at === -1) return { image, digest: null }
  const name = image.slice(0, at)
  const digest = image.slice(at + 1)
  // repo:tag@digest was pinned by berth: the tag is what was asked for. repo@digest was asked as it is.
  const lastSlash = name.lastIndexOf('/')
  const tagged = name.slice(lastSlash + 1).includes(':')
  return { image: tagged ? name : image, digest }
}

function commandOf (spec: ServiceSpec): string[] {
  const container = spec.TaskTemplate.ContainerSpec
  return [...(container.Command ?? []), ...(container.Args ?? [])]
}

export function summaryOf (service: SwarmService, tasks: SwarmTask[], nodes: Map<string, NodeRef>): ContainerSummary {
  const latest = latestTasks(service, tasks)
  const state = stateOf(service, latest, tasks, nodes)
  const mapped = latest.map(task => taskOf(task, nodes))
  const { image, digest } = imageParts(service.Spec.TaskTemplate.ContainerSpec.Image)
  return {
    id: service.ID,
    name: service.Spec.Name ?? service.ID,
    image,
    imageId: digest ?? '',
    command: commandOf(service.Spec),
    state,
    status: statusOf(service, state, latest, nodes),
    createdAt: service.CreatedAt,
    ports: servicePorts(service, mapped),
    labels: service.Spec.Labels ?? {},
    replicas: { count: replicaCount(service), running: runningCount(latest, nodes) },
    tasks: mapped
  }
}

export function containerOfService (service: SwarmService, tasks: SwarmTask[], nodes: Map<string, NodeRef>): Container {
  const summary = summaryOf(service, tasks, nodes)
  const latest = latestTasks(service, tasks)
  const spec = service.Spec.TaskTemplate
  const running = latest.filter(task => runs(task, nodes))
  const startedAt = running.map(task => task.Status.Timestamp).sort()[0] ?? null
  const exited = summary.state === 'exited'
  const { digest } = imageParts(spec.ContainerSpec.Image)
  const limits = spec.Resources?.Limits ?? {}
  const reserved = spec.Resources?.Reservations ?? {}
  const placement: Placement = {
    constraints: spec.Placement?.Constraints ?? [],
    spread: (spec.Placement?.Preferences ?? []).flatMap(preference => preference.Spread ? [preference.Spread.SpreadDescriptor] : [])
  }
  return {
    id: summary.id,
    name: summary.name,
    image: summary.image,
    imageId: summary.imageId,
    imageDigest: digest,
    command: commandOf(service.Spec),
    state: summary.state,
    running: summary.state === 'running',
    exitCode: exited ? exitCodeOf(latest, nodes) : null,
    createdAt: service.CreatedAt,
    startedAt,
    finishedAt: exited ? latest.map(task => task.Status.Timestamp).sort().at(-1) ?? null : null,
    ports: summary.ports,
    labels: summary.labels,
    restart: restartOf(spec.RestartPolicy),
    resources: { memory: limits.MemoryBytes ? limits.MemoryBytes : null, cpus: limits.NanoCPUs ? limits.NanoCPUs / 1e9 : null },
    // As on one host, berth removes it once its exit is collected (src/lifecycle/sweeper.ts).
    autoRemove: summary.labels[LABEL_AUTO_REMOVE] === 'true',
    replicas: summary.replicas as NonNullable<ContainerSummary['replicas']>,
    tasks: summary.tasks as Task[],
    placement,
    reservations: { memory: reserved.MemoryBytes ? reserved.MemoryBytes : null, cpus: reserved.NanoCPUs ? reserved.NanoCPUs / 1e9 : null },
    ...expiryOf(summary.labels)
  }
}

export function nodeOf (node: SwarmNode): Node {
  const state = node.Status?.State
  const availability = node.Spec.Availability
  return {
    id: node.ID,
    name: node.Description?.Hostname ?? '',
    address: nodeAddress(node),
    role: node.Spec.Role === 'manager' ? 'manager' : 'worker',
    leader: node.ManagerStatus?.Leader ?? false,
    state: state === 'ready' || state === 'down' || state === 'disconnected' ? state : 'unknown',
    availability: availability === 'pause' || availability === 'drain' ? availability : 'active',
    labels: node.Spec.Labels ?? {},
    resources: { cpus: (node.Description?.Resources?.NanoCPUs ?? 0) / 1e9, memory: node.Description?.Resources?.MemoryBytes ?? 0 },
    engineVersion: node.Description?.Engine?.EngineVersion ?? '',
    os: node.Description?.Platform?.OS ?? '',
    arch: node.Description?.Platform?.Architecture ?? ''
  }
}

/** A node's address: what it reports, or for a manager that reports 0.0.0.0, the address it manages on. */
export function nodeAddress (node: SwarmNode): string | null {
  const reported = node.Status?.Addr
  if (reported !== undefined && reported !== '' && reported !== '0.0.0.0') return reported
  const managing = node.ManagerStatus?.Addr
  if (managing !== undefined) return managing.replace(/:\d+$/, '')
  return null
}
