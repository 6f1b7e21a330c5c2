// The docker backend's watch-fed copy of its engine (src/engine/copy.ts): every container as inspect
// shows it, the images as the engine lists them, and the named volumes. A session opens the engine's
// events first, then lists and inspects; what changed meanwhile is read again before the copy says
// it is current. After that every event is answered by reading again what it is about (a container's
// inspect, the image list, a volume), one read at a time per object, so the copy never keeps an older
// answer over a newer one. berth's own writes ask for the same reads and wait for them
// (read-your-writes). A broken or ended event stream, an engine that stops answering its pings, or a
// read that fails (other than "gone") ends the session: the copy is not current until the next one
// has listed again, and the parts read from the engine meanwhile.
import type Docker from 'dockerode'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { LABEL_LEASE_FOR, LABEL_EXPIRES_AT } from '../../access/ownership.ts'
import { BerthError } from '../../errors.ts'
import { Refresher, WatchedCopy, matchesLabels, type CopySession } from '../copy.ts'
import { parseImage } from '../image-ref.ts'
import { Inbox } from '../inbox.ts'
import type { Container, ContainerSummary, ListContainersOptions, Volume } from '../types.ts'
import { containerOf, imageSummaryOf } from './mapping.ts'
import { statusLine, type StatusFacts } from './status.ts'
import { withSignal, type DockerTransport } from './transport.ts'

/** A container as the copy keeps it: inspect's answer in berth's words, and what ps and the parts need besides. */
export interface ContainerRecord {
  /** As inspect shows it, without the image digest and a moved expiry: those are laid over at read time. */
  container: Container
  /** The image as it was asked for (Config.Image), and its repository (null for an image id). */
  configImage: string
  repository: string | null
  status: StatusFacts
  /** When it was created, in microseconds (newest first in a list), and as the engine's list gives it (whole seconds). */
  createdMicros: number
  createdAt: string
  /** The named volumes it mounts. */
  volumes: string[]
  tty: boolean
  stopTimeout: number | undefined
}

/** A volume as the copy keeps it: everything but its size and its users, which are found out when asked for. */
export type VolumeRecord = Pick<Volume, 'name' | 'driver' | 'labels' | 'createdAt'>

export interface Lease {
  volume: string
  container: string
  expiresAt: string
  /** When it was written (ms), from its name: the newest wins. */
  written: number
}

export interface DockerCopyOptions {
  /**
   * The containers it holds: those whose labels match every filter (berth's deployment: nothing else is
   * ever shown, and the engine need not be asked about the rest). Every container when absent.
   */
  labels?: string[]
  /** How often the engine is pinged while nothing else is heard from it: a hung engine ends the session. */
  keepAliveMs?: number
  /** How many objects are read at once (a relist inspects every container); 8 by default. */
  concurrency?: number
  retryMs?: { first: number, max: number }
}

/** Container events that change nothing inspect or ps shows. */
const QUIET = new Set(['attach', 'detach', 'exec_create', 'exec_start', 'exec_die', 'exec_detach', 'top', 'export', 'resize', 'copy', 'archive-path', 'extract-to-dir', 'prune'])

export interface RawEvent {
  Type?: string
  Action?: string
  Actor?: { ID?: string, Attributes?: Record<string, string> }
}

export class DockerCopy {
  readonly #transport: DockerTransport
  readonly #copy: WatchedCopy
  readonly #keepAliveMs: number
  readonly #concurrency: number
  readonly #labels: string[]
  /**
   * The deadline of the copy's own reads: longer than a request's, as an inspect waits for whatever
   * else holds the container (a start on a loaded machine takes seconds). A hung engine is found by
   * the pings, which wait for nothing.
   */
  readonly #readTimeoutMs: number
  #containers = new Map<string, ContainerRecord>()
  /** Container name → id. */
  #names = new Map<string, string>()
  #images: Docker.ImageInfo[] = []
  #imagesById = new Map<string, Docker.ImageInfo>()
  /** A reference (normalised) → the image id it names; made when first needed after the images change. */
  #references: Map<string, string> | null = null
  /** Config.Image → the image id the engine resolves it to now (null: none), as ps needs it. */
  readonly #resolved = new Map<string, string | null>()
  #volumes = new Map<string, VolumeRecord>()
  #refresher: Refresher | null = null
  /** The reads events have asked for and that are not done yet. */
  readonly #applying = new Set<Promise<void>>()
  /** Told of every event the copy reads, once it has asked for what the event changed (tests wait on it). */
  readonly #observers = new Set<(event: RawEvent) => void>()

  constructor (transport: DockerTransport, options: DockerCopyOptions = {}) {
    this.#transport = transport
    this.#keepAliveMs = options.keepAliveMs ?? 5000
    this.#concurrency = options.concurrency ?? 8
    this.#readTimeoutMs = transport.timeoutMs * 6
    this.#labels = options.labels ?? []
    this.#copy = new WatchedCopy({
      what: 'the engine\'s containers, images and volumes',
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

  /** Resolves once what every event read so far changed is in the copy (tests compare at such points). */
  async settled (): Promise<void> {
    await Promise.all([...this.#applying])
  }

  /** Calls `listener` with each engine event the copy reads, after it has asked for what changed; returns a function that stops it. */
  observe (listener: (event: { type: string, action: string, id: string }) => void): () => void {
    const wrapped = (event: RawEvent): void => { listener({ type: event.Type ?? '', action: event.Action ?? '', id: event.Actor?.ID ?? '' }) }
    this.#observers.add(wrapped)
    return () => { this.#observers.delete(wrapped) }
  }

  // ---- berth's own writes: each resolves once what it changed is in the copy (at once when the copy is not current)

  async refreshContainer (id: string): Promise<void> {
    await this.#refresher?.request(`c:${id}`)
  }

  async refreshImages (): Promise<void> {
    await this.#refresher?.request('images')
  }

  async refreshVolume (name: string): Promise<void> {
    await this.#refresher?.request(`v:${name}`)
  }

  /**
   * Resolves once what a container event (from another stream of the same engine's events) changed
   * is in the copy: a client told of a stop by berth's event feed then reads it stopped.
   */
  async refreshFor (event: { type: string, action: string, id: string, labels: Record<string, string> }): Promise<void> {
    const action = event.action.split(':')[0]?.trim() ?? ''
    if (event.type !== 'container' || QUIET.has(action) || !matchesLabels(event.labels, this.#labels)) return
    await this.refreshContainer(event.id)
  }

  // ---- reads (only while current: the parts ask the engine otherwise)

  /**
   * Whether a question about containers matching `labels` can be answered from the copy: only when
   * it asks about containers the copy holds (berth's deployment), not about everybody's (the users
   * of a volume, who holds a port), which the engine alone knows.
   */
  covers (labels: readonly string[]): boolean {
    return this.#labels.every(label => labels.includes(label))
  }

  /**
   * A container by full id, name, or unique id prefix, in the engine's order of precedence;
   * undefined when there is none, ambiguous_id when a prefix matches several.
   */
  container (idOrName: string): ContainerRecord | undefined {
    const exact = this.#containers.get(idOrName)
    if (exact !== undefined) return exact
    const named = this.#names.get(idOrName.startsWith('/') ? idOrName.slice(1) : idOrName)
    if (named !== undefined) return this.#containers.get(named)
    if (!/^[a-f0-9]+$/.test(idOrName)) return undefined
    let found: ContainerRecord | undefined
    for (const [id, record] of this.#containers) {
      if (!id.startsWith(idOrName)) continue
      if (found !== undefined) throw new BerthError('ambiguous_id', `${idOrName} matches more than one container; give more of the id`)
      found = record
    }
    return found
  }

  /** docker ps: as the engine would list them now, newest first. A status filter lists every state, as the engine's does. */
  list (options: ListContainersOptions): ContainerSummary[] {
    const now = Date.now()
    const states = options.status ?? []
    const all = options.all || states.length > 0
    const labels = options.labels ?? []
    const chosen: ContainerRecord[] = []
    for (const record of this.#containers.values()) {
      const container = record.container
      // Paused and restarting containers are running containers to the engine's list.
      if (!all && !record.status.running) continue
      if (states.length > 0 && !states.includes(container.state)) continue
      if (options.name !== undefined && container.name !== options.name) continue
      if (labels.length > 0 && !matchesLabels(container.labels, labels)) continue
      chosen.push(record)
    }
    chosen.sort((a, b) => b.createdMicros - a.createdMicros)
    return chosen.map(record => this.summaryOf(record, now))
  }

  /** A container as the engine's list shows it at `now`. */
  summaryOf (record: ContainerRecord, now: number): ContainerSummary {
    const container = record.container
    return {
      id: container.id,
      name: container.name,
      image: this.#listedImage(record),
      imageId: container.imageId,
      command: container.command,
      state: container.state,
      status: statusLine(record.status, now),
      createdAt: record.createdAt,
      // The list has only the bindings with a host port.
      ports: container.ports.filter(port => port.host !== null && port.host !== 0),
      labels: container.labels
    }
  }

  /** Every container it holds. */
  containers (): IterableIterator<ContainerRecord> {
    return this.#containers.values()
  }

  /** The repo digests of an image ([] for an image the engine does not list, or has none). */
  imageDigests (imageId: string): string[] {
    return (this.#imagesById.get(imageId)?.RepoDigests ?? []).filter(digest => !digest.startsWith('<none>@'))
  }

  /** docker images, as the engine listed them after the last change, less `dangling` and label filters. */
  images (options: { dangling?: boolean, labels?: string[] }): ReturnType<typeof imageSummaryOf>[] {
    const labels = options.labels ?? []
    return this.#images.filter(image => {
      const tagged = (image.RepoTags ?? []).some(tag => tag !== '<none>:<none>')
      const digested = (image.RepoDigests ?? []).some(digest => !digest.startsWith('<none>@'))
      // As the engine's filter: dangling means no tag; not dangling means some tag or digest.
      if (options.dangling === true && tagged) return false
      if (options.dangling === false && !tagged && !digested) return false
      return labels.length === 0 || matchesLabels(image.Labels ?? {}, labels)
    }).map(imageSummaryOf)
  }

  volume (name: string): VolumeRecord | undefined {
    return this.#volumes.get(name)
  }

  volumes (): IterableIterator<VolumeRecord> {
    return this.#volumes.values()
  }

  /** The moved ends of containers' expiry, kept in labelled volumes (src/engine/docker/expiry.ts), among those matching `labels`. */
  leases (labels: string[] = []): Lease[] {
    const leases: Lease[] = []
    for (const volume of this.#volumes.values()) {
      const container = volume.labels[LABEL_LEASE_FOR]
      const expiresAt = volume.labels[LABEL_EXPIRES_AT]
      if (container === undefined || expiresAt === undefined || !matchesLabels(volume.labels, labels)) continue
      leases.push({ volume: volume.name, container, expiresAt, written: Number(/-(\d+)$/.exec(volume.name)?.[1]) })
    }
    return leases
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
    const refresher = new Refresher(async key => { await this.#read(key, local.signal) }, { concurrency: this.#concurrency, failed: fail })
    const keepAlive = this.#keepAlive(local.signal, fail)
    try {
      // The events first: a change made while the list is read is then among the events that follow.
      const stream = await this.#transport.openStream({ subject: 'engine', target: 'events', signal: local.signal },
        (docker, streamSignal) => docker.getEvents({ filters: { type: ['container', 'image', 'volume', 'network'] }, abortSignal: streamSignal } as Docker.GetEventsOptions))
      const inbox = new Inbox<RawEvent>()
      readEvents(stream, inbox).catch(fail)
      await this.#load(local.signal)
      if (failure !== null) throw failure
      this.#refresher = refresher
      // What changed while the list was read is read again before anybody reads the copy.
      await Promise.all(inbox.drain().map(event => this.#apply(event, refresher)))
      if (failure !== null) throw failure
      synced()
      for (let event = await inbox.take(); event !== undefined; event = await inbox.take()) {
        this.#apply(event, refresher).catch(() => {})
      }
      if (failure !== null) throw failure
      if (!signal.aborted) throw new BerthError('engine_unavailable', 'the engine ended its event stream (it may be restarting)', {}, { headers: { 'retry-after': '5' } })
    } finally {
      this.#refresher = null
      refresher.close()
      local.abort()
      signal.removeEventListener('abort', stop)
      await keepAlive
    }
  }

  /** Pings the engine while the session lasts: the events stream of a hung engine stays open and says nothing. */
  async #keepAlive (signal: AbortSignal, fail: (error: unknown) => void): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(this.#keepAliveMs, undefined, { signal })
      } catch {
        return
      }
      try {
        await this.#transport.info()
      } catch (error) {
        fail(error)
        return
      }
    }
  }

  /** Asks for what an event changed; resolves once it is in the copy. */
  async #apply (event: RawEvent, refresher: Refresher): Promise<void> {
    const applied = Promise.all(this.#keysOf(event).map(key => refresher.request(key))).then(() => {})
    this.#applying.add(applied)
    for (const observer of this.#observers) observer(event)
    try {
      await applied
    } finally {
      this.#applying.delete(applied)
    }
  }

  /** Lists and inspects everything, then puts it in place of what was held. */
  async #load (signal: AbortSignal): Promise<void> {
    const [listed, images, volumes] = await Promise.all([
      this.#transport.call({ subject: 'container', target: 'containers', signal, timeoutMs: this.#readTimeoutMs }, (docker, callSignal) => docker.listContainers({ all: true, filters: { label: this.#labels }, abortSignal: callSignal })),
      this.#listImages(signal),
      this.#transport.call({ subject: 'volume', target: 'volumes', signal, timeoutMs: this.#readTimeoutMs }, (docker, callSignal) => docker.listVolumes(withSignal(callSignal)))
    ])
    const containers = new Map<string, ContainerRecord>()
    const queue = listed.map(container => container.Id)
    await Promise.all(Array.from({ length: this.#concurrency }, async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        const info = await this.#inspect(id, signal)
        if (info !== null && this.#holds(info)) containers.set(id, recordOf(info))
      }
    }))
    if (signal.aborted) return
    this.#containers = containers
    this.#names = new Map([...containers.values()].map(record => [record.container.name, record.container.id]))
    this.#setImages(images)
    this.#volumes = new Map((volumes.Volumes ?? []).map(volume => [volume.Name, volumeRecordOf(volume)]))
  }

  /** Reads one object again and puts the answer in the copy (unless the session ended meanwhile). */
  async #read (key: string, signal: AbortSignal): Promise<void> {
    if (key === 'images') {
      const images = await this.#listImages(signal)
      if (!signal.aborted) this.#setImages(images)
      return
    }
    const name = key.slice(2)
    if (key.startsWith('c:')) {
      const info = await this.#inspect(name, signal)
      if (signal.aborted) return
      if (info === null || !this.#holds(info)) this.#forgetContainer(name)
      else this.#setContainer(recordOf(info))
      return
    }
    const volume = await this.#transport.call({ subject: 'volume', target: name, signal, timeoutMs: this.#readTimeoutMs }, (docker, callSignal) => docker.getVolume(name).inspect(withSignal(callSignal)))
      .catch((error: unknown) => {
        if (error instanceof BerthError && error.code === 'not_found') return null
        throw error
      })
    if (signal.aborted) return
    if (volume === null) this.#volumes.delete(name)
    else this.#volumes.set(name, volumeRecordOf(volume))
  }

  async #inspect (id: string, signal: AbortSignal): Promise<Docker.ContainerInspectInfo | null> {
    try {
      return await this.#transport.call({ subject: 'container', target: id, signal, timeoutMs: this.#readTimeoutMs }, (docker, callSignal) => docker.getContainer(id).inspect({ abortSignal: callSignal }))
    } catch (error) {
      // Gone (removed since it was listed or since the event): the copy forgets it.
      if (error instanceof BerthError && error.code === 'not_found') return null
      throw error
    }
  }

  async #listImages (signal: AbortSignal): Promise<Docker.ImageInfo[]> {
    return await this.#transport.call({ subject: 'image', target: 'images', signal, timeoutMs: this.#readTimeoutMs }, (docker, callSignal) => docker.listImages({ abortSignal: callSignal }))
  }

  /** Whether a container is one the copy holds. */
  #holds (info: Docker.ContainerInspectInfo): boolean {
    return matchesLabels(info.Config.Labels ?? {}, this.#labels)
  }

  /** What an event asks to be read again. */
  #keysOf (event: RawEvent): string[] {
    const id = event.Actor?.ID ?? ''
    const attributes = event.Actor?.Attributes ?? {}
    const action = (event.Action ?? '').split(':')[0]?.trim() ?? ''
    switch (event.Type) {
      case 'container': {
        // A commit makes an image, whoever's container it was.
        const images = action === 'commit' ? ['images'] : []
        // A container event carries the container's labels: one the copy does not hold is none of its business.
        if (id === '' || QUIET.has(action) || !matchesLabels(attributes, this.#labels)) return images
        return [`c:${id}`, ...images]
      }
      case 'image':
        return ['images']
      case 'volume':
        return id !== '' && (action === 'create' || action === 'destroy') ? [`v:${id}`] : []
      case 'network': {
        const container = attributes.container
        return container !== undefined && this.#containers.has(container) && (action === 'connect' || action === 'disconnect') ? [`c:${container}`] : []
      }
      default:
        return []
    }
  }

  #setContainer (record: ContainerRecord): void {
    const id = record.container.id
    const held = this.#containers.get(id)
    if (held !== undefined && held.container.name !== record.container.name && this.#names.get(held.container.name) === id) this.#names.delete(held.container.name)
    this.#containers.set(id, record)
    this.#names.set(record.container.name, id)
  }

  #forgetContainer (id: string): void {
    const held = this.#containers.get(id)
    if (held === undefined) return
    this.#containers.delete(id)
    if (this.#names.get(held.container.name) === id) this.#names.delete(held.container.name)
  }

  #setImages (images: Docker.ImageInfo[]): void {
    this.#images = images
    this.#imagesById = new Map(images.map(image => [image.Id, image]))
    this.#references = null
    this.#resolved.clear()
  }

  /**
   * The image as the engine's list names it: the reference it was run with while that still names the
   * image it runs, its id once the reference names another image or none (moby's refreshImage).
   */
  #listedImage (record: ContainerRecord): string {
    const imageId = record.container.imageId
    if (record.configImage === imageId) return imageId
    let resolved = this.#resolved.get(record.configImage)
    if (resolved === undefined) {
      resolved = this.#resolve(record.configImage)
      this.#resolved.set(record.configImage, resolved)
    }
    return resolved === imageId ? record.configImage : imageId
  }

  /** The id of the image a reference or id (prefix) names, as the engine's image lookup finds it; null for none. */
  #resolve (reference: string): string | null {
    const full = /^(?:sha256:)?([a-f0-9]{64})$/.exec(reference)
    if (full !== null) return this.#imagesById.has(`sha256:${full[1]}`) ? `sha256:${full[1]}` : null
    const parsed = parseImage(reference)
    if (typeof parsed !== 'string' && parsed.kind === 'ref') {
      const id = this.#referenceIndex().get(referenceKey(parsed.ref))
      if (id !== undefined) return id
    }
    // Last, an id prefix that names one image only.
    const prefix = /^(?:sha256:)?([a-f0-9]+)$/.exec(reference)?.[1]
    if (prefix === undefined) return null
    let found: string | null = null
    for (const id of this.#imagesById.keys()) {
      if (!id.startsWith(`sha256:${prefix}`)) continue
      if (found !== null) return null
      found = id
    }
    return found
  }

  #referenceIndex (): Map<string, string> {
    if (this.#references !== null) return this.#references
    const index = new Map<string, string>()
    for (const image of this.#images) {
      for (const name of [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])]) {
        const parsed = parseImage(name)
        if (typeof parsed !== 'string' && parsed.kind === 'ref') index.set(referenceKey(parsed.ref), image.Id)
      }
    }
    this.#references = index
    return index
  }
}

/** A reference as the engine's reference store keys it: by digest when it has one, else by tag (latest when none). */
function referenceKey (ref: { name: string, tag: string | undefined, digest: string | undefined }): string {
  return ref.digest !== undefined ? `${ref.name}@${ref.digest}` : `${ref.name}:${ref.tag ?? 'latest'}`
}

export function recordOf (info: Docker.ContainerInspectInfo): ContainerRecord {
  const container = containerOf(info, [])
  const parsed = parseImage(info.Config.Image)
  const state = info.State
  const createdMs = Date.parse(info.Created)
  // Sub-millisecond digits of RFC 3339 nanoseconds (…:05.123456789Z), to order containers made in one millisecond.
  const fraction = /\.(\d+)/.exec(info.Created)?.[1] ?? ''
  const micros = createdMs * 1000 + Number((fraction.slice(3, 6) || '0').padEnd(3, '0'))
  return {
    container,
    configImage: info.Config.Image,
    repository: typeof parsed === 'string' || parsed.kind === 'id' ? null : parsed.ref.repository,
    status: {
      running: state.Running,
      paused: state.Paused,
      restarting: state.Restarting,
      dead: state.Dead,
      removing: state.Status === 'removing',
      startedAt: state.StartedAt,
      finishedAt: state.FinishedAt,
      exitCode: state.ExitCode,
      health: state.Health?.Status ?? null
    },
    createdMicros: micros,
    createdAt: new Date(Math.floor(createdMs / 1000) * 1000).toISOString(),
    volumes: (info.Mounts ?? []).flatMap(mount => mount.Type === 'volume' && mount.Name !== undefined && mount.Name !== '' ? [mount.Name] : []),
    tty: info.Config.Tty,
    stopTimeout: (info.Config as { StopTimeout?: number }).StopTimeout
  }
}

function volumeRecordOf (volume: Docker.VolumeInspectInfo & { CreatedAt?: string }): VolumeRecord {
  return { name: volume.Name, driver: volume.Driver, labels: volume.Labels ?? {}, createdAt: volume.CreatedAt ?? null }
}

/** The engine's events, one JSON object a line, into the inbox; the inbox is closed when the stream ends. */
export async function readEvents (stream: Readable, inbox: Inbox<RawEvent>): Promise<void> {
  let pending = ''
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending += chunk.toString('utf8')
      for (let newline = pending.indexOf('\n'); newline !== -1; newline = pending.indexOf('\n')) {
        const line = pending.slice(0, newline).trim()
        pending = pending.slice(newline + 1)
        if (line === '') continue
        try {
          inbox.push(JSON.parse(line) as RawEvent)
        } catch {
          // Not an event: nothing to read again.
        }
      }
    }
  } catch (error) {
    throw new BerthError('engine_unavailable', `the engine's event stream broke: ${(error as Error).message}`, {}, { cause: error, headers: { 'retry-after': '5' } })
  } finally {
    inbox.close()
    stream.destroy()
  }
}
