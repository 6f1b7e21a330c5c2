// docker stats on Kubernetes, from whichever source the cluster offers berth: the metrics API
// (metrics.k8s.io, served by metrics-server) when it is there; else each node's kubelet summary,
// read through the apiserver's node proxy when berth's role may (kubelet-stats.yaml); else 501
// naming both. A container's reading is the sum of its running replicas'.
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { notSupported, type StatsPart } from '../parts.ts'
import type { ContainerStats } from '../types.ts'
import { coresOf } from './mapping.ts'
import { readingOfMetrics, readingOfSummary, statsOf, type KubeletSummary, type PodMetrics, type PodReading } from './pod-readings.ts'
import { isRunning } from './reading.ts'
import { K8S, forbidden, type KubeShared } from './shared.ts'

/** How long berth trusts what it found out about the cluster's sources. */
const SOURCE_TTL_MS = 60_000
const STREAM_MS = 1000

export const NO_STATS = 'stats on Kubernetes come from the metrics API or from the kubelets: install metrics-server (berth\'s Role already may read pods.metrics.k8s.io), ' +
  'or let berth read the kubelets\' summary through the apiserver (deploy/kubernetes/kubelet-stats.yaml; that also lets berth reach every kubelet\'s API, so prefer metrics-server)'

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
    return readingOfSummary(summary, pod, shared.namespace)
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
