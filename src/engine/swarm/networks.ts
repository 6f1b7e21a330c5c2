// The swarm backend's networks part: overlay networks, which span the nodes, with the same rules as
// bridge networks on one host — a token's own, removed only when nothing is attached, joined by a run
// with aliases. A service on one is given DNS round-robin endpoints (src/engine/swarm/mapping.ts): its
// name and aliases resolve to its replicas' addresses, with no virtual IP in between (none is needed,
// and clusters without IPVS have none that answers). Its members are the services attached, in any
// state. Joining or leaving one changes the service, so its replicas are replaced, as an update does.
import { setTimeout as sleep } from 'node:timers/promises'
import { BerthError } from '../../errors.ts'
import type { NetworkMember } from '../../schemas/networks.ts'
import type { NetworksPart } from '../parts.ts'
import type { Network, NetworkSpec, StateChange } from '../types.ts'
import { graceMs, type SwarmCluster } from './cluster.ts'
import { replicaCount, type SwarmService } from './mapping.ts'
import { publishedPorts } from './ports.ts'

interface SwarmNetwork {
  Id: string
  Name: string
  Driver: string
  Internal?: boolean
  Scope?: string
  Created?: string
  Labels?: Record<string, string> | null
  IPAM?: { Config?: Array<{ Subnet?: string }> | null }
}

export class SwarmNetworks implements NetworksPart {
  readonly #cluster: SwarmCluster

  constructor (cluster: SwarmCluster) {
    this.#cluster = cluster
  }

  async list (options: { labels: string[], members: string[] }): Promise<Network[]> {
    const networks = await this.#cluster.api.get<SwarmNetwork[]>('/networks', { filters: { label: options.labels, driver: ['overlay'], scope: ['swarm'] } }, { subject: 'network', target: 'networks' })
    const members = await this.#members(options.members)
    return networks.map(network => networkOf(network, members.get(network.Id) ?? [])).sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (idOrName: string, options: { members: string[] }): Promise<Network> {
    const network = await this.#inspect(idOrName)
    if (network.Driver !== 'overlay' || network.Scope !== 'swarm') throw new BerthError('not_found', `network ${idOrName} was not found`)
    return networkOf(network, (await this.#members(options.members)).get(network.Id) ?? [])
  }

  async create (spec: NetworkSpec): Promise<Network> {
    // CheckDuplicate: without it the manager makes a second network of the same name. Not attachable:
    // only services join it, so a container started on a node by hand cannot.
    const created = await this.#cluster.api.request<{ Id: string }>({
      method: 'POST',
      path: '/networks/create',
      body: { Name: spec.name, CheckDuplicate: true, Driver: 'overlay', Scope: 'swarm', Attachable: false, Internal: spec.internal, Labels: spec.labels },
      subject: 'network',
      target: spec.name
    })
    // The manager answers the create before every read of it sees the network: ask until one does.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.inspect(created.Id, { members: [] })
      } catch (error) {
        if (!(error instanceof BerthError && error.code === 'not_found') || attempt >= 50) throw error
        await sleep(this.#cluster.pollMs)
      }
    }
  }

  async remove (id: string): Promise<void> {
    // A stopped service has no task on it, but would join it again when started: attached in any state is in use.
    const attached = (await this.#cluster.reads.services()).filter(service => attachedTo(service, id))
    if (attached.length > 0) throw new BerthError('network_in_use', `network ${id} has containers attached`, { network: id })
    await this.#cluster.api.request({ method: 'DELETE', path: `/networks/${encodeURIComponent(id)}`, subject: 'network', target: id })
  }

  async connect (networkId: string, containerId: string, options: { aliases: string[] }): Promise<StateChange> {
    const service = await this.#cluster.reads.service(containerId)
    if (attachedTo(service, networkId)) return { changed: false }
    await this.#change(service, spec => {
      spec.TaskTemplate.Networks = [...(spec.TaskTemplate.Networks ?? []), { Target: networkId, ...(options.aliases.length > 0 ? { Aliases: options.aliases } : {}) }]
      const ingress = (spec.EndpointSpec?.Ports ?? []).some(port => port.PublishMode !== 'host')
      if (!ingress) spec.EndpointSpec = { ...spec.EndpointSpec, Mode: 'dnsrr' }
    })
    return { changed: true }
  }

  async disconnect (networkId: string, containerId: string): Promise<StateChange> {
    const service = await this.#cluster.reads.service(containerId)
    if (!attachedTo(service, networkId)) return { changed: false }
    await this.#change(service, spec => {
      spec.TaskTemplate.Networks = (spec.TaskTemplate.Networks ?? []).filter(attachment => attachment.Target !== networkId)
    })
    return { changed: true }
  }

  /** Updates the service; a running one is answered when its replaced replicas run, as a restart is. */
  async #change (service: SwarmService, change: Parameters<SwarmCluster['update']>[1]): Promise<void> {
    const before = new Set((await this.#cluster.reads.tasks([service.ID], { fresh: true })).map(task => task.ID))
    await this.#cluster.update(service.ID, change)
    if ((service.Spec.Mode?.Replicated?.Replicas ?? 1) === 0) return
    await this.#cluster.awaitReplicas(service.ID, replicaCount(service), before, publishedPorts(service.Spec), graceMs(service.Spec))
  }

  async #inspect (idOrName: string): Promise<SwarmNetwork> {
    return await this.#cluster.api.get<SwarmNetwork>(`/networks/${encodeURIComponent(idOrName)}`, {}, { subject: 'network', target: idOrName })
  }

  /** The services matching `labels` (all of them for []), by the networks they are attached to. */
  async #members (labels: string[]): Promise<Map<string, NetworkMember[]>> {
    const services = await this.#cluster.reads.services(labels.length > 0 ? { labels } : {})
    const members = new Map<string, NetworkMember[]>()
    for (const service of services) {
      for (const attachment of service.Spec.TaskTemplate.Networks ?? []) {
        const list = members.get(attachment.Target) ?? []
        // A service's replicas each have an address of their own: the service as a whole has none.
        list.push({ id: service.ID, name: service.Spec.Name ?? service.ID, ipAddress: null })
        members.set(attachment.Target, list)
      }
    }
    return members
  }
}

function attachedTo (service: SwarmService, networkId: string): boolean {
  return (service.Spec.TaskTemplate.Networks ?? []).some(attachment => attachment.Target === networkId)
}

function networkOf (network: SwarmNetwork, members: NetworkMember[]): Network {
  return {
    id: network.Id,
    name: network.Name,
    driver: network.Driver,
    internal: network.Internal ?? false,
    subnet: network.IPAM?.Config?.[0]?.Subnet ?? null,
    labels: network.Labels ?? {},
    createdAt: network.Created ?? null,
    containers: members
  }
}
