// Kubernetes' objects read back in berth's words: a workload (Deployment or Job) and its pods as a
// container of `docker ps` and `docker inspect`, with replicas as tasks in Swarm's words. Pure
// functions, no I/O.
import type { V1Deployment, V1Job, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node'
import { LABEL_AUTO_REMOVE } from '../../access/ownership.ts'
import { expiryOf } from '../expiry.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import type { Container, ContainerExit, ContainerState, ContainerSummary, PortBinding, Protocol, RestartPolicy, Task, TaskState, Volume } from '../types.ts'
import {
  ANNOTATION_EXIT, ANNOTATION_EXPIRES_AT, ANNOTATION_LABELS, ANNOTATION_REPLICAS, ANNOTATION_RESTART, CONTAINER_NAME, LABEL_ID, bytesOf, constraintOf, coresOf, type Workload
} from './mapping.ts'

/** What a workload's metadata and pod template look like, whichever kind it is. */
type Described = V1Deployment | V1Job

/** Times arrive as Date from a list and as text from a watch. */
export function timeOf (value: unknown): string | null {
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'string' && value !== '') return new Date(value).toISOString()
  return null
}

export function idOf (object: Described): string {
  return object.metadata?.labels?.[LABEL_ID] ?? object.metadata?.uid ?? ''
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

export function isRemoving (object: Described): boolean {
  return object.metadata?.deletionTimestamp !== undefined && object.metadata.deletionTimestamp !== null
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

/** How a Job ended, by its own conditions: complete, failed, or not (yet). */
export function jobOutcome (job: V1Job): 'complete' | 'failed' | null {
  for (const condition of job.status?.conditions ?? []) {
    if (condition.status !== 'True') continue
    if (condition.type === 'Complete') return 'complete'
    if (condition.type === 'Failed') return 'failed'
  }
  return null
}

export function isSuspended (job: V1Job): boolean {
  return job.spec?.suspend === true
}

/** Replicas of a workload: a Deployment's count, a Job's completions. */
export function replicasOf (workload: Workload): number {
  return workload.kind === 'service' ? replicaCount(workload.object) : workload.object.spec?.completions ?? 1
}

/** The pods of a container, newest first. */
export function podsOf (id: string, pods: V1Pod[]): V1Pod[] {
  return pods
    .filter(pod => pod.metadata?.labels?.[LABEL_ID] === id)
    .sort((a, b) => (timeOf(b.metadata?.creationTimestamp) ?? '').localeCompare(timeOf(a.metadata?.creationTimestamp) ?? ''))
}

type Status = NonNullable<NonNullable<V1Pod['status']>['containerStatuses']>[number]

function mainStatus (pod: V1Pod): Status | undefined {
  return pod.status?.containerStatuses?.find(status => status.name === CONTAINER_NAME)
}

export function isRunning (pod: V1Pod): boolean {
  return !isGoing(pod) && pod.status?.phase === 'Running' && mainStatus(pod)?.state?.running !== undefined
}

function isGoing (pod: V1Pod): boolean {
  return pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null
}

/** A pod that has finished (succeeded or failed) for good. */
export function isTerminal (pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed'
}

/** A pod's state in Swarm's task words, which berth's API uses for replicas on every cluster. */
export function podState (pod: V1Pod): TaskState {
  if (isGoing(pod)) return 'shutdown'
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

/** How a pod's main container ended, when it has. */
export function podExit (pod: V1Pod): ContainerExit & { finishedAt: string | null } | null {
  const status = mainStatus(pod)
  const terminated = status?.state?.terminated ?? status?.lastState?.terminated
  if (terminated === undefined) return null
  return {
    exitCode: terminated.exitCode,
    oomKilled: terminated.reason === 'OOMKilled',
    error: terminated.exitCode === 0 || terminated.reason === undefined || terminated.reason === 'Error' || terminated.reason === 'Completed' || terminated.reason === 'OOMKilled'
      ? null
      : `${terminated.reason}${terminated.message === undefined ? '' : `: ${terminated.message}`}`,
    finishedAt: timeOf(terminated.finishedAt)
  }
}

/** What berth recorded of how its replicas ended when it stopped them. */
export function recordedExit (object: Described): ContainerExit & { finishedAt: string | null } | null {
  const text = object.metadata?.annotations?.[ANNOTATION_EXIT]
  if (text === undefined) return null
  try {
    const parsed = JSON.parse(text) as { exitCode?: unknown, oomKilled?: unknown, finishedAt?: unknown }
    if (typeof parsed.exitCode !== 'number') return null
    return { exitCode: parsed.exitCode, oomKilled: parsed.oomKilled === true, error: null, finishedAt: typeof parsed.finishedAt === 'string' ? parsed.finishedAt : null }
  } catch {
    return null
  }
}

/**
 * How a container ended: what berth recorded when it stopped it, else its newest replica that has
 * ended (a Job that completed ended well, whatever an earlier attempt said).
 */
export function exitOf (workload: Workload, pods: V1Pod[]): ContainerExit & { finishedAt: string | null } | null {
  const recorded = recordedExit(workload.object)
  const stopped = workload.kind === 'service' ? isStopped(workload.object) : isSuspended(workload.object)
  if (recorded !== null && stopped) return recorded
  const ended = pods.map(podExit).filter(exit => exit !== null).sort((a, b) => (b.finishedAt ?? '').localeCompare(a.finishedAt ?? ''))
  if (workload.kind === 'job' && jobOutcome(workload.object) === 'complete') {
    const finishedAt = timeOf(workload.object.status?.completionTime) ?? ended[0]?.finishedAt ?? null
    return { exitCode: 0, oomKilled: false, error: null, finishedAt }
  }
  return ended[0] ?? recorded
}

function hostPortsOf (object: Described): Array<{ container: number, host: number, protocol: Protocol, hostIp: string }> {
  const container = object.spec?.template.spec?.containers.find(candidate => candidate.name === CONTAINER_NAME)
  return (container?.ports ?? []).flatMap(port => port.hostPort === undefined
    ? []
    : [{ container: port.containerPort, host: port.hostPort, protocol: (port.protocol ?? 'TCP').toLowerCase() as Protocol, hostIp: port.hostIP ?? '' }])
}

/** The host ports a container holds on whichever node each replica runs. */
export function hostPorts (object: Described): number[] {
  return hostPortsOf(object).map(port => port.host)
}

/** The PersistentVolumeClaims (berth's named volumes) its pods mount. */
export function claimsOf (object: Described): string[] {
  return (object.spec?.template.spec?.volumes ?? []).flatMap(volume => volume.persistentVolumeClaim === undefined ? [] : [volume.persistentVolumeClaim.claimName])
}

export function taskOf (pod: V1Pod, object: Described): Task {
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
    desiredState: state === 'shutdown' ? 'shutdown' : state === 'complete' || state === 'failed' ? state : 'running',
    error: problemText(pod),
    exitCode: exitCodeOfPod(pod),
    ports: state === 'running' ? hostPortsOf(object).map(port => ({ ...port, hostIp: port.hostIp === '' ? address ?? '' : port.hostIp })) : [],
    since
  }
}

/**
 * Its state in the words of `docker ps`. A service: running while any replica runs, exited when
 * stopped (scaled to none), restarting while replicas are restarted after exiting, created while
 * they wait to be placed or to start. A run that finishes: exited once its Job completed or failed
 * (or berth stopped it), restarting between a failed attempt and the next.
 */
export function stateOf (workload: Workload, pods: V1Pod[]): ContainerState {
  if (isRemoving(workload.object)) return 'removing'
  if (workload.kind === 'service') {
    if (isStopped(workload.object)) return 'exited'
    if (pods.some(isRunning)) return 'running'
    if (pods.filter(pod => !isGoing(pod)).some(pod => (mainStatus(pod)?.restartCount ?? 0) > 0)) return 'restarting'
    return 'created'
  }
  const job = workload.object
  if (jobOutcome(job) !== null || isSuspended(job)) return 'exited'
  if (pods.some(isRunning)) return 'running'
  const live = pods.filter(pod => !isGoing(pod) && !isTerminal(pod))
  const succeeded = pods.filter(pod => pod.status?.phase === 'Succeeded').length
  // Done before the Job controller has said so.
  if (live.length === 0 && pods.length > 0 && succeeded >= (job.spec?.completions ?? 1)) return 'exited'
  if (pods.some(pod => pod.status?.phase === 'Failed')) return 'restarting'
  return 'created'
}

/** How long ago, as the Docker CLI says it ("5 seconds", "About a minute", "3 hours"). */
export function humanDuration (ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.floor(seconds / 60)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.floor(ms / 3_600_000 + 0.5)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 14) return `${Math.floor(hours / 24)} days`
  if (hours < 24 * 60) return `${Math.floor(hours / 24 / 7)} weeks`
  if (hours < 24 * 730) return `${Math.floor(hours / 24 / 30)} months`
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`
}

function ago (time: string | null, now: number): string {
  return time === null ? '' : ` ${humanDuration(Math.max(0, now - Date.parse(time)))} ago`
}

function statusText (workload: Workload, state: ContainerState, pods: V1Pod[], now: number): string {
  const count = replicasOf(workload)
  const running = pods.filter(isRunning).length
  const problem = pods.map(problemText).find(text => text !== null)
  const why = problem === undefined ? '' : `; ${problem}`
  const exit = exitOf(workload, pods)
  const several = count === 1 ? '' : ` (${count} replicas when started)`
  if (state === 'removing') return 'Removal In Progress'
  if (state === 'exited') return exit === null ? `Exited${several}` : `Exited (${exit.exitCode})${ago(exit.finishedAt, now)}${workload.kind === 'service' ? several : ''}`
  if (workload.kind === 'job' && state === 'restarting') return `Restarting (${exit?.exitCode ?? 0})${ago(exit?.finishedAt ?? null, now)}`
  if (workload.kind === 'job' && state === 'running') {
    const since = pods.flatMap(pod => { const at = timeOf(mainStatus(pod)?.state?.running?.startedAt); return at === null ? [] : [at] }).sort()[0] ?? null
    return `Up ${humanDuration(since === null ? 0 : Math.max(0, now - Date.parse(since)))}${count === 1 ? '' : `: ${running}/${count} running`}`
  }
  return `${state === 'running' ? 'Up' : state === 'restarting' ? 'Restarting' : 'Starting'}: ${running}/${count} running${why}`
}

/** The ports in effect: those of the replicas that run, on their nodes' addresses (none while nothing runs, as on one host). */
function portsOf (tasks: Task[]): PortBinding[] {
  const ports: PortBinding[] = tasks.flatMap(task => task.ports)
  const unique = new Map(ports.map(port => [`${port.container}/${port.protocol}/${port.host ?? ''}/${port.hostIp}`, port]))
  return [...unique.values()].sort((a, b) => a.container - b.container || (a.host ?? 0) - (b.host ?? 0) || a.hostIp.localeCompare(b.hostIp))
}

function commandOf (object: Described): string[] {
  const container = object.spec?.template.spec?.containers[0]
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

/** The restart policy the run asked for; a Deployment made before berth recorded it restarts always. */
export function restartOf (object: Described): { policy: RestartPolicy, maxRetries: number } {
  const text = object.metadata?.annotations?.[ANNOTATION_RESTART] ?? 'always'
  const match = /^on-failure:(\d+)$/.exec(text)
  if (match !== null) return { policy: 'on-failure', maxRetries: Number(match[1]) }
  return { policy: text === 'no' || text === 'unless-stopped' ? text : 'always', maxRetries: 0 }
}

export function summaryOf (workload: Workload, allPods: V1Pod[], now = Date.now()): ContainerSummary {
  const object = workload.object
  const pods = podsOf(idOf(object), allPods)
  const state = stateOf(workload, pods)
  const tasks = pods.map(pod => taskOf(pod, object))
  return {
    id: idOf(object),
    name: object.metadata?.name ?? '',
    image: object.spec?.template.spec?.containers[0]?.image ?? '',
    imageId: imageDigestOf(pods) ?? '',
    command: commandOf(object),
    state,
    status: statusText(workload, state, pods, now),
    createdAt: timeOf(object.metadata?.creationTimestamp) ?? new Date(0).toISOString(),
    ports: portsOf(tasks),
    labels: labelsOf(object),
    replicas: { count: replicasOf(workload), running: pods.filter(isRunning).length },
    tasks
  }
}

export function containerOf (workload: Workload, allPods: V1Pod[]): Container {
  const object = workload.object
  const summary = summaryOf(workload, allPods)
  const pods = podsOf(summary.id, allPods)
  const container = object.spec?.template.spec?.containers[0]
  const podSpec = object.spec?.template.spec
  const running = pods.flatMap(pod => { const at = timeOf(mainStatus(pod)?.state?.running?.startedAt); return at === null ? [] : [at] }).sort()[0]
  const lastStart = pods.flatMap(pod => { const at = timeOf(mainStatus(pod)?.state?.terminated?.startedAt); return at === null ? [] : [at] }).sort().at(-1)
  const exited = summary.state === 'exited'
  const exit = exited ? exitOf(workload, pods) : null
  const limits = container?.resources?.limits ?? {}
  const requests = container?.resources?.requests ?? {}
  const constraints = podSpec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms[0]?.matchExpressions ?? []
  const gpus = Number(limits['nvidia.com/gpu'] ?? 0)
  const labels = summary.labels
  return {
    id: summary.id,
    name: summary.name,
    image: summary.image,
    imageId: summary.imageId,
    imageDigest: imageDigestOf(pods),
    command: commandOf(object),
    state: summary.state,
    running: summary.state === 'running',
    exitCode: exit?.exitCode ?? null,
    createdAt: summary.createdAt,
    startedAt: running ?? lastStart ?? null,
    finishedAt: exit?.finishedAt ?? null,
    ports: summary.ports,
    labels,
    restart: restartOf(object),
    resources: { memory: bytesOf(limits.memory), cpus: coresOf(limits.cpu) },
    autoRemove: labels[LABEL_AUTO_REMOVE] === 'true',
    replicas: summary.replicas as NonNullable<ContainerSummary['replicas']>,
    tasks: summary.tasks as Task[],
    placement: {
      constraints: constraints.map(constraintOf),
      spread: (podSpec?.topologySpreadConstraints ?? []).map(constraint => constraintOf({ key: constraint.topologyKey, operator: 'In', values: [] }).replace(/==$/, ''))
    },
    reservations: { memory: bytesOf(requests.memory), cpus: coresOf(requests.cpu) },
    ...(gpus > 0 ? { gpus } : {}),
    ...expiryOf(labels, object.metadata?.annotations?.[ANNOTATION_EXPIRES_AT])
  }
}

/** `key` or `key=value` label filters, all of which must hold. */
export function matchesLabels (labels: Record<string, string>, filters: string[]): boolean {
  return filters.every(filter => {
    const eq = filter.indexOf('=')
    if (eq === -1) return filter in labels
    return labels[filter.slice(0, eq)] === filter.slice(eq + 1)
  })
}

/** A PersistentVolumeClaim (a named volume) in berth's words, with the containers that mount it. */
export function volumeOfClaim (claim: V1PersistentVolumeClaim, users: VolumeUser[]): Volume {
  const capacity = bytesOf(claim.status?.capacity?.storage) ?? bytesOf(claim.spec?.resources?.requests?.storage)
  return {
    name: claim.metadata?.name ?? '',
    driver: claim.spec?.storageClassName ?? '',
    labels: labelsOf(claim),
    createdAt: timeOf(claim.metadata?.creationTimestamp),
    // What it holds is the node's to know; what it may hold is its capacity.
    size: null,
    usedBy: users,
    ...(capacity === null ? {} : { capacity }),
    accessModes: claim.status?.accessModes ?? claim.spec?.accessModes ?? [],
    phase: claim.metadata?.deletionTimestamp === undefined || claim.metadata.deletionTimestamp === null ? claim.status?.phase ?? 'Pending' : 'Terminating'
  }
}
