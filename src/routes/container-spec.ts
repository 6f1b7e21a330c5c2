// GET /v1/containers/{idOrName}/spec: a container as a run request someone else can POST.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { containerSpecOf } from '../access/container-spec.ts'
import type { Principal } from '../access/ownership.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerSpec } from '../schemas/container-spec.ts'
import { ContainerParams } from '../schemas/containers.ts'

const containerSpec: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/v1/containers/:idOrName/spec', {
    config: { scope: 'read', part: 'specs' },
    schema: {
      tags: ['containers'],
      summary: 'A container as a run request (reproduce it)',
      description: 'The run request that makes the same environment again — on this berth or another (another host, another engine): ' +
        'the image pinned by its registry digest, command, environment, ports, volumes, resources, restart policy and labels, ' +
        'each only where the run set it (what the image sets by itself comes with the image). POST `run` to /v1/containers. ' +
        'Environment values are shown only to the token that ran the container; berth\'s own labels and the container name are left out. ' +
        'On a cluster it is read from the service or Deployment berth made, pinned by the digest the cluster ran, with `replicas`, `placement` and ' +
        '`resources.reservations`: POSTed to a backend that cannot honour a field, the run is refused naming it (501 not_supported), never run without it.',
      operationId: 'containerSpec',
      params: ContainerParams,
      response: { 200: ref(ContainerSpec, 'The run request, and how exactly it pins the image.'), ...problems(...CONTAINER) }
    }
  }, async (request) => {
    const principal = request.principal as Principal
    const container = await app.containers.find(principal, request.params.idOrName)
    return containerSpecOf(await app.engine.part('specs').of(container.id), principal)
  })
}

export default containerSpec
