// Removing a container so that nothing of it can come back, and saying so only when it is true.
// Its controller is first told to make no more pods (a Deployment scaled to none, a Job suspended),
// then the workload is deleted in the foreground: it stays, marked for deletion, until the garbage
// collector has removed everything it owns — so a ReplicaSet that has not yet been collected cannot
// make a replacement pod behind berth's back, and a second `rm` still finds what is left and waits
// again. berth answers once neither the workload nor a pod of it is there; when that does not
// happen in time, it says so (503, ask again) rather than answering as if it were clean.
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1Deployment, V1Job, V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import type { Workload } from './mapping.ts'
import { idOf, isRemoving, isSuspended, jobOutcome } from './reading.ts'
import type { KubeShared } from './shared.ts'

/** Seconds a replica is given to stop. */
export function graceOf (object: V1Deployment | V1Job): number {
  return object.spec?.template.spec?.terminationGracePeriodSeconds ?? 30
}

/** The image pull secret a run made from registry credentials (it goes with the container). */
export function pullSecretName (name: string, id: string): string {
  return `${name}-pull-${id.slice(0, 8)}`
}

function gone (error: unknown): void {
  if (!(error instanceof BerthError && error.code === 'not_found')) throw error
}

/**
 * Removes the container (its pods at once with `force`, as docker rm -f kills) and resolves once
 * nothing of it is left on the cluster; 503 engine_unavailable when that takes longer than its
 * grace period and a few apiserver deadlines. `keepSecret`: its image pull secret stays (a Job
 * made anew uses it).
 */
export async function discard (shared: KubeShared, workload: Workload, options: { force: boolean, keepSecret?: boolean }): Promise<void> {
  const object = workload.object
  const name = object.metadata?.name ?? ''
  const id = idOf(object)
  const uid = object.metadata?.uid
  if (!isRemoving(object)) {
    // Nothing new is made from here on, whatever the garbage collector gets to first.
    if (workload.kind === 'service' && (workload.object.spec?.replicas ?? 1) > 0) await shared.patch(workload, { spec: { replicas: 0 } }).catch(gone)
    if (workload.kind === 'job' && !isSuspended(workload.object) && jobOutcome(workload.object) === null) await shared.patch(workload, { spec: { suspend: true } }).catch(gone)
  }
  const namespace = shared.namespace
  await shared.client.call({ subject: 'container', target: name }, async call => workload.kind === 'service'
    ? await shared.client.apps.deleteNamespacedDeployment({ namespace, name, propagationPolicy: 'Foreground' }, call)
    : await shared.client.batch.deleteNamespacedJob({ namespace, name, propagationPolicy: 'Foreground' }, call)).catch(gone)
  if (options.keepSecret !== true) {
    await shared.client.call({ subject: 'secret', target: name }, async call =>
      await shared.client.core.deleteNamespacedSecret({ namespace, name: pullSecretName(name, id) }, call)).catch(gone)
  }
  const grace = options.force ? 0 : graceOf(object)
  const waitMs = grace * 1000 + shared.client.timeoutMs * 3
  const deadline = Date.now() + waitMs
  const killed = new Set<string>()
  for (;;) {
    await shared.ready()
    const copy = (workload.kind === 'service' ? shared.deployments : shared.jobs).get(name)
    const still = copy !== undefined && copy.metadata?.uid === uid
    const pods = shared.podsWithId(id)
    if (options.force) {
      // Once each: a pod deleted with no grace leaves at once; a replacement made meanwhile is deleted in turn.
      const fresh = pods.filter(pod => !killed.has(pod.metadata?.uid ?? ''))
      await shared.deletePods(fresh, 0)
      for (const pod of fresh) killed.add(pod.metadata?.uid ?? '')
    }
    if (!still && pods.length === 0) return
    if (Date.now() >= deadline) throw notGone(name, still, pods, waitMs)
    await sleep(shared.pollMs)
  }
}

function notGone (name: string, still: boolean, pods: V1Pod[], waitMs: number): BerthError {
  const left = [...(still ? ['its workload (waiting for the garbage collector)'] : []), ...pods.map(pod => `pod ${pod.metadata?.name ?? ''}`)]
  return new BerthError('engine_unavailable',
    `container ${name} is not gone yet after ${waitMs} ms: ${left.join(', ')} still there. The cluster goes on removing it; ask again to wait for it`,
    {}, { headers: { 'retry-after': '5' } })
}

/**
 * A run or start that failed, then its cleanup: when the cleanup did not finish, the answer says
 * that rather than the first failure alone, which would read as "nothing was left behind".
 */
export function notClean (failure: unknown, cleanup: unknown): unknown {
  if (!(cleanup instanceof BerthError)) return cleanup
  const first = failure instanceof Error ? failure.message : String(failure)
  return new BerthError(cleanup.code, `${first}; and what it made is not removed yet: ${cleanup.message}`, cleanup.extensions, { cause: failure, headers: cleanup.headers })
}
