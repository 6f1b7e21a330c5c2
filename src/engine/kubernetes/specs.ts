// The kubernetes backend's specs part: a Deployment or Job berth made, read back as the run request
// that made it (GET /v1/containers/{id}/spec), with the image pinned to the digest its nodes pulled (the
// kubelet reports it on each pod). The workload holds only what the run set: the image's own
// defaults never enter a pod spec. What berth adds for the restricted profile (a non-root security
// context, dropped capabilities) is berth's, not the run's, and is left out.
import type { V1Pod } from '@kubernetes/client-node'
import { LABEL_AUTO_REMOVE } from '../../access/ownership.ts'
import { repositoryOf } from '../image-ref.ts'
import type { SpecsPart } from '../parts.ts'
import type { ContainerConfig, Mount, Protocol, RunSpec } from '../types.ts'
import { ANNOTATION_RESTART, bytesOf, CONTAINER_NAME, coresOf, type Workload } from './mapping.ts'
import { idOf, labelsOf, podsOf, replicasOf } from './reading.ts'

/** What the part needs of the cluster: a container's workload and its pods, as the watch-fed copies keep them. */
export interface WorkloadSource {
  workload: (idOrName: string) => Promise<Workload>
  podsOf: (id: string) => V1Pod[]
}

export function kubernetesSpecs (cluster: WorkloadSource): SpecsPart {
  return {
    of: async (idOrName) => {
      const workload = await cluster.workload(idOrName)
      return configOfWorkload(workload, cluster.podsOf(idOf(workload.object)))
    }
  }
}

/** The restart policy the run asked for, as berth recorded it on the workload; else what its kind implies. */
function restartOf (workload: Workload): ContainerConfig['restart'] {
  const text = workload.object.metadata?.annotations?.[ANNOTATION_RESTART]
  const retries = /^on-failure:(\d+)$/.exec(text ?? '')
  if (retries !== null) return { policy: 'on-failure', ...(Number(retries[1]) === 0 ? {} : { maxRetries: Number(retries[1]) }) }
  if (text === 'no' || text === 'always' || text === 'unless-stopped') return { policy: text }
  return { policy: workload.kind === 'service' ? 'always' : 'no' }
}

/** berth gives every pod this grace unless the run asked for another (src/engine/kubernetes/mapping.ts). */
const DEFAULT_GRACE_SECONDS = 10

/** A workload as the run request berth made it from: pure, so the docker-only suites test it. */
export function configOfWorkload (workload: Workload, allPods: V1Pod[]): ContainerConfig {
  const deployment = workload.object
  const podSpec = deployment.spec?.template.spec
  const container = podSpec?.containers.find(each => each.name === CONTAINER_NAME) ?? podSpec?.containers[0]
  const image = container?.image ?? ''
  const digest = digestOf(podsOf(idOf(deployment), allPods))
  const repository = repositoryOf(image)
  const limits = container?.resources?.limits ?? {}
  const requests = container?.resources?.requests ?? {}
  const memory = bytesOf(limits.memory)
  const cpus = coresOf(limits.cpu)
  const reservedMemory = bytesOf(requests.memory)
  const reservedCpus = coresOf(requests.cpu)
  const reservations = { ...(reservedMemory === null ? {} : { memory: reservedMemory }), ...(reservedCpus === null ? {} : { cpus: reservedCpus }) }
  const replicas = replicasOf(workload)
  const labels = labelsOf(deployment)
  // Named volumes are PersistentVolumeClaims of the same name, mounted by the pod's volumes.
  const claims = new Map((podSpec?.volumes ?? []).flatMap(volume => volume.persistentVolumeClaim === undefined ? [] : [[volume.name, volume.persistentVolumeClaim.claimName] as const]))
  const mounts: Mount[] = (container?.volumeMounts ?? []).flatMap(mount => {
    const claim = claims.get(mount.name)
    return claim === undefined ? [] : [{ type: 'volume' as const, source: claim, target: mount.mountPath, readOnly: mount.readOnly ?? false }]
  })
  const security = podSpec?.securityContext
  const user = security?.runAsUser === undefined ? undefined : `${security.runAsUser}${security.runAsGroup === undefined ? '' : `:${security.runAsGroup}`}`
  const shm = podSpec?.volumes?.find(volume => volume.name === 'dshm')?.emptyDir?.sizeLimit
  const grace = podSpec?.terminationGracePeriodSeconds
  const gpus = Number(limits['nvidia.com/gpu'] ?? 0)
  const environment: NonNullable<ContainerConfig['environment']> = {
    ...(shm === undefined ? {} : { shmSize: bytesOf(String(shm)) ?? undefined }),
    ...(podSpec?.hostname === undefined ? {} : { hostname: podSpec.hostname }),
    ...(container?.securityContext?.readOnlyRootFilesystem === true ? { readOnly: true } : {}),
    ...(grace === undefined || grace === DEFAULT_GRACE_SECONDS ? {} : { stopTimeout: grace }),
    ...(gpus > 0 ? { gpus } : {})
  }
  const placement = placementOf(deployment)
  return {
    image,
    imageId: digest ?? '',
    imageDigests: digest === null || repository === null ? [] : [`${repository}@${digest}`],
    ...(container?.args === undefined ? {} : { command: container.args }),
    ...(container?.command === undefined ? {} : { entrypoint: container.command }),
    env: Object.fromEntries((container?.env ?? []).flatMap(entry => entry.value === undefined ? [] : [[entry.name, entry.value]])),
    ...(container?.workingDir === undefined ? {} : { workingDir: container.workingDir }),
    ...(user === undefined ? {} : { user }),
    labels,
    ports: (container?.ports ?? []).map(port => ({
      container: port.containerPort,
      protocol: (port.protocol ?? 'TCP').toLowerCase() as Protocol,
      ...(port.hostPort === undefined ? {} : { host: port.hostPort }),
      ...(port.hostIP === undefined ? {} : { hostIp: port.hostIP })
    })),
    // Bind mounts are refused on Kubernetes; /dev/shm is shmSize, not a mount of the run's.
    mounts,
    restart: restartOf(workload),
    ...(memory === null ? {} : { memory }),
    ...(cpus === null ? {} : { cpus }),
    autoRemove: labels[LABEL_AUTO_REMOVE] === 'true',
    tty: container?.tty ?? false,
    ...(Object.keys(environment).length === 0 ? {} : { environment }),
    cluster: {
      replicas,
      ...(placement === undefined ? {} : { placement }),
      ...(Object.keys(reservations).length === 0 ? {} : { reservations })
    }
  }
}

/** The digest the nodes resolved the image to (`repo@sha256:…`, or `docker-pullable://repo@sha256:…`, as the kubelet reports it). */
function digestOf (pods: V1Pod[]): string | null {
  for (const pod of pods) {
    const imageId = pod.status?.containerStatuses?.find(status => status.name === CONTAINER_NAME)?.imageID ?? ''
    const at = imageId.lastIndexOf('@')
    if (at !== -1) return imageId.slice(at + 1)
  }
  return null
}

/** Node affinity and topology spread as Swarm's words, which berth's API speaks. */
function placementOf (deployment: Workload['object']): RunSpec['placement'] {
  const podSpec = deployment.spec?.template.spec
  const requirements = podSpec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms[0]?.matchExpressions ?? []
  const constraints = requirements.map(requirement => `${attributeOf(requirement.key)}${requirement.operator === 'NotIn' ? '!=' : '=='}${requirement.values?.[0] ?? ''}`)
  const spread = (podSpec?.topologySpreadConstraints ?? []).map(constraint => attributeOf(constraint.topologyKey))
  return constraints.length === 0 && spread.length === 0 ? undefined : { constraints, spread }
}

function attributeOf (key: string): string {
  switch (key) {
    case 'kubernetes.io/hostname': return 'node.hostname'
    case 'kubernetes.io/os': return 'node.platform.os'
    case 'kubernetes.io/arch': return 'node.platform.arch'
    default: return `node.labels.${key}`
  }
}
