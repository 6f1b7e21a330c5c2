// The seam between berth and what runs its containers. A backend is composed of parts: containers
// (every backend has them) and, where the backend can honour them, images, image removal, builds, volumes,
// networks, exec, stats, files, wait, nodes, expiry and specs. Each part is a small interface; a
// backend that lacks one says why, once, in its definition — and that reason is the 501 a client
// gets and the sentence the OpenAPI document prints. Nothing in a backend answers 501 by hand.
//
// Models: Go's small interfaces composed into bigger ones, unstorage's drivers where only the core
// is required, Fastify's plugins that declare what they need.
import { makeConfig, type Config } from '../config.ts'
import { BerthError } from '../errors.ts'
import type { ImageRef } from './image-ref.ts'
import type {
  BuildOptions, BuildSpec, BuiltImage, Container, ContainerConfig, ContainerExit, ContainerStats, ContainerSummary, DiskUsage, EngineEvent,
  EngineInfo, EngineKind, EventsOptions, ExecSession, ExecSpec, ExpiringContainer, Image, ImageHistoryEntry, ImageRemoval, ImageSummary,
  ListContainersOptions, ListImagesOptions, LogEntry, LogOptions, Network, NetworkSpec, Node, PathStat, Placement, PruneImagesOptions, PruneReport,
  PulledImage, PullOptions, PushedImage, PushOptions, RunSpec, StateChange, Volume, VolumeDetails
} from './types.ts'

/** Containers as `docker run -d`, `ps`, `inspect`, `start`, `stop`, `restart`, `rm` and `logs` know them. Every backend has them. */
export interface ContainersPart {
  /**
   * Refuses, before anything is made, what a run asks for that this backend cannot honour
   * (not_supported naming the field); a field that needs another part is checked by the caller.
   */
  check: (spec: RunSpec) => void
  list: (options: ListContainersOptions) => Promise<ContainerSummary[]>
  inspect: (idOrName: string) => Promise<Container>
  /** docker run -d: create (pulling per spec.pull) and start; never leaves a created-but-failed container. */
  run: (spec: RunSpec) => Promise<Container>
  start: (id: string) => Promise<StateChange>
  stop: (id: string, options: { timeout?: number }) => Promise<StateChange>
  restart: (id: string, options: { timeout?: number }) => Promise<StateChange>
  remove: (id: string, options: { force: boolean, volumes: boolean }) => Promise<void>
  /** Sets how many replicas it runs; a single host runs exactly one (other counts are not_supported). */
  scale: (id: string, replicas: number) => Promise<StateChange>
  /**
   * docker logs: resolves once the engine answered (within the call deadline), then yields lines for as
   * long as they come; with `follow` until the container stops or the signal aborts.
   */
  logs: (idOrName: string, options: LogOptions) => Promise<AsyncIterable<LogEntry>>
}

/** The images containers run from: the engine's own store, or what a cluster's nodes hold. */
export interface ImagesPart {
  pull: (ref: ImageRef, options: PullOptions) => Promise<PulledImage>
  list: (options: ListImagesOptions) => Promise<ImageSummary[]>
  inspect: (reference: string) => Promise<Image>
  /** docker history: the steps that made an image, newest first. */
  history: (reference: string) => Promise<ImageHistoryEntry[]>
}

/** docker rmi: taking an image out of the store (or off every node) that holds it. */
export interface ImageRemovalPart {
  remove: (reference: string, options: { force: boolean }) => Promise<ImageRemoval>
}

/** Where images are built and shared from: a Docker engine's store (the host's own, or a cluster's builder). */
export interface BuildsPart {
  /**
   * True when a build also pushes every tag it gives (a cluster's builder: the nodes pull from a
   * registry). Each tag is then a push as well, and is admitted as one (the push namespace).
   */
  readonly publishes?: boolean
  /**
   * docker build: resolves with the built image once it is tagged. A build that fails or is cancelled
   * (the signal) leaves nothing behind: its step's container is gone and the images it committed are removed.
   */
  build: (spec: BuildSpec, options: BuildOptions) => Promise<BuiltImage>
  /** An image of this store by id or reference (image_not_found otherwise). */
  inspect: (reference: string) => Promise<Image>
  /** docker tag: `target` then names the image `source` names (an id or a reference). */
  tag: (source: string, target: ImageRef) => Promise<void>
  /** docker rmi of one name: the image goes with its last name unless a container uses it. */
  untag: (reference: string) => Promise<ImageRemoval>
  /** docker push of one tag; resolves with the digest the registry stored. Like a pull, a failure inside the stream is push_failed. */
  push: (ref: ImageRef, options: PushOptions) => Promise<PushedImage>
}

/** docker image prune, docker builder prune and docker system df: the engine's disk. */
export interface DiskPart {
  pruneImages: (options: PruneImagesOptions) => Promise<PruneReport>
  pruneBuildCache: () => Promise<PruneReport>
  usage: () => Promise<DiskUsage>
}

export interface VolumesPart {
  /** docker volume ls: the volumes whose labels match every filter, with the details asked for. */
  list: (options: { labels: string[] } & VolumeDetails) => Promise<Volume[]>
  /** A named volume, or not_found; its size and users only when asked for (otherwise null and []). */
  inspect: (name: string, details?: VolumeDetails) => Promise<Volume>
  /**
   * Creates a named volume; an existing one of that name is returned as it is (labels and all). On a
   * cluster it lives on one node: `node` names it, or `placement` (a run's) narrows the choice.
   * `size`: the bytes it may hold, where the backend bounds volumes (not_supported where it does not).
   */
  create: (name: string, labels: Record<string, string>, options?: { node?: string, placement?: Placement, size?: number }) => Promise<Volume>
  /** The bytes a volume made now with this size asked for (or none) may hold, null where volumes are unbounded; policy_denied past the backend's cap. */
  capacityFor: (size: number | undefined) => number | null
  /** Refuses with volume_in_use while any container mounts it, running or not. */
  remove: (name: string) => Promise<void>
}

export interface NetworksPart {
  /** docker network ls: user-defined networks whose labels match every filter; members among the containers matching `members` filters ([] for all). */
  list: (options: { labels: string[], members: string[] }) => Promise<Network[]>
  /** A network by id, unique id prefix or name, or not_found; members as for list. */
  inspect: (idOrName: string, options: { members: string[] }) => Promise<Network>
  /** A name in use is name_conflict. */
  create: (spec: NetworkSpec) => Promise<Network>
  /** Refuses with network_in_use while any container is attached to it, running or not. */
  remove: (id: string) => Promise<void>
  /** `changed: false` when it already was connected. */
  connect: (networkId: string, containerId: string, options: { aliases: string[] }) => Promise<StateChange>
  /** `changed: false` when it was not connected. */
  disconnect: (networkId: string, containerId: string, options: { force: boolean }) => Promise<StateChange>
}

export interface ExecPart {
  /**
   * docker exec: starts a command in a running container (container_not_running otherwise) and
   * resolves once its output is flowing. The signal ends the output and releases the engine
   * connection; the engine has no way to stop the process itself, which ends when it reads EOF on
   * stdin (a shell does) or by itself.
   */
  exec: (containerId: string, spec: ExecSpec, options: { signal: AbortSignal, replica?: string }) => Promise<ExecSession>
}

/**
 * On a cluster, which replica a process or file operation is for: its slot, or its task id (or a
 * unique prefix of it); the running one with the lowest slot when absent. A single host's container
 * is its one replica, `1`.
 */
export interface ReplicaChoice {
  replica?: string
}

export interface StatsPart {
  /**
   * docker stats: resolves once the engine answered. One reading (which takes the engine a second,
   * to have a previous one to compare with), or one about every second until the container stops or
   * the signal aborts. `oneShot`: one reading at once, without the comparison (no cpuPercent). On a
   * cluster, without a replica chosen: the sum over its running replicas.
   */
  stats: (id: string, options: { stream: boolean, signal?: AbortSignal, oneShot?: boolean } & ReplicaChoice) => Promise<AsyncIterable<ContainerStats>>
}

export interface FilesPart {
  /** docker cp out: a tar of the path (a file, or a directory and all below it); not_found when the path is not there. */
  get: (id: string, path: string, options: { signal?: AbortSignal } & ReplicaChoice) => Promise<{ stat: PathStat, archive: NodeJS.ReadableStream }>
  /** What a path is (its last component not followed, the ones before it followed in the container); null when it is not there. */
  stat: (id: string, path: string, options?: ReplicaChoice) => Promise<PathStat | null>
  /** docker cp in: unpacks a tar of `size` bytes into the directory `path`, which must exist. */
  put: (id: string, path: string, archive: NodeJS.ReadableStream, options: { size: number } & ReplicaChoice) => Promise<void>
}

export interface WaitPart {
  /**
   * docker wait: resolves when the container is not running (at once when it is not), however long
   * that takes; only the signal ends it sooner, with the signal's reason.
   */
  wait: (id: string, options: { signal?: AbortSignal }) => Promise<ContainerExit>
}

export interface NodesPart {
  /** The machines containers run on: a cluster's nodes, or the single host as its one node. */
  list: () => Promise<Node[]>
}

/** Expiry is kept with the container where a restarted berth finds it; berth's sweeper acts on it. */
export interface ExpiryPart {
  /**
   * The containers among those matching `labels` that were run with an expiry, with its end as it
   * is now (moved by set, or as run). Forgets moved ends of containers that are gone.
   */
  list: (labels: string[]) => Promise<ExpiringContainer[]>
  /** Moves the end of a container's time to live (it must have been run with an expiry). */
  set: (id: string, expiresAt: string) => Promise<void>
}

export interface SpecsPart {
  /** What a container was run with, as a run request would say it: only what differs from its image's defaults. */
  of: (idOrName: string) => Promise<ContainerConfig>
}

/** Every part by its name. */
export interface Parts {
  containers: ContainersPart
  images: ImagesPart
  imageRemoval: ImageRemovalPart
  builds: BuildsPart
  disk: DiskPart
  volumes: VolumesPart
  networks: NetworksPart
  exec: ExecPart
  stats: StatsPart
  files: FilesPart
  wait: WaitPart
  nodes: NodesPart
  expiry: ExpiryPart
  specs: SpecsPart
}
export type PartName = keyof Parts
/** The parts a backend may lack: all but containers. */
export type OptionalPart = Exclude<PartName, 'containers'>

export const PART_NAMES: readonly PartName[] = ['containers', 'images', 'imageRemoval', 'builds', 'disk', 'volumes', 'networks', 'exec', 'stats', 'files', 'wait', 'nodes', 'expiry', 'specs']

/** What a part is for, in the words of the 501 a client gets when the backend lacks it. */
export const PART_WORDS: Record<PartName, string> = {
  containers: 'containers',
  images: 'images',
  imageRemoval: 'removing images',
  builds: 'image builds, tags and pushes',
  disk: 'image prune and disk usage',
  volumes: 'named volumes',
  networks: 'networks',
  exec: 'exec',
  stats: 'stats',
  files: 'files in and out of containers',
  wait: 'wait',
  nodes: 'nodes',
  expiry: 'expiry',
  specs: 'a container\'s spec as a run request'
}

/** What a backend has besides its parts: it answers, it reports what changes, it lets go. */
export interface Core {
  /** The engine answers (and whatever the backend keeps is current): /readyz. */
  info: () => Promise<EngineInfo>
  /**
   * docker events for containers and images (and a cluster's nodes and tasks): resolves once the
   * engine answered (within the call deadline); the iterable ends when the signal aborts or the
   * engine connection goes away, and never reconnects by itself.
   */
  events: (options: EventsOptions) => Promise<AsyncIterable<EngineEvent>>
  /** Releases what the backend holds open (watches, caches). */
  close?: () => Promise<void>
}

/** A part this backend lacks, and why: the detail of every 501 it causes. */
export class Absent {
  readonly why: string
  constructor (why: string) { this.why = why }
}
export function absent (why: string): Absent { return new Absent(why) }

/** Makes a part from what the backend's parts share and berth's config; Absent when what it needs is not there. */
export type PartFactory<Shared, N extends PartName> = ((shared: Shared, config: Config) => Parts[N] | Absent | Promise<Parts[N] | Absent>) & {
  /** What the operator must configure for it (the document says so); absent: the backend always has it. */
  requires?: string
}

/**
 * A part in a backend's definition: absent (and why), or made from what the backend shares. A made
 * part may still turn out absent when it depends on what the operator configured or the cluster
 * serves (a builder, a metrics API): then its factory returns Absent with what to set.
 */
export type PartEntry<Shared, N extends PartName> = Absent | PartFactory<Shared, N>

/** A part that exists only once the operator configured what it needs (said in the document). */
export function configured<Shared, N extends PartName> (requires: string, factory: (shared: Shared, config: Config) => Parts[N] | Absent | Promise<Parts[N] | Absent>): PartFactory<Shared, N> {
  return Object.assign(factory, { requires })
}

/** How a backend is made: what its parts share, its core, and each part. */
export interface BackendDefinition<Shared> {
  kind: EngineKind
  /** A line on what a container is on this backend, for the document. */
  summary: string
  /** Opens what the parts share (a transport, a client, watch-fed copies). */
  open: (config: Config) => Shared | Promise<Shared>
  core: (shared: Shared) => Core
  parts: { containers: (shared: Shared) => ContainersPart } & { [N in OptionalPart]: PartEntry<Shared, N> }
}

/** Keeps a definition's types whole; a definition is plain data. */
export function defineBackend<Shared> (definition: BackendDefinition<Shared>): BackendDefinition<Shared> {
  return definition
}

/** A backend as berth drives it: its core, its containers, and each other part or why it lacks it. */
export interface Backend extends Core {
  readonly kind: EngineKind
  readonly containers: ContainersPart
  /** The part, or 501 not_supported with why this backend lacks it. */
  part: <N extends OptionalPart>(name: N) => Parts[N]
  has: (name: PartName) => boolean
  /** Why it lacks a part; undefined when it has it. */
  why: (name: PartName) => string | undefined
  close: () => Promise<void>
}

export function notSupported (kind: EngineKind, detail: string): BerthError {
  return new BerthError('not_supported', detail, { backend: kind })
}

/** The sentence of a 501 for a part a backend lacks. */
export function lacking (kind: EngineKind, name: PartName, why: string): BerthError {
  return notSupported(kind, `${PART_WORDS[name]}: not on the ${kind} backend: ${why}`)
}

/** A backend from its parts, as they are (tests compose their own; createBackend opens a definition). */
export function composeBackend (kind: EngineKind, core: Core, containers: ContainersPart, parts: { [N in OptionalPart]?: Parts[N] | Absent }): Backend {
  const reasons = new Map<PartName, string>()
  for (const name of PART_NAMES) {
    if (name === 'containers') continue
    const entry = parts[name]
    if (entry === undefined) reasons.set(name, 'this backend does not have it')
    else if (entry instanceof Absent) reasons.set(name, entry.why)
  }
  return {
    kind,
    info: () => core.info(),
    events: options => core.events(options),
    containers,
    part: <N extends OptionalPart>(name: N): Parts[N] => {
      const entry = parts[name]
      if (entry === undefined || entry instanceof Absent) throw lacking(kind, name, reasons.get(name) ?? '')
      return entry as Parts[N]
    },
    has: name => !reasons.has(name),
    why: name => reasons.get(name),
    close: async () => { await core.close?.() }
  }
}

/** Opens a backend from its definition: what its parts share, then each part. */
export async function openBackend<Shared> (definition: BackendDefinition<Shared>, config: Config): Promise<Backend> {
  return await composeFrom(definition, await definition.open(config), config)
}

/** A backend from its definition and what its parts share, already made (tests tune what they share). */
export async function composeFrom<Shared> (definition: BackendDefinition<Shared>, shared: Shared, config: Config = makeConfig()): Promise<Backend> {
  const core = definition.core(shared)
  const made: { [N in OptionalPart]?: Parts[N] | Absent } = {}
  try {
    for (const name of PART_NAMES) {
      if (name === 'containers') continue
      const entry = definition.parts[name] as PartEntry<Shared, typeof name>
      ;(made as Record<string, unknown>)[name] = entry instanceof Absent ? entry : await entry(shared, config)
    }
    return composeBackend(definition.kind, core, definition.parts.containers(shared), made)
  } catch (error) {
    await core.close?.()
    throw error
  }
}

/** A definition as the rest of berth sees it: which parts it can have, why not the others, and how it opens. */
export interface BackendCatalogue {
  kind: EngineKind
  summary: string
  /** Whether it can have a part (perhaps only once configured): what the document says. */
  offers: (part: PartName) => boolean
  /** Why it never has a part; undefined when it can. */
  never: (part: PartName) => string | undefined
  /** What the operator must configure for it to have a part; undefined when it always has it (or never). */
  requires: (part: PartName) => string | undefined
  open: (config: Config) => Promise<Backend>
}

export function catalogue<Shared> (definition: BackendDefinition<Shared>): BackendCatalogue {
  const never = (part: PartName): string | undefined => {
    const entry = part === 'containers' ? undefined : definition.parts[part]
    return entry instanceof Absent ? entry.why : undefined
  }
  return {
    kind: definition.kind,
    summary: definition.summary,
    offers: part => never(part) === undefined,
    never,
    requires: part => {
      const entry = part === 'containers' ? undefined : definition.parts[part]
      return entry === undefined || entry instanceof Absent ? undefined : entry.requires
    },
    open: async config => await openBackend(definition, config)
  }
}
