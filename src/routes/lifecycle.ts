// A container's life after `docker run -d`: POST /v1/containers/{idOrName}/wait (docker wait), so a
// batch job can be run, waited for, its logs read and removed; and PUT /v1/containers/{idOrName}/expiry,
// which moves the end of its time to live. A token acts only on its own containers.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Principal } from '../access/ownership.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { Container, ContainerParams } from '../schemas/containers.ts'
import { BerthError } from '../errors.ts'
import { SetExpiryRequest, WaitQuery, WaitResult } from '../schemas/lifecycle.ts'

const lifecycle: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/v1/containers/:idOrName/wait', {
    config: { scope: 'write', part: 'wait' },
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
      response: { 200: ref(WaitResult, 'How it ended, or that it has not yet.'), ...problems(...CONTAINER) }
    }
  }, async (request, reply) => {
    // Tied to the client: one that leaves stops the wait at the engine; so does berth closing.
    const container = await app.containers.find(request.principal as Principal, request.params.idOrName)
    request.audit({ container: { id: container.id, name: container.name } })
    const signal = app.streams.signal(reply)
    const { timeout } = request.query
    return await app.containers.wait(container, { signal, ...(timeout === undefined ? {} : { timeoutMs: timeout * 1000 }) })
  })

  app.put('/v1/containers/:idOrName/expiry', {
    config: { scope: 'write', part: 'expiry' },
    schema: {
      tags: ['containers'],
      summary: 'Move the end of a container\'s time to live',
      description: 'It then lives `ttl` seconds from now: an extension (or a shortening). Only a container run with an `expiry` has one to move ' +
        '(409 expiry_not_set otherwise); its idle timeout and action stay as they were run. After a 200 the new end is the one berth keeps to: ' +
        'when berth is stopping or removing the container for its old end as this comes, it answers once that is done, with the container as it then is ' +
        '(stopped; or 404 when it was removed). A container stopped because it expired is stopped again at the next look when it is started without its end moved first.',
      operationId: 'setContainerExpiry',
      params: ContainerParams,
      body: ref(SetExpiryRequest),
      response: { 200: ref(Container, 'The container, with its expiry as it is now.'), ...problems(...CONTAINER, 'expiry_not_set') }
    }
  }, async (request) => {
    const container = await app.containers.find(request.principal as Principal, request.params.idOrName)
    request.audit({ container: { id: container.id, name: container.name } })
    if (container.expiry === undefined) throw new BerthError('expiry_not_set', `container ${container.name} was run without an expiry: there is no end to move`)
    // Through the sweeper: an expiry it is acting on now is done first, and after this the new end counts.
    const expiresAt = await app.lifecycle.moveExpiry(container.id, request.body.ttl)
    request.audit({ expiresAt })
    return await app.engine.containers.inspect(container.id)
  })
}

export default lifecycle
