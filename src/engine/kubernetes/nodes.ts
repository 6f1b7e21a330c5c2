// The cluster's nodes in berth's words (GET /v1/nodes), read with the node reader ClusterRole.
import type { V1Node } from '@kubernetes/client-node'
import type { NodesPart } from '../parts.ts'
import type { Node } from '../types.ts'
import { bytesOf, coresOf } from './mapping.ts'
import type { KubeShared } from './shared.ts'

export function kubeNodes (shared: KubeShared): NodesPart {
  return { list: async () => (await shared.nodes()).map(nodeOf).sort((a, b) => a.name.localeCompare(b.name)) }
}

/** Ready by its condition; Unknown when the node stopped reporting. */
export function readiness (node: V1Node): 'ready' | 'down' | 'unknown' {
  const ready = node.status?.conditions?.find(condition => condition.type === 'Ready')
  return ready?.status === 'True' ? 'ready' : ready?.status === 'False' ? 'down' : 'unknown'
}

export function nodeOf (node: V1Node): Node {
  const address = node.status?.addresses?.find(candidate => candidate.type === 'InternalIP')?.address ?? null
  const labels = node.metadata?.labels ?? {}
  return {
    id: node.metadata?.uid ?? '',
    name: node.metadata?.name ?? '',
    address,
    role: 'control-plane' in labels || 'node-role.kubernetes.io/control-plane' in labels ? 'manager' : 'worker',
    leader: false,
    state: readiness(node),
    availability: node.spec?.unschedulable === true ? 'drain' : 'active',
    labels,
    resources: { cpus: coresOf(node.status?.capacity?.cpu) ?? 0, memory: bytesOf(node.status?.capacity?.memory) ?? 0 },
    engineVersion: node.status?.nodeInfo?.containerRuntimeVersion ?? '',
    os: node.status?.nodeInfo?.operatingSystem ?? '',
    arch: node.status?.nodeInfo?.architecture ?? ''
  }
}
