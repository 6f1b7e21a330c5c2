// /v1/volumes: docker volume create, ls, inspect, rm — the user's data, which outlives containers.
// A token that is not admin sees and touches only the volumes it made (also those its runs made).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { Principal } from '../access/ownership.ts'
import { ref } from '../schemas/common.ts'
import { ENGINE, problems } from '../schemas/problems.ts'
import { located } from '../schemas/headers.ts'
import { CreateVolumeRequest, InspectVolumeQuery, ListVolumesQuery, RemoveVolumeQuery, Volume, VolumeParams } from '../schemas/volumes.ts'

const volumes: FastifyPluginAsyncTypebox = async (app) => {
  const principalOf = (request: FastifyRequest): Principal => request.principal as Principal

  app.get('/v1/volumes', {
    config: { scope: 'read', part: 'volumes' },
    schema: {
      tags: ['volumes'],
      summary: 'List volumes (docker volume ls)',
      description: 'The token\'s volumes (an admin\'s: all of its deployment\'s), each with the containers that mount it; `size=true` adds their sizes.',
      operationId: 'listVolumes',
      querystring: ListVolumesQuery,
      response: { 200: Type.Array(ref(Volume), { description: 'The volumes, by name.' }), ...problems(...ENGINE) }
    }
  }, async (request) => await app.volumes.list(principalOf(request), { labels: request.query.label, size: request.query.size ?? false }))

  app.post('/v1/volumes', {
    config: { scope: 'write', part: 'volumes' },
    schema: {
      tags: ['volumes'],
      summary: 'Create a volume (docker volume create)',
      description: 'A local volume owned by the token. The token\'s own volume of that name is answered as it is (200), as the CLI does; ' +
        'a name that another token\'s volume holds is 409 name_conflict.',
      operationId: 'createVolume',
      body: ref(CreateVolumeRequest),
      response: {
        201: located(ref(Volume, 'Created (Location: its URL).')),
        200: located(ref(Volume, 'The token already has a volume of that name: this is it, unchanged (Location: its URL).')),
        ...problems(...ENGINE, 'name_conflict', 'placement_failed', 'policy_denied', 'quota_exceeded', 'validation_failed', 'not_supported')
      }
    }
  }, async (request, reply) => {
    if (request.body.name !== undefined) request.audit({ volume: request.body.name })
    const { volume, created } = await app.volumes.create(principalOf(request), request.body)
    request.audit({ volume: volume.name })
    reply.code(created ? 201 : 200).header('location', `/v1/volumes/${volume.name}`)
    return volume
  })

  app.get('/v1/volumes/:volume', {
    config: { scope: 'read', part: 'volumes' },
    schema: {
      tags: ['volumes'],
      summary: 'Inspect a volume (docker volume inspect)',
      description: 'With the containers that mount it; `size=true` adds its size.',
      operationId: 'inspectVolume',
      params: VolumeParams,
      querystring: InspectVolumeQuery,
      response: { 200: ref(Volume, 'The volume.'), ...problems(...ENGINE, 'not_found') }
    }
  }, async (request) => await app.volumes.find(principalOf(request), request.params.volume, { size: request.query.size ?? false }))

  app.delete('/v1/volumes/:volume', {
    config: { scope: 'write', part: 'volumes' },
    schema: {
      tags: ['volumes'],
      summary: 'Remove a volume (docker volume rm)',
      description: 'Its data is gone for good. A volume mounted by any container (running or not) is 409 volume_in_use naming them; ' +
        '`force=true` removes those containers first, when the token may remove every one of them; that is checked before any is removed, ' +
        'so a refused force (409, naming the users the token may see) removes nothing.',
      operationId: 'removeVolume',
      params: VolumeParams,
      querystring: RemoveVolumeQuery,
      response: { 204: Type.Null({ description: 'Removed.' }), ...problems(...ENGINE, 'not_found', 'volume_in_use') }
    }
  }, async (request, reply) => {
    const removed: string[] = []
    try {
      await app.volumes.remove(principalOf(request), request.params.volume, { force: request.query.force ?? false, removed })
    } finally {
      // Also when the volume could not be removed after all (mounted meanwhile): the containers are gone.
      if (removed.length > 0) request.audit({ removed })
    }
    return await reply.code(204).send(null)
  })
}

export default volumes
