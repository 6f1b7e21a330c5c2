// Network models: what `docker network create` takes, and networks as berth reports them — with the
// containers attached, so a hub or proxy can be pointed at them by name.
import { Type, type Static } from 'typebox'
import { keyedMap } from './common.ts'
import { NAME_PATTERN } from './containers.ts'

const printable = '^[^\\u0000-\\u001f\\u007f]*$'
/** A DNS label: what a container is reached by on a network. */
export const ALIAS_PATTERN = '^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$'

export const NetworkMember = Type.Object({
  id: Type.String({ description: 'Container id.' }),
  name: Type.String({ description: 'Container name: other containers on the network reach it by this name.' }),
  ipAddress: Type.Union([Type.String(), Type.Null()], { description: 'Its address on the network while it runs; null when it does not.' })
}, { additionalProperties: false, description: 'A container attached to the network.' })
export type NetworkMember = Static<typeof NetworkMember>

export const Network = Type.Object({
  id: Type.String({ description: 'Network id.' }),
  name: Type.String({ description: 'Network name.' }),
  driver: Type.String({ description: 'Network driver (`bridge` on a single host).' }),
  internal: Type.Boolean({ description: 'No route to the outside: its containers reach each other only.' }),
  subnet: Type.Union([Type.String(), Type.Null()], { description: 'The subnet the engine gave it.' }),
  labels: Type.Record(Type.String(), Type.String(), { description: 'Labels, berth\'s own (`io.berth.*`) included.' }),
  createdAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it was created.' }),
  containers: Type.Array(NetworkMember, { description: 'The containers attached to it (in any state), among those the token may see.' })
}, { $id: 'Network', additionalProperties: false, description: 'A user-defined network, as `docker network inspect` shows it.' })
export type Network = Static<typeof Network>

export const CreateNetworkRequest = Type.Object({
  name: Type.String({ pattern: NAME_PATTERN, description: 'Network name; unique on the engine.' }),
  internal: Type.Optional(Type.Boolean({ default: false, description: 'No route to the outside (`--internal`).' })),
  labels: Type.Optional(keyedMap('^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$', Type.String({ maxLength: 4096, pattern: printable }), {
    maxProperties: 64, description: 'Labels. Keys under `io.berth.` are berth\'s own and cannot be set.'
  }))
}, {
  $id: 'CreateNetworkRequest',
  additionalProperties: false,
  description: 'What `docker network create` takes: a bridge network on a single host. No driver, IPAM or driver options: those reach into the host\'s networking.',
  examples: [{ name: 'ada-lab', internal: false }]
})
export type CreateNetworkRequest = Static<typeof CreateNetworkRequest>

export const ConnectRequest = Type.Object({
  container: Type.String({ pattern: NAME_PATTERN, description: 'Container id (full or unique prefix) or name.' }),
  aliases: Type.Optional(Type.Array(Type.String({ pattern: ALIAS_PATTERN }), { maxItems: 16, uniqueItems: true, description: 'More names it is reached by on this network (`--alias`).' }))
}, { $id: 'ConnectRequest', additionalProperties: false, description: 'What `docker network connect` takes.' })

export const DisconnectRequest = Type.Object({
  container: Type.String({ pattern: NAME_PATTERN, description: 'Container id (full or unique prefix) or name.' }),
  force: Type.Optional(Type.Boolean({ default: false, description: 'Disconnect even when the engine would refuse (`docker network disconnect -f`).' }))
}, { $id: 'DisconnectRequest', additionalProperties: false, description: 'What `docker network disconnect` takes.' })

export const NetworkChange = Type.Object({
  changed: Type.Boolean({ description: 'False when it already was (or was not) connected: nothing was done.' }),
  network: Type.Unsafe<Network>(Type.Ref('Network'))
}, { $id: 'NetworkChange', additionalProperties: false, description: 'The outcome of connect or disconnect.' })

export const NetworkParams = Type.Object({
  network: Type.String({ pattern: NAME_PATTERN, description: 'Network id (full or unique prefix) or name.' })
})

export const ListNetworksQuery = Type.Object({
  label: Type.Optional(Type.Array(Type.String({ maxLength: 1024, pattern: printable }), { maxItems: 32, description: 'Only networks with this label (`key` or `key=value`); repeat for several.' }))
}, { additionalProperties: false })

export const networkSchemas = [Network, CreateNetworkRequest, ConnectRequest, DisconnectRequest, NetworkChange]
