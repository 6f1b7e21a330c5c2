// The docker backend's containers: runs are containers of one engine. It hides the engine's quirks
// (304 on start/stop, create that never pulls, a port clash found only at start) and leaves nothing
// half-made behind: a run that cannot start removes what it created.
import type Docker from 'dockerode'
import { BerthError } from '../../errors.ts'
import { notSupported, type ContainersPart } from '../parts.ts'
import { PortConflictError } from '../types.ts'
import type { Container, ContainerSummary, ListContainersOptions, LogEntry, LogOptions, RunSpec, StateChange } from '../types.ts'
import type { ImageDigests } from './digests.ts'
import type { DockerExpiry } from './expiry.ts'
import type { DockerImages } from './images.ts'
import { containerOf, containerSummaryOf, createBody, expiryOf } from './mapping.ts'
import { engineTime, readLogStream } from './streams.ts'
import type { CallOptions, DockerTransport } from './transport.ts'

/** The longest stopTimeout a run may give (see the RunRequest schema). */
const MAX_STOP_TIMEOUT = 300
/** How many ports of a host port range a run tries before it answers port_conflict. */
const MAX_RANGE_ATTEMPTS = 16

export class DockerContainers implements ContainersPart {
  readonly #transport: DockerTransport
  readonly #images: DockerImages
  readonly #digests: ImageDigests
  readonly #expiry: DockerExpiry

  constructor (transport: DockerTransport, images: DockerImages, digests: ImageDigests, expiry: DockerExpiry) {
    this.#transport = transport
    this.#images = images
    this.#digests = digests
    this.#expiry = expiry
  }

  /** One host runs one container: what only a cluster can do is refused. */
  check (spec: RunSpec): void {
    const cluster = [
      ...(spec.replicas !== undefined && spec.replicas !== 1 ? ['replicas'] : []),
      ...(spec.placement !== undefined ? ['placement'] : []),
      ...(spec.reservations !== undefined ? ['resources.reservations'] : [])
    ]
    if (cluster.length > 0) {
      throw notSupported('docker', `${cluster.join(', ')} need a cluster: the docker backend runs one container on one host (BERTH_ENGINE=swarm schedules replicas over nodes)`)
    }
  }

  async list (options: ListContainersOptions): Promise<ContainerSummary[]> {
    const filters: Record<string, string[]> = {}
    if (options.status?.length) filters.status = options.status
    if (options.labels?.length) filters.label = options.labels
    // The engine's name filter is an unanchored regular expression over "/name": anchor it for an exact match.
    if (options.name) filters.name = [`^/${options.name.replace(/[.]/g, '\\.')}$`]
    const containers = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: options.all, filters, abortSignal: signal }))
    return containers.map(containerSummaryOf)
  }

  async inspect (idOrName: string): Promise<Container> {
    const info = await this.#inspectRaw(idOrName)
    const container = containerOf(info, await this.#digests.of(info.Image))
    // Only a container run with an expiry can have had its end moved: only then is there more to ask.
    if (container.expiry === undefined) return container
    const moved = await this.#expiry.movedEnd(info.Id)
    return moved === undefined ? container : { ...container, ...expiryOf(container.labels, moved) }
  }

  async run (spec: RunSpec): Promise<Container> {
    const imageName = spec.image.kind === 'id' ? spec.image.id : spec.image.ref.reference
    if (spec.pull === 'always' && spec.image.kind === 'ref') {
      await this.#images.pull(spec.image.ref, { ...(spec.auth ? { auth: spec.auth } : {}) })
    }
    const body = createBody(spec, imageName)
    // A port the engine picked from a range can be held by a plain process it did not know of,
    // or taken by a run racing this one: the engine moves on through the range on the next try.
    const ranged = spec.ports.some(port => port.hostRange !== undefined)
    const attempts = ranged ? Math.min(MAX_RANGE_ATTEMPTS, ...spec.ports.flatMap(port => port.hostRange ? [port.hostRange.max - port.hostRange.min + 1] : [])) : 1
    for (let attempt = 1; ; attempt++) {
      const id = await this.#createPulling(spec, body, imageName)
      try {
        await this.#transport.call({ subject: 'container', target: spec.name ?? id },
          (docker, signal) => docker.getContainer(id).start({ abortSignal: signal }))
      } catch (error) {
        // A failed start leaves the container in "created": remove it, so a failed run leaves nothing behind.
        await this.#discard(id)
        if (!(error instanceof PortConflictError)) throw error
        if (ranged && error.port !== null && attempt < attempts) continue
        throw await this.#withHolder(error)
      }
      // An autoRemove container is still there: berth, not the engine, removes it once its exit is collected.
      return await this.inspect(id)
    }
  }

  async start (id: string): Promise<StateChange> {
    return await this.#stateChange({ subject: 'container', target: id },
      (docker, signal) => docker.getContainer(id).start({ abortSignal: signal }))
  }

  async stop (id: string, options: { timeout?: number }): Promise<StateChange> {
    return await this.#stateChange({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout ?? await this.#stopTimeoutOf(id)) },
      (docker, signal) => docker.getContainer(id).stop({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
  }

  async restart (id: string, options: { timeout?: number }): Promise<StateChange> {
    await this.#transport.call({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout ?? await this.#stopTimeoutOf(id)) },
      (docker, signal) => docker.getContainer(id).restart({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
    return { changed: true }
  }

  async remove (id: string, options: { force: boolean, volumes: boolean }): Promise<void> {
    await this.#transport.call({ subject: 'container', target: id },
      (docker, signal) => docker.getContainer(id).remove({ force: options.force, v: options.volumes, abortSignal: signal }))
  }

  /** One host runs a container as exactly one replica: asking for one changes nothing, more is not_supported. */
  async scale (id: string, replicas: number): Promise<StateChange> {
    if (replicas !== 1) {
      throw notSupported('docker', `the docker backend runs a container as exactly one replica; ${replicas} replicas need a cluster (BERTH_ENGINE=swarm)`)
    }
    await this.inspect(id)
    return { changed: false }
  }

  async logs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const target = { subject: 'container' as const, target: idOrName, ...(options.signal ? { signal: options.signal } : {}) }
    // Only the container knows whether its output comes framed (no TTY) or raw (TTY).
    const info = await this.#transport.call(target, (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
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
    const stream = await this.#transport.streamGet(target, `/containers/${encodeURIComponent(info.Id)}/logs`, query)
    return readLogStream(stream, { tty: info.Config.Tty, timestamps: options.timestamps, ...(options.signal ? { signal: options.signal } : {}) })
  }

  async #inspectRaw (idOrName: string): Promise<Docker.ContainerInspectInfo> {
    return await this.#transport.call({ subject: 'container', target: idOrName },
      (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
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
      await this.#images.pull(spec.image.ref, { ...(spec.auth ? { auth: spec.auth } : {}) })
      return await this.#create(body, spec.name)
    }
  }

  /** The grace period a container was run with (`stopTimeout`), which a stop without its own timeout waits. */
  async #stopTimeoutOf (id: string): Promise<number | undefined> {
    return ((await this.#inspectRaw(id)).Config as { StopTimeout?: number }).StopTimeout
  }

  // A stop waits up to the container's grace period before the engine kills it; the deadline must outlast it.
  #graceDeadline (timeout: number | undefined): number {
    return this.#transport.timeoutMs + (timeout ?? MAX_STOP_TIMEOUT) * 1000
  }

  async #create (body: Record<string, unknown>, name: string | undefined): Promise<string> {
    // _query/_body keep the create options out of the URL: docker-modem would otherwise copy
    // all of them, env values included, into the query string.
    const created = await this.#transport.call({ subject: 'image', target: String(body.Image) },
      (docker, signal) => docker.createContainer({ _query: name === undefined ? {} : { name }, _body: body, abortSignal: signal } as never))
    return created.id
  }

  async #discard (id: string): Promise<void> {
    try {
      await this.remove(id, { force: true, volumes: true })
    } catch (error) {
      // Already gone (autoRemove) is the outcome we wanted.
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    }
  }

  /** Finds the running container that holds the port, when one does (it may be a plain process). */
  async #withHolder (error: PortConflictError): Promise<PortConflictError> {
    const port = error.port
    if (port === null) return error
    const running = await this.list({ all: false })
    const holder = running.find(container => container.ports.some(binding => binding.host === port))
    if (holder === undefined) return error
    return new PortConflictError(port, { id: holder.id, name: holder.name, labels: holder.labels }, undefined, error)
  }

  async #stateChange (options: CallOptions, fn: (docker: Docker, signal: AbortSignal) => Promise<unknown>): Promise<StateChange> {
    try {
      await this.#transport.call(options, fn)
      return { changed: true }
    } catch (error) {
      // 304: already in the state asked for. dockerode calls it an error; it is a success that changed nothing.
      if (error instanceof BerthError && error.extensions.engineStatus === 304) return { changed: false }
      throw error
    }
  }
}
