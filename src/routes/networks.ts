// /v1/networks: docker network create, ls, inspect, rm, connect, disconnect — so a hub or proxy
// reaches a token's containers by name. A token that is not admin sees and touches only its own.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { Principal } from '../access/ownership.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, ENGINE, problems } from '../schemas/problems.ts'
import { located } from '../schemas/headers.ts'
import { ConnectRequest, CreateNetworkRequest, DisconnectRequest, ListNetworksQuery, Network, NetworkChange, NetworkParams } from '../schemas/networks.ts'

const networks: FastifyPluginAsyncTypebox = async (app) => {
  const principalOf = (request: FastifyRequest): Principal => request.principal as Principal

  app.get('/v1/networks', {
    config: { scope: 'read', part: 'networks' },
    schema: {
      tags: ['networks'],
      summary: 'List networks (docker network ls)',
      description: 'The token\'s networks (an admin\'s: all of its deployment\'s), each with the containers attached. The engine\'s own (bridge, host, none) are not listed.',
      operationId: 'listNetworks',
      querystring: ListNetworksQuery,
      response: { 200: Type.Array(ref(Network), { description: 'The networks, by name.' }), ...problems(...ENGINE) }
    }
  }, async (request) => await app.networks.list(principalOf(request), request.query.label))

  app.post('/v1/networks', {
    config: { scope: 'write', part: 'networks' },
    schema: {
      tags: ['networks'],
      summary: 'Create a network (docker network create)',
      description: 'A bridge network owned by the token; `internal: true` gives it no route to the outside. A name in use is 409 name_conflict.',
      operationId: 'createNetwork',
      body: ref(CreateNetworkRequest),
      response: { 201: located(ref(Network, 'Created (Location: its URL).')), ...problems(...ENGINE, 'name_conflict') }
    }
  }, async (request, reply) => {
    request.audit({ network: { name: request.body.name } })
    const network = await app.networks.create(principalOf(request), request.body)
    request.audit({ network: { id: network.id, name: network.name } })
    reply.code(201).header('location', `/v1/networks/${network.id}`)
    return network
  })

  app.get('/v1/networks/:network', {
    config: { scope: 'read', part: 'networks' },
    schema: {
      tags: ['networks'],
      summary: 'Inspect a network (docker network inspect)',
      operationId: 'inspectNetwork',
      params: NetworkParams,
      response: { 200: ref(Network, 'The network.'), ...problems(...ENGINE, 'not_found', 'ambiguous_id') }
    }
  }, async (request) => await app.networks.find(principalOf(request), request.params.network))

  app.delete('/v1/networks/:network', {
    config: { scope: 'write', part: 'networks' },
    schema: {
      tags: ['networks'],
      summary: 'Remove a network (docker network rm)',
      description: 'A network with containers attached, running or not, is 409 network_in_use: the engine would remove it from under stopped ones, which then could not start.',
      operationId: 'removeNetwork',
      params: NetworkParams,
      response: { 204: Type.Null({ description: 'Removed.' }), ...problems(...ENGINE, 'not_found', 'ambiguous_id', 'network_in_use') }
    }
  }, async (request, reply) => {
    const network = await app.networks.find(principalOf(request), request.params.network)
    request.audit({ network: { id: network.id, name: network.name } })
    await app.networks.remove(principalOf(request), network)
    return await reply.code(204).send(null)
  })

  for (const action of ['connect', 'disconnect'] as const) {
    app.post(`/v1/networks/:network/${action}`, {
      config: { scope: 'write', part: 'networks' },
      schema: {
        tags: ['networks'],
        summary: action === 'connect' ? 'Connect a container to a network (docker network connect)' : 'Disconnect a container from a network (docker network disconnect)',
        description: action === 'connect'
          ? 'The container (running or not) joins the network, reached there by its name and `aliases`. Already connected is a success with `changed: false`. ' +
            'On a Swarm cluster its service changes, so its replicas are replaced (this answers when they run again).'
          : 'Not connected is a success with `changed: false`. On a Swarm cluster its replicas are replaced, as for connect.',
        operationId: `${action}Network`,
        params: NetworkParams,
        body: action === 'connect' ? ref(ConnectRequest) : ref(DisconnectRequest),
        response: { 200: ref(NetworkChange, 'Done, or nothing to do (`changed: false`); the network as it is now.'), ...problems(...CONTAINER, 'policy_denied', 'port_conflict', 'placement_failed', 'placement_timeout') }
      }
    }, async (request) => {
      const body = request.body as { container: string, aliases?: string[], force?: boolean }
      request.audit({ container: { requested: body.container } })
      const network = await app.networks.find(principalOf(request), request.params.network)
      request.audit({ network: { id: network.id, name: network.name } })
      const outcome = action === 'connect'
        ? await app.networks.connect(principalOf(request), network, body.container, { aliases: body.aliases ?? [] })
        : await app.networks.disconnect(principalOf(request), network, body.container, { force: body.force ?? false })
      request.audit({ container: outcome.container })
      return { changed: outcome.changed, network: outcome.network }
    })
  }
}

export default networks
