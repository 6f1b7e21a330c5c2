// /v1/containers: docker ps, docker run -d, docker inspect, start, stop, restart, rm. A token that
// is not admin sees and touches only the containers it made: any other is "not found".
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { Principal } from '../access/ownership.ts'
import type { ErrorCode } from '../errors.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, ENGINE, problems } from '../schemas/problems.ts'
import { located } from '../schemas/headers.ts'
import {
  Container, ContainerParams, ContainerSummary, ListContainersQuery, RemoveContainerQuery, RunRequest, ScaleRequest, StateChange, StopQuery, type ValidatedRunRequest
} from '../schemas/containers.ts'

// A start (re)binds host ports and, on a cluster, waits for its replicas to be placed; a stop or
// restart with a timeout is refused on a cluster, where replicas keep the grace period they ran with.
const PLACING: ErrorCode[] = ['port_conflict', 'gpu_unavailable', 'image_not_found', 'pull_failed', 'placement_failed', 'placement_timeout']
const STATE_CHANGE_CODES: Record<'start' | 'stop' | 'restart', ErrorCode[]> = {
  start: [...CONTAINER, ...PLACING],
  stop: [...CONTAINER, 'not_supported'],
  restart: [...CONTAINER, ...PLACING, 'not_supported']
}

const containers: FastifyPluginAsyncTypebox = async (app) => {
  function principalOf (request: FastifyRequest): Principal {
    // The auth hook has run for every route with a scope; this only narrows the type.
    return request.principal as Principal
  }

  app.get('/v1/containers', {
    config: { scope: 'read' },
    schema: {
      tags: ['containers'],
      summary: 'List containers (docker ps)',
      description: 'Running containers by default; `all=true` for every state (docker ps -a).',
      operationId: 'listContainers',
      querystring: ListContainersQuery,
      response: { 200: Type.Array(ref(ContainerSummary), { description: 'The containers, newest first.' }), ...problems(...ENGINE) }
    }
  }, async (request) => {
    return await app.engine.containers.list({
      all: request.query.all ?? false,
      ...(request.query.status === undefined ? {} : { status: request.query.status }),
      labels: app.containers.listFilters(principalOf(request), request.query.label),
      ...(request.query.name === undefined ? {} : { name: request.query.name })
    })
  })

  app.post('/v1/containers', {
    config: { scope: 'write' },
    schema: {
      tags: ['containers'],
      summary: 'Run a container detached (docker run -d)',
      description: 'Creates and starts a container, pulling the image first when it is missing (per `pull`). ' +
        'Answers with the container as it runs: the host ports actually bound and the image digest. ' +
        'A host port already taken is 409 port_conflict, and leaves no container behind.\n\n' +
        'On a Swarm cluster the container is a service of `replicas` tasks: berth answers once they all run, or 409 (port_conflict, placement_failed) ' +
        'or 504 placement_timeout when they cannot be placed, removing the service again. ' +
        'On Kubernetes it is a Deployment of `replicas` pods in berth\'s namespace, each `-p` a pod hostPort on its node, under the restricted pod security ' +
        'profile (a non-root user, no privilege escalation, no capabilities): berth answers once the pods run, or 409/403/404 with why (the scheduler\'s or the kubelet\'s words), removing the Deployment again.',
      operationId: 'runContainer',
      body: ref(RunRequest),
      response: { 201: located(ref(Container, 'Running: the container as inspected after start (Location: its URL).')), ...problems(...ENGINE, 'not_found', 'image_not_found', 'name_conflict', 'port_conflict', 'gpu_unavailable', 'policy_denied', 'quota_exceeded', 'not_supported', 'pull_failed', 'pull_cancelled', 'rate_limited', 'placement_failed', 'placement_timeout') }
    }
  }, async (request, reply) => {
    const { name, image, volumes } = request.body
    request.audit({ image, ...(name === undefined ? {} : { container: { name } }), ...(volumes === undefined ? {} : { volumes: volumes.map(volume => typeof volume === 'string' ? volume.split(':')[0] as string : volume.source) }) })
    // Validation has filled in the schema's defaults; the type provider cannot know that.
    const container = await app.runSlots.run(() => app.containers.run(principalOf(request), request.body as ValidatedRunRequest))
    request.audit({ container: { id: container.id, name: container.name }, image: container.image, imageId: container.imageId, digest: container.imageDigest })
    reply.code(201).header('location', `/v1/containers/${container.id}`)
    return container
  })

  app.get('/v1/containers/:idOrName', {
    config: { scope: 'read' },
    schema: {
      tags: ['containers'],
      summary: 'Inspect a container (docker inspect)',
      operationId: 'inspectContainer',
      params: ContainerParams,
      response: { 200: ref(Container, 'The container.'), ...problems(...CONTAINER) }
    }
  }, async (request) => await app.containers.find(principalOf(request), request.params.idOrName))

  const stateChange = (action: 'start' | 'stop' | 'restart', summary: string, description: string) => app.post(`/v1/containers/:idOrName/${action}`, {
    config: { scope: 'write' },
    schema: {
      tags: ['containers'],
      summary,
      description,
      operationId: `${action}Container`,
      params: ContainerParams,
      ...(action === 'start' ? {} : { querystring: StopQuery }),
      response: { 200: ref(StateChange, 'Done, or nothing to do (`changed: false`); the container as it is now.'), ...problems(...STATE_CHANGE_CODES[action]) }
    }
  }, async (request) => {
    const { id, name } = await app.containers.find(principalOf(request), request.params.idOrName)
    request.audit({ container: { id, name } })
    const timeout = (request.query as { timeout?: number }).timeout
    const options = timeout === undefined ? {} : { timeout }
    const { changed } = action === 'start'
      ? await app.engine.containers.start(id)
      : action === 'stop' ? await app.engine.containers.stop(id, options) : await app.engine.containers.restart(id, options)
    return { changed, container: await app.engine.containers.inspect(id) }
  })

  stateChange('start', 'Start a container (docker start)', 'Already running is a success with `changed: false`. A host port taken meanwhile is 409 port_conflict.')
  stateChange('stop', 'Stop a container (docker stop)', 'SIGTERM, then SIGKILL after `timeout` seconds. Already stopped is a success with `changed: false`.')
  stateChange('restart', 'Restart a container (docker restart)', 'Stops (with `timeout`) and starts the container.')

  app.post('/v1/containers/:idOrName/scale', {
    config: { scope: 'write' },
    schema: {
      tags: ['containers'],
      summary: 'Set how many replicas a container runs (docker service scale)',
      description: 'On a cluster: runs that many replicas, waiting until the added ones run (or cannot be placed: 409, and the count stays as it was). ' +
        'A stopped container keeps the new count for its next start. More replicas count against the token\'s quota. ' +
        'On the docker backend a container is one replica: `replicas: 1` changes nothing, more is 501 not_supported.',
      operationId: 'scaleContainer',
      params: ContainerParams,
      body: ref(ScaleRequest),
      response: { 200: ref(StateChange, 'Done, or nothing to do (`changed: false`); the container as it is now.'), ...problems(...CONTAINER, 'quota_exceeded', 'not_supported', 'port_conflict', 'image_not_found', 'pull_failed', 'placement_failed', 'placement_timeout') }
    }
  }, async (request) => {
    const scaled = await app.containers.scale(principalOf(request), request.params.idOrName, request.body.replicas)
    request.audit({ container: { id: scaled.container.id, name: scaled.container.name }, replicas: request.body.replicas })
    return scaled
  })

  app.delete('/v1/containers/:idOrName', {
    config: { scope: 'write' },
    schema: {
      tags: ['containers'],
      summary: 'Remove a container (docker rm)',
      description: '409 container_running when it runs, unless force=true.',
      operationId: 'removeContainer',
      params: ContainerParams,
      querystring: RemoveContainerQuery,
      response: { 204: Type.Null({ description: 'Removed.' }), ...problems(...CONTAINER, 'container_running') }
    }
  }, async (request, reply) => {
    const { id, name } = await app.containers.find(principalOf(request), request.params.idOrName)
    request.audit({ container: { id, name } })
    await app.engine.containers.remove(id, { force: request.query.force ?? false, volumes: request.query.volumes ?? false })
    return await reply.code(204).send(null)
  })
}

export default containers
