// docker wait on a cluster: a container is done when none of its replicas runs or will run again —
// each ended (and the orchestrator has taken note, so a replica about to be restarted is not taken
// for done), or was lost with its node — and the answer says how each replica ended, and sums them up.
// Read from the manager's tasks (so a node lost mid-wait ends it, rather than hanging on that node);
// only whether a replica was killed for want of memory is asked of its node's engine.
import { setTimeout as sleep } from 'node:timers/promises'
import type { WaitPart } from '../parts.ts'
import type { ContainerExit, ReplicaExit } from '../types.ts'
import type { Agents } from './agents.ts'
import type { SwarmCluster } from './cluster.ts'
import { isLive, isLost, latestTasks, type NodeRef, type SwarmTask } from './mapping.ts'

/** How often the tasks are read: at first as often as a run's waits read them, then once a second. */
const SLOWEST_POLL_MS = 1000

export function swarmWait (cluster: SwarmCluster, agents: Agents | null): WaitPart {
  return {
    async wait (id, options) {
      let pollMs = cluster.pollMs
      for (;;) {
        if (options.signal?.aborted === true) throw options.signal.reason
        const service = await cluster.reads.service(id)
        const tasks = await cluster.reads.tasks([service.ID])
        const nodes = await cluster.reads.nodeRefs(tasks)
        const latest = latestTasks(service, tasks)
        if (latest.every(task => over(task, nodes))) return await exitOf(latest, nodes, agents)
        await sleep(pollMs, undefined, options.signal ? { signal: options.signal } : {}).catch(() => { throw options.signal?.reason })
        pollMs = Math.min(SLOWEST_POLL_MS, pollMs * 2)
      }
    }
  }
}

/**
 * A replica that will not run again: it ended and the orchestrator took note (its desired state is no
 * longer running: a replacement, if any, is made in the same step), or it was lost with its node.
 */
function over (task: SwarmTask, nodes: Map<string, NodeRef>): boolean {
  return (isLost(task, nodes) || !isLive(task)) && task.DesiredState !== 'running'
}

async function exitOf (latest: SwarmTask[], nodes: Map<string, NodeRef>, agents: Agents | null): Promise<ContainerExit> {
  const replicas: ReplicaExit[] = await Promise.all(latest.map(async task => {
    const node = task.NodeID === undefined ? undefined : nodes.get(task.NodeID)
    const lost = isLost(task, nodes)
    const containerId = task.Status.ContainerStatus?.ContainerID
    return {
      slot: task.Slot ?? null,
      task: task.ID,
      node: node?.name ?? null,
      state: lost ? 'lost' : task.Status.State,
      exitCode: lost || !containerId ? null : task.Status.ContainerStatus?.ExitCode ?? null,
      oomKilled: lost || agents === null || node === undefined || !containerId ? false : await oomKilled(agents, node, containerId),
      error: lost ? `lost with its node ${node?.name ?? task.NodeID} (${node?.state ?? 'down'})` : task.Status.Err ?? null
    }
  }))
  const failed = replicas.find(replica => replica.exitCode !== null && replica.exitCode !== 0)
  const lost = replicas.filter(replica => replica.state === 'lost')
  const exited = replicas.filter(replica => replica.exitCode !== null)
  return {
    exitCode: failed?.exitCode ?? (exited.length > 0 ? 0 : null),
    oomKilled: replicas.some(replica => replica.oomKilled),
    error: lost.length === 0 ? null : `${lost.length === 1 ? 'replica' : 'replicas'} ${lost.map(replica => replica.slot ?? replica.task).join(', ')} lost with ${[...new Set(lost.map(replica => replica.node))].join(', ')}`,
    replicas
  }
}

/** Whether the replica's container was OOM-killed, as its node's engine says; false when it cannot be asked. */
async function oomKilled (agents: Agents, node: NodeRef, containerId: string): Promise<boolean> {
  try {
    return await agents.on(node, async engine => {
      const info = await engine.request<{ State?: { OOMKilled?: boolean } }>({ subject: 'container', target: containerId }, { method: 'GET', path: `/containers/${encodeURIComponent(containerId)}/json` })
      return info.State?.OOMKilled ?? false
    })
  } catch {
    return false
  }
}
