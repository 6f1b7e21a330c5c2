// The Docker implementation of berth's Engine: the only module that talks to dockerode. It
// negotiates the API version, bounds every call with its own deadline, and hides the engine's
// quirks (304 on start/stop, pulls that fail inside a 200 stream, create that never pulls).
// Before dockerode: keeps the transports berth never uses from loading (see the module).
import './unused-transports.ts'
import Docker from 'dockerode'
import type { IncomingMessage } from 'node:http'
import type { RegistryCredentials } from '../config.ts'
import { BerthError } from '../errors.ts'
import { parseImage, type ImageRef } from '../image-ref.ts'
import { isConnectionFailure, mapEngineError, type Subject } from './docker-errors.ts'
import { engineTime, layerProgress, parseCursor, readEventStream, readLogStream } from './docker-streams.ts'
import { readPullStream } from './pull-stream.ts'
import { PortConflictError } from './types.ts'
import type {
  Volume, Container, ContainerState, ContainerSummary, Engine, EngineEvent, EngineInfo, EventsOptions, Image, ImageRemoval, ImageSummary,
  ListContainersOptions, ListImagesOptions, LogEntry, LogOptions, PortBinding, Protocol, PulledImage, PullOptions, RestartPolicy,
  RunSpec, StateChange
} from './types.ts'

/** The newest API version berth is written against; older engines down to MIN_API are spoken to in their own version. */
export const MAX_API = '1.47'
export const MIN_API = '1.40'
/** How many ports of a host port range a run tries before it answers port_conflict. */
const MAX_RANGE_ATTEMPTS = 16
/** How long a container inspect reuses its image's digests; see #imageDigests. */
export const DIGEST_TTL_MS = 5000
const MAX_CACHED_DIGESTS = 1000

export interface DockerEngineOptions {
  socketPath: string
  timeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
}

interface CallOptions {
  subject: Subject
  target: string
  /** Overrides the per-call deadline (stop waits for the container's own grace period). */
  timeoutMs?: number
  signal?: AbortSignal
}

export class DockerEngine implements Engine {
  readonly #options: DockerEngineOptions
  #docker: Docker | null = null
  #info: EngineInfo | null = null
  #connecting: Promise<Docker> | null = null
  /** Image digests by image id, reused for a few seconds by container inspects (see #imageDigests). */
  readonly #digests = new Map<string, { digests: string[], expires: number }>()
  #digestsGeneration = 0

  constructor (options: DockerEngineOptions) {
    this.#options = options
  }

  async info (): Promise<EngineInfo> {
    // Always asks the engine: this is what /readyz uses to tell whether the engine is there now.
    await this.#call({ subject: 'engine', target: 'engine' }, (docker, signal) => (docker.ping as (options: object) => Promise<unknown>)(withSignal(signal)))
    return this.#info as EngineInfo
  }

  async pullImage (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    const auth = toAuthConfig(options.auth ?? this.#options.registryAuth?.[ref.registry], ref.registry)
    let stream: IncomingMessage
    try {
      // The engine answers once the registry served the manifest; the deadline covers only that.
      stream = await this.#openStream({ subject: 'image', target: ref.reference, ...(options.signal ? { signal: options.signal } : {}) },
        (docker, signal) => docker.createImage({
          fromImage: ref.repository,
          // A tag or a digest, never empty: an empty tag would make the engine pull every tag.
          tag: ref.digest ?? ref.tag ?? 'latest',
          ...(options.platform ? { platform: options.platform } : {}),
          ...(auth ? { authconfig: auth } : {}),
          abortSignal: signal
        }))
    } catch (error) {
      throw this.#pullError(error, ref)
    }
    const onProgress = options.onProgress
    onProgress?.({ kind: 'started' })
    const result = await readPullStream(stream, options.signal, onProgress === undefined
      ? undefined
      : (line) => {
          const layer = layerProgress(line)
          if (layer !== null) onProgress({ kind: 'layer', layer })
        })
    if (result.error !== null) {
      throw new BerthError('pull_failed', `pulling ${ref.reference} failed: ${result.error}`, { image: ref.reference })
    }
    this.#forgetDigests()
    const image = await this.inspectImage(ref.reference)
    const digest = result.digest ?? digestFromRepoDigests(image.digests, ref.repository)
    return { id: image.id, reference: ref.reference, digest, tags: image.tags }
  }

  async listImages (options: ListImagesOptions): Promise<ImageSummary[]> {
    const filters: Record<string, string[]> = {}
    if (options.reference) filters.reference = [options.reference]
    if (options.dangling !== undefined) filters.dangling = [String(options.dangling)]
    if (options.labels?.length) filters.label = options.labels
    const images = await this.#call({ subject: 'image', target: 'images' },
      (docker, signal) => docker.listImages({ filters, abortSignal: signal }))
    return images.map(image => ({
      id: image.Id,
      tags: realTags(image.RepoTags),
      digests: realDigests(image.RepoDigests),
      createdAt: new Date(image.Created * 1000).toISOString(),
      size: image.Size,
      labels: image.Labels ?? {}
    }))
  }

  async inspectImage (reference: string): Promise<Image> {
    const image = await this.#call({ subject: 'image', target: reference },
      (docker, signal) => docker.getImage(reference).inspect(withSignal(signal)))
    return {
      id: image.Id,
      tags: realTags(image.RepoTags),
      digests: realDigests(image.RepoDigests),
      createdAt: new Date(image.Created).toISOString(),
      size: image.Size,
      labels: image.Config?.Labels ?? {},
      architecture: image.Architecture,
      os: image.Os
    }
  }

  async removeImage (reference: string, options: { force: boolean }): Promise<ImageRemoval> {
    const result = await this.#call({ subject: 'image', target: reference },
      (docker, signal) => docker.getImage(reference).remove({ force: options.force, abortSignal: signal })) as Array<{ Untagged?: string, Deleted?: string }>
    this.#forgetDigests()
    return {
      untagged: result.flatMap(entry => entry.Untagged === undefined ? [] : [entry.Untagged]),
      deleted: result.flatMap(entry => entry.Deleted === undefined ? [] : [entry.Deleted])
    }
  }

  async listContainers (options: ListContainersOptions): Promise<ContainerSummary[]> {
    const filters: Record<string, string[]> = {}
    if (options.status?.length) filters.status = options.status
    if (options.labels?.length) filters.label = options.labels
    // The engine's name filter is an unanchored regular expression over "/name": anchor it for an exact match.
    if (options.name) filters.name = [`^/${options.name.replace(/[.]/g, '\\.')}$`]
    const containers = await this.#call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: options.all, filters, abortSignal: signal }))
    return containers.map(container => ({
      id: container.Id,
      name: (container.Names[0] ?? '').replace(/^\//, ''),
      image: container.Image,
      imageId: container.ImageID,
      command: container.Command,
      state: container.State as ContainerState,
      status: container.Status,
      createdAt: new Date(container.Created * 1000).toISOString(),
      ports: dedupePorts(container.Ports.flatMap(port => port.PublicPort === undefined
        ? []
        : [{ container: port.PrivatePort, host: port.PublicPort, protocol: port.Type as Protocol, hostIp: port.IP ?? '' }])),
      labels: container.Labels ?? {}
    }))
  }

  async inspectContainer (idOrName: string): Promise<Container> {
    const info = await this.#call({ subject: 'container', target: idOrName },
      (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
    const digests = await this.#imageDigests(info.Image)
    const configured = parseImage(info.Config.Image)
    const repository = typeof configured === 'string' || configured.kind === 'id' ? null : configured.ref.repository
    const pinned = pinnedReference(digests, repository)
    const state = info.State
    const hostConfig = info.HostConfig
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      image: info.Config.Image,
      imageId: info.Image,
      imageDigest: pinned?.split('@')[1] ?? null,
      command: [info.Path, ...info.Args],
      state: state.Status as ContainerState,
      running: state.Running,
      exitCode: state.Status === 'exited' || state.Status === 'dead' ? state.ExitCode : null,
      createdAt: info.Created,
      startedAt: zeroTime(state.StartedAt),
      finishedAt: zeroTime(state.FinishedAt),
      ports: portsOf(info),
      labels: info.Config.Labels ?? {},
      restart: {
        policy: (hostConfig.RestartPolicy?.Name || 'no') as RestartPolicy,
        maxRetries: hostConfig.RestartPolicy?.MaximumRetryCount ?? 0
      },
      resources: {
        memory: hostConfig.Memory ? hostConfig.Memory : null,
        cpus: hostConfig.NanoCpus ? hostConfig.NanoCpus / 1e9 : null
      },
      autoRemove: hostConfig.AutoRemove ?? false
    }
  }

  async run (spec: RunSpec): Promise<Container> {
    const imageName = spec.image.kind === 'id' ? spec.image.id : spec.image.ref.reference
    if (spec.pull === 'always' && spec.image.kind === 'ref') {
      await this.pullImage(spec.image.ref, { auth: spec.auth })
    }
    const body = createBody(spec, imageName)
    // A port the engine picked from a range can be held by a plain process it did not know of,
    // or taken by a run racing this one: the engine moves on through the range on the next try.
    const ranged = spec.ports.some(port => port.hostRange !== undefined)
    const attempts = ranged ? Math.min(MAX_RANGE_ATTEMPTS, ...spec.ports.flatMap(port => port.hostRange ? [port.hostRange.max - port.hostRange.min + 1] : [])) : 1
    for (let attempt = 1; ; attempt++) {
      const id = await this.#createPulling(spec, body, imageName)
      try {
        await this.#call({ subject: 'container', target: spec.name ?? id },
          (docker, signal) => docker.getContainer(id).start({ abortSignal: signal }))
      } catch (error) {
        // A failed start leaves the container in "created": remove it, so a failed run leaves nothing behind.
        await this.#discard(id)
        if (!(error instanceof PortConflictError)) throw error
        if (ranged && error.port !== null && attempt < attempts) continue
        throw await this.#withHolder(error)
      }
      try {
        return await this.inspectContainer(id)
      } catch (error) {
        // With autoRemove a container that exits at once can be gone before it is inspected: it ran.
        if (!(spec.autoRemove && error instanceof BerthError && error.code === 'not_found')) throw error
        return removedContainer(id, spec, imageName)
      }
    }
  }

  async #createPulling (spec: RunSpec, body: Record<string, unknown>, imageName: string): Promise<string> {
    try {
      return await this.#create(body, spec.name)
    } catch (error) {
      // Create never pulls: a missing image is pulled here (pull: missing) and the create tried once more.
      if (!(error instanceof BerthError && error.code === 'image_not_found')) throw error
      if (spec.pull === 'never' || spec.image.kind === 'id') {
        throw new BerthError('image_not_found', `image ${imageName} is not on the engine and pull is "${spec.pull}"`, { image: imageName })
      }
      await this.pullImage(spec.image.ref, { auth: spec.auth })
      return await this.#create(body, spec.name)
    }
  }

  async startContainer (id: string): Promise<StateChange> {
    return await this.#stateChange({ subject: 'container', target: id },
      (docker, signal) => docker.getContainer(id).start({ abortSignal: signal }))
  }

  async stopContainer (id: string, options: { timeout?: number }): Promise<StateChange> {
    return await this.#stateChange({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout) },
      (docker, signal) => docker.getContainer(id).stop({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
  }

  async restartContainer (id: string, options: { timeout?: number }): Promise<StateChange> {
    await this.#call({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout) },
      (docker, signal) => docker.getContainer(id).restart({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
    return { changed: true }
  }

  async removeContainer (id: string, options: { force: boolean, volumes: boolean }): Promise<void> {
    await this.#call({ subject: 'container', target: id },
      (docker, signal) => docker.getContainer(id).remove({ force: options.force, v: options.volumes, abortSignal: signal }))
  }

  async inspectVolume (name: string): Promise<Volume> {
    const volume = await this.#call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).inspect(withSignal(signal)))
    return volumeOf(volume)
  }

  async createVolume (name: string, labels: Record<string, string>): Promise<Volume> {
    // The engine answers with the volume; dockerode hands back only a handle to it.
    await this.#call({ subject: 'volume', target: name },
      (docker, signal) => docker.createVolume({ Name: name, Labels: labels, abortSignal: signal } as Docker.VolumeCreateOptions))
    return await this.inspectVolume(name)
  }

  async removeVolume (name: string): Promise<void> {
    await this.#call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).remove(withSignal(signal)))
  }

  async containerLogs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const target = { subject: 'container' as const, target: idOrName, ...(options.signal ? { signal: options.signal } : {}) }
    // Only the container knows whether its output comes framed (no TTY) or raw (TTY).
    const info = await this.#call(target, (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
    const query = {
      follow: options.follow,
      stdout: true,
      stderr: true,
      timestamps: options.timestamps,
      tail: options.tail === undefined ? 'all' : String(options.tail),
      ...(options.since === undefined ? {} : { since: engineTime(options.since) }),
      ...(options.until === undefined ? {} : { until: engineTime(options.until) })
    }
    // dockerode buffers a log that is not followed whole into memory: berth always reads it as a stream.
    const stream = await this.#openStream(target, (docker, signal) => new Promise((resolve, reject) => {
      docker.modem.dial({
        path: `/containers/${encodeURIComponent(info.Id)}/logs?`,
        method: 'GET',
        options: query,
        isStream: true,
        abortSignal: signal,
        statusCodes: { 200: true, 404: 'no such container', 500: 'server error', 501: 'not implemented' }
      }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data))
    }))
    return readLogStream(stream, { tty: info.Config.Tty, timestamps: options.timestamps, ...(options.signal ? { signal: options.signal } : {}) })
  }

  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    const after = options.after === undefined ? null : parseCursor(options.after)
    if (options.after !== undefined && after === null) {
      throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
    }
    const since = after !== null ? engineTime(after.nanos) : options.since === undefined ? undefined : engineTime(BigInt(options.since.getTime()) * 1_000_000n)
    const stream = await this.#openStream({ subject: 'engine', target: 'events', ...(options.signal ? { signal: options.signal } : {}) },
      (docker, signal) => docker.getEvents({ ...(since === undefined ? {} : { since }), filters: { type: ['container', 'image'] }, abortSignal: signal } as Docker.GetEventsOptions))
    return readEventStream(stream, after, options.signal)
  }

  async close (): Promise<void> {
    this.#docker = null
  }

  /**
   * Opens a long-lived response from the engine. The per-call deadline covers only the setup (until the
   * engine answers); after that only the caller's signal ends the stream, and with it the connection.
   */
  async #openStream (options: CallOptions, open: (docker: Docker, signal: AbortSignal) => Promise<unknown>): Promise<IncomingMessage> {
    const docker = await this.#client()
    const connection = new AbortController()
    const cancel = (): void => { connection.abort(options.signal?.reason) }
    options.signal?.addEventListener('abort', cancel, { once: true })
    if (options.signal?.aborted) cancel()
    const deadline = setTimeout(() => { connection.abort(new DOMException('the engine did not answer in time', 'TimeoutError')) }, this.#options.timeoutMs)
    try {
      const stream = await open(docker, connection.signal) as IncomingMessage
      stream.once('close', () => options.signal?.removeEventListener('abort', cancel))
      return stream
    } catch (error) {
      options.signal?.removeEventListener('abort', cancel)
      if (options.signal?.aborted) throw options.signal.reason
      if (isConnectionFailure(error)) this.#docker = null
      throw mapEngineError(error, options.subject, options.target, this.#options.timeoutMs)
    } finally {
      clearTimeout(deadline)
    }
  }

  /**
   * The repo digests of an image, for the digest a container inspect reports. Asking the engine
   * costs a second round trip on every inspect (and inspects follow every run, start and stop), so
   * the answer is reused for DIGEST_TTL_MS. An image id names fixed content; only the list of
   * digests can change, by a pull, push or removal: those made through berth clear the cache at
   * once, those made beside it (with the Docker CLI) show within the TTL.
   */
  async #imageDigests (imageId: string): Promise<string[]> {
    const now = Date.now()
    const cached = this.#digests.get(imageId)
    if (cached !== undefined && cached.expires > now) return cached.digests
    const generation = this.#digestsGeneration
    let digests: string[] = []
    try {
      digests = (await this.inspectImage(imageId)).digests
    } catch (error) {
      // The image may have been removed (force) while the container lives on: it still is a container.
      if (!(error instanceof BerthError && error.code === 'image_not_found')) throw error
    }
    // A pull or removal that finished meanwhile makes this answer possibly old: use it, do not keep it.
    if (generation === this.#digestsGeneration) {
      if (this.#digests.size >= MAX_CACHED_DIGESTS) this.#digests.clear()
      this.#digests.set(imageId, { digests, expires: now + DIGEST_TTL_MS })
    }
    return digests
  }

  #forgetDigests (): void {
    this.#digestsGeneration++
    this.#digests.clear()
  }

  // A stop waits up to the container's grace period before the engine kills it; the deadline must outlast it.
  #graceDeadline (timeout: number | undefined): number {
    return this.#options.timeoutMs + (timeout ?? 10) * 1000
  }

  async #create (body: Record<string, unknown>, name: string | undefined): Promise<string> {
    // _query/_body keep the create options out of the URL: docker-modem would otherwise copy
    // all of them, env values included, into the query string.
    const created = await this.#call({ subject: 'image', target: String(body.Image) },
      (docker, signal) => docker.createContainer({ _query: name === undefined ? {} : { name }, _body: body, abortSignal: signal } as never))
      .catch((error: unknown) => {
        if (error instanceof BerthError && error.code === 'name_conflict') {
          throw new BerthError('name_conflict', `the container name ${name} is already in use`, { name })
        }
        throw error
      })
    return created.id
  }

  async #discard (id: string): Promise<void> {
    try {
      await this.removeContainer(id, { force: true, volumes: true })
    } catch (error) {
      // Already gone (autoRemove) is the outcome we wanted.
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    }
  }

  /** Finds the running container that holds the port, when one does (it may be a plain process). */
  async #withHolder (error: PortConflictError): Promise<PortConflictError> {
    const port = error.port
    if (port === null) return error
    const running = await this.listContainers({ all: false })
    const holder = running.find(container => container.ports.some(binding => binding.host === port))
    if (holder === undefined) return error
    return new PortConflictError(port, { id: holder.id, name: holder.name, labels: holder.labels }, undefined, error)
  }

  #pullError (error: unknown, ref: ImageRef): BerthError {
    const mapped = mapEngineError(error, 'image', ref.reference, this.#options.timeoutMs)
    if (mapped.code === 'engine_error' || mapped.code === 'validation_failed') {
      const message = mapped.message.replace(/^the engine (answered \d+|rejected the request): /, '')
      return new BerthError('pull_failed', `pulling ${ref.reference} failed: ${message}`, { image: ref.reference, reason: pullFailureReason(message) }, { cause: error })
    }
    return mapped
  }

  async #stateChange (options: CallOptions, fn: (docker: Docker, signal: AbortSignal) => Promise<unknown>): Promise<StateChange> {
    try {
      await this.#call(options, fn)
      return { changed: true }
    } catch (error) {
      // 304: already in the state asked for. dockerode calls it an error; it is a success that changed nothing.
      if (error instanceof BerthError && error.extensions.engineStatus === 304) return { changed: false }
      throw error
    }
  }

  async #client (): Promise<Docker> {
    if (this.#docker !== null) return this.#docker
    this.#connecting ??= this.#negotiate().finally(() => { this.#connecting = null })
    return await this.#connecting
  }

  // dockerode pins no version by itself; ask the engine which one it speaks and use the lower of the two.
  async #negotiate (): Promise<Docker> {
    const probe = new Docker({ socketPath: this.#options.socketPath })
    let version: Docker.DockerVersion
    try {
      version = await (probe.version as (options: object) => Promise<Docker.DockerVersion>)(withSignal(AbortSignal.timeout(this.#options.timeoutMs)))
    } catch (error) {
      throw mapEngineError(error, 'engine', 'engine', this.#options.timeoutMs)
    }
    const apiVersion = compareVersions(version.ApiVersion, MAX_API) < 0 ? version.ApiVersion : MAX_API
    if (compareVersions(apiVersion, MIN_API) < 0) {
      throw new BerthError('engine_unavailable', `the engine speaks API ${version.ApiVersion}; berth needs ${MIN_API} or newer`)
    }
    this.#info = { version: version.Version, apiVersion, os: version.Os, arch: version.Arch }
    this.#docker = new Docker({ socketPath: this.#options.socketPath, version: `v${apiVersion}` })
    return this.#docker
  }

  async #call<T> (options: CallOptions, fn: (docker: Docker, signal: AbortSignal) => Promise<T>): Promise<T> {
    const docker = await this.#client()
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs
    // A deadline cleared as soon as the call ends: AbortSignal.timeout would keep its timer and
    // signal alive for the whole timeout after every call, which under load fills the old generation.
    const deadline = new AbortController()
    const timer = setTimeout(() => deadline.abort(), timeoutMs)
    const signal = options.signal ? AbortSignal.any([deadline.signal, options.signal]) : deadline.signal
    try {
      return await fn(docker, signal)
    } catch (error) {
      // The engine went away: negotiate again when it is back, it may have been upgraded meanwhile.
      if (isConnectionFailure(error)) this.#docker = null
      throw mapEngineError(error, options.subject, options.target, timeoutMs)
    } finally {
      clearTimeout(timer)
    }
  }
}

// dockerode 5 takes an abortSignal on every call; @types/dockerode (written for 4) does not know it on all of them.
function withSignal (signal: AbortSignal): Record<string, never> {
  return { abortSignal: signal } as unknown as Record<string, never>
}

export interface PullLine {
  status?: string
  id?: string
  progressDetail?: { current?: number, total?: number }
}

function createBody (spec: RunSpec, image: string): Record<string, unknown> {
  const exposed: Record<string, object> = {}
  const bindings: Record<string, Array<{ HostIp: string, HostPort: string }>> = {}
  for (const port of spec.ports) {
    const key = `${port.container}/${port.protocol}`
    exposed[key] = {}
    // The engine wants the host port as a string; "" asks it to choose a free one.
    const hostPort = port.host !== undefined ? String(port.host) : port.hostRange ? `${port.hostRange.min}-${port.hostRange.max}` : ''
    ;(bindings[key] ??= []).push({ HostIp: port.hostIp ?? '', HostPort: hostPort })
  }
  // Binds, not Mounts, for host paths: the engine then creates a token's missing directory
  // (Mounts refuses a missing source); policy has made sure the path holds no ':'.
  const binds = spec.mounts.filter(mount => mount.type === 'bind').map(mount => `${mount.source}:${mount.target}:${mount.readOnly ? 'ro' : 'rw'}`)
  return {
    Image: image,
    ...(spec.command ? { Cmd: spec.command } : {}),
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
    ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
    ...(spec.user ? { User: spec.user } : {}),
    ...(spec.tty ? { Tty: true } : {}),
    Labels: spec.labels,
    // Without ExposedPorts the engine publishes nothing, whatever PortBindings say.
    ExposedPorts: exposed,
    HostConfig: {
      PortBindings: bindings,
      RestartPolicy: { Name: spec.restart.policy === 'no' ? '' : spec.restart.policy, MaximumRetryCount: spec.restart.maxRetries ?? 0 },
      ...(spec.memory ? { Memory: spec.memory } : {}),
      ...(spec.cpus ? { NanoCpus: Math.round(spec.cpus * 1e9) } : {}),
      AutoRemove: spec.autoRemove,
      ...(binds.length > 0 ? { Binds: binds } : {}),
      Mounts: spec.mounts.filter(mount => mount.type === 'volume').map(mount => ({ Type: 'volume', Source: mount.source, Target: mount.target, ReadOnly: mount.readOnly }))
    }
  }
}

function removedContainer (id: string, spec: RunSpec, image: string): Container {
  return {
    id,
    name: spec.name ?? id.slice(0, 12),
    image,
    imageId: '',
    imageDigest: null,
    command: [...(spec.entrypoint ?? []), ...(spec.command ?? [])],
    state: 'removed',
    running: false,
    exitCode: null,
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
    ports: [],
    labels: spec.labels,
    restart: { policy: spec.restart.policy, maxRetries: spec.restart.maxRetries ?? 0 },
    resources: { memory: spec.memory ?? null, cpus: spec.cpus ?? null },
    autoRemove: true
  }
}

// The engine answers 500 for every registry failure; the reason tells a client whether to fix credentials or wait.
function pullFailureReason (message: string): 'registry_auth' | 'registry_unreachable' | 'other' {
  if (/no basic auth credentials|unauthorized|authentication required|denied/i.test(message)) return 'registry_auth'
  if (/dial tcp|connection refused|no such host|i\/o timeout|TLS handshake timeout/i.test(message)) return 'registry_unreachable'
  return 'other'
}

function toAuthConfig (credentials: RegistryCredentials | undefined, registry: string): Record<string, string> | undefined {
  if (!credentials) return undefined
  return {
    ...(credentials.username ? { username: credentials.username } : {}),
    ...(credentials.password ? { password: credentials.password } : {}),
    ...(credentials.identitytoken ? { identitytoken: credentials.identitytoken } : {}),
    serveraddress: registry
  }
}

function realTags (tags: string[] | null | undefined): string[] {
  return (tags ?? []).filter(tag => tag !== '<none>:<none>')
}

function realDigests (digests: string[] | null | undefined): string[] {
  return (digests ?? []).filter(digest => !digest.startsWith('<none>@'))
}

// Only a digest of the same repository pins the image: the id may carry digests of other
// repositories it was pushed to, which a client could not pull by this name.
function pinnedReference (repoDigests: string[], repository: string | null): string | null {
  if (repository === null) return null
  return repoDigests.find(entry => entry.startsWith(`${repository}@`)) ?? null
}

function digestFromRepoDigests (repoDigests: string[], repository: string): string | null {
  return pinnedReference(repoDigests, repository)?.split('@')[1] ?? null
}

function volumeOf (volume: Docker.VolumeInspectInfo & { CreatedAt?: string }): Volume {
  return { name: volume.Name, driver: volume.Driver, labels: volume.Labels ?? {}, createdAt: volume.CreatedAt ?? null }
}

function zeroTime (time: string): string | null {
  return time.startsWith('0001-01-01') ? null : time
}

type InspectInfo = Docker.ContainerInspectInfo

function portsOf (info: InspectInfo): PortBinding[] {
  const live = info.NetworkSettings.Ports ?? {}
  // A container that is not running has no live bindings: show what it asked for instead.
  const source: Record<string, Array<{ HostIp: string, HostPort: string }> | null> = Object.keys(live).length > 0
    ? live
    : (info.HostConfig.PortBindings ?? {}) as Record<string, Array<{ HostIp: string, HostPort: string }>>
  const bindings: PortBinding[] = []
  for (const [key, hosts] of Object.entries(source)) {
    const [containerPort, protocol] = key.split('/')
    for (const host of hosts ?? []) {
      bindings.push({
        container: Number(containerPort),
        host: host.HostPort ? Number(host.HostPort) : null,
        protocol: (protocol ?? 'tcp') as Protocol,
        hostIp: host.HostIp
      })
    }
  }
  return dedupePorts(bindings)
}

/** The engine lists a port published on all interfaces twice (0.0.0.0 and ::); berth lists it once. */
function dedupePorts (ports: PortBinding[]): PortBinding[] {
  const seen = new Map<string, PortBinding>()
  for (const port of ports) {
    const key = `${port.container}/${port.protocol}/${port.host ?? ''}`
    const previous = seen.get(key)
    if (previous === undefined || (previous.hostIp.includes(':') && !port.hostIp.includes(':'))) seen.set(key, port)
  }
  return [...seen.values()].sort((a, b) => a.container - b.container || (a.host ?? 0) - (b.host ?? 0))
}

export function compareVersions (a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split('.').map(Number)
  const [bMajor = 0, bMinor = 0] = b.split('.').map(Number)
  return aMajor - bMajor || aMinor - bMinor
}
