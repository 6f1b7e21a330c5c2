// Named volumes on a cluster. A volume is data on one node's disk: berth makes it on one node (the one
// asked for, else one the run that needs it may be placed on, with the fewest of berth's volumes), with
// its owner's labels; lists and inspects it through the agents of the nodes that answer; places every
// run that mounts it on that node (src/engine/swarm/containers.ts); and counts as its users the
// services that mount it, in any state, on any node — a stopped one has no container, but would mount
// it again when started.
import { LABEL_DEPLOYMENT, LABEL_MANAGED, LABEL_OWNER } from '../../access/ownership.ts'
import { BerthError } from '../../errors.ts'
import { DockerVolumes } from '../docker/volumes.ts'
import { notSupported, type VolumesPart } from '../parts.ts'
import type { Placement, Volume, VolumeDetails } from '../types.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import type { Agents } from './agents.ts'
import type { SwarmCluster } from './cluster.ts'
import { eligible } from './constraints.ts'
import { isNodeLost, nodeRefOf, summaryOf, type NodeRef, type SwarmNode, type SwarmService } from './mapping.ts'

interface Copy {
  node: NodeRef
  volume: Volume
}

export class SwarmVolumes implements VolumesPart {
  readonly #cluster: SwarmCluster
  readonly #agents: Agents

  constructor (cluster: SwarmCluster, agents: Agents) {
    this.#cluster = cluster
    this.#agents = agents
  }

  async list (options: { labels: string[] } & VolumeDetails): Promise<Volume[]> {
    const { copies } = await this.#copies(async volumes => await volumes.list({ labels: options.labels, ...(options.size === true ? { size: true } : {}) }))
    const users = options.usedBy === undefined ? null : await this.#users(options.usedBy)
    return [...group(copies).values()].map(found => merged(found, users))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (name: string, details: VolumeDetails = {}): Promise<Volume> {
    const found = await this.#copiesOf(name, details.size === true)
    if (found.copies.length === 0) throw new BerthError('not_found', `volume ${name} was not found on any node that answers`)
    const users = details.usedBy === undefined ? null : await this.#users(details.usedBy)
    return merged(found.copies, users)
  }

  /** Makes it on one node; an existing volume of that name (on any node) is returned as it is. */
  /** A node's local volume is bounded by that node's disk, not by a size. */
  capacityFor (): null {
    return null
  }

  async create (name: string, labels: Record<string, string>, options: { node?: string, placement?: Placement, size?: number } = {}): Promise<Volume> {
    if (options.size !== undefined) throw notSupported('swarm', 'a node\'s local volume has no size: it holds what the node\'s disk holds (size is for backends that bound volumes, such as Kubernetes)')
    const found = await this.#copiesOf(name, false)
    if (found.copies.length > 0) return merged(found.copies, null)
    if (found.unreachable.length > 0) {
      throw new BerthError('engine_unavailable', `cannot tell whether volume ${name} is already on ${found.unreachable.map(node => node.name).join(', ')}, which ${found.unreachable.length === 1 ? 'is' : 'are'} down: ` +
        'making it elsewhere would split its data; try again when every node answers', {}, { headers: { 'retry-after': '10' } })
    }
    const node = await this.#homeFor(options)
    const volume = await this.#agents.on(node, async engine => await new DockerVolumes(engine).create(name, labels))
    return { ...volume, nodes: [node.name] }
  }

  async remove (name: string): Promise<void> {
    const found = await this.#copiesOf(name, false)
    if (found.copies.length === 0) throw new BerthError('not_found', `volume ${name} was not found on any node that answers`)
    const users = (await this.#users([])).get(name) ?? []
    if (users.length > 0) throw new BerthError('volume_in_use', `volume ${name} is in use by a container`, { volume: name })
    for (const copy of found.copies) await this.#agents.on(copy.node, async engine => { await new DockerVolumes(engine).remove(name) })
  }

  /** The node a volume lives on; null when no node has it (a run then makes it where it is placed). */
  async home (name: string): Promise<NodeRef | null> {
    const { copies } = await this.#copiesOf(name, false)
    if (copies.length > 1) {
      throw new BerthError('placement_failed', `volume ${name} has copies on ${copies.map(copy => copy.node.name).join(', ')} (made outside berth): a container can mount only one of them`, { reason: 'volume' })
    }
    return copies[0]?.node ?? null
  }

  /** The node a new volume goes to: the one asked for, else of those a run's placement allows, the one holding the fewest of berth's volumes. */
  async #homeFor (options: { node?: string, placement?: Placement }): Promise<NodeRef> {
    const nodes = await this.#cluster.reads.nodes()
    if (options.node !== undefined) {
      const named = nodes.find(node => node.Description?.Hostname === options.node || node.ID === options.node)
      if (named === undefined) throw new BerthError('validation_failed', `the cluster has no node ${options.node}`, { errors: [{ location: 'body', path: '/node', message: 'is not a node of the cluster' }] })
      const ref = nodeRefOf(named)
      if (ref.state !== 'ready') throw new BerthError('engine_unavailable', `node ${ref.name} is ${ref.state}: a volume cannot be made there now`, {}, { headers: { 'retry-after': '10' } })
      return ref
    }
    const candidates = eligible(nodes, options.placement?.constraints ?? []).filter(node => node.Status?.State === 'ready' && (node.Spec.Availability ?? 'active') === 'active')
    if (candidates.length === 0) {
      throw new BerthError('placement_failed', 'no node that answers meets the run\'s placement: its volume has nowhere to live', { reason: 'constraints' })
    }
    const counted = await Promise.all(candidates.map(async (node: SwarmNode) => {
      const ref = nodeRefOf(node)
      const volumes = await this.#agents.on(ref, async engine => await new DockerVolumes(engine).list({ labels: [`${LABEL_MANAGED}=true`] }))
      return { ref, count: volumes.length }
    }))
    counted.sort((a, b) => a.count - b.count || a.ref.name.localeCompare(b.ref.name))
    return (counted[0] as { ref: NodeRef }).ref
  }

  async #copiesOf (name: string, size: boolean): Promise<{ copies: Copy[], unreachable: NodeRef[] }> {
    return await this.#copies(async volumes => {
      try {
        return [await volumes.inspect(name, size ? { size: true } : {})]
      } catch (error) {
        if (error instanceof BerthError && error.code === 'not_found') return []
        throw error
      }
    })
  }

  /** What each node that answers holds; the nodes the manager has lost are said apart. */
  async #copies (read: (volumes: DockerVolumes) => Promise<Volume[]>): Promise<{ copies: Copy[], unreachable: NodeRef[] }> {
    const nodes = (await this.#cluster.reads.nodes()).map(nodeRefOf)
    const unreachable = nodes.filter(node => isNodeLost(node) || node.state !== 'ready')
    const copies = await Promise.all(nodes.filter(node => !unreachable.includes(node)).map(async node =>
      (await this.#agents.on(node, async engine => await read(new DockerVolumes(engine)))).map(volume => ({ node, volume }))))
    return { copies: copies.flat(), unreachable }
  }

  /** The services mounting each volume, among those whose labels match the filters ([] for all). */
  async #users (filters: string[]): Promise<Map<string, VolumeUser[]>> {
    const services = await this.#cluster.reads.services(filters.length > 0 ? { labels: filters } : {})
    const mounting = services.filter(service => (service.Spec.TaskTemplate.ContainerSpec.Mounts ?? []).some(mount => mount.Type === 'volume'))
    const users = new Map<string, VolumeUser[]>()
    if (mounting.length === 0) return users
    const tasks = await this.#cluster.reads.tasks(mounting.map(service => service.ID))
    const nodes = await this.#cluster.reads.nodeRefs(tasks)
    for (const service of mounting) {
      const { state } = summaryOf(service, tasks, nodes)
      for (const name of volumesOf(service)) {
        const list = users.get(name) ?? []
        list.push({ id: service.ID, name: service.Spec.Name ?? service.ID, state })
        users.set(name, list)
      }
    }
    return users
  }
}

function volumesOf (service: SwarmService): string[] {
  return [...new Set((service.Spec.TaskTemplate.ContainerSpec.Mounts ?? []).flatMap(mount => mount.Type === 'volume' && mount.Source ? [mount.Source] : []))]
}

function group (copies: Copy[]): Map<string, Copy[]> {
  const byName = new Map<string, Copy[]>()
  for (const copy of copies) byName.set(copy.volume.name, [...(byName.get(copy.volume.name) ?? []), copy])
  return byName
}

/**
 * One volume from its copies (one, unless made outside berth): where each is; whose it is only when
 * every copy says the same (otherwise nobody's, and nobody is shown it); its users when asked for.
 */
function merged (copies: Copy[], users: Map<string, VolumeUser[]> | null): Volume {
  const first = (copies[0] as Copy).volume
  const agree = copies.every(copy => [LABEL_MANAGED, LABEL_DEPLOYMENT, LABEL_OWNER].every(key => copy.volume.labels[key] === first.labels[key]))
  const labels = agree
    ? first.labels
    : Object.fromEntries(Object.entries(first.labels).filter(([key]) => key !== LABEL_MANAGED && key !== LABEL_DEPLOYMENT && key !== LABEL_OWNER))
  const sizes = copies.map(copy => copy.volume.size)
  return {
    ...first,
    labels,
    size: sizes.some(size => size === null) ? null : sizes.reduce<number>((sum, size) => sum + (size as number), 0),
    usedBy: users?.get(first.name) ?? [],
    nodes: copies.map(copy => copy.node.name).sort()
  }
}
