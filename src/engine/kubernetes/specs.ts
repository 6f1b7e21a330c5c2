// The kubernetes backend's specs part: a Deployment berth made, read back as the run request that
// made it (GET /v1/containers/{id}/spec), with the image pinned to the digest its nodes pulled (the
// kubelet reports it on each pod). The Deployment holds only what the run set: the image's own
// defaults never enter a pod spec. What berth adds for the restricted profile (a non-root security
// context, dropped capabilities) is berth's, not the run's, and is left out.
import type { V1Deployment, V1Pod } from '@kubernetes/client-node'
import type { SpecsPart } from '../parts.ts'
import type { ContainerConfig, Protocol, RunSpec } from '../types.ts'
import { ANNOTATION_REPLICAS, bytesOf, CONTAINER_NAME, coresOf, labelsOf, podsOf } from './mapping.ts'

/** What the part needs of the cluster: a Deployment and the pods it has, as the cluster keeps them. */
export interface DeploymentSource {
  deployment: (idOrName: string) => Promise<{ deployment: V1Deployment, pods: V1Pod[] }>
}

export function kubernetesSpecs (cluster: DeploymentSource): SpecsPart {
  return {
    of: async (idOrName) => {
      const { deployment, pods } = await cluster.deployment(idOrName)
      return configOfDeployment(deployment, pods)
    }
  }
}

/** berth gives every pod this grace unless the run asked for another (src/engine/kubernetes/mapping.ts). */
const DEFAULT_GRACE_SECONDS = 10

/** A Deployment as the run request berth made it from: pure, so the docker-only suites test it. */
export function configOfDeployment (deployment: V1Deployment, allPods: V1Pod[]): ContainerConfig {
  const podSpec = deployment.spec?.template.spec
  const container = podSpec?.containers.find(each => each.name === CONTAINER_NAME) ?? podSpec?.containers[0]
  const image = container?.image ?? ''
  const digest = digestOf(podsOf(deployment, allPods))
  const repository = repositoryOf(image)
  const limits = container?.resources?.limits ?? {}
  const requests = container?.resources?.requests ?? {}
  const memory = bytesOf(limits.memory)
  const cpus = coresOf(limits.cpu)
  const reservedMemory = bytesOf(requests.memory)
  const reservedCpus = coresOf(requests.cpu)
  const reservations = { ...(reservedMemory === null ? {} : { memory: reservedMemory }), ...(reservedCpus === null ? {} : { cpus: reservedCpus }) }
  const remembered = Number(deployment.metadata?.annotations?.[ANNOTATION_REPLICAS])
  const replicas = Number.isInteger(remembered) && remembered > 0 ? remembered : deployment.spec?.replicas ?? 1
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
    labels: labelsOf(deployment),
    ports: (container?.ports ?? []).map(port => ({
      container: port.containerPort,
      protocol: (port.protocol ?? 'TCP').toLowerCase() as Protocol,
      ...(port.hostPort === undefined ? {} : { host: port.hostPort }),
      ...(port.hostIP === undefined ? {} : { hostIp: port.hostIP })
    })),
    // Named volumes and binds are refused on Kubernetes: the only mount berth makes is /dev/shm, which is shmSize.
    mounts: [],
    // A Deployment restarts its replicas whenever they exit.
    restart: { policy: 'always' },
    ...(memory === null ? {} : { memory }),
    ...(cpus === null ? {} : { cpus }),
    autoRemove: false,
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
function placementOf (deployment: V1Deployment): RunSpec['placement'] {
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

function repositoryOf (image: string): string | null {
  const name = image.split('@')[0] as string
  const slash = name.lastIndexOf('/')
  const colon = name.lastIndexOf(':')
  const repository = colon > slash ? name.slice(0, colon) : name
  return repository === '' ? null : repository
}
