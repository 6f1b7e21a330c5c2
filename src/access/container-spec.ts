// A container made back into the run request that made it, for someone to run the same environment
// again: the image pinned by its registry digest, only what the run set (the image's own defaults are
// left to the image), none of berth's labels, and environment values only for the token that ran it.
import { parseImage } from '../engine/image-ref.ts'
import type { ContainerConfig } from '../engine/types.ts'
import type { RunRequest } from '../schemas/containers.ts'
import type { ContainerSpec } from '../schemas/container-spec.ts'
import { LABEL_OWNER, RESERVED_LABEL_PREFIX, type Principal } from './ownership.ts'

/** The image reference pinned to a digest: of the repository the container named when the image has one there, else of any registry it was pushed to. */
function pinned (config: ContainerConfig): { reference: string, digest: string } | null {
  const named = parseImage(config.image)
  const repository = typeof named === 'string' || named.kind === 'id' ? null : named.ref.repository
  const entry = config.imageDigests.find(digest => repository !== null && digest.startsWith(`${repository}@`)) ?? config.imageDigests[0]
  if (entry === undefined) return null
  return { reference: entry, digest: entry.slice(entry.indexOf('@') + 1) }
}

export function containerSpecOf (config: ContainerConfig, requester: Principal): ContainerSpec {
  const pin = pinned(config)
  const mayReadEnv = config.labels[LABEL_OWNER] === requester.name
  const envNames = Object.keys(config.env).sort()
  const labels = Object.fromEntries(Object.entries(config.labels).filter(([key]) => !key.startsWith(RESERVED_LABEL_PREFIX)))
  const run: RunRequest = {
    image: pin?.reference ?? config.image,
    ...(config.command === undefined ? {} : { command: config.command }),
    ...(config.entrypoint === undefined ? {} : { entrypoint: config.entrypoint }),
    ...(envNames.length === 0 ? {} : { env: Object.fromEntries(envNames.map(name => [name, mayReadEnv ? config.env[name] as string : ''])) }),
    ...(config.workingDir === undefined ? {} : { workingDir: config.workingDir }),
    ...(config.user === undefined ? {} : { user: config.user }),
    ...(Object.keys(labels).length === 0 ? {} : { labels }),
    ...(config.ports.length === 0 ? {} : { ports: config.ports }),
    ...(config.mounts.length === 0 ? {} : { volumes: config.mounts.map(mount => ({ source: mount.source, target: mount.target, ...(mount.readOnly ? { readOnly: true } : {}) })) }),
    ...(config.restart.policy === 'no' ? {} : { restart: config.restart }),
    ...resourcesOf(config),
    ...(config.cluster?.replicas === undefined || config.cluster.replicas === 1 ? {} : { replicas: config.cluster.replicas }),
    ...(config.cluster?.placement === undefined || (config.cluster.placement.constraints.length === 0 && config.cluster.placement.spread.length === 0)
      ? {}
      : { placement: config.cluster.placement }),
    ...(config.autoRemove ? { autoRemove: true } : {}),
    ...(config.tty ? { tty: true } : {}),
    // Where it ran (its network) and how long it was to live (expiry) belong to that run, not to the environment.
    ...config.environment
  }
  return {
    run,
    image: { id: config.imageId, digest: pin?.digest ?? null, pinned: pin !== null },
    redactedEnv: mayReadEnv ? [] : envNames
  }
}

/** Limits, and on a cluster the reservations: a backend without reservations refuses them by name. */
function resourcesOf (config: ContainerConfig): Pick<RunRequest, 'resources'> {
  const reservations = config.cluster?.reservations ?? {}
  const resources = {
    ...(config.memory === undefined ? {} : { memory: config.memory }),
    ...(config.cpus === undefined ? {} : { cpus: config.cpus }),
    ...(Object.keys(reservations).length === 0 ? {} : { reservations })
  }
  return Object.keys(resources).length === 0 ? {} : { resources }
}
