// Which replica of a container an exec, a stats reading or a file copy goes to: the one asked for (by
// its slot, or its task id or a unique prefix of it), else the running one with the lowest slot — and
// where it is: its node, and the id of its container on that node's engine.
import { BerthError } from '../../errors.ts'
import type { SwarmCluster } from './cluster.ts'
import { isLost, isLive, latestTasks, type NodeRef, type SwarmService, type SwarmTask } from './mapping.ts'

export interface Replica {
  task: SwarmTask
  slot: number | null
  node: NodeRef
  containerId: string
}

/** What the replica is needed for: to run something in it now, or to reach its container's files, running or not. */
export type Need = 'running' | 'container'

export async function replicaOf (cluster: SwarmCluster, serviceId: string, which: string | undefined, need: Need): Promise<Replica> {
  const service = await cluster.reads.service(serviceId)
  const tasks = await cluster.reads.tasks([service.ID])
  const nodes = await cluster.reads.nodeRefs(tasks)
  const name = service.Spec.Name ?? service.ID
  const task = which === undefined ? defaultReplica(service, tasks, nodes, need) : chosen(service, tasks, which)
  if (task === undefined) {
    throw new BerthError('container_not_running', need === 'running'
      ? `container ${name} has no running replica: start it first`
      : `container ${name} has no replica with a container yet`)
  }
  const label = `replica ${task.Slot ?? task.ID.slice(0, 12)} of ${name}`
  const node = task.NodeID === undefined ? undefined : nodes.get(task.NodeID)
  if (isLost(task, nodes)) {
    throw new BerthError('container_not_running', `${label} is lost with its node ${node?.name ?? task.NodeID} (${node?.state ?? 'down'}): nothing of it can be reached`)
  }
  const containerId = task.Status.ContainerStatus?.ContainerID
  if (node === undefined || containerId === undefined || containerId === '') {
    throw new BerthError('container_not_running', `${label} is ${task.Status.State}: it has no container yet`)
  }
  if (need === 'running' && !(task.Status.State === 'running' && task.DesiredState === 'running')) {
    throw new BerthError('container_not_running', `${label} is not running (${task.Status.State}): start it first`)
  }
  return { task, slot: task.Slot ?? null, node, containerId }
}

/** Every running replica, in slot order (for readings summed over a container's replicas). */
export async function runningReplicas (cluster: SwarmCluster, serviceId: string): Promise<Replica[]> {
  const service = await cluster.reads.service(serviceId)
  const tasks = await cluster.reads.tasks([service.ID])
  const nodes = await cluster.reads.nodeRefs(tasks)
  return latestTasks(service, tasks).flatMap(task => {
    const node = task.NodeID === undefined ? undefined : nodes.get(task.NodeID)
    const containerId = task.Status.ContainerStatus?.ContainerID
    if (!running(task) || isLost(task, nodes) || node === undefined || containerId === undefined) return []
    return [{ task, slot: task.Slot ?? null, node, containerId }]
  })
}

function running (task: SwarmTask): boolean {
  return task.Status.State === 'running' && task.DesiredState === 'running'
}

/** The running replica with the lowest slot; for files, else the one that ended last and left a container. */
function defaultReplica (service: SwarmService, tasks: SwarmTask[], nodes: Map<string, NodeRef>, need: Need): SwarmTask | undefined {
  const latest = latestTasks(service, tasks)
  const live = latest.find(task => running(task) && !isLost(task, nodes))
  if (live !== undefined || need === 'running') return live
  return [...latest].filter(task => Boolean(task.Status.ContainerStatus?.ContainerID) && !isLive(task))
    .sort((a, b) => Date.parse(b.Status.Timestamp) - Date.parse(a.Status.Timestamp))[0]
}

/** A replica by slot (its latest task) or by task id (or a unique prefix of one). */
function chosen (service: SwarmService, tasks: SwarmTask[], which: string): SwarmTask {
  const name = service.Spec.Name ?? service.ID
  if (/^\d+$/.test(which)) {
    const task = latestTasks(service, tasks).find(candidate => candidate.Slot === Number(which))
    if (task === undefined) throw new BerthError('not_found', `container ${name} has no replica ${which}`)
    return task
  }
  const matches = tasks.filter(task => task.ID.startsWith(which))
  if (matches.length === 0) throw new BerthError('not_found', `container ${name} has no replica whose task id starts with ${which}`)
  if (matches.length > 1) throw new BerthError('ambiguous_id', `${which} matches ${matches.length} tasks of ${name}; give more of the id`, { matches: matches.length })
  return matches[0] as SwarmTask
}
