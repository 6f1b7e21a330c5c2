// The docker backend's specs part: what a container was run with, told apart from its image's
// defaults, as a run request would say it (GET /v1/containers/{id}/spec).
import type Docker from 'dockerode'
import { LABEL_AUTO_REMOVE } from '../../access/ownership.ts'
import { BerthError } from '../../errors.ts'
import type { SpecsPart } from '../parts.ts'
import type { ContainerConfig, Mount, Protocol, RestartPolicy } from '../types.ts'
import { gpusOf } from './mapping.ts'
import { withSignal, type DockerTransport } from './transport.ts'

export function dockerSpecs (transport: DockerTransport): SpecsPart {
  return { of: async (idOrName) => await containerConfig(transport, idOrName) }
}

function same (a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null)
}

function envMap (env: string[] | null | undefined): Record<string, string> {
  const map: Record<string, string> = {}
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=')
    if (eq > 0) map[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  return map
}

async function containerConfig (transport: DockerTransport, idOrName: string): Promise<ContainerConfig> {
  const info = await transport.call({ subject: 'container', target: idOrName },
    (docker, signal) => docker.getContainer(idOrName).inspect({ abortSignal: signal }))
  let image: Docker.ImageInspectInfo | null = null
  try {
    image = await transport.call({ subject: 'image', target: info.Image }, (docker, signal) => docker.getImage(info.Image).inspect(withSignal(signal)))
  } catch (error) {
    // The image was removed (force) while the container lives on: nothing to tell apart from.
    if (!(error instanceof BerthError && error.code === 'image_not_found')) throw error
  }
  const config = info.Config
  const defaults = image?.Config
  const imageEnv = envMap(defaults?.Env)
  const env = Object.fromEntries(Object.entries(envMap(config.Env)).filter(([key, value]) => imageEnv[key] !== value))
  const imageLabels = defaults?.Labels ?? {}
  const labels = Object.fromEntries(Object.entries(config.Labels ?? {}).filter(([key, value]) => imageLabels[key] !== value))
  const host = info.HostConfig
  const ports: ContainerConfig['ports'] = []
  for (const [key, bindings] of Object.entries((host.PortBindings ?? {}) as Record<string, Array<{ HostIp?: string, HostPort?: string }> | null>)) {
    const [port, protocol = 'tcp'] = key.split('/')
    for (const binding of bindings ?? [{}]) {
      // A fixed host port is part of the request; "" and a range were the engine's (or policy's) choice.
      const fixed = /^\d+$/.test(binding.HostPort ?? '') ? Number(binding.HostPort) : undefined
      ports.push({ container: Number(port), protocol: protocol as Protocol, ...(fixed === undefined ? {} : { host: fixed }), ...(binding.HostIp ? { hostIp: binding.HostIp } : {}) })
    }
  }
  const mounts: Mount[] = []
  for (const bind of host.Binds ?? []) {
    const [source = '', target = '', mode = 'rw'] = bind.split(':')
    mounts.push({ type: 'bind', source, target, readOnly: mode.split(',').includes('ro') })
  }
  for (const mount of (host.Mounts ?? []) as Array<{ Type?: string, Source?: string, Target?: string, ReadOnly?: boolean }>) {
    if (mount.Type === 'volume' && mount.Source && mount.Target) mounts.push({ type: 'volume', source: mount.Source, target: mount.Target, readOnly: mount.ReadOnly ?? false })
  }
  const restart = host.RestartPolicy
  return {
    image: config.Image,
    imageId: info.Image,
    imageDigests: (image?.RepoDigests ?? []).filter(digest => !digest.startsWith('<none>@')),
    ...(config.Cmd && !same(config.Cmd, defaults?.Cmd) ? { command: config.Cmd as string[] } : {}),
    ...(config.Entrypoint && !same(config.Entrypoint, defaults?.Entrypoint) ? { entrypoint: [config.Entrypoint].flat() as string[] } : {}),
    env,
    ...(config.WorkingDir && config.WorkingDir !== (defaults?.WorkingDir ?? '') ? { workingDir: config.WorkingDir } : {}),
    ...(config.User && config.User !== (defaults?.User ?? '') ? { user: config.User } : {}),
    labels,
    ports,
    mounts,
    restart: { policy: (restart?.Name || 'no') as RestartPolicy, ...(restart?.Name === 'on-failure' ? { maxRetries: restart.MaximumRetryCount ?? 0 } : {}) },
    ...(host.Memory ? { memory: host.Memory } : {}),
    ...(host.NanoCpus ? { cpus: host.NanoCpus / 1e9 } : {}),
    // berth's own autoRemove is a label (berth removes the container once its exit is collected); the CLI's --rm is the engine's.
    autoRemove: (host.AutoRemove ?? false) || config.Labels?.[LABEL_AUTO_REMOVE] === 'true',
    tty: config.Tty ?? false,
    ...environmentOf(info, (defaults as { StopSignal?: string } | undefined)?.StopSignal)
  }
}

/** The engine's default /dev/shm. */
const DEFAULT_SHM = 64 * 1024 * 1024

/** What a run set of the environment knobs: only what differs from the engine's and the image's defaults. */
function environmentOf (info: Docker.ContainerInspectInfo, imageStopSignal: string | undefined): Pick<ContainerConfig, 'environment'> {
  const host = info.HostConfig as Docker.HostConfig & { Init?: boolean | null, ReadonlyRootfs?: boolean, DeviceRequests?: unknown[] | null }
  const config = info.Config as Docker.ContainerInspectInfo['Config'] & { StopTimeout?: number, StopSignal?: string }
  const nofile = host.Ulimits?.find(limit => limit.Name === 'nofile')
  const environment: NonNullable<ContainerConfig['environment']> = {
    ...(host.ShmSize !== undefined && host.ShmSize !== 0 && host.ShmSize !== DEFAULT_SHM ? { shmSize: host.ShmSize } : {}),
    // The engine names a container's host after its id unless the run named it.
    ...(config.Hostname && !info.Id.startsWith(config.Hostname) ? { hostname: config.Hostname } : {}),
    ...(nofile?.Soft !== undefined && nofile.Hard !== undefined ? { ulimits: { nofile: { soft: nofile.Soft, hard: nofile.Hard } } } : {}),
    ...(host.Init === true ? { init: true } : {}),
    ...(host.ReadonlyRootfs === true ? { readOnly: true } : {}),
    ...(config.StopSignal && config.StopSignal !== imageStopSignal ? { stopSignal: config.StopSignal } : {}),
    ...(config.StopTimeout === undefined ? {} : { stopTimeout: config.StopTimeout }),
    ...gpusOf(host as { DeviceRequests?: Parameters<typeof gpusOf>[0]['DeviceRequests'] })
  }
  return Object.keys(environment).length === 0 ? {} : { environment }
}
