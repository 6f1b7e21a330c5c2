// berth's Engine on a single Docker host: runs are containers. It hides the engine's quirks (304 on
// start/stop, pulls that fail inside a 200 stream, create that never pulls, a port clash found
// only at start) and leaves nothing half-made behind. Talks to the engine only through its transport.
import type Docker from 'dockerode'
import type { IncomingMessage } from 'node:http'
import { notSupported } from '../capabilities.ts'
import type { Duplex } from 'node:stream'
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import type { ImageRef } from '../image-ref.ts'
import { mapEngineError } from './errors.ts'
import {
  containerOf, containerSummaryOf, createBody, digestFromRepoDigests, imageOf, imageSummaryOf, nodeOfEngine, pullFailureReason, toAuthConfig,
  volumeOf, volumeSizesOf, volumeUsersOf, networkOf, networkMembersOf, statsOf, expiryOf, type EngineSystemInfo, type RawStats
} from './mapping.ts'
import { LABEL_DEPLOYMENT, LABEL_EXPIRES_AT, LABEL_EXPIRY_ACTION, LABEL_LEASE_FOR, LABEL_MANAGED } from '../../access/ownership.ts'
import { engineTime, layerProgress, linesOf, parseCursor, readAll, readEventStream, readFrames, readJsonLines, readLogStream } from './streams.ts'
import { readPullStream } from './pull-stream.ts'
import { DockerTransport, withSignal, type CallOptions } from './transport.ts'
import * as images from './image-work.ts'
import { PortConflictError } from '../types.ts'
import type {
  Volume, Container, ContainerExit, ContainerState, ContainerStats, ContainerSummary, Engine, ExpiringContainer, ExecSession, ExecSpec, EngineEvent, EngineInfo, EventsOptions, Image, ImageRemoval, ImageSummary,
  ListContainersOptions, ListImagesOptions, LogEntry, LogOptions, Network, NetworkSpec, Node, PathStat, PulledImage, PullOptions, RunSpec, StateChange, VolumeDetails,
  BuildOptions, BuildSpec, BuiltImage, ContainerConfig, DiskUsage, ImageHistoryEntry, PruneImagesOptions, PruneReport, PushedImage, PushOptions
} from '../types.ts'
import type { NetworkMember } from '../../schemas/networks.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'

/** The longest stopTimeout a run may give (see the RunRequest schema). */
const MAX_STOP_TIMEOUT = 300
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

export class DockerEngine implements Engine {
  readonly kind = 'docker' as const
  readonly #options: DockerEngineOptions
  readonly #transport: DockerTransport
  /** Image digests by image id, reused for a few seconds by container inspects (see #imageDigests). */
  readonly #digests = new Map<string, { digests: string[], expires: number }>()
  #digestsGeneration = 0

  constructor (options: DockerEngineOptions) {
    this.#options = options
    this.#transport = new DockerTransport(options)
  }

  async info (): Promise<EngineInfo> {
    return await this.#transport.info()
  }

  async pullImage (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    const auth = toAuthConfig(options.auth ?? this.#options.registryAuth?.[ref.registry], ref.registry)
    let stream: IncomingMessage
    try {
      // The engine answers once the registry served the manifest; the deadline covers only that.
      stream = await this.#transport.openStream({ subject: 'image', target: ref.reference, ...(options.signal ? { signal: options.signal } : {}) },
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
    const images = await this.#transport.call({ subject: 'image', target: 'images' },
      (docker, signal) => docker.listImages({ filters, abortSignal: signal }))
    return images.map(imageSummaryOf)
  }

  async inspectImage (reference: string): Promise<Image> {
    const image = await this.#transport.call({ subject: 'image', target: reference },
      (docker, signal) => docker.getImage(reference).inspect(withSignal(signal)))
    return imageOf(image)
  }

  async removeImage (reference: string, options: { force: boolean }): Promise<ImageRemoval> {
    const result = await this.#transport.call({ subject: 'image', target: reference },
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
    const containers = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: options.all, filters, abortSignal: signal }))
    return containers.map(containerSummaryOf)
  }

  async inspectContainer (idOrName: string): Promise<Container> {
    const info = await this.#transport.call({ subject: 'container', target: idOrName },
      (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
    const digests = await this.#imageDigests(info.Image)
    const container = containerOf(info, digests)
    // Only a container run with an expiry can have had its end moved: only then is there more to ask.
    if (container.expiry === undefined) return container
    const lease = latestLeases(await this.#leases([`${LABEL_LEASE_FOR}=${info.Id}`])).get(info.Id)
    return lease === undefined ? container : { ...container, ...expiryOf(container.labels, lease.expiresAt) }
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
      return await this.inspectContainer(id)
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
    return await this.#stateChange({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout ?? await this.#stopTimeoutOf(id)) },
      (docker, signal) => docker.getContainer(id).stop({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
  }

  async restartContainer (id: string, options: { timeout?: number }): Promise<StateChange> {
    await this.#transport.call({ subject: 'container', target: id, timeoutMs: this.#graceDeadline(options.timeout ?? await this.#stopTimeoutOf(id)) },
      (docker, signal) => docker.getContainer(id).restart({ ...(options.timeout === undefined ? {} : { t: options.timeout }), abortSignal: signal }))
    return { changed: true }
  }

  async removeContainer (id: string, options: { force: boolean, volumes: boolean }): Promise<void> {
    await this.#transport.call({ subject: 'container', target: id },
      (docker, signal) => docker.getContainer(id).remove({ force: options.force, v: options.volumes, abortSignal: signal }))
  }

  /** One host runs a container as exactly one replica: asking for one changes nothing, more is not_supported. */
  async scaleContainer (id: string, replicas: number): Promise<StateChange> {
    if (replicas !== 1) {
      throw notSupported('docker', `the docker backend runs a container as exactly one replica; ${replicas} replicas need a cluster (BERTH_ENGINE=swarm)`)
    }
    await this.inspectContainer(id)
    return { changed: false }
  }

  /** The one engine, as a cluster would list a node of its own. */
  async listNodes (): Promise<Node[]> {
    const info = await this.#transport.call({ subject: 'engine', target: 'engine' }, (docker, signal) => (docker.info as (options: object) => Promise<unknown>)(withSignal(signal))) as EngineSystemInfo
    return [nodeOfEngine(info)]
  }

  async inspectVolume (name: string, details: VolumeDetails = {}): Promise<Volume> {
    const volume = await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).inspect(withSignal(signal)))
    const [sizes, users] = await this.#volumeDetails(details)
    return volumeOf(volume, sizes?.get(volume.Name) ?? null, users?.get(volume.Name) ?? [])
  }

  async createVolume (name: string, labels: Record<string, string>): Promise<Volume> {
    // The engine answers with the volume; dockerode hands back only a handle to it.
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.createVolume({ Name: name, Labels: labels, abortSignal: signal } as Docker.VolumeCreateOptions))
    return await this.inspectVolume(name)
  }

  async removeVolume (name: string): Promise<void> {
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).remove(withSignal(signal)))
  }

  async listVolumes (options: { labels: string[] } & VolumeDetails): Promise<Volume[]> {
    const listed = await this.#transport.call({ subject: 'volume', target: 'volumes' },
      (docker, signal) => docker.listVolumes({ filters: { label: options.labels }, abortSignal: signal } as Docker.VolumeListOptions))
    const [sizes, users] = await this.#volumeDetails(options)
    return (listed.Volumes ?? []).map(volume => volumeOf(volume, sizes?.get(volume.Name) ?? null, users?.get(volume.Name) ?? []))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async waitContainer (id: string, options: { signal?: AbortSignal }): Promise<ContainerExit> {
    const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
    // The engine sends its headers at once and the body when the container stops: only the setup is bounded.
    const stream = await this.#transport.streamRequest(target, { method: 'POST', path: `/containers/${encodeURIComponent(id)}/wait`, query: { condition: 'not-running' } })
    let body: { StatusCode?: number, Error?: { Message?: string } | null }
    try {
      body = JSON.parse((await readAll(stream, options.signal)).toString('utf8'))
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason
      throw new BerthError('engine_unavailable', `the engine connection broke while waiting for ${id}`, {}, { cause: error, headers: { 'retry-after': '5' } })
    }
    const info = await this.#transport.call({ subject: 'container', target: id }, (docker, signal) => docker.getContainer(id).inspect({ abortSignal: signal }))
    return { exitCode: body.StatusCode ?? info.State.ExitCode, oomKilled: info.State.OOMKilled, error: body.Error?.Message || null }
  }

  async listNetworks (options: { labels: string[], members: string[] }): Promise<Network[]> {
    // The list leaves out what inspect says (the subnet): inspect each of the few a token has.
    const listed = await this.#transport.call({ subject: 'network', target: 'networks' },
      (docker, signal) => docker.listNetworks({ filters: { label: options.labels }, abortSignal: signal } as Docker.NetworkListOptions))
    const members = await this.#networkMembers(options.members)
    const networks = await Promise.all(listed.map(async network => await this.#inspectNetwork(network.Id).catch(() => null)))
    return networks.flatMap(network => network === null ? [] : [networkOf(network, members.get(network.Id) ?? [])])
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspectNetwork (idOrName: string, options: { members: string[] }): Promise<Network> {
    const network = await this.#inspectNetwork(idOrName)
    return networkOf(network, (await this.#networkMembers(options.members, network.Id)).get(network.Id) ?? [])
  }

  async createNetwork (spec: NetworkSpec): Promise<Network> {
    // CheckDuplicate: without it the engine makes a second network of the same name.
    const created = await this.#transport.request<{ Id: string }>({ subject: 'network', target: spec.name },
      { method: 'POST', path: '/networks/create', body: { Name: spec.name, CheckDuplicate: true, Driver: 'bridge', Internal: spec.internal, Labels: spec.labels } })
    return await this.inspectNetwork(created.Id, { members: [] })
  }

  async removeNetwork (id: string): Promise<void> {
    // The engine refuses only while a running container is attached; it would remove the network
    // from under stopped ones, which then cannot start. Attached in any state is in use.
    const attached = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: true, filters: { network: [id] }, abortSignal: signal }))
    if (attached.length > 0) throw new BerthError('network_in_use', `network ${id} has containers attached`, { network: id })
    await this.#transport.request({ subject: 'network', target: id }, { method: 'DELETE', path: `/networks/${encodeURIComponent(id)}` })
  }

  async connectNetwork (networkId: string, containerId: string, options: { aliases: string[] }): Promise<StateChange> {
    if (await this.#attached(networkId, containerId)) return { changed: false }
    await this.#transport.request({ subject: 'network', target: networkId }, {
      method: 'POST',
      path: `/networks/${encodeURIComponent(networkId)}/connect`,
      body: { Container: containerId, ...(options.aliases.length > 0 ? { EndpointConfig: { Aliases: options.aliases } } : {}) }
    })
    return { changed: true }
  }

  async disconnectNetwork (networkId: string, containerId: string, options: { force: boolean }): Promise<StateChange> {
    if (!await this.#attached(networkId, containerId)) return { changed: false }
    await this.#transport.request({ subject: 'network', target: networkId },
      { method: 'POST', path: `/networks/${encodeURIComponent(networkId)}/disconnect`, body: { Container: containerId, Force: options.force } })
    return { changed: true }
  }

  async exec (containerId: string, spec: ExecSpec, options: { signal: AbortSignal }): Promise<ExecSession> {
    const target = { subject: 'container' as const, target: containerId }
    let created: { Id: string }
    try {
      // The command and its env go in the body, never in a URL.
      created = await this.#transport.request<{ Id: string }>(target, {
        method: 'POST',
        path: `/containers/${encodeURIComponent(containerId)}/exec`,
        body: {
          Cmd: spec.command,
          Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
          ...(spec.workingDir === undefined ? {} : { WorkingDir: spec.workingDir }),
          ...(spec.user === undefined ? {} : { User: spec.user }),
          Tty: spec.tty,
          AttachStdin: spec.stdin,
          AttachStdout: true,
          AttachStderr: true
        }
      })
    } catch (error) {
      // "Container x is not running" (409), or paused: there is nothing to run a command in.
      if (error instanceof BerthError && (error.extensions.engineStatus === 409 || error.code === 'container_running')) {
        throw new BerthError('container_not_running', `container ${containerId} is not running: start it first`, {}, { cause: error })
      }
      throw error
    }
    const id = created.Id
    const execTarget = { subject: 'container' as const, target: containerId, signal: options.signal }
    const start = { path: `/exec/${encodeURIComponent(id)}/start`, body: { Detach: false, Tty: spec.tty } }
    const stream = spec.stdin
      ? await this.#transport.hijack(execTarget, start)
      : await this.#transport.streamRequest(execTarget, { method: 'POST', ...start })
    const output = readFrames(stream, spec.tty, options.signal)
    const transport = this.#transport
    return {
      id,
      output,
      lines: () => linesOf(output, spec.tty),
      stdin: spec.stdin ? stream as Duplex : null,
      async resize ({ cols, rows }) {
        await transport.request({ subject: 'container', target: containerId }, { method: 'POST', path: `/exec/${encodeURIComponent(id)}/resize`, query: { h: rows, w: cols } })
      },
      async exitCode () {
        // The output ends as the process exits; the engine records its exit a moment later.
        for (let attempt = 0; attempt < 20; attempt++) {
          const info = await transport.request<{ Running: boolean, ExitCode: number | null }>({ subject: 'container', target: containerId }, { method: 'GET', path: `/exec/${encodeURIComponent(id)}/json` })
          if (!info.Running) return info.ExitCode
          if (options.signal.aborted) return null
          await new Promise(resolve => setTimeout(resolve, 50))
        }
        return null
      }
    }
  }

  async containerStats (id: string, options: { stream: boolean, signal?: AbortSignal, oneShot?: boolean }): Promise<AsyncIterable<ContainerStats>> {
    const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
    // One reading makes the engine take two a second apart, for the CPU delta, unless it is one-shot.
    const query = { stream: options.stream, ...(options.oneShot === true ? { 'one-shot': true } : {}) }
    const stream = await this.#transport.streamGet(target, `/containers/${encodeURIComponent(id)}/stats`, query)
    return mapStats(readJsonLines<RawStats>(stream, options.signal))
  }

  async getArchive (id: string, path: string, options: { signal?: AbortSignal }): Promise<{ stat: PathStat, archive: NodeJS.ReadableStream }> {
    const target = { subject: 'container' as const, target: id, ...(options.signal ? { signal: options.signal } : {}) }
    const response = await this.#transport.streamGet(target, `/containers/${encodeURIComponent(id)}/archive`, { path }).catch((error: unknown) => { throw pathError(error, id, path) })
    const header = response.headers['x-docker-container-path-stat']
    const stat = typeof header === 'string' ? JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat : { name: path.split('/').pop() ?? '', size: 0, mode: 0, mtime: '', linkTarget: '' }
    options.signal?.addEventListener('abort', () => { response.destroy() }, { once: true })
    return { stat, archive: response }
  }

  async putArchive (id: string, path: string, archive: NodeJS.ReadableStream, options: { size: number }): Promise<void> {
    // The engine answers once it has unpacked it all: give it the time to read it at 1 MB/s at least.
    const timeoutMs = this.#transport.timeoutMs + Math.ceil(options.size / 1_000_000) * 1000
    const response = await this.#transport.streamRequest({ subject: 'container', target: id, timeoutMs },
      { method: 'PUT', path: `/containers/${encodeURIComponent(id)}/archive`, query: { path, noOverwriteDirNonDir: true }, body: archive })
      .catch((error: unknown) => { throw pathError(error, id, path) })
    response.resume()
  }

  async listExpiring (labels: string[]): Promise<ExpiringContainer[]> {
    const [containers, leases] = await Promise.all([
      this.#transport.call({ subject: 'container', target: 'containers' },
        (docker, signal) => docker.listContainers({ all: true, filters: { label: [...labels, LABEL_EXPIRY_ACTION] }, abortSignal: signal })),
      this.#leases([...labels, LABEL_LEASE_FOR])
    ])
    const latest = latestLeases(leases)
    const ids = new Set(containers.map(container => container.Id))
    // The moved ends of containers that are gone (removed, also behind berth's back) are forgotten.
    for (const lease of leases) if (!ids.has(lease.container)) await this.removeVolume(lease.volume).catch(() => {})
    return containers.flatMap(info => {
      const { expiry } = expiryOf(info.Labels ?? {}, latest.get(info.Id)?.expiresAt)
      return expiry === undefined ? [] : [{ id: info.Id, name: (info.Names[0] ?? '').replace(/^\//, ''), state: info.State as ContainerState, labels: info.Labels ?? {}, expiry }]
    })
  }

  /**
   * Labels are fixed once a container is made, so a moved end is kept beside it: in a small volume
   * labelled with the container's id and the new end (berth's bookkeeping; berth lists it to nobody).
   * The newest such volume wins; the older ones are removed once it is there.
   */
  async setExpiry (id: string, expiresAt: string): Promise<void> {
    const info = await this.#transport.call({ subject: 'container', target: id }, (docker, signal) => docker.getContainer(id).inspect({ abortSignal: signal }))
    const before = await this.#leases([`${LABEL_LEASE_FOR}=${info.Id}`])
    const name = `berth-lease-${info.Id.slice(0, 12)}-${Date.now()}`
    const deployment = info.Config.Labels?.[LABEL_DEPLOYMENT]
    await this.createVolume(name, { [LABEL_MANAGED]: 'true', ...(deployment === undefined ? {} : { [LABEL_DEPLOYMENT]: deployment }), [LABEL_LEASE_FOR]: info.Id, [LABEL_EXPIRES_AT]: expiresAt })
    for (const lease of before) await this.removeVolume(lease.volume).catch(() => {})
  }

  async #leases (labels: string[]): Promise<Lease[]> {
    const listed = await this.#transport.call({ subject: 'volume', target: 'volumes' },
      (docker, signal) => docker.listVolumes({ filters: { label: labels }, abortSignal: signal } as Docker.VolumeListOptions))
    return (listed.Volumes ?? []).flatMap(volume => {
      const container = volume.Labels?.[LABEL_LEASE_FOR]
      const expiresAt = volume.Labels?.[LABEL_EXPIRES_AT]
      const written = Number(/-(\d+)$/.exec(volume.Name)?.[1])
      return container === undefined || expiresAt === undefined ? [] : [{ volume: volume.Name, container, expiresAt, written }]
    })
  }

  async #inspectNetwork (idOrName: string): Promise<Docker.NetworkInspectInfo> {
    return await this.#transport.request<Docker.NetworkInspectInfo>({ subject: 'network', target: idOrName }, { method: 'GET', path: `/networks/${encodeURIComponent(idOrName)}` })
  }

  async #attached (networkId: string, containerId: string): Promise<boolean> {
    const info = await this.#transport.call({ subject: 'container', target: containerId },
      (docker, signal) => docker.getContainer(containerId).inspect({ abortSignal: signal }))
    return Object.values(info.NetworkSettings.Networks ?? {}).some(endpoint => endpoint.NetworkID === networkId)
  }

  /** The containers matching `labels` (all of them for []), by the networks they are attached to. */
  async #networkMembers (labels: string[], network?: string): Promise<Map<string, NetworkMember[]>> {
    const filters: Record<string, string[]> = {}
    if (labels.length > 0) filters.label = labels
    if (network !== undefined) filters.network = [network]
    const containers = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: true, filters, abortSignal: signal }))
    return networkMembersOf(containers)
  }

  async #volumeDetails (details: VolumeDetails): Promise<[Map<string, number | null> | null, Map<string, VolumeUser[]> | null]> {
    const usedBy = details.usedBy
    return await Promise.all([
      // The engine walks every volume to answer: give it longer than an ordinary call.
      details.size === true
        ? this.#transport.call({ subject: 'engine', target: 'disk usage', timeoutMs: this.#transport.timeoutMs * 6 },
          (docker, signal) => (docker.df as (options: object) => Promise<Parameters<typeof volumeSizesOf>[0]>)(withSignal(signal))).then(volumeSizesOf)
        : null,
      usedBy === undefined
        ? null
        : this.#transport.call({ subject: 'container', target: 'containers' },
          (docker, signal) => docker.listContainers({ all: true, filters: usedBy.length > 0 ? { label: usedBy } : {}, abortSignal: signal })).then(volumeUsersOf)
    ])
  }

  async containerLogs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
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

  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    const after = options.after === undefined ? null : parseCursor(options.after)
    if (options.after !== undefined && after === null) {
      throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
    }
    const since = after !== null ? engineTime(after.nanos) : options.since === undefined ? undefined : engineTime(BigInt(options.since.getTime()) * 1_000_000n)
    const stream = await this.#transport.openStream({ subject: 'engine', target: 'events', ...(options.signal ? { signal: options.signal } : {}) },
      (docker, signal) => docker.getEvents({ ...(since === undefined ? {} : { since }), filters: { type: ['container', 'image'] }, abortSignal: signal } as Docker.GetEventsOptions))
    return readEventStream(stream, after, options.signal)
  }

  // Images built, shared and reproduced (issue 15): the work is in image-work.ts.
  async buildImage (spec: BuildSpec, options: BuildOptions): Promise<BuiltImage> {
    try {
      return await images.buildImage(this.#transport, this.#options.registryAuth ?? {}, spec, options)
    } finally {
      this.#forgetDigests()
    }
  }

  async tagImage (source: string, target: ImageRef): Promise<void> {
    await images.tagImage(this.#transport, source, target)
    this.#forgetDigests()
  }

  async pushImage (ref: ImageRef, options: PushOptions): Promise<PushedImage> {
    try {
      return await images.pushImage(this.#transport, this.#options.registryAuth ?? {}, ref, options)
    } finally {
      // A push gives the image a digest in that repository.
      this.#forgetDigests()
    }
  }

  async imageHistory (reference: string): Promise<ImageHistoryEntry[]> {
    return await images.imageHistory(this.#transport, reference)
  }

  async pruneImages (options: PruneImagesOptions): Promise<PruneReport> {
    try {
      return await images.pruneImages(this.#transport, options)
    } finally {
      this.#forgetDigests()
    }
  }

  async pruneBuildCache (): Promise<PruneReport> {
    return await images.pruneBuildCache(this.#transport)
  }

  async diskUsage (): Promise<DiskUsage> {
    return await images.diskUsage(this.#transport)
  }

  async containerConfig (idOrName: string): Promise<ContainerConfig> {
    return await images.containerConfig(this.#transport, idOrName)
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

  /** The grace period a container was run with (`stopTimeout`), which a stop without its own timeout waits. */
  async #stopTimeoutOf (id: string): Promise<number | undefined> {
    const info = await this.#transport.call({ subject: 'container', target: id }, (docker, signal) => docker.getContainer(id).inspect({ abortSignal: signal }))
    return (info.Config as { StopTimeout?: number }).StopTimeout
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
    const mapped = mapEngineError(error, 'image', ref.reference, this.#transport.timeoutMs)
    // A pinned run asks for exactly one image: when the registry no longer has it, nothing else runs in its place.
    if (mapped.code === 'image_not_found' && ref.digest !== undefined) {
      return new BerthError('image_not_found', `registry ${ref.registry} has no image ${ref.repository}@${ref.digest} (it may have been deleted); nothing else is run in its place`, { image: ref.reference, digest: ref.digest }, { cause: error })
    }
    if (mapped.code === 'engine_error' || mapped.code === 'validation_failed') {
      const message = mapped.message.replace(/^the engine (answered \d+|rejected the request): /, '')
      return new BerthError('pull_failed', `pulling ${ref.reference} failed: ${message}`, { image: ref.reference, reason: pullFailureReason(message) }, { cause: error })
    }
    return mapped
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

async function * mapStats (raw: AsyncIterable<RawStats>): AsyncGenerator<ContainerStats> {
  for await (const reading of raw) {
    // A container that stopped is read as empty readings of no time, for ever: its stream ends there.
    if (reading.read.startsWith('0001-01-01')) return
    yield statsOf(reading)
  }
}

/** The engine's 404 on an archive is about the path (the container was found first); a read-only root says so. */
function pathError (error: unknown, id: string, path: string): unknown {
  if (error instanceof BerthError && error.code === 'not_found') return new BerthError('not_found', `no such path ${path} in container ${id}`, { path }, { cause: error })
  if (error instanceof BerthError && /rootfs is marked read-only/.test(error.message)) {
    return new BerthError('validation_failed', `container ${id} has a read-only root filesystem: write into one of its volumes`, { path }, { cause: error })
  }
  return error
}

interface Lease {
  volume: string
  container: string
  expiresAt: string
  /** When it was written (ms), from its name: the newest wins. */
  written: number
}

function latestLeases (leases: Lease[]): Map<string, Lease> {
  const latest = new Map<string, Lease>()
  for (const lease of leases) {
    const known = latest.get(lease.container)
    if (known === undefined || lease.written > known.written) latest.set(lease.container, lease)
  }
  return latest
}
