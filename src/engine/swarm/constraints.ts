// Swarm's placement constraints (`node.labels.gpu==true`, `node.hostname!=node1`, …) evaluated against
// the nodes, for what berth places itself before the scheduler does: a run's new named volume goes to
// a node the run may be placed on. Only the attributes Swarm documents; an unknown one matches nothing,
// as the scheduler would place nothing. Pure functions.
import type { SwarmNode } from './mapping.ts'

const CONSTRAINT = /^\s*([a-zA-Z0-9_.-]+)\s*(==|!=)\s*(.+?)\s*$/

function attribute (node: SwarmNode, name: string): string | undefined {
  const lower = name.toLowerCase()
  if (lower === 'node.id') return node.ID
  if (lower === 'node.hostname') return node.Description?.Hostname
  if (lower === 'node.role') return node.Spec.Role
  if (lower === 'node.platform.os') return node.Description?.Platform?.OS
  if (lower === 'node.platform.arch') return node.Description?.Platform?.Architecture
  if (lower.startsWith('node.labels.')) return node.Spec.Labels?.[name.slice('node.labels.'.length)]
  if (lower.startsWith('engine.labels.')) return node.Description?.Engine?.Labels?.[name.slice('engine.labels.'.length)]
  return undefined
}

/** Whether the node meets one constraint (labels compare exactly; names, roles and platforms regardless of case, as Swarm does). */
export function meets (node: SwarmNode, constraint: string): boolean {
  const match = CONSTRAINT.exec(constraint)
  if (match === null) return false
  const [, name = '', operator, wanted = ''] = match
  const value = attribute(node, name)
  const caseless = !/^(node|engine)\.labels\./i.test(name)
  const equal = value !== undefined && (caseless ? value.toLowerCase() === wanted.toLowerCase() : value === wanted)
  return operator === '==' ? equal : !equal
}

/** The nodes that meet every constraint. */
export function eligible (nodes: SwarmNode[], constraints: readonly string[]): SwarmNode[] {
  return nodes.filter(node => constraints.every(constraint => meets(node, constraint)))
}
