// Why a task is not running, in berth's codes: the scheduler found no node for it (a host-mode port
// taken on every eligible node, constraints no node meets, not enough unreserved resources), a node
// refused it (no such image, a bind source missing), or it failed to start. Pure functions.
import { BerthError } from '../../errors.ts'
import { conflictingPort } from '../docker/errors.ts'
import { pullFailureReason } from '../docker/mapping.ts'
import { PortConflictError } from '../types.ts'
import type { SwarmTask } from './mapping.ts'

const WAITING = new Set(['new', 'allocated', 'pending'])

/** The error a new task shows, or null while it may still run. `ports` are the host ports the service publishes. */
export function placementFailure (task: SwarmTask, ports: number[]): BerthError | null {
  const { State: state, Err: err } = task.Status
  if (err === undefined || err === '') return null
  if (WAITING.has(state) && /no suitable node/i.test(err)) {
    if (/host-mode port/i.test(err)) {
      return new PortConflictError(ports[0] ?? null, null, ports.length === 1
        ? `host port ${ports[0]} is already allocated on every node the container may run on (${err})`
        : `one of the host ports ${ports.join(', ')} is already allocated on every node the container may run on (${err})`)
    }
    const reason = /constraint/i.test(err) ? 'constraints' : /insufficient resources/i.test(err) ? 'resources' : 'no_node'
    return placementFailed(reason, `the cluster has no node for the container: ${err}`)
  }
  if (state === 'rejected' || (state === 'failed' && /starting container failed|failed to start/i.test(err))) {
    if (pullFailureReason(err) === 'registry_auth') {
      return new BerthError('pull_failed', `the node could not pull the container's image: the registry wants credentials (auth, or BERTH_REGISTRY_AUTH_FILE): ${err}`, { reason: 'registry_auth' })
    }
    if (/no such image|manifest unknown|pull access denied|repository does not exist|not found: manifest|invalid reference format/i.test(err)) {
      return new BerthError('image_not_found', `the node could not get the container's image: ${err}`)
    }
    const port = conflictingPort(err)
    if (port !== null) return new PortConflictError(port, null, `host port ${port} is already allocated on the node the container was placed on (${err})`)
    if (/bind source path does not exist|invalid mount config/i.test(err)) {
      return placementFailed('mount', `the node cannot mount what the container asks for (on a cluster a bind source must exist on the node): ${err}`)
    }
    return placementFailed('rejected', `the node could not start the container: ${err}`)
  }
  return null
}

export function placementFailed (reason: string, detail: string): BerthError {
  return new BerthError('placement_failed', detail, { reason })
}

/** What each replica is doing, for a timeout's detail: "1: preparing on node2, 2: pending (no suitable node …)". */
export function describeTasks (tasks: SwarmTask[], nodeName: (id: string | undefined) => string | null): string {
  if (tasks.length === 0) return 'no task was created'
  return tasks.map(task => {
    const node = nodeName(task.NodeID)
    return `${task.Slot ?? '?'}: ${task.Status.State}${node === null ? '' : ` on ${node}`}${task.Status.Err ? ` (${task.Status.Err})` : ''}`
  }).join(', ')
}
