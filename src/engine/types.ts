// The operations berth needs from a container engine, in berth's own types. Every backend (a
// single Docker host, a Swarm) implements them. The objects berth answers with are the API's
// schemas' own types, so the engine and the contract cannot drift apart.
import type { Readable } from 'node:stream'
import type { PortHolder } from '../access/ownership.ts'
import type { RegistryCredentials } from '../config.ts'
import { BerthError } from '../errors.ts'
import type { ImageRef } from './image-ref.ts'
import type { Container, ContainerSummary } from '../schemas/containers.ts'
import type { PortBinding } from '../schemas/common.ts'
import type { Image, ImageRemoval, ImageSummary, PulledImage } from '../schemas/images.ts'
import type { LogEntry } from '../schemas/logs.ts'

export type { Container, ContainerSummary, Image, ImageRemoval, ImageSummary, LogEntry, PortBinding, PulledImage }

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

export interface Volume {
  name: string
  driver: string
  labels: Record<string, string>
  createdAt: string | null
}

/** The engine's states, and `removed`: an autoRemove container that exited and was removed before berth could inspect it. */
export type ContainerState = 'created' | 'restarting' | 'running' | 'removing' | 'paused' | 'exited' | 'dead' | 'removed'

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
  type: 'container' | 'image'
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
  /** A named volume, or not_found. */
  inspectVolume (name: string): Promise<Volume>
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
}
