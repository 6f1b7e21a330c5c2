// berth's own types for what goes into and comes out of a backend's parts (src/engine/parts.ts).
// The objects berth answers with are the API's schemas' own types — cluster ones (tasks, nodes,
// replicas, placement) included — so the backends and the contract cannot drift apart.
import type { Readable } from 'node:stream'
import type { PortHolder } from '../access/ownership.ts'
import type { RegistryCredentials } from '../config.ts'
import { BerthError } from '../errors.ts'
import type { ImageRef } from './image-ref.ts'
import type { Container, ContainerSummary, GpuRequest } from '../schemas/containers.ts'
import type { PortBinding } from '../schemas/common.ts'
import type { Image, ImageRemoval, ImageSummary, PulledImage } from '../schemas/images.ts'
import type { LogEntry } from '../schemas/logs.ts'
import type { Volume } from '../schemas/volumes.ts'
import type { Network } from '../schemas/networks.ts'
import type { ContainerStats } from '../schemas/stats.ts'
import type { Expiry, WaitResult } from '../schemas/lifecycle.ts'
import type { Node } from '../schemas/nodes.ts'
import type { Static } from 'typebox'
import type { PlacementSchema, Task } from '../schemas/containers.ts'
import type { BuiltImage, DiskUsage as DiskUsageSchema, PushedImage } from '../schemas/builds.ts'
import type { ImageHistoryEntry } from '../schemas/images.ts'

export type { BuiltImage, Container, ContainerStats, ContainerSummary, Image, ImageHistoryEntry, ImageRemoval, ImageSummary, LogEntry, Network, Node, PortBinding, PulledImage, PushedImage, Task, Volume }

export type Protocol = 'tcp' | 'udp' | 'sctp'

export interface PortRequest {
  container: number
  /** A fixed host port. Without it (and without hostRange) the engine chooses any free port. */
  host?: number
  /** Without `host`: the engine chooses a free host port within this range. */
  hostRange?: { min: number, max: number }
  protocol: Protocol
  hostIp?: string
}

/**
 * A host port already taken. The holder, when it is a container, is known to the engine but
 * named only by Ownership#portConflict to those allowed to see it: as thrown, this says nothing
 * about it.
 */
export class PortConflictError extends BerthError {
  readonly port: number | null
  readonly holder: PortHolder | null

  constructor (port: number | null, holder: PortHolder | null, detail?: string, cause?: unknown) {
    super('port_conflict', detail ?? `host port ${port} is already allocated`, port === null ? {} : { port }, cause === undefined ? {} : { cause })
    this.port = port
    this.holder = holder
  }
}

/** Which details of a volume to find out besides what the engine keeps with it. */
export interface VolumeDetails {
  /** Its size, which costs the engine a walk of the volume. */
  size?: boolean
  /** The containers that mount it, among those whose labels match every one of these filters ([] for all). */
  usedBy?: string[]
}

/** The engine's states, and `removed`: an autoRemove container that exited and was removed before berth could inspect it. */
export type ContainerState = 'created' | 'restarting' | 'running' | 'removing' | 'paused' | 'exited' | 'dead' | 'removed'

// ---- Cluster additions (contract v2): absent on a single host, where a container is one replica.

/** Which backend berth drives; what it can do follows from its parts (src/engine/index.ts). */
export type EngineKind = 'docker' | 'swarm' | 'kubernetes'

/** How many replicas a container has on a cluster. */
export type Replicas = NonNullable<Container['replicas']>

/** Swarm's task states, as the manager names them. */
export type TaskState = 'new' | 'allocated' | 'pending' | 'assigned' | 'accepted' | 'preparing' | 'ready' | 'starting' | 'running' |
  'complete' | 'shutdown' | 'failed' | 'rejected' | 'remove' | 'orphaned'

/** Where replicas may run; both lists are there, empty when not asked for. */
export type Placement = Required<Static<typeof PlacementSchema>>

export type Reservations = NonNullable<Container['reservations']>

export type RestartPolicy = 'no' | 'always' | 'unless-stopped' | 'on-failure'
export type PullPolicy = 'missing' | 'always' | 'never'

export interface Mount {
  type: 'volume' | 'bind'
  source: string
  target: string
  readOnly: boolean
}

export interface RunSpec {
  image: { kind: 'ref', ref: ImageRef } | { kind: 'id', id: string }
  name?: string
  command?: string[]
  entrypoint?: string[]
  env: Record<string, string>
  workingDir?: string
  user?: string
  labels: Record<string, string>
  ports: PortRequest[]
  mounts: Mount[]
  restart: { policy: RestartPolicy, maxRetries?: number }
  memory?: number
  cpus?: number
  autoRemove: boolean
  pull: PullPolicy
  auth?: RegistryCredentials
  /** Allocate a terminal: the engine then keeps no separate stdout and stderr. */
  tty?: boolean
  /** Seconds a stop waits after the stop signal before it kills (the engine's default when absent). */
  stopTimeout?: number
  /** On a cluster: how many replicas to run (1 when absent). */
  replicas?: number
  /** On a cluster: where replicas may run. */
  placement?: Placement
  /** On a cluster: what to reserve on a node for each replica. */
  reservations?: { memory?: number, cpus?: number }
  // ---- Environments (issue 14)
  /** Bytes of /dev/shm. */
  shmSize?: number
  hostname?: string
  ulimits?: { nofile?: { soft: number, hard: number } }
  /** An init as PID 1 that reaps zombies and forwards signals. */
  init?: boolean
  /** A read-only root filesystem. */
  readOnly?: boolean
  stopSignal?: string
  /** GPUs: every one, a count, or device ids. */
  gpus?: GpuRequest
  /** The network it joins (an id, or `bridge` or `none`); the engine's default bridge when absent. */
  network?: string
  /** More names it is reached by on that network. */
  aliases?: string[]
}

/** Where one layer of a pull is: the phases every registry pull goes through, in berth's words. */
export type LayerPhase = 'waiting' | 'downloading' | 'verifying' | 'downloaded' | 'extracting' | 'complete' | 'exists' | 'retrying'

export interface LayerProgress {
  /** The layer's short id, as `docker pull` prints it. */
  id: string
  phase: LayerPhase
  /** Bytes done in this phase (downloaded, or extracted). */
  current: number
  /** The layer's compressed size; null until the engine knows it. */
  total: number | null
  /** On a cluster: the node it is pulled onto (each node pulls its own). */
  node?: string
}

/**
 * What a running pull reports: the engine accepted it (the registry answered), or a layer moved on;
 * on a cluster, each from a node, and each node's outcome as it comes.
 */
export type PullProgress =
  | { kind: 'started', node?: string }
  | { kind: 'layer', layer: LayerProgress, node?: string }
  | { kind: 'node', outcome: NodePull }

/** How a pull went on one node of a cluster. */
export type NodePull = NonNullable<PulledImage['nodes']>[number]

export interface PullOptions {
  platform?: string
  auth?: RegistryCredentials
  /** Cancels the pull at the engine, which then stops downloading. */
  signal?: AbortSignal
  onProgress?: (progress: PullProgress) => void
}

export interface LogOptions {
  follow: boolean
  /** Only the last n lines; all when absent. */
  tail?: number
  /** Nanoseconds since the epoch: lines at or after this time. */
  since?: bigint
  /** Nanoseconds since the epoch: lines up to this time. */
  until?: bigint
  timestamps: boolean
  /** Ends the stream and releases the engine connection. */
  signal?: AbortSignal
}

export interface EngineEvent {
  /** Opaque position in the engine's event history: `events({ after })` resumes right after it. */
  cursor: string
  /** node and task events come from a cluster; on it, `container` events are about services. */
  type: 'container' | 'image' | 'node' | 'task'
  action: string
  id: string
  name: string | null
  image: string | null
  /** RFC 3339 with nanoseconds. */
  time: string
  /** The container's labels (empty for images): who may see the event follows from them. */
  labels: Record<string, string>
  /** A container's exit code, on `die`. */
  exitCode?: number
  /** A task's service (berth's container id on a cluster). */
  service?: string
  /** The node a task runs on. */
  node?: string
  /** Why a task failed or cannot be placed; a node's new state. */
  detail?: string
}

export interface EventsOptions {
  /** Resume after this cursor (from an earlier EngineEvent); malformed is validation_failed. */
  after?: string
  /** Without a cursor: replay from this time. Neither means only events from now on. */
  since?: Date
  signal?: AbortSignal
}

export interface ListContainersOptions {
  all: boolean
  status?: ContainerState[]
  labels?: string[]
  name?: string
}

export interface ListImagesOptions {
  reference?: string
  dangling?: boolean
  labels?: string[]
}

export interface EngineInfo {
  version: string
  apiVersion: string
  os: string
  arch: string
}

/** The result of start/stop: `changed` is false when the container already was in that state. */
export interface StateChange {
  changed: boolean
}

export interface ExpiringContainer {
  id: string
  name: string
  state: ContainerState
  labels: Record<string, string>
  expiry: Expiry
}

/** What the engine says of a path in a container. */
export interface PathStat {
  name: string
  size: number
  /** Go's os.FileMode bits: the permissions, and the type in the high bits. */
  mode: number
  mtime: string
  linkTarget: string
}

/** A command to run in a running container (docker exec). */
export interface ExecSpec {
  command: string[]
  env: Record<string, string>
  workingDir?: string
  user?: string
  /** A terminal: output is then one stream, as a terminal shows it. */
  tty: boolean
  /** Keep the process's stdin open for the caller to write to. */
  stdin: boolean
}

/** A piece of an exec's output, as it came. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr'
  data: Buffer
}

/** A running exec. Its output ends when the process exits, or the signal it was started with aborts. */
export interface ExecSession {
  id: string
  /** The output, demultiplexed (a TTY's is all stdout); read either this or lines(), once. */
  output: AsyncIterable<OutputChunk>
  /** The output as lines, as `docker logs` splits them. */
  lines (): AsyncIterable<LogEntry>
  /** The process's stdin, when asked for: end() closes it (EOF). */
  stdin: NodeJS.WritableStream | null
  /** Resizes its terminal. */
  resize (size: { cols: number, rows: number }): Promise<void>
  /** Its exit code, once the output has ended; null when it still runs (the caller left first). */
  exitCode (): Promise<number | null>
}

export interface NetworkSpec {
  name: string
  /** No route to the outside. */
  internal: boolean
  labels: Record<string, string>
}

/** How a container ended. */
export interface ContainerExit {
  /** On a cluster: the first non-zero exit of its replicas (by slot), else 0; null when none left one (lost with their nodes). */
  exitCode: number | null
  oomKilled: boolean
  /** What the engine reports went wrong, if anything. */
  error: string | null
  /** On a cluster: how each replica ended. */
  replicas?: ReplicaExit[]
}

export type ReplicaExit = NonNullable<WaitResult['replicas']>[number]

/** What a build is asked to do. Policy has checked it; the context is a tar (optionally gzip-compressed). */
export interface BuildSpec {
  /** Opens the build context; called once. */
  context: () => Readable
  /** The Dockerfile's path inside the context. */
  dockerfile: string
  tags: ImageRef[]
  buildArgs: Record<string, string>
  labels: Record<string, string>
  target?: string
  platform?: string
  /** Pull every base image even when the engine has it (`--pull`). */
  pull: boolean
  noCache: boolean
  /** The network RUN steps get; `none` unless policy allows more. */
  network: 'none' | 'default'
  /** Memory limit of each step's container, in bytes. */
  memory?: number
  /** CPU limit of each step's container, in cores. */
  cpus?: number
}

/** What a running build reports. */
export type BuildProgress =
  | { kind: 'step', number: number, total: number, instruction: string }
  | { kind: 'output', step: number, stream: 'stdout' | 'stderr', line: string }
  | { kind: 'layer', step: number, id: string, cached: boolean }
  | { kind: 'status', message: string }

export interface BuildOptions {
  /** Cancels the build at the engine, which stops its step's container. */
  signal?: AbortSignal
  onProgress?: (progress: BuildProgress) => void
}

/** Where one layer of a push is. */
export type PushPhase = 'preparing' | 'waiting' | 'pushing' | 'pushed' | 'exists' | 'mounted' | 'retrying'

export interface PushProgress {
  id: string
  phase: PushPhase
  current: number
  total: number | null
}

export interface PushOptions {
  auth?: RegistryCredentials
  signal?: AbortSignal
  onProgress?: (progress: PushProgress) => void
}

export interface PruneImagesOptions {
  /** true: only untagged images; false: every image no container uses. */
  dangling: boolean
  /** Only images with all of these labels (`key` or `key=value`). */
  labels?: string[]
}

export interface PruneReport {
  deleted: string[]
  spaceReclaimed: number
}

export type DiskUsage = DiskUsageSchema

export interface ContainerConfig {
  /** The image as the run named it. */
  image: string
  imageId: string
  /** repo@digest references of its image. */
  imageDigests: string[]
  command?: string[]
  entrypoint?: string[]
  env: Record<string, string>
  workingDir?: string
  user?: string
  labels: Record<string, string>
  ports: Array<{ container: number, host?: number, protocol: Protocol, hostIp?: string }>
  mounts: Mount[]
  restart: { policy: RestartPolicy, maxRetries?: number }
  memory?: number
  cpus?: number
  autoRemove: boolean
  tty: boolean
  /** The environment knobs the run set (issue 14): what its processes see, not where it runs (network, expiry). */
  environment?: Pick<RunSpec, 'shmSize' | 'hostname' | 'ulimits' | 'init' | 'readOnly' | 'stopSignal' | 'stopTimeout' | 'gpus'>
  /** On a cluster, what the run asked of it beyond one replica anywhere: a backend that cannot honour them refuses them by name. */
  cluster?: Pick<RunSpec, 'replicas' | 'placement' | 'reservations'>
}
