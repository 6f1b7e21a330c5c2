// The operations berth needs from a container engine, in berth's own types. Docker (one host) and
// Swarm (a cluster) implement them; a Kubernetes engine is meant to slot in behind the same
// interface. The objects berth answers with are the API's schemas' own types, so the engine and
// the contract cannot drift apart.
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
import type { Expiry } from '../schemas/lifecycle.ts'

export type { Container, ContainerStats, ContainerSummary, Image, ImageRemoval, ImageSummary, LogEntry, Network, PortBinding, PulledImage, Volume }

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

/** Which backend an engine is; what it can do follows from it (see src/capabilities.ts). */
export type EngineKind = 'docker' | 'swarm' | 'kubernetes'

export interface Replicas {
  /** The replicas it runs when started (remembered while it is stopped). */
  count: number
  /** The replicas running now. */
  running: number
}

/** Swarm's task states, as the manager names them. */
export type TaskState = 'new' | 'allocated' | 'pending' | 'assigned' | 'accepted' | 'preparing' | 'ready' | 'starting' | 'running' |
  'complete' | 'shutdown' | 'failed' | 'rejected' | 'remove' | 'orphaned'

export interface Task {
  id: string
  /** The replica this task is (1..count). */
  slot: number | null
  /** The node it was placed on (hostname), null while it waits to be placed. */
  node: string | null
  /** That node's address, where host-mode ports answer. */
  address: string | null
  state: TaskState
  desiredState: string
  /** Why it is not running (the scheduler's or the node's words), null when nothing is wrong. */
  error: string | null
  exitCode: number | null
  /** Host ports this task publishes on its node. */
  ports: PortBinding[]
  /** When it last changed state. */
  since: string
}

export interface Placement {
  /** Swarm constraints, such as `node.labels.gpu==true`; all must hold. */
  constraints: string[]
  /** Spread replicas evenly over the values of these node attributes, such as `node.labels.zone`. */
  spread: string[]
}

export interface Reservations {
  memory: number | null
  cpus: number | null
}

export interface Node {
  id: string
  name: string
  /** The address the node is reached at (host-mode ports answer there); null when unknown. */
  address: string | null
  role: 'manager' | 'worker' | 'standalone'
  leader: boolean
  state: 'ready' | 'down' | 'unknown' | 'disconnected'
  availability: 'active' | 'pause' | 'drain'
  labels: Record<string, string>
  resources: { cpus: number, memory: number }
  engineVersion: string
  os: string
  arch: string
}

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
}

/** What a running pull reports: the engine accepted it (the registry answered), or a layer moved on. */
export type PullProgress = { kind: 'started' } | { kind: 'layer', layer: LayerProgress }

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

export interface Engine {
  readonly kind: EngineKind
  info (): Promise<EngineInfo>
  pullImage (ref: ImageRef, options: PullOptions): Promise<PulledImage>
  listImages (options: ListImagesOptions): Promise<ImageSummary[]>
  inspectImage (reference: string): Promise<Image>
  removeImage (reference: string, options: { force: boolean }): Promise<ImageRemoval>
  listContainers (options: ListContainersOptions): Promise<ContainerSummary[]>
  inspectContainer (idOrName: string): Promise<Container>
  /** docker run -d: create (pulling per spec.pull) and start; never leaves a created-but-failed container. */
  run (spec: RunSpec): Promise<Container>
  startContainer (id: string): Promise<StateChange>
  stopContainer (id: string, options: { timeout?: number }): Promise<StateChange>
  restartContainer (id: string, options: { timeout?: number }): Promise<StateChange>
  removeContainer (id: string, options: { force: boolean, volumes: boolean }): Promise<void>
  /** Sets how many replicas it runs; a single host runs exactly one (other counts are not_supported). */
  scaleContainer (id: string, replicas: number): Promise<StateChange>
  /** The machines containers run on: a cluster's nodes, or the single host as its one node. */
  listNodes (): Promise<Node[]>
  /** A named volume, or not_found; its size and users only when asked for (otherwise null and []). */
  inspectVolume (name: string, details?: VolumeDetails): Promise<Volume>
  /** Creates a named volume; an existing one of that name is returned as it is (labels and all). */
  createVolume (name: string, labels: Record<string, string>): Promise<Volume>
  removeVolume (name: string): Promise<void>
  /**
   * docker logs: resolves once the engine answered (within the call deadline), then yields lines for as
   * long as they come; with `follow` until the container stops or the signal aborts.
   */
  containerLogs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>>
  /**
   * docker events for containers and images: resolves once the engine answered (within the call
   * deadline); the iterable ends when the signal aborts or the engine connection goes away, and never
   * reconnects by itself.
   */
  events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>>
  /** Releases what the backend holds open (watches, caches); a backend that holds nothing has none. */
  close?: () => Promise<void>

  // ---- Environments (issue 14). A backend that cannot do one of these throws not_supported.

  /** docker volume ls: the volumes whose labels match every filter, with the details asked for. */
  listVolumes (options: { labels: string[] } & VolumeDetails): Promise<Volume[]>
  /**
   * docker wait: resolves when the container is not running (at once when it is not), however long
   * that takes; only the signal ends it sooner, with the signal's reason.
   */
  waitContainer (id: string, options: { signal?: AbortSignal }): Promise<ContainerExit>
  /** docker network ls: user-defined networks whose labels match every filter; members among the containers matching `members` filters ([] for all). */
  listNetworks (options: { labels: string[], members: string[] }): Promise<Network[]>
  /** A network by id, unique id prefix or name, or not_found; members as for listNetworks. */
  inspectNetwork (idOrName: string, options: { members: string[] }): Promise<Network>
  /** A bridge network; a name in use is name_conflict. */
  createNetwork (spec: NetworkSpec): Promise<Network>
  /** Refuses with network_in_use while any container is attached to it, running or not. */
  removeNetwork (id: string): Promise<void>
  /** `changed: false` when it already was connected. */
  connectNetwork (networkId: string, containerId: string, options: { aliases: string[] }): Promise<StateChange>
  /** `changed: false` when it was not connected. */
  disconnectNetwork (networkId: string, containerId: string, options: { force: boolean }): Promise<StateChange>

  // Images built, shared and reproduced (issue 15).
  /**
   * docker build: resolves with the built image once it is tagged. A build that fails or is cancelled
   * (the signal) leaves nothing behind: its step's container is gone and the images it committed are removed.
   */
  buildImage (spec: BuildSpec, options: BuildOptions): Promise<BuiltImage>
  /** docker tag: `target` then names the image `source` names (an id or a reference). */
  tagImage (source: string, target: ImageRef): Promise<void>
  /** docker push of one tag; resolves with the digest the registry stored. Like a pull, a failure inside the stream is push_failed. */
  pushImage (ref: ImageRef, options: PushOptions): Promise<PushedImage>
  /** docker history: the steps that made an image, newest first. */
  imageHistory (reference: string): Promise<ImageHistoryEntry[]>
  /** docker image prune: removes dangling images (or every unused one), optionally only those with the given labels. */
  pruneImages (options: PruneImagesOptions): Promise<PruneReport>
  /** docker builder prune: the build cache the engine keeps besides images. */
  pruneBuildCache (): Promise<PruneReport>
  /** docker system df. */
  diskUsage (): Promise<DiskUsage>
  /** What a container was run with, as a run request would say it: only what differs from its image's defaults. */
  containerConfig (idOrName: string): Promise<ContainerConfig>
  /**
   * docker exec: starts a command in a running container (container_not_running otherwise) and
   * resolves once its output is flowing. The signal ends the output and releases the engine
   * connection; the engine has no way to stop the process itself, which ends when it reads EOF on
   * stdin (a shell does) or by itself.
   */
  exec (containerId: string, spec: ExecSpec, options: { signal: AbortSignal }): Promise<ExecSession>
  /**
   * docker stats: resolves once the engine answered. One reading (which takes the engine a second,
   * to have a previous one to compare with), or one about every second until the container stops or
   * the signal aborts. `oneShot`: one reading at once, without the comparison (no cpuPercent).
   */
  containerStats (id: string, options: { stream: boolean, signal?: AbortSignal, oneShot?: boolean }): Promise<AsyncIterable<ContainerStats>>
  /** docker cp out: a tar of the path (a file, or a directory and all below it); not_found when the path is not there. */
  getArchive (id: string, path: string, options: { signal?: AbortSignal }): Promise<{ stat: PathStat, archive: NodeJS.ReadableStream }>
  /** docker cp in: unpacks a tar of `size` bytes into the directory `path`, which must exist. */
  putArchive (id: string, path: string, archive: NodeJS.ReadableStream, options: { size: number }): Promise<void>
  /**
   * The containers among those matching `labels` that were run with an expiry, with its end as it
   * is now (moved by setExpiry, or as run). Forgets moved ends of containers that are gone.
   */
  listExpiring (labels: string[]): Promise<ExpiringContainer[]>
  /** Moves the end of a container's time to live (it must have been run with an expiry). */
  setExpiry (id: string, expiresAt: string): Promise<void>
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
  exitCode: number
  oomKilled: boolean
  /** What the engine reports went wrong, if anything. */
  error: string | null
}

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

export interface BuiltImage {
  id: string
  tags: string[]
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

export interface PushedImage {
  reference: string
  digest: string
  /** Size of the manifest the registry stored, in bytes. */
  size: number | null
}

export interface ImageHistoryEntry {
  /** The layer's image id; null for steps whose image is not on this engine (they came with a pull). */
  id: string | null
  createdAt: string
  /** The instruction that made it. */
  createdBy: string
  size: number
  comment: string
  tags: string[]
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

export interface DiskUsage {
  images: { count: number, size: number, reclaimable: number }
  containers: { count: number, size: number }
  volumes: { count: number, size: number }
  buildCache: { count: number, size: number, reclaimable: number }
}

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
}
