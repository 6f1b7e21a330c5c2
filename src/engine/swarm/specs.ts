// The swarm backend's specs part: a service berth made, read back as the run request that made it
// (GET /v1/containers/{id}/spec). The manager keeps the service's spec as berth wrote it — env,
// command, ports, limits, restart and mounts are only what the run set, since the image's own
// defaults never enter a service spec — and the image pinned to the digest the cluster runs.
import { LABEL_AUTO_REMOVE } from '../../access/ownership.ts'
import { repositoryOf } from '../image-ref.ts'
import type { SpecsPart } from '../parts.ts'
import type { ContainerConfig, Mount, Protocol, RestartPolicy } from '../types.ts'
import { imageParts, LABEL_REPLICAS, type SwarmService } from './mapping.ts'

/** What the part needs of the cluster: a service as the manager keeps it. */
export interface ServiceSource {
  service: (idOrName: string) => Promise<SwarmService>
}

export function swarmSpecs (cluster: ServiceSource): SpecsPart {
  return { of: async (idOrName) => configOfService(await cluster.service(idOrName)) }
}

function envMap (env: string[] | undefined): Record<string, string> {
  const map: Record<string, string> = {}
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=')
    if (eq > 0) map[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  return map
}

/** A service's spec as the run request berth made it from: pure, so the docker-only suites test it. */
export function configOfService (service: SwarmService): ContainerConfig {
  const spec = service.Spec
  const task = spec.TaskTemplate
  const container = task.ContainerSpec
  const { image, digest } = imageParts(container.Image)
  const repository = repositoryOf(image)
  const limits = task.Resources?.Limits ?? {}
  const reserved = task.Resources?.Reservations ?? {}
  const reservations = {
    ...(reserved.MemoryBytes ? { memory: reserved.MemoryBytes } : {}),
    ...(reserved.NanoCPUs ? { cpus: reserved.NanoCPUs / 1e9 } : {})
  }
  const constraints = task.Placement?.Constraints ?? []
  const spread = (task.Placement?.Preferences ?? []).flatMap(preference => preference.Spread ? [preference.Spread.SpreadDescriptor] : [])
  // A stopped service runs none and keeps its count in a label; the count it was run with is that.
  const remembered = Number(spec.Labels?.[LABEL_REPLICAS])
  const replicas = Number.isInteger(remembered) && remembered > 0 ? remembered : spec.Mode?.Replicated?.Replicas ?? 1
  const labels = Object.fromEntries(Object.entries(spec.Labels ?? {}).filter(([key]) => key !== LABEL_REPLICAS))
  const restart = task.RestartPolicy
  const policy: RestartPolicy = restart?.Condition === 'none' ? 'no' : restart?.Condition === 'on-failure' ? 'on-failure' : 'always'
  const mounts: Mount[] = (container.Mounts ?? []).flatMap(mount =>
    (mount.Type === 'bind' || mount.Type === 'volume') && mount.Source ? [{ type: mount.Type, source: mount.Source, target: mount.Target, readOnly: mount.ReadOnly ?? false }] : [])
  return {
    image,
    // No node's image id is berth's to read from the manager: the digest is what every node ran.
    imageId: digest ?? '',
    imageDigests: digest === null || repository === null ? [] : [`${repository}@${digest}`],
    ...(container.Args ? { command: container.Args } : {}),
    ...(container.Command ? { entrypoint: container.Command } : {}),
    env: envMap(container.Env),
    ...(container.Dir ? { workingDir: container.Dir } : {}),
    ...(container.User ? { user: container.User } : {}),
    labels,
    // A published port is part of the request, whether the run named it or berth chose it from the policy's range.
    ports: (spec.EndpointSpec?.Ports ?? []).map(port => ({
      container: port.TargetPort ?? 0,
      protocol: (port.Protocol ?? 'tcp') as Protocol,
      ...(port.PublishedPort ? { host: port.PublishedPort } : {})
    })),
    mounts,
    restart: { policy, ...(policy === 'on-failure' ? { maxRetries: restart?.MaxAttempts ?? 0 } : {}) },
    ...(limits.MemoryBytes ? { memory: limits.MemoryBytes } : {}),
    ...(limits.NanoCPUs ? { cpus: limits.NanoCPUs / 1e9 } : {}),
    // berth's sweeper removes it once its end is collected, as the label says (src/lifecycle/).
    autoRemove: labels[LABEL_AUTO_REMOVE] === 'true',
    tty: container.TTY ?? false,
    ...(container.StopGracePeriod === undefined ? {} : { environment: { stopTimeout: Math.round(container.StopGracePeriod / 1e9) } }),
    cluster: {
      replicas,
      ...(constraints.length === 0 && spread.length === 0 ? {} : { placement: { constraints, spread } }),
      ...(Object.keys(reservations).length === 0 ? {} : { reservations })
    }
  }
}
