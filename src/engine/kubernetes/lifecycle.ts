// docker wait and expiry on Kubernetes, from the watch-fed copies: a wait ends when the container's
// workload says it is over (its Job completed or failed, or berth stopped it), and an expiry lives
// on the workload itself — its labels as run, a moved end in an annotation — so a restarted berth's
// sweeper finds it where the last one left it.
import { setTimeout as sleep } from 'node:timers/promises'
import { LABEL_EXPIRY_ACTION } from '../../access/ownership.ts'
import { expiryOf } from '../expiry.ts'
import type { ExpiryPart, WaitPart } from '../parts.ts'
import type { ContainerExit, ExpiringContainer } from '../types.ts'
import { ANNOTATION_EXPIRES_AT } from './mapping.ts'
import { exitOf, idOf, labelsOf, matchesLabels, stateOf, summaryOf } from './reading.ts'
import type { KubeShared } from './shared.ts'

/** How often a wait looks at the copies (they are in memory: looking costs the apiserver nothing). */
const WAIT_POLL_MS = 200

export function kubeWait (shared: KubeShared): WaitPart {
  return {
    /**
     * Resolves once the container has ended: a run that finishes when its Job is over, a service
     * when it is stopped; at once when it already has. "Created" on a cluster means its pods are on
     * their way, so that is waited out too. A container removed meanwhile answers how it last ended.
     */
    async wait (id: string, options: { signal?: AbortSignal }): Promise<ContainerExit> {
      let last: ContainerExit | null = null
      for (;;) {
        if (options.signal?.aborted === true) throw options.signal.reason
        await shared.ready()
        const workload = shared.current(id)
        if (workload === null) return last ?? { exitCode: 0, oomKilled: false, error: null }
        const pods = shared.podsOf(id)
        const exit = exitOf(workload, pods)
        if (exit !== null) last = { exitCode: exit.exitCode, oomKilled: exit.oomKilled, error: exit.error }
        if (stateOf(workload, pods) === 'exited') return last ?? { exitCode: 0, oomKilled: false, error: null }
        await sleep(WAIT_POLL_MS, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => {})
      }
    }
  }
}

export function kubeExpiry (shared: KubeShared): ExpiryPart {
  return {
    async list (labels: string[]): Promise<ExpiringContainer[]> {
      await shared.ready()
      const pods = shared.pods.list()
      return shared.workloads().flatMap(workload => {
        const own = labelsOf(workload.object)
        if (own[LABEL_EXPIRY_ACTION] === undefined || !matchesLabels(own, labels)) return []
        const { expiry } = expiryOf(own, workload.object.metadata?.annotations?.[ANNOTATION_EXPIRES_AT])
        if (expiry === undefined) return []
        const summary = summaryOf(workload, pods)
        return [{ id: idOf(workload.object), name: summary.name, state: summary.state, labels: own, expiry }]
      })
    },

    /** Kept on the workload, where every berth of this deployment (and a restarted one) reads it. */
    async set (id: string, expiresAt: string): Promise<void> {
      await shared.patch(await shared.workload(id), { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: expiresAt } } })
    }
  }
}
