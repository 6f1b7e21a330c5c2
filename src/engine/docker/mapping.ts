// Docker's objects in berth's words, and berth's run spec in Docker's: pure functions, no I/O.
import type Docker from 'dockerode'
import type { RegistryCredentials } from '../../config.ts'
import { LABEL_AUTO_REMOVE } from '../../access/ownership.ts'
import { expiryOf } from '../expiry.ts'
import { parseImage } from '../image-ref.ts'
import type {
  Container, ContainerState, ContainerSummary, Image, ImageSummary, Node, PortBinding, Protocol, RestartPolicy, RunSpec, Volume
} from '../types.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import type { ContainerNetwork, GpuRequest } from '../../schemas/containers.ts'
import type { Network, NetworkMember } from '../../schemas/networks.ts'
import type { ContainerStats } from '../../schemas/stats.ts'

export function imageSummaryOf (image: Docker.ImageInfo): ImageSummary {
  return {
    id: image.Id,
    tags: realTags(image.RepoTags),
    digests: realDigests(image.RepoDigests),
    createdAt: new Date(image.Created * 1000).toISOString(),
    size: image.Size,
    labels: image.Labels ?? {}
  }
}

export function imageOf (image: Docker.ImageInspectInfo): Image {
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

export function containerSummaryOf (container: Docker.ContainerInfo): ContainerSummary {
  return {
    id: container.Id,
    name: (container.Names[0] ?? '').replace(/^\//, ''),
    image: container.Image,
    imageId: container.ImageID,
    command: commandOfList(container.Command),
    state: container.State as ContainerState,
    status: container.Status,
    createdAt: new Date(container.Created * 1000).toISOString(),
    ports: dedupePorts(container.Ports.flatMap(port => port.PublicPort === undefined
      ? []
      : [{ container: port.PrivatePort, host: port.PublicPort, protocol: port.Type as Protocol, hostIp: port.IP ?? '' }])),
    labels: container.Labels ?? {}
  }
}

export function containerOf (info: Docker.ContainerInspectInfo, imageDigests: string[]): Container {
  const configured = parseImage(info.Config.Image)
  const repository = typeof configured === 'string' || configured.kind === 'id' ? null : configured.ref.repository
  const pinned = pinnedReference(imageDigests, repository)
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
    // berth removes an autoRemove container itself (the label says so); one made with the CLI's --rm is the engine's to remove.
    autoRemove: (hostConfig.AutoRemove ?? false) || info.Config.Labels?.[LABEL_AUTO_REMOVE] === 'true',
    ...gpusOf(hostConfig as { DeviceRequests?: DeviceRequest[] | null }),
    networks: containerNetworksOf(info),
    ...expiryOf(info.Config.Labels ?? {})
  }
}

/** A container's expiry as its labels say (a moved end is laid over it by the engine). */
export { expiryOf }

interface DeviceRequest {
  Driver?: string
  Count?: number
  DeviceIDs?: string[] | null
  Capabilities?: string[][] | null
}

/** `--gpus` as the engine takes it: a device request for the gpu capability, of every device (-1), a count or ids. */
function deviceRequests (gpus: GpuRequest): DeviceRequest[] {
  const base = { Driver: '', Capabilities: [['gpu']] }
  if (gpus === 'all') return [{ ...base, Count: -1, DeviceIDs: null }]
  if (typeof gpus === 'number') return [{ ...base, Count: gpus, DeviceIDs: null }]
  return [{ ...base, Count: 0, DeviceIDs: gpus }]
}

export function gpusOf (hostConfig: { DeviceRequests?: DeviceRequest[] | null }): { gpus?: GpuRequest } {
  const request = (hostConfig.DeviceRequests ?? []).find(device => device.Capabilities?.some(set => set.includes('gpu')))
  if (request === undefined) return {}
  if (request.DeviceIDs !== undefined && request.DeviceIDs !== null && request.DeviceIDs.length > 0) return { gpus: request.DeviceIDs }
  return { gpus: request.Count === -1 || request.Count === undefined ? 'all' : request.Count }
}

export function createBody (spec: RunSpec, image: string): Record<string, unknown> {
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
    ...(spec.hostname === undefined ? {} : { Hostname: spec.hostname }),
    ...(spec.stopSignal === undefined ? {} : { StopSignal: spec.stopSignal }),
    ...(spec.stopTimeout === undefined ? {} : { StopTimeout: spec.stopTimeout }),
    Labels: spec.labels,
    // Without ExposedPorts the engine publishes nothing, whatever PortBindings say.
    ExposedPorts: exposed,
    ...(spec.network !== undefined && spec.aliases !== undefined && spec.aliases.length > 0
      ? { NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases } } } }
      : {}),
    HostConfig: {
      PortBindings: bindings,
      RestartPolicy: { Name: spec.restart.policy === 'no' ? '' : spec.restart.policy, MaximumRetryCount: spec.restart.maxRetries ?? 0 },
      ...(spec.memory ? { Memory: spec.memory } : {}),
      ...(spec.cpus ? { NanoCpus: Math.round(spec.cpus * 1e9) } : {}),
      // Never the engine's AutoRemove: it would remove the container the moment it exits, its logs
      // and exit code with it, before anybody could read them. berth removes it once its exit has
      // been collected (the run's labels say so: see LABEL_AUTO_REMOVE).
      AutoRemove: false,
      ...(binds.length > 0 ? { Binds: binds } : {}),
      // ---- Environments (issue 14)
      ...(spec.shmSize === undefined ? {} : { ShmSize: spec.shmSize }),
      ...(spec.ulimits?.nofile === undefined ? {} : { Ulimits: [{ Name: 'nofile', Soft: spec.ulimits.nofile.soft, Hard: spec.ulimits.nofile.hard }] }),
      ...(spec.init === undefined ? {} : { Init: spec.init }),
      ...(spec.readOnly === undefined ? {} : { ReadonlyRootfs: spec.readOnly }),
      ...(spec.gpus === undefined ? {} : { DeviceRequests: deviceRequests(spec.gpus) }),
      ...(spec.network === undefined ? {} : { NetworkMode: spec.network }),
      Mounts: spec.mounts.filter(mount => mount.type === 'volume').map(mount => ({ Type: 'volume', Source: mount.source, Target: mount.target, ReadOnly: mount.readOnly }))
    }
  }
}

// The engine answers 500 for every registry failure; the reason tells a client whether to fix credentials or wait.
export function pullFailureReason (message: string): 'registry_auth' | 'registry_unreachable' | 'other' {
  if (/no basic auth credentials|unauthorized|authentication required|denied/i.test(message)) return 'registry_auth'
  if (/dial tcp|connection refused|no such host|i\/o timeout|TLS handshake timeout/i.test(message)) return 'registry_unreachable'
  return 'other'
}

export function toAuthConfig (credentials: RegistryCredentials | undefined, registry: string): Record<string, string> | undefined {
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

export function digestFromRepoDigests (repoDigests: string[], repository: string): string | null {
  return pinnedReference(repoDigests, repository)?.split('@')[1] ?? null
}

export function volumeOf (volume: Docker.VolumeInspectInfo & { CreatedAt?: string }, size: number | null = null, usedBy: VolumeUser[] = []): Volume {
  return { name: volume.Name, driver: volume.Driver, labels: volume.Labels ?? {}, createdAt: volume.CreatedAt ?? null, size, usedBy }
}

/** The sizes `docker system df -v` reports, by volume name; -1 (the driver cannot say) becomes null. */
export function volumeSizesOf (df: { Volumes?: Array<{ Name: string, UsageData?: { Size?: number } | null }> | null }): Map<string, number | null> {
  return new Map((df.Volumes ?? []).map(volume => {
    const size = volume.UsageData?.Size
    return [volume.Name, typeof size === 'number' && size >= 0 ? size : null]
  }))
}

/** Which containers mount which named volumes, from a container list. */
export function volumeUsersOf (containers: Docker.ContainerInfo[]): Map<string, VolumeUser[]> {
  const users = new Map<string, VolumeUser[]>()
  for (const container of containers) {
    for (const mount of container.Mounts ?? []) {
      if (mount.Type !== 'volume' || !mount.Name) continue
      const list = users.get(mount.Name) ?? []
      list.push({ id: container.Id, name: (container.Names[0] ?? '').replace(/^\//, ''), state: container.State })
      users.set(mount.Name, list)
    }
  }
  return users
}

export function networkOf (network: Docker.NetworkInspectInfo, members: NetworkMember[]): Network {
  return {
    id: network.Id,
    name: network.Name,
    driver: network.Driver,
    internal: network.Internal,
    subnet: network.IPAM?.Config?.[0]?.Subnet ?? null,
    labels: network.Labels ?? {},
    createdAt: network.Created ?? null,
    containers: members
  }
}

/** Which containers are attached to which networks (by network id), from a container list. */
export function networkMembersOf (containers: Docker.ContainerInfo[]): Map<string, NetworkMember[]> {
  const members = new Map<string, NetworkMember[]>()
  for (const container of containers) {
    for (const endpoint of Object.values(container.NetworkSettings?.Networks ?? {})) {
      const list = members.get(endpoint.NetworkID) ?? []
      list.push({ id: container.Id, name: (container.Names[0] ?? '').replace(/^\//, ''), ipAddress: endpoint.IPAddress || null })
      members.set(endpoint.NetworkID, list)
    }
  }
  return members
}

/** The user-defined networks a container is attached to, with its address and the names it is reached by there. */
export function containerNetworksOf (info: Docker.ContainerInspectInfo): ContainerNetwork[] {
  return Object.entries(info.NetworkSettings.Networks ?? {}).map(([name, endpoint]) => ({
    name,
    ipAddress: endpoint.IPAddress || null,
    // The engine adds the container's short id as an alias on every user-defined network; it says nothing.
    aliases: (endpoint.Aliases ?? []).filter((alias: string) => !info.Id.startsWith(alias))
  }))
}

/** The engine's raw counters, as much of them as `docker stats` reads. */
export interface RawStats {
  read: string
  pids_stats?: { current?: number }
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op: string, value: number }> | null }
  cpu_stats: CpuStats
  precpu_stats: CpuStats
  memory_stats?: { usage?: number, limit?: number, stats?: Record<string, number> }
  networks?: Record<string, { rx_bytes: number, tx_bytes: number }>
}

interface CpuStats {
  cpu_usage: { total_usage: number, percpu_usage?: number[] | null }
  system_cpu_usage?: number
  online_cpus?: number
}

/** A reading as `docker stats` computes it (the Docker CLI's stats_helpers.go, for Linux). */
export function statsOf (raw: RawStats): ContainerStats {
  const cpu = raw.cpu_stats
  const onlineCpus = cpu.online_cpus || cpu.cpu_usage.percpu_usage?.length || 0
  const cpuDelta = cpu.cpu_usage.total_usage - (raw.precpu_stats.cpu_usage?.total_usage ?? 0)
  const systemDelta = (cpu.system_cpu_usage ?? 0) - (raw.precpu_stats.system_cpu_usage ?? 0)
  const cpuPercent = systemDelta > 0 && cpuDelta > 0 ? (cpuDelta / systemDelta) * onlineCpus * 100 : 0

  // The page cache it could drop is not counted: cgroup v1 calls it total_inactive_file, v2 inactive_file.
  const memory = raw.memory_stats ?? {}
  const usage = memory.usage ?? 0
  const inactive = memory.stats?.total_inactive_file ?? memory.stats?.inactive_file
  const used = inactive !== undefined && inactive < usage ? usage - inactive : usage
  const limit = memory.limit ?? 0

  let readBytes = 0
  let writeBytes = 0
  for (const entry of raw.blkio_stats?.io_service_bytes_recursive ?? []) {
    const op = entry.op[0]
    if (op === 'r' || op === 'R') readBytes += entry.value
    else if (op === 'w' || op === 'W') writeBytes += entry.value
  }
  const networks = Object.values(raw.networks ?? {})
  return {
    time: raw.read,
    cpuPercent,
    onlineCpus,
    cpuSeconds: cpu.cpu_usage.total_usage / 1e9,
    memory: { used, limit, percent: limit === 0 ? 0 : used / limit * 100 },
    network: { rxBytes: networks.reduce((sum, n) => sum + n.rx_bytes, 0), txBytes: networks.reduce((sum, n) => sum + n.tx_bytes, 0) },
    blockIo: { readBytes, writeBytes },
    pids: raw.pids_stats?.current ?? 0
  }
}

function zeroTime (time: string): string | null {
  return time.startsWith('0001-01-01') ? null : time
}

/**
 * The engine's list gives the command as one string: the path, then each argument, an argument
 * with a space in single quotes (moby daemon/list.go). Split back the same way, it is the array
 * inspect gives — except for an argument holding both a space and a single quote, which the
 * engine's string cannot tell apart.
 */
export function commandOfList (command: string): string[] {
  return [...command.matchAll(/'([^']*\s[^']*)'|(\S+)/g)].map(match => match[1] ?? match[2] ?? '')
}

/** The bindings in effect, as `docker ps` lists them: a container that is not running has none. */
function portsOf (info: Docker.ContainerInspectInfo): PortBinding[] {
  const live = (info.NetworkSettings.Ports ?? {}) as Record<string, Array<{ HostIp: string, HostPort: string }> | null>
  const bindings: PortBinding[] = []
  for (const [key, hosts] of Object.entries(live)) {
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
export function dedupePorts (ports: PortBinding[]): PortBinding[] {
  const seen = new Map<string, PortBinding>()
  for (const port of ports) {
    const key = `${port.container}/${port.protocol}/${port.host ?? ''}`
    const previous = seen.get(key)
    if (previous === undefined || (previous.hostIp.includes(':') && !port.hostIp.includes(':'))) seen.set(key, port)
  }
  return [...seen.values()].sort((a, b) => a.container - b.container || (a.host ?? 0) - (b.host ?? 0))
}

/** What `GET /info` says of the engine that berth lists as a node. */
export interface EngineSystemInfo {
  ID?: string
  Name?: string
  NCPU?: number
  MemTotal?: number
  Labels?: string[] | null
  ServerVersion?: string
  OSType?: string
  Architecture?: string
}

/**
 * The single host as a node: it is where every container runs. It has no address berth could name
 * (host ports answer on whichever of its addresses a port is bound to) and no cluster role.
 */
export function nodeOfEngine (info: EngineSystemInfo): Node {
  const labels: Record<string, string> = {}
  for (const label of info.Labels ?? []) {
    const eq = label.indexOf('=')
    if (eq > 0) labels[label.slice(0, eq)] = label.slice(eq + 1)
  }
  return {
    id: info.ID ?? '',
    name: info.Name ?? '',
    address: null,
    role: 'standalone',
    leader: false,
    state: 'ready',
    availability: 'active',
    labels,
    resources: { cpus: info.NCPU ?? 0, memory: info.MemTotal ?? 0 },
    engineVersion: info.ServerVersion ?? '',
    os: info.OSType ?? '',
    arch: info.Architecture ?? ''
  }
}
