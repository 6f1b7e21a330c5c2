// Where a container's replicas go and how berth knows they got there: host ports berth picks when a
// run names none, the wait for the pods to run (or say why they cannot), who holds a port the
// scheduler found taken, and the image pull secret a run's registry credentials become.
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1Secret } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { chooseHostPorts } from '../host-ports.ts'
import { PortConflictError, type PortRequest, type RunSpec } from '../types.ts'
import { mergePatch } from './client.ts'
import { podFailure } from './failures.ts'
import { LABEL_ID, LABEL_MANAGED_BY, type Workload } from './mapping.ts'
import { hostPorts, idOf, isRemoving, isRunning, isStopped, isSuspended, labelsOf, podState, taskOf } from './reading.ts'
import { pullSecretName } from './removal.ts'
import type { KubeShared } from './shared.ts'

export interface AwaitOptions {
  /** Pods that are not the operation's (they were there before it). */
  before: Set<string>
  /** The host ports its container asks for, to name in a conflict. */
  ports: number[]
  /** More time than the placement timeout (a restart waits for the old pods to stop first). */
  extraMs?: number
  /** Only new pods count (a scale counts the ones already running as well). */
  fresh?: boolean
}

/**
 * Waits until `replicas` replicas run (or ran: a command that exits at once has run, and a Job's
 * pod that finished has), or a pod shows it cannot run.
 */
export async function awaitReplicas (shared: KubeShared, id: string, replicas: number, options: AwaitOptions): Promise<void> {
  const timeoutMs = shared.options.placementTimeoutMs
  const deadline = Date.now() + timeoutMs + (options.extraMs ?? 0)
  for (;;) {
    await shared.ready()
    const workload = shared.current(id)
    if (workload === null) throw new BerthError('not_found', `container ${id} was removed while berth waited for it to run`)
    const pods = shared.podsOf(id)
    const added = pods.filter(pod => !options.before.has(pod.metadata?.uid ?? '') && podState(pod) !== 'shutdown')
    for (const pod of added) {
      const failure = podFailure(pod, options.ports)
      if (failure !== null) throw failure
    }
    const counted = (options.fresh ?? true) ? added : pods.filter(pod => podState(pod) !== 'shutdown')
    const ran = counted.filter(pod => isRunning(pod) || (pod.status?.containerStatuses?.[0]?.restartCount ?? 0) > 0 || podState(pod) === 'complete' || podState(pod) === 'failed')
    if (ran.length >= replicas) return
    // A Job that ended before all its replicas ran (a retry limit reached) has run, as docker run -d of a command that fails has.
    if (workload.kind === 'job' && ran.length > 0 && pods.every(pod => podState(pod) !== 'pending' && podState(pod) !== 'preparing' && podState(pod) !== 'starting')) return
    if (Date.now() >= deadline) {
      const waiting = added.map(pod => taskOf(pod, workload.object)).map(task => `${task.id}: ${task.state}${task.node === null ? '' : ` on ${task.node}`}${task.error === null ? '' : ` (${task.error})`}`)
      throw new BerthError('placement_timeout', `the cluster did not run ${replicas} ${replicas === 1 ? 'replica' : 'replicas'} within ${timeoutMs} ms: ${waiting.length === 0 ? 'no pod was created' : waiting.join(', ')}`,
        { replicas, running: ran.length })
    }
    await sleep(shared.pollMs)
  }
}

/** Waits (bounded) until no live pod of the container is left on any node; a Job's finished attempts may stay. */
export async function awaitNoPods (shared: KubeShared, id: string, graceSeconds: number): Promise<void> {
  const waitMs = graceSeconds * 1000 + shared.client.timeoutMs * 3
  const deadline = Date.now() + waitMs
  for (;;) {
    await shared.ready()
    const live = shared.podsWithId(id).filter(pod => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed')
    if (live.length === 0) return
    if (Date.now() >= deadline) {
      throw new BerthError('engine_unavailable', `pods ${live.map(pod => pod.metadata?.name ?? '').join(', ')} did not stop within ${waitMs} ms; the cluster goes on stopping them`, {}, { headers: { 'retry-after': '5' } })
    }
    await sleep(shared.pollMs)
  }
}

/**
 * Host ports from a range (the policy's) for the ports that have none: a pod's hostPort is always
 * a number, so berth picks ports no container of its namespace holds, trying others when the
 * scheduler finds one taken on every node.
 */
export function choosePorts (shared: KubeShared, ports: PortRequest[], tried: Set<number>): Map<number, number> {
  return chooseHostPorts(ports, shared.workloads().flatMap(workload => hostPorts(workload.object)), tried)
}

function stopped (workload: Workload): boolean {
  return workload.kind === 'service' ? isStopped(workload.object) : isSuspended(workload.object)
}

/** Names the container holding a conflicting port, when it is one of this namespace's: its labels say who may be told. */
export function withHolder (shared: KubeShared, error: unknown, self: string): unknown {
  if (!(error instanceof PortConflictError) || error.port === null) return error
  const port = error.port
  const holder = shared.deployments.healthy && shared.jobs.healthy
    ? shared.workloads().find(workload => idOf(workload.object) !== self && !stopped(workload) && !isRemoving(workload.object) && hostPorts(workload.object).includes(port))
    : undefined
  if (holder === undefined) return error
  return new PortConflictError(port, { id: idOf(holder.object), name: holder.object.metadata?.name ?? '', labels: labelsOf(holder.object) }, error.message, error)
}

/** An image pull secret with the run's registry credentials (or berth's own for that registry), or null without any. */
export async function makePullSecret (shared: KubeShared, spec: Pick<RunSpec, 'image' | 'auth'>, name: string, id: string): Promise<string | null> {
  if (spec.image.kind !== 'ref') return null
  const registry = spec.image.ref.registry
  const credentials = spec.auth ?? shared.options.registryAuth?.[registry]
  if (credentials === undefined) return null
  const auth = credentials.identitytoken !== undefined
    ? { identitytoken: credentials.identitytoken }
    : { username: credentials.username ?? '', password: credentials.password ?? '', auth: Buffer.from(`${credentials.username ?? ''}:${credentials.password ?? ''}`).toString('base64') }
  const secretName = pullSecretName(name, id)
  const body: V1Secret = {
    metadata: { name: secretName, labels: { [LABEL_ID]: id, [LABEL_MANAGED_BY]: 'berth' } },
    type: 'kubernetes.io/dockerconfigjson',
    stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry]: auth } }) }
  }
  await shared.client.call({ subject: 'secret', target: secretName }, async call =>
    await shared.client.core.createNamespacedSecret({ namespace: shared.namespace, body }, call))
  return secretName
}

/**
 * A Deployment's pull secret goes with it: Kubernetes removes the secret when the Deployment is
 * removed, also behind berth's back. (A Job's is not owned by it: `docker start` of a finished run
 * makes its Job anew, and the secret must outlive the old one. berth removes it with the container.)
 */
export async function ownPullSecret (shared: KubeShared, secret: string, deployment: Workload): Promise<void> {
  const object = deployment.object
  const owner = { apiVersion: 'apps/v1', kind: 'Deployment', name: object.metadata?.name ?? '', uid: object.metadata?.uid ?? '' }
  await shared.client.call({ subject: 'secret', target: secret }, async call =>
    await shared.client.core.patchNamespacedSecret({ namespace: shared.namespace, name: secret, body: { metadata: { ownerReferences: [owner] } } }, mergePatch(call)))
}

export async function deletePullSecret (shared: KubeShared, secret: string): Promise<void> {
  await shared.client.call({ subject: 'secret', target: secret }, async call =>
    await shared.client.core.deleteNamespacedSecret({ namespace: shared.namespace, name: secret }, call)).catch(() => {})
}
