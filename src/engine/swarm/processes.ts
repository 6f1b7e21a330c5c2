// What happens inside a replica's container, on a cluster: exec (streamed, and the terminal), stats
// and files in and out, each forwarded by berth to the agent of the node the replica runs on and done
// there by the docker backend's own parts. Which replica is the caller's choice (src/engine/swarm/replicas.ts);
// stats of a container without one chosen sum its running replicas, so that idleness is the whole
// container's. Who may do what was decided before this, in the berth the client talks to.
import { BerthError } from '../../errors.ts'
import { dockerExec, dockerFiles, dockerStats } from '../docker/processes.ts'
import type { ExecPart, FilesPart, StatsPart } from '../parts.ts'
import type { ContainerStats } from '../types.ts'
import type { Agents } from './agents.ts'
import type { SwarmCluster } from './cluster.ts'
import { replicaOf, runningReplicas } from './replicas.ts'

export function swarmExec (cluster: SwarmCluster, agents: Agents): ExecPart {
  return {
    async exec (containerId, spec, options) {
      const replica = await replicaOf(cluster, containerId, options.replica, 'running')
      return await agents.on(replica.node, async engine => await dockerExec(engine).exec(replica.containerId, spec, { signal: options.signal }))
    }
  }
}

export function swarmStats (cluster: SwarmCluster, agents: Agents): StatsPart {
  return {
    async stats (id, options) {
      const { replica: which, ...reading } = options
      if (which !== undefined) {
        const replica = await replicaOf(cluster, id, which, 'running')
        return await agents.on(replica.node, async engine => await dockerStats(engine).stats(replica.containerId, reading))
      }
      const replicas = await runningReplicas(cluster, id)
      if (replicas.length === 0) throw new BerthError('container_not_running', `container ${id} has no running replica: it uses nothing`)
      const streams = await Promise.all(replicas.map(async replica =>
        await agents.on(replica.node, async engine => await dockerStats(engine).stats(replica.containerId, reading))))
      return streams.length === 1 ? streams[0] as AsyncIterable<ContainerStats> : summed(streams)
    }
  }
}

export function swarmFiles (cluster: SwarmCluster, agents: Agents): FilesPart {
  return {
    async get (id, path, options) {
      const replica = await replicaOf(cluster, id, options.replica, 'container')
      return await agents.on(replica.node, async engine => await dockerFiles(engine).get(replica.containerId, path, { ...(options.signal ? { signal: options.signal } : {}) }))
    },
    async stat (id, path, options = {}) {
      const replica = await replicaOf(cluster, id, options.replica, 'container')
      return await agents.on(replica.node, async engine => await dockerFiles(engine).stat(replica.containerId, path))
    },
    async put (id, path, archive, options) {
      const replica = await replicaOf(cluster, id, options.replica, 'container')
      await agents.on(replica.node, async engine => { await dockerFiles(engine).put(replica.containerId, path, archive, { size: options.size }) })
    }
  }
}

/**
 * Readings of several replicas as the container's: one reading from each, added up, for as long as
 * every replica gives one (a replica that stops ends the sum: the container is no longer what it was).
 */
async function * summed (streams: Array<AsyncIterable<ContainerStats>>): AsyncGenerator<ContainerStats> {
  const iterators = streams.map(stream => stream[Symbol.asyncIterator]())
  try {
    for (;;) {
      const next = await Promise.all(iterators.map(async iterator => await iterator.next()))
      if (next.some(result => result.done === true)) return
      yield sum(next.map(result => result.value as ContainerStats))
    }
  } finally {
    await Promise.all(iterators.map(async iterator => await iterator.return?.()))
  }
}

function sum (readings: ContainerStats[]): ContainerStats {
  const total = (of: (reading: ContainerStats) => number): number => readings.reduce((sum, reading) => sum + of(reading), 0)
  const used = total(reading => reading.memory.used)
  const limit = total(reading => reading.memory.limit)
  return {
    time: readings.map(reading => reading.time).sort().at(-1) as string,
    cpuPercent: total(reading => reading.cpuPercent),
    onlineCpus: total(reading => reading.onlineCpus),
    cpuSeconds: total(reading => reading.cpuSeconds),
    memory: { used, limit, percent: limit === 0 ? 0 : used / limit * 100 },
    network: { rxBytes: total(reading => reading.network.rxBytes), txBytes: total(reading => reading.network.txBytes) },
    blockIo: { readBytes: total(reading => reading.blockIo.readBytes), writeBytes: total(reading => reading.blockIo.writeBytes) },
    pids: total(reading => reading.pids),
    replicas: readings.length
  }
}
