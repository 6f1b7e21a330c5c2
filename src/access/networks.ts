// User-defined networks as one requester may use them: the token's own (an admin: all of its
// deployment's), found by id, id prefix or name without saying whether anything else exists, with
// only the containers it may see named as attached. A run joins only such a network, or the
// engine's default bridge, or none — never the host's.
import type { Network } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import type { CreateNetworkRequest } from '../schemas/networks.ts'
import { RESERVED_LABEL_PREFIX, notFound, type Ownership, type Principal } from './ownership.ts'
import { deny, invalid } from './policy.ts'

/** The engine's own networks a run may name: its default bridge, and no network at all. */
export const BUILTIN_NETWORKS = new Set(['bridge', 'none'])

/** A network the requester may see, or not_found as if it did not exist; an id prefix resolves among its own. */
export async function findNetwork (engine: Backend, ownership: Ownership, requester: Principal, idOrName: string): Promise<Network> {
  const members = ownership.filtersFor(requester)
  let network: Network | null = null
  try {
    network = await engine.part('networks').inspect(idOrName, { members })
  } catch (error) {
    // An unknown name, or a prefix the engine finds ambiguous among networks of every owner.
    if (!(error instanceof BerthError && (error.code === 'not_found' || error.code === 'validation_failed'))) throw error
  }
  if (network !== null && ownership.owns(requester, network.labels)) return network
  const own = await engine.part('networks').list({ labels: members, members })
  const named = own.filter(candidate => candidate.name === idOrName)
  const matches = named.length > 0 ? named : own.filter(candidate => candidate.id.startsWith(idOrName))
  if (matches.length === 0) throw notFound('network', idOrName)
  if (matches.length > 1) throw new BerthError('ambiguous_id', `${idOrName} matches ${matches.length} networks; give more of the id`, { matches: matches.length })
  return matches[0] as Network
}

/**
 * The network a run joins, as the engine is to be told: the id of one of the requester's networks,
 * or a built-in one. `aliases` need a user-defined network (the engine's rule, said before it is asked).
 */
export async function networkForRun (engine: Backend, ownership: Ownership, requester: Principal, network: string | undefined, aliases: string[] | undefined): Promise<string | undefined> {
  if (network === 'host') throw deny('network', 'a container may not share the host\'s network: join one of the token\'s networks, or bridge')
  if (aliases !== undefined && aliases.length > 0 && (network === undefined || BUILTIN_NETWORKS.has(network))) {
    throw invalid('body/aliases', 'need a user-defined network: set network to one of the token\'s networks')
  }
  if (network === undefined || BUILTIN_NETWORKS.has(network)) return network
  return (await findNetwork(engine, ownership, requester, network)).id
}

/**
 * What connecting a container needs of the containers: one found as the requester may see it
 * (ContainerAccess#find). Said here, so that networks do not import containers, which import
 * networks for the network a run joins.
 */
export interface ContainerLookup {
  find (requester: Principal, idOrName: string): Promise<{ id: string, name: string }>
}

export class NetworkAccess {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #containers: ContainerLookup

  constructor (engine: Backend, ownership: Ownership, containers: ContainerLookup) {
    this.#engine = engine
    this.#ownership = ownership
    this.#containers = containers
  }

  async list (requester: Principal, labels: string[] = []): Promise<Network[]> {
    const visible = this.#ownership.filtersFor(requester)
    return await this.#engine.part('networks').list({ labels: [...labels, ...visible], members: visible })
  }

  async find (requester: Principal, idOrName: string): Promise<Network> {
    return await findNetwork(this.#engine, this.#ownership, requester, idOrName)
  }

  async create (requester: Principal, body: CreateNetworkRequest): Promise<Network> {
    const labels = body.labels ?? {}
    for (const key of Object.keys(labels)) {
      if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`body/labels/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
    }
    if (BUILTIN_NETWORKS.has(body.name) || body.name === 'host') throw invalid('body/name', `is the engine's own network ${body.name}`)
    const network = await this.#engine.part('networks').create({ name: body.name, internal: body.internal ?? false, labels: { ...labels, ...this.#ownership.labelsFor(requester.name) } })
    return { ...network, containers: [] }
  }

  /** docker network rm; attached containers (running or not) are network_in_use naming those the requester may see. */
  async remove (requester: Principal, network: Network): Promise<void> {
    try {
      await this.#engine.part('networks').remove(network.id)
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'network_in_use')) throw error
      const visible = (await this.find(requester, network.id)).containers
      const names = visible.map(member => member.name)
      throw new BerthError('network_in_use', names.length === 0
        ? `network ${network.name} has containers attached`
        : `network ${network.name} has containers attached: ${names.join(', ')}; disconnect or remove them first`,
      { network: network.name, containers: visible.map(member => ({ id: member.id, name: member.name })) })
    }
  }

  /** docker network connect / disconnect: both the network and the container must be the requester's. */
  async connect (requester: Principal, network: Network, container: string, options: { aliases: string[] }) {
    const { id, name } = await this.#containers.find(requester, container)
    const { changed } = await this.#engine.part('networks').connect(network.id, id, options)
    return { changed, container: { id, name }, network: await this.find(requester, network.id) }
  }

  async disconnect (requester: Principal, network: Network, container: string, options: { force: boolean }) {
    const { id, name } = await this.#containers.find(requester, container)
    const { changed } = await this.#engine.part('networks').disconnect(network.id, id, options)
    return { changed, container: { id, name }, network: await this.find(requester, network.id) }
  }
}
