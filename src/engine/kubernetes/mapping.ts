// Kubernetes' objects in berth's words, and berth's run spec as a Deployment: pure functions, no I/O.
// A berth container on Kubernetes is a Deployment of one container; its replicas are pods.
import type { V1Container, V1Deployment, V1Pod, V1PodSpec, V1NodeSelectorRequirement, V1TopologySpreadConstraint } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import type { Container, ContainerState, ContainerSummary, PortBinding, Protocol, RunSpec, Task, TaskState } from '../types.ts'

/** berth's id of the container: on the Deployment, its selector and its pods. */
export const LABEL_ID = 'io.berth/id'
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by'
/** berth's labels (ownership and the client's), kept whole: label values on Kubernetes are too narrow for them. */
export const ANNOTATION_LABELS = 'io.berth/labels'
/** The replicas a stopped container returns to when started. */
export const ANNOTATION_REPLICAS = 'io.berth/replicas'
/** What berth last did to it (start, stop, scale, restart), for the event the change becomes. */
export const ANNOTATION_ACTION = 'io.berth/action'
/** Changed on the pod template by a restart: a new revision replaces every pod. */
export const ANNOTATION_RESTARTED = 'io.berth/restarted-at'
export const CONTAINER_NAME = 'main'

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A Deployment's name must be a DNS label, which is narrower than a Docker container name. */
export function checkName (name: string): void {
  if (!DNS_LABEL.test(name)) {
    throw new BerthError('validation_failed', `on Kubernetes a container name must be a DNS label (lower-case letters, digits and "-", at most 63, starting and ending with a letter or digit): ${name} is not one`, { field: 'body/name' })
  }
}

export interface DeploymentOptions {
  id: string
  name: string
  /** Host ports berth chose for the ports that name none, by index into spec.ports. */
  chosenPorts: Map<number, number>
  pullSecret?: string
}

export function deploymentOf (spec: RunSpec, options: DeploymentOptions): V1Deployment {
  if (spec.image.kind !== 'ref') throw new BerthError('validation_failed', 'on Kubernetes a container runs an image reference, not a local image id', { field: 'body/image' })
  const selector = { [LABEL_ID]: options.id, [LABEL_MANAGED_BY]: 'berth' }
  const annotations = { [ANNOTATION_LABELS]: JSON.stringify(spec.labels) }
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: options.name, labels: selector, annotations },
    spec: {
      replicas: spec.replicas ?? 1,
      selector: { matchLabels: { [LABEL_ID]: options.id } },
      // Like `docker restart`: the old replicas stop before new ones start (they hold the same host ports).
      strategy: { type: 'Recreate' },
      revisionHistoryLimit: 2,
      template: {
        metadata: { labels: selector, annotations },
        spec: podSpecOf(spec, spec.image.ref.reference, options)
      }
    }
  }
}

function podSpecOf (spec: RunSpec, image: string, options: DeploymentOptions): V1PodSpec {
  const user = userOf(spec.user)
  const affinity = affinityOf(spec.placement?.constraints ?? [])
  const spread = spreadOf(spec.placement?.spread ?? [])
  return {
    // A tenant's container gets no credentials to the cluster, and no view of its services.
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    terminationGracePeriodSeconds: spec.stopTimeout ?? 10,
    ...(spec.hostname === undefined ? {} : { hostname: spec.hostname }),
    // What Kubernetes' "restricted" pod security profile asks for.
    securityContext: {
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
      ...(user.uid === undefined ? {} : { runAsUser: user.uid }),
      ...(user.gid === undefined ? {} : { runAsGroup: user.gid })
    },
    ...(options.pullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.pullSecret }] }),
    ...(affinity === undefined ? {} : { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: affinity }] } } } }),
    ...(spread.length === 0 ? {} : { topologySpreadConstraints: spread.map(constraint => ({ ...constraint, labelSelector: { matchLabels: { [LABEL_ID]: options.id } } })) }),
    ...(spec.shmSize === undefined ? {} : { volumes: [{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: String(spec.shmSize) } }] }),
    containers: [containerOf(spec, image, options)]
  }
}

function containerOf (spec: RunSpec, image: string, options: DeploymentOptions): V1Container {
  const limits: Record<string, string> = {
    ...(spec.memory === undefined ? {} : { memory: String(spec.memory) }),
    ...(spec.cpus === undefined ? {} : { cpu: millicores(spec.cpus) }),
    ...(typeof spec.gpus === 'number' ? { 'nvidia.com/gpu': String(spec.gpus) } : {})
  }
  const requests: Record<string, string> = {
    ...(spec.reservations?.memory === undefined ? {} : { memory: String(spec.reservations.memory) }),
    ...(spec.reservations?.cpus === undefined ? {} : { cpu: millicores(spec.reservations.cpus) })
  }
  return {
    name: CONTAINER_NAME,
    image,
    imagePullPolicy: spec.pull === 'always' ? 'Always' : spec.pull === 'never' ? 'Never' : 'IfNotPresent',
    ...(spec.entrypoint === undefined ? {} : { command: spec.entrypoint }),
    ...(spec.command === undefined ? {} : { args: spec.command }),
    env: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
    ...(spec.workingDir === undefined ? {} : { workingDir: spec.workingDir }),
    ...(spec.tty === true ? { tty: true, stdin: true } : {}),
    ports: spec.ports.map((port, index) => ({
      containerPort: port.container,
      protocol: port.protocol.toUpperCase(),
      hostPort: port.host ?? options.chosenPorts.get(index) as number,
      ...(port.hostIp === undefined || port.hostIp === '0.0.0.0' ? {} : { hostIP: port.hostIp })
    })),
    resources: {
      ...(Object.keys(limits).length === 0 ? {} : { limits }),
      ...(Object.keys(requests).length === 0 ? {} : { requests })
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      ...(spec.readOnly === true ? { readOnlyRootFilesystem: true } : {})
    },
    ...(spec.shmSize === undefined ? {} : { volumeMounts: [{ name: 'dshm', mountPath: '/dev/shm' }] })
  }
}

function millicores (cpus: number): string {
  return `${Math.max(1, Math.round(cpus * 1000))}m`
}

/** `-u 1000` or `-u 1000:100`: Kubernetes runs as numeric ids, and never as root here. */
export function userOf (user: string | undefined): { uid?: number, gid?: number } {
  if (user === undefined) return {}
  const match = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(user)
  if (match === null) {
    throw new BerthError('validation_failed', `on Kubernetes the user must be a numeric uid, or uid:gid (${user} is not): the cluster does not look names up in the image`, { field: 'body/user' })
  }
  const uid = Number(match[1])
  if (uid === 0) throw new BerthError('policy_denied', 'containers on Kubernetes run as a non-root user (the restricted pod security profile): user 0 is refused')
  return { uid, ...(match[2] === undefined ? {} : { gid: Number(match[2]) }) }
}

/** Swarm's constraint words, which berth's API speaks, as node affinity. */
function affinityOf (constraints: string[]): V1NodeSelectorRequirement[] | undefined {
  if (constraints.length === 0) return undefined
  return constraints.map(constraint => {
    const match = /^([^=!\s]+) ?(==|!=) ?(.+)$/.exec(constraint)
    const key = match === null ? null : nodeKey(match[1] as string)
    if (match === null || key === null) {
      throw new BerthError('validation_failed', `on Kubernetes a constraint is node.labels.KEY, node.hostname, node.platform.os or node.platform.arch compared with == or != (${constraint} is not)`, { field: 'body/placement/constraints' })
    }
    return { key, operator: match[2] === '==' ? 'In' : 'NotIn', values: [match[3] as string] }
  })
}

function spreadOf (spread: string[]): V1TopologySpreadConstraint[] {
  return spread.map(attribute => {
    const key = nodeKey(attribute)
    if (key === null) throw new BerthError('validation_failed', `on Kubernetes replicas spread over node.labels.KEY or node.hostname (${attribute} is not one)`, { field: 'body/placement/spread' })
    return { maxSkew: 1, topologyKey: key, whenUnsatisfiable: 'DoNotSchedule' }
  })
}

function nodeKey (attribute: string): string | null {
  if (attribute.startsWith('node.labels.')) return attribute.slice('node.labels.'.length)
  switch (attribute) {
    case 'node.hostname': return 'kubernetes.io/hostname'
    case 'node.platform.os': return 'kubernetes.io/os'
    case 'node.platform.arch': return 'kubernetes.io/arch'
    default: return null
  }
}

function constraintOf (requirement: V1NodeSelectorRequirement): string {
  const attribute = requirement.key === 'kubernetes.io/hostname'
    ? 'node.hostname'
    : requirement.key === 'kubernetes.io/os' ? 'node.platform.os' : requirement.key === 'kubernetes.io/arch' ? 'node.platform.arch' : `node.labels.${requirement.key}`
  return `${attribute}${requirement.operator === 'NotIn' ? '!=' : '=='}${requirement.values?.[0] ?? ''}`
}

// ---- reading back

/** Times arrive as Date from a list and as text from a watch. */
export function timeOf (value: unknown): string | null {
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'string' && value !== '') return new Date(value).toISOString()
  return null
}

export function idOf (deployment: V1Deployment): string {
  return deployment.metadata?.labels?.[LABEL_ID] ?? deployment.metadata?.uid ?? ''
}

export function labelsOf (object: { metadata?: { annotations?: Record<string, string> } }): Record<string, string> {
  const text = object.metadata?.annotations?.[ANNOTATION_LABELS]
  if (text === undefined) return {}
  try {
    const parsed = JSON.parse(text) as unknown
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as Record<string, string> : {}
  } catch {
    return {}
  }
}

export function isStopped (deployment: V1Deployment): boolean {
  return (deployment.spec?.replicas ?? 1) === 0
}

/** The replicas it runs when started: its spec's, or those remembered while it is stopped. */
export function replicaCount (deployment: V1Deployment): number {
  const replicas = deployment.spec?.replicas ?? 1
  if (replicas > 0) return replicas
  const remembered = Number(deployment.metadata?.annotations?.[ANNOTATION_REPLICAS])
  return Number.isInteger(remembered) && remembered > 0 ? remembered : 1
}

/** The pods of a container, newest first. */
export function podsOf (deployment: V1Deployment, pods: V1Pod[]): V1Pod[] {
  const id = idOf(deployment)
  return pods
    .filter(pod => pod.metadata?.labels?.[LABEL_ID] === id)
    .sort((a, b) => (timeOf(b.metadata?.creationTimestamp) ?? '').localeCompare(timeOf(a.metadata?.creationTimestamp) ?? ''))
}

function mainStatus (pod: V1Pod): NonNullable<NonNullable<V1Pod['status']>['containerStatuses']>[number] | undefined {
  return pod.status?.containerStatuses?.find(status => status.name === CONTAINER_NAME)
}

export function isRunning (pod: V1Pod): boolean {
  return pod.metadata?.deletionTimestamp === undefined && pod.status?.phase === 'Running' && mainStatus(pod)?.state?.running !== undefined
}

/** A pod's state in Swarm's task words, which berth's API uses for replicas on every cluster. */
export function podState (pod: V1Pod): TaskState {
  if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null) return 'shutdown'
  switch (pod.status?.phase) {
    case 'Running': return mainStatus(pod)?.state?.running !== undefined ? 'running' : 'starting'
    case 'Succeeded': return 'complete'
    case 'Failed': return 'failed'
  }
  return pod.spec?.nodeName === undefined || pod.spec.nodeName === '' ? 'pending' : 'preparing'
}

/** Why a pod is not running, in the scheduler's or the kubelet's words; null when nothing is wrong. */
export function podProblem (pod: V1Pod): { reason: string, message: string } | null {
  const unscheduled = pod.status?.conditions?.find(condition => condition.type === 'PodScheduled' && condition.status === 'False')
  if (unscheduled !== undefined) return { reason: unscheduled.reason ?? 'Unschedulable', message: unscheduled.message ?? '' }
  const status = mainStatus(pod)
  const waiting = status?.state?.waiting
  if (waiting?.reason !== undefined && waiting.reason !== 'ContainerCreating') return { reason: waiting.reason, message: waiting.message ?? '' }
  const terminated = status?.state?.terminated
  if (terminated !== undefined && terminated.exitCode !== 0) return { reason: terminated.reason ?? 'Error', message: terminated.message ?? `exited with ${terminated.exitCode}` }
  return null
}

function problemText (pod: V1Pod): string | null {
  const problem = podProblem(pod)
  return problem === null ? null : problem.message === '' ? problem.reason : `${problem.reason}: ${problem.message}`
}

function exitCodeOfPod (pod: V1Pod): number | null {
  const status = mainStatus(pod)
  return status?.state?.terminated?.exitCode ?? status?.lastState?.terminated?.exitCode ?? null
}

function hostPortsOf (deployment: V1Deployment): Array<{ container: number, host: number, protocol: Protocol, hostIp: string }> {
  const container = deployment.spec?.template.spec?.containers.find(candidate => candidate.name === CONTAINER_NAME)
  return (container?.ports ?? []).flatMap(port => port.hostPort === undefined
    ? []
    : [{ container: port.containerPort, host: port.hostPort, protocol: (port.protocol ?? 'TCP').toLowerCase() as Protocol, hostIp: port.hostIP ?? '' }])
}

/** The host ports a container holds on whichever node each replica runs. */
export function hostPorts (deployment: V1Deployment): number[] {
  return hostPortsOf(deployment).map(port => port.host)
}

export function taskOf (pod: V1Pod, deployment: V1Deployment): Task {
  const state = podState(pod)
  const address = pod.status?.hostIP ?? null
  const status = mainStatus(pod)
  const since = timeOf(status?.state?.running?.startedAt) ?? timeOf(status?.state?.terminated?.finishedAt) ?? timeOf(pod.metadata?.creationTimestamp) ?? new Date(0).toISOString()
  return {
    id: pod.metadata?.name ?? '',
    slot: null,
    node: pod.spec?.nodeName ?? null,
    address,
    state,
    desiredState: state === 'shutdown' ? 'shutdown' : 'running',
    error: problemText(pod),
    exitCode: exitCodeOfPod(pod),
    ports: state === 'running' ? hostPortsOf(deployment).map(port => ({ ...port, hostIp: port.hostIp === '' ? address ?? '' : port.hostIp })) : [],
    since
  }
}

/**
 * Its state in the words of `docker ps`: running while any replica runs; exited when stopped (scaled
 * to none); restarting while replicas are restarted after exiting or failing; created while they wait
 * to be placed or to start.
 */
export function stateOf (deployment: V1Deployment, pods: V1Pod[]): ContainerState {
  if (isStopped(deployment)) return 'exited'
  if (pods.some(isRunning)) return 'running'
  const live = pods.filter(pod => pod.metadata?.deletionTimestamp === undefined || pod.metadata.deletionTimestamp === null)
  if (live.some(pod => (mainStatus(pod)?.restartCount ?? 0) > 0)) return 'restarting'
  return 'created'
}

function statusText (deployment: V1Deployment, state: ContainerState, pods: V1Pod[]): string {
  const count = replicaCount(deployment)
  if (isStopped(deployment)) return `Stopped (${count} ${count === 1 ? 'replica' : 'replicas'} when started)`
  const running = pods.filter(isRunning).length
  const problem = pods.map(problemText).find(text => text !== null)
  const why = problem === undefined ? '' : `; ${problem}`
  return `${state === 'running' ? 'Up' : state === 'restarting' ? 'Restarting' : 'Starting'}: ${running}/${count} running${why}`
}

/** The ports in effect: those of the replicas that run, on their nodes' addresses (none while nothing runs, as on one host). */
function portsOf (tasks: Task[]): PortBinding[] {
  const ports: PortBinding[] = tasks.flatMap(task => task.ports)
  const unique = new Map(ports.map(port => [`${port.container}/${port.protocol}/${port.host ?? ''}/${port.hostIp}`, port]))
  return [...unique.values()].sort((a, b) => a.container - b.container || (a.host ?? 0) - (b.host ?? 0) || a.hostIp.localeCompare(b.hostIp))
}

function commandOf (deployment: V1Deployment): string[] {
  const container = deployment.spec?.template.spec?.containers[0]
  return [...(container?.command ?? []), ...(container?.args ?? [])]
}

/** The digest the nodes resolved the image to (`repo@sha256:…` as the kubelet reports it). */
function imageDigestOf (pods: V1Pod[]): string | null {
  for (const pod of pods) {
    const imageId = mainStatus(pod)?.imageID
    const at = imageId?.lastIndexOf('@') ?? -1
    if (imageId !== undefined && at !== -1) return imageId.slice(at + 1)
  }
  return null
}

export function summaryOf (deployment: V1Deployment, allPods: V1Pod[]): ContainerSummary {
  const pods = podsOf(deployment, allPods)
  const state = stateOf(deployment, pods)
  const tasks = pods.map(pod => taskOf(pod, deployment))
  return {
    id: idOf(deployment),
    name: deployment.metadata?.name ?? '',
    image: deployment.spec?.template.spec?.containers[0]?.image ?? '',
    imageId: imageDigestOf(pods) ?? '',
    command: commandOf(deployment),
    state,
    status: statusText(deployment, state, pods),
    createdAt: timeOf(deployment.metadata?.creationTimestamp) ?? new Date(0).toISOString(),
    ports: portsOf(tasks),
    labels: labelsOf(deployment),
    replicas: { count: replicaCount(deployment), running: pods.filter(isRunning).length },
    tasks
  }
}

export function containerOfDeployment (deployment: V1Deployment, allPods: V1Pod[]): Container {
  const summary = summaryOf(deployment, allPods)
  const pods = podsOf(deployment, allPods)
  const container = deployment.spec?.template.spec?.containers[0]
  const podSpec = deployment.spec?.template.spec
  const startedAt = pods.flatMap(pod => { const at = timeOf(mainStatus(pod)?.state?.running?.startedAt); return at === null ? [] : [at] }).sort()[0] ?? null
  const exited = summary.state === 'exited'
  const limits = container?.resources?.limits ?? {}
  const requests = container?.resources?.requests ?? {}
  const constraints = podSpec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms[0]?.matchExpressions ?? []
  const gpus = Number(limits['nvidia.com/gpu'] ?? 0)
  return {
    id: summary.id,
    name: summary.name,
    image: summary.image,
    imageId: summary.imageId,
    imageDigest: imageDigestOf(pods),
    command: commandOf(deployment),
    state: summary.state,
    running: summary.state === 'running',
    exitCode: exited ? pods.map(exitCodeOfPod).find(code => code !== null) ?? null : null,
    createdAt: summary.createdAt,
    startedAt,
    finishedAt: null,
    ports: summary.ports,
    labels: summary.labels,
    // A Deployment's pods are restarted whenever they exit.
    restart: { policy: 'always', maxRetries: 0 },
    resources: { memory: bytesOf(limits.memory), cpus: coresOf(limits.cpu) },
    autoRemove: false,
    replicas: summary.replicas as NonNullable<ContainerSummary['replicas']>,
    tasks: summary.tasks as Task[],
    placement: {
      constraints: constraints.map(constraintOf),
      spread: (podSpec?.topologySpreadConstraints ?? []).map(constraint => constraintOf({ key: constraint.topologyKey, operator: 'In', values: [] }).replace(/==$/, ''))
    },
    reservations: { memory: bytesOf(requests.memory), cpus: coresOf(requests.cpu) },
    ...(gpus > 0 ? { gpus } : {})
  }
}

const SUFFIXES: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 }

/** A Kubernetes quantity of bytes ("67108864", "64Mi"). */
export function bytesOf (quantity: string | undefined): number | null {
  const match = quantity === undefined ? null : /^(\d+(?:\.\d+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(quantity)
  if (match === null) return null
  return Math.round(Number(match[1]) * (SUFFIXES[match[2] ?? ''] as number))
}

/** A Kubernetes quantity of CPU ("500m", "2"). */
export function coresOf (quantity: string | undefined): number | null {
  const match = quantity === undefined ? null : /^(\d+(?:\.\d+)?)(m)?$/.exec(quantity)
  if (match === null) return null
  return match[2] === 'm' ? Number(match[1]) / 1000 : Number(match[1])
}
