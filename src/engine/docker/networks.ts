// The docker backend's networks part: user-defined bridge networks of one engine, with the
// containers attached to each among those a requester may see.
import type Docker from 'dockerode'
import { BerthError } from '../../errors.ts'
import type { NetworkMember } from '../../schemas/networks.ts'
import type { NetworksPart } from '../parts.ts'
import type { Network, NetworkSpec, StateChange } from '../types.ts'
import { networkMembersOf, networkOf } from './mapping.ts'
import type { DockerTransport } from './transport.ts'

export class DockerNetworks implements NetworksPart {
  readonly #transport: DockerTransport

  constructor (transport: DockerTransport) {
    this.#transport = transport
  }

  async list (options: { labels: string[], members: string[] }): Promise<Network[]> {
    // The list leaves out what inspect says (the subnet): inspect each of the few a token has.
    const listed = await this.#transport.call({ subject: 'network', target: 'networks' },
      (docker, signal) => docker.listNetworks({ filters: { label: options.labels }, abortSignal: signal } as Docker.NetworkListOptions))
    const members = await this.#members(options.members)
    const networks = await Promise.all(listed.map(async network => await this.#inspect(network.Id).catch(() => null)))
    return networks.flatMap(network => network === null ? [] : [networkOf(network, members.get(network.Id) ?? [])])
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (idOrName: string, options: { members: string[] }): Promise<Network> {
    const network = await this.#inspect(idOrName)
    return networkOf(network, (await this.#members(options.members, network.Id)).get(network.Id) ?? [])
  }

  async create (spec: NetworkSpec): Promise<Network> {
    // CheckDuplicate: without it the engine makes a second network of the same name.
    const created = await this.#transport.request<{ Id: string }>({ subject: 'network', target: spec.name },
      { method: 'POST', path: '/networks/create', body: { Name: spec.name, CheckDuplicate: true, Driver: 'bridge', Internal: spec.internal, Labels: spec.labels } })
    return await this.inspect(created.Id, { members: [] })
  }

  async remove (id: string): Promise<void> {
    // The engine refuses only while a running container is attached; it would remove the network
    // from under stopped ones, which then cannot start. Attached in any state is in use.
    const attached = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: true, filters: { network: [id] }, abortSignal: signal }))
    if (attached.length > 0) throw new BerthError('network_in_use', `network ${id} has containers attached`, { network: id })
    await this.#transport.request({ subject: 'network', target: id }, { method: 'DELETE', path: `/networks/${encodeURIComponent(id)}` })
  }

  async connect (networkId: string, containerId: string, options: { aliases: string[] }): Promise<StateChange> {
    if (await this.#attached(networkId, containerId)) return { changed: false }
    await this.#transport.request({ subject: 'network', target: networkId }, {
      method: 'POST',
      path: `/networks/${encodeURIComponent(networkId)}/connect`,
      body: { Container: containerId, ...(options.aliases.length > 0 ? { EndpointConfig: { Aliases: options.aliases } } : {}) }
    })
    return { changed: true }
  }

  async disconnect (networkId: string, containerId: string, options: { force: boolean }): Promise<StateChange> {
    if (!await this.#attached(networkId, containerId)) return { changed: false }
    await this.#transport.request({ subject: 'network', target: networkId },
      { method: 'POST', path: `/networks/${encodeURIComponent(networkId)}/disconnect`, body: { Container: containerId, Force: options.force } })
    return { changed: true }
  }

  async #inspect (idOrName: string): Promise<Docker.NetworkInspectInfo> {
    return await this.#transport.request<Docker.NetworkInspectInfo>({ subject: 'network', target: idOrName }, { method: 'GET', path: `/networks/${encodeURIComponent(idOrName)}` })
  }

  async #attached (networkId: string, containerId: string): Promise<boolean> {
    const info = await this.#transport.call({ subject: 'container', target: containerId },
      (docker, signal) => docker.getContainer(containerId).inspect({ abortSignal: signal }))
    return Object.values(info.NetworkSettings.Networks ?? {}).some(endpoint => endpoint.NetworkID === networkId)
  }

  /** The containers matching `labels` (all of them for []), by the networks they are attached to. */
  async #members (labels: string[], network?: string): Promise<Map<string, NetworkMember[]>> {
    const filters: Record<string, string[]> = {}
    if (labels.length > 0) filters.label = labels
    if (network !== undefined) filters.network = [network]
    const containers = await this.#transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: true, filters, abortSignal: signal }))
    return networkMembersOf(containers)
  }
}
