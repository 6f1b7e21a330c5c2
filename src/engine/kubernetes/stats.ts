// docker stats on Kubernetes, from whichever source the cluster offers berth: the metrics API
// (metrics.k8s.io, served by metrics-server) when it is there; else each node's kubelet summary,
// read through the apiserver's node proxy when berth's role may (kubelet-stats.yaml); else 501
// naming both. A container's reading is the sum of its running replicas'.
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { notSupported, type StatsPart } from '../parts.ts'
import type { ContainerStats } from '../types.ts'
import { CONTAINER_NAME, bytesOf, coresOf } from './mapping.ts'
import { isRunning, timeOf } from './reading.ts'
import { K8S, forbidden, type KubeShared } from './shared.ts'

/** How long berth trusts what it found out about the cluster's sources. */
const SOURCE_TTL_MS = 60_000
const STREAM_MS = 1000

export const NO_STATS = 'stats on Kubernetes come from the metrics API or from the kubelets: install metrics-server (berth\'s Role already may read pods.metrics.k8s.io), ' +
  'or let berth read the kubelets\' summary through the apiserver (deploy/kubernetes/kubelet-stats.yaml; that also lets berth reach every kubelet\'s API, so prefer metrics-server)'

/** One replica's counters at one instant, whichever source gave them. */
export interface PodReading {
  at: number
  /** CPU time used since it started, in seconds (estimated from the rate on the metrics API). */
  cpuSeconds: number
  /** Cores in use now, as the source averaged them. */
  cores: number
  memory: number
  /** Its node's memory, when the source says: the limit of a container that has none. */
  nodeMemory: number | null
  rxBytes: number
  txBytes: number
  pids: number
}

interface KubeletSummary {
  node?: { memory?: { availableBytes?: number, workingSetBytes?: number } }
  pods?: Array<{
    podRef?: { name?: string, namespace?: string }
    containers?: Array<{ name?: string, cpu?: { time?: string, usageNanoCores?: number, usageCoreNanoSeconds?: number }, memory?: { workingSetBytes?: number } }>
    network?: { rxBytes?: number, txBytes?: number }
    process_stats?: { process_count?: number }
  }>
}

interface PodMetrics {
  timestamp?: string
  containers?: Array<{ name?: string, usage?: { cpu?: string, memory?: string } }>
}

export function kubeStats (shared: KubeShared): StatsPart {
  let source: { kind: 'metrics' | 'kubelet' | null, at: number } | null = null
  /** The metrics API's rate, summed over time per pod: what stands in for cumulative CPU time there. */
  const integrals = new Map<string, { seconds: number, at: number }>()

  async function metricsServed (): Promise<boolean> {
    try {
      await shared.client.getJson('/apis/metrics.k8s.io/v1beta1', {}, { subject: 'stats', target: 'metrics.k8s.io' })
      return true
    } catch (error) {
      if (error instanceof BerthError && (error.code === 'not_found' || forbidden(error))) return false
      throw error
    }
  }

  async function fromKubelet (pod: V1Pod): Promise<PodReading> {
    const node = pod.spec?.nodeName ?? ''
    const summary = await shared.client.getJson<KubeletSummary>(`/api/v1/nodes/${encodeURIComponent(node)}/proxy/stats/summary`, {}, { subject: 'stats', target: node })
    const entry = summary.pods?.find(candidate => candidate.podRef?.name === pod.metadata?.name && candidate.podRef?.namespace === shared.namespace)
    const main = entry?.containers?.find(container => container.name === CONTAINER_NAME)
    const nodeMemory = summary.node?.memory?.availableBytes !== undefined && summary.node.memory.workingSetBytes !== undefined ? summary.node.memory.availableBytes + summary.node.memory.workingSetBytes : null
    return {
      at: main?.cpu?.time === undefined ? Date.now() : Date.parse(main.cpu.time),
      cpuSeconds: (main?.cpu?.usageCoreNanoSeconds ?? 0) / 1e9,
      cores: (main?.cpu?.usageNanoCores ?? 0) / 1e9,
      memory: main?.memory?.workingSetBytes ?? 0,
      nodeMemory,
      rxBytes: entry?.network?.rxBytes ?? 0,
      txBytes: entry?.network?.txBytes ?? 0,
      pids: entry?.process_stats?.process_count ?? 0
    }
  }

  async function fromMetrics (pod: V1Pod): Promise<PodReading> {
    const name = pod.metadata?.name ?? ''
    const metrics = await shared.client.getJson<PodMetrics>(`/apis/metrics.k8s.io/v1beta1/namespaces/${encodeURIComponent(shared.namespace)}/pods/${encodeURIComponent(name)}`, {}, { subject: 'stats', target: name })
    return readingOfMetrics(metrics, pod, integrals)
  }

  async function readPod (pod: V1Pod): Promise<PodReading> {
    if (source === null || Date.now() - source.at > SOURCE_TTL_MS) source = { kind: await metricsServed() ? 'metrics' : 'kubelet', at: Date.now() }
    if (source.kind === 'metrics') return await fromMetrics(pod)
    if (source.kind === 'kubelet') {
      try {
        return await fromKubelet(pod)
      } catch (error) {
        if (!forbidden(error)) throw error
        source = { kind: null, at: Date.now() }
      }
    }
    throw notSupported(K8S, NO_STATS)
  }

  async function read (id: string): Promise<{ pods: V1Pod[], readings: PodReading[] } | null> {
    await shared.ready()
    const pods = shared.podsOf(id).filter(isRunning)
    if (pods.length === 0) return null
    return { pods, readings: await Promise.all(pods.map(readPod)) }
  }

  return {
    async stats (id: string, options: { stream: boolean, signal?: AbortSignal, oneShot?: boolean }): Promise<AsyncIterable<ContainerStats>> {
      // The first reading is taken now: a cluster that offers no stats is a 501 before anything streams.
      const first = await read(id)
      if (first === null) throw new BerthError('container_not_running', `container ${id} is not running: it uses nothing`)
      const nodeCpus = await cpusOfNodes(shared, first.pods)
      async function * readings (): AsyncGenerator<ContainerStats> {
        let previous = first as NonNullable<typeof first>
        if (options.oneShot === true) {
          yield statsOf(previous, null, nodeCpus)
          return
        }
        for (;;) {
          if (options.signal?.aborted === true) return
          await sleep(STREAM_MS, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => {})
          if (options.signal?.aborted ?? false) return
          const next = await read(id)
          if (next === null) return
          yield statsOf(next, previous, nodeCpus)
          if (!options.stream) return
          previous = next
        }
      }
      return readings()
    }
  }
}

/** The CPUs of the nodes the replicas run on, when berth may read nodes; null otherwise. */
async function cpusOfNodes (shared: KubeShared, pods: V1Pod[]): Promise<number | null> {
  try {
    const nodes = await shared.nodes()
    const names = new Set(pods.map(pod => pod.spec?.nodeName))
    const cpus = nodes.filter(node => names.has(node.metadata?.name)).map(node => coresOf(node.status?.capacity?.cpu) ?? 0)
    return cpus.length === 0 ? null : Math.max(...cpus)
  } catch {
    return null
  }
}

/** The metrics API's reading of a pod; its CPU time is the rate summed over the readings berth took. */
export function readingOfMetrics (metrics: PodMetrics, pod: V1Pod, integrals: Map<string, { seconds: number, at: number }>): PodReading {
  const main = metrics.containers?.find(container => container.name === CONTAINER_NAME)
  const cores = coresOf(main?.usage?.cpu) ?? 0
  const at = metrics.timestamp === undefined ? Date.now() : Date.parse(metrics.timestamp)
  const uid = pod.metadata?.uid ?? ''
  const known = integrals.get(uid)
  const started = timeOf(pod.status?.startTime)
  // First seen: as if it had used this rate since it started.
  const seconds = known === undefined ? cores * Math.max(0, (at - (started === null ? at : Date.parse(started))) / 1000) : known.seconds + cores * Math.max(0, (at - known.at) / 1000)
  integrals.set(uid, { seconds, at })
  if (integrals.size > 10_000) integrals.delete(integrals.keys().next().value as string)
  return { at, cpuSeconds: seconds, cores, memory: bytesOf(main?.usage?.memory) ?? 0, nodeMemory: null, rxBytes: 0, txBytes: 0, pids: 0 }
}

/** A container's reading from its replicas': summed, CPU % from the previous reading when there is one (as docker stats), else from the source's rate. */
export function statsOf (now: { pods: V1Pod[], readings: PodReading[] }, previous: { readings: PodReading[] } | null, nodeCpus: number | null): ContainerStats {
  const sum = (pick: (reading: PodReading) => number, of: PodReading[]): number => of.reduce((total, reading) => total + pick(reading), 0)
  const cpuSeconds = sum(reading => reading.cpuSeconds, now.readings)
  const at = Math.max(...now.readings.map(reading => reading.at))
  let cpuPercent = sum(reading => reading.cores, now.readings) * 100
  if (previous !== null) {
    const elapsed = (at - Math.max(...previous.readings.map(reading => reading.at))) / 1000
    const used = cpuSeconds - sum(reading => reading.cpuSeconds, previous.readings)
    if (elapsed > 0 && used >= 0) cpuPercent = used / elapsed * 100
  }
  const limits = now.pods.map(pod => bytesOf(pod.spec?.containers.find(container => container.name === CONTAINER_NAME)?.resources?.limits?.memory))
  const limit = limits.every(value => value !== null)
    ? (limits as number[]).reduce((total, value) => total + value, 0)
    : Math.max(0, ...now.readings.map(reading => reading.nodeMemory ?? 0))
  const memory = sum(reading => reading.memory, now.readings)
  const cpuLimit = now.pods.map(pod => coresOf(pod.spec?.containers.find(container => container.name === CONTAINER_NAME)?.resources?.limits?.cpu)).find(value => value !== null)
  return {
    time: new Date(at).toISOString(),
    cpuPercent: Math.round(cpuPercent * 100) / 100,
    onlineCpus: nodeCpus ?? Math.max(1, Math.ceil(cpuLimit ?? 1)),
    cpuSeconds,
    memory: { used: memory, limit, percent: limit > 0 ? Math.round(memory / limit * 10_000) / 100 : 0 },
    network: { rxBytes: sum(reading => reading.rxBytes, now.readings), txBytes: sum(reading => reading.txBytes, now.readings) },
    blockIo: { readBytes: 0, writeBytes: 0 },
    pids: sum(reading => reading.pids, now.readings)
  }
}
