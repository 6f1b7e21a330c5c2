// A container's life after `docker run -d`: POST /v1/containers/{idOrName}/wait (docker wait), so a
// batch job can be run, waited for, its logs read and removed. A token waits only on its own containers.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Principal } from '../access/ownership.ts'
import { problemResponses, ref } from '../schemas/common.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { WaitQuery, WaitResult } from '../schemas/lifecycle.ts'

/** Why the Swarm backend answers 501 here (the OpenAPI document says it too). */
const WAIT_ON_A_CLUSTER = 'a service has no single exit to wait for on a Swarm cluster; follow its tasks in ps or events'

const lifecycle: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/v1/containers/:idOrName/wait', {
    config: { scope: 'write', backends: ['docker'], unsupported: WAIT_ON_A_CLUSTER },
    schema: {
      tags: ['containers'],
      summary: 'Wait for a container to stop (docker wait)',
      description: 'Answers with its exit code once it is not running (at once when it already is not). The request stays open until then, ' +
        'or until `timeout` seconds have passed (`stopped: false`). An autoRemove container is removed once this answer is ready: ' +
        'berth keeps it, and its logs, until a wait collects its exit (or BERTH_AUTO_REMOVE_GRACE_MS after it exited, when nobody waits). ' +
        'A write scope is needed because of that removal.',
      operationId: 'waitContainer',
      params: ContainerParams,
      querystring: WaitQuery,
      response: { 200: ref(WaitResult, 'How it ended, or that it has not yet.'), ...problemResponses(400, 401, 403, 404, 501, 502, 503) }
    }
  }, async (request, reply) => {
    // Tied to the client: one that leaves stops the wait at the engine; so does berth closing.
    const container = await app.containers.find(request.principal as Principal, request.params.idOrName)
    request.audit({ container: { id: container.id, name: container.name } })
    const signal = app.streams.signal(reply)
    const { timeout } = request.query
    return await app.containers.wait(container, { signal, ...(timeout === undefined ? {} : { timeoutMs: timeout * 1000 }) })
  })
}

export default lifecycle
