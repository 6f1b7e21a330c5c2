// A Docker Swarm cluster driven through one manager: what the swarm backend's parts share. The
// manager's API, the reads of its services, tasks and nodes (src/engine/swarm/reads.ts, answered from
// the watch-fed copy in ./copy.ts while it is current), berth's agents on the nodes when a secret is
// configured, and the waits every change to a service needs: until its replicas run (or show why
// they cannot), until none does, until it is gone. Each change and wait reads the manager itself, and
// ends once the copy holds what it changed.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { LABEL_DEPLOYMENT } from '../../access/ownership.ts'
import type { Config, RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { DockerTransport } from '../docker/transport.ts'
import type { EngineEvent, EngineInfo, EventsOptions } from '../types.ts'
import { Agents } from './agents.ts'
import { SwarmApi } from './api.ts'
import { SwarmCopy, type SwarmCopyOptions } from './copy.ts'
import { OutOfSequenceError } from './errors.ts'
import { swarmEvents } from './events.ts'
import { isLive, type ServiceSpec } from './mapping.ts'
import { describeTasks, placementFailure } from './placement.ts'
import { ClusterReads } from './reads.ts'

export interface SwarmEngineOptions {
  /** A manager's socket. */
  socketPath: string
  timeoutMs: number
  publishMode: 'host' | 'ingress'
  /** How long a run, start, restart or scale waits for its replicas to run. */
  placementTimeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
  /** berth's agents on the nodes: the secret they hold and their port; none without a secret. */
  agent?: { secret: string, port: number } | null
  /** How often task states are read while waiting for them. */
  pollMs?: number
  /** How often the event stream reads task states (the manager publishes no task events). */
  eventPollMs?: number
  /** berth's deployment: the copy holds its services only, the only ones berth ever shows. */
  deployment?: string
  /** How the copy follows the manager; false for none, every read then asking the manager (what tests compare the copy with). */
  copy?: SwarmCopyOptions | false
}

const UPDATE_ATTEMPTS = 5

/** The cluster's options from berth's config: the agent secret is read from its file here. */
export function swarmOptions (config: Config): SwarmEngineOptions {
  const engine = config.engine
  if (engine.kind !== 'swarm') throw new Error(`the swarm backend was opened with a ${engine.kind} config`)
  return {
    socketPath: engine.socketPath,
    timeoutMs: engine.timeoutMs,
    publishMode: engine.publishMode,
    placementTimeoutMs: engine.placementTimeoutMs,
    registryAuth: config.registryAuth,
    deployment: config.deployment,
    agent: engine.agent.secretFile === null ? null : { secret: readFileSync(engine.agent.secretFile, 'utf8'), port: engine.agent.port }
  }
}

export class SwarmCluster {
  readonly options: SwarmEngineOptions
  readonly api: SwarmApi
  readonly reads: ClusterReads
  readonly copy: SwarmCopy | null
  /** null: no agent secret is configured, and nothing on the nodes can be reached. */
  readonly agents: Agents | null
  readonly pollMs: number

  constructor (options: SwarmEngineOptions) {
    this.options = options
    this.api = new SwarmApi(new DockerTransport(options))
    this.copy = options.copy === false
      ? null
      : new SwarmCopy(this.api, { ...(options.deployment === undefined ? {} : { labels: [`${LABEL_DEPLOYMENT}=${options.deployment}`] }), ...options.copy })
    this.reads = new ClusterReads(this.api, this.copy)
    this.copy?.start()
    this.agents = options.agent === undefined || options.agent === null ? null : new Agents({ ...options.agent, timeoutMs: options.timeoutMs })
    this.pollMs = options.pollMs ?? 100
  }

  /** The manager answers, is a manager of an active swarm (a worker or a lone engine is not enough), and the copy is current. */
  async info (): Promise<EngineInfo> {
    const info = await this.api.transport.info()
    await this.api.get('/swarm', {}, { target: 'swarm' })
    await this.copy?.ready(this.options.timeoutMs)
    return info
  }

  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    const events = await swarmEvents({
      api: this.api,
      service: async (id) => await this.reads.serviceFacts(id),
      nodes: async () => await this.reads.nodeRefs(),
      pollMs: this.options.eventPollMs ?? 1000
    }, options)
    return this.copy === null ? events : this.#inCopyOrder(events)
  }

  /** Each event of a container once the copy holds what it said: a client that reads right after an event reads what it said. */
  async * #inCopyOrder (events: AsyncIterable<EngineEvent>): AsyncGenerator<EngineEvent> {
    for await (const event of events) {
      // A failed read ends the copy's session, and reads then ask the manager: the event goes out either way.
      const service = event.type === 'container' ? event.id : event.type === 'task' ? event.service : undefined
      if (service !== undefined) await this.reads.changed(service).catch(() => {})
      else if (event.type === 'node') await this.copy?.refreshNodes().catch(() => {})
      yield event
    }
  }

  async close (): Promise<void> {
    this.agents?.close()
    await this.copy?.stop()
  }

  /**
   * Changes a service, from its latest version: the manager refuses an update made against an older
   * one (another update came in between), and then it is read again and the change made once more.
   */
  async update (id: string, change: (spec: ServiceSpec) => void): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const service = await this.reads.service(id, { fresh: true })
      const spec = structuredClone(service.Spec)
      change(spec)
      try {
        await this.api.request({
          method: 'POST',
          path: `/services/${encodeURIComponent(id)}/update`,
          // The registry credentials given at run stay with the service: its nodes pull with them again.
          query: { version: service.Version.Index, registryAuthFrom: 'spec' },
          body: spec,
          subject: 'container',
          target: id
        })
        await this.reads.changed(service.ID)
        return
      } catch (error) {
        if (!(error instanceof OutOfSequenceError) || attempt >= UPDATE_ATTEMPTS) throw error
      }
    }
  }

  /**
   * Waits until `replicas` replicas run (or ran and ended: a command that exits at once has run), or
   * a task the operation made shows it cannot run. Only tasks not in `before` are new; with `fresh`
   * only new tasks count, as after a start or restart.
   */
  async awaitReplicas (id: string, replicas: number, before: Set<string>, ports: number[], extraMs = 0, fresh = true): Promise<void> {
    const deadline = Date.now() + this.options.placementTimeoutMs + extraMs
    for (;;) {
      const tasks = await this.reads.tasks([id], { fresh: true })
      const added = tasks.filter(task => !before.has(task.ID))
      for (const task of added) {
        const failure = placementFailure(task, ports)
        if (failure !== null) throw failure
      }
      const ran = new Set(tasks.filter(task => {
        if (fresh && before.has(task.ID)) return false
        if (task.Status.State === 'running') return task.DesiredState === 'running'
        return !before.has(task.ID) && (task.Status.State === 'complete' || task.Status.State === 'failed') && Boolean(task.Status.ContainerStatus?.ContainerID)
      }).map(task => task.Slot ?? task.ID))
      if (ran.size >= replicas) {
        await this.reads.changed(id)
        return
      }
      if (Date.now() >= deadline) {
        const nodes = await this.reads.nodeRefs(added)
        const waiting = added.filter(task => task.DesiredState === 'running')
        throw new BerthError('placement_timeout', `the cluster did not run ${replicas} ${replicas === 1 ? 'replica' : 'replicas'} within ${this.options.placementTimeoutMs} ms: ` +
          describeTasks(waiting, nodeId => (nodeId === undefined ? null : nodes.get(nodeId)?.name ?? nodeId)), { replicas, running: ran.size })
      }
      await sleep(this.pollMs)
    }
  }

  /**
   * Waits until no task of the service runs or is about to, and those scaled away are deleted: the
   * manager does not place a replica in a slot whose old task is still being removed (bounded: a
   * node that is down never reports).
   */
  async awaitNoneLive (id: string, graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs + this.options.timeoutMs
    while (Date.now() < deadline) {
      if (!(await this.reads.tasks([id], { fresh: true })).some(task => isLive(task) || task.DesiredState === 'remove')) break
      await sleep(this.pollMs)
    }
    await this.reads.changed(id)
  }

  /**
   * Removes a service and resolves once it is gone: its tasks from the manager and, where berth's
   * agents reach the nodes, its replicas' containers from their nodes (a node removes a task's
   * container some time after the manager forgot the task: until then it still holds its volumes
   * and ports). When that does not happen in time, it says so (503) rather than answer as if done —
   * unless `strict` is false: a clean-up after another failure, whose own error is the one to tell.
   */
  async removeService (id: string, graceMs: number, strict = true): Promise<void> {
    const containers = (await this.reads.tasks([id], { fresh: true })).flatMap(task => task.NodeID !== undefined && task.Status.ContainerStatus?.ContainerID !== undefined
      ? [{ node: task.NodeID, container: task.Status.ContainerStatus.ContainerID }]
      : [])
    await this.api.request({ method: 'DELETE', path: `/services/${encodeURIComponent(id)}`, subject: 'container', target: id })
    await this.reads.changed(id)
    const waitMs = graceMs + this.options.timeoutMs
    const deadline = Date.now() + waitMs
    const gone = async (): Promise<boolean> => {
      if ((await this.reads.tasks(null, { fresh: true })).some(task => task.ServiceID === id)) return false
      if (this.agents === null || containers.length === 0) return true
      const nodes = await this.reads.nodeRefs()
      const left = await Promise.all(containers.map(async ({ node, container }) => {
        const ref = nodes.get(node)
        // A node that is down or gone keeps what it had; the manager has let go of it, and so does berth.
        if (ref === undefined || ref.state !== 'ready') return false
        // Only a node that shows the container holds the answer back; one whose agent cannot say does not.
        return await this.agents?.on(ref, async engine => await engine.request({ subject: 'container', target: container }, { method: 'GET', path: `/containers/${encodeURIComponent(container)}/json` }))
          .then(() => true, () => false)
      }))
      return !left.includes(true)
    }
    while (!(await gone())) {
      if (Date.now() >= deadline) {
        if (!strict) return
        throw new BerthError('engine_unavailable', `service ${id} is removed, but its replicas were not gone from their nodes within ${waitMs} ms; the nodes go on removing them`, {}, { headers: { 'retry-after': '5' } })
      }
      await sleep(this.pollMs)
    }
  }

  /** Removes a service that may be gone already: a clean-up, which never hides the failure it follows. */
  async discard (id: string): Promise<void> {
    try {
      const service = await this.reads.service(id)
      await this.removeService(id, graceMs(service.Spec), false)
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    }
  }
}

/** A stop waits up to the replicas' grace period before the nodes kill them. */
export function graceMs (spec: ServiceSpec): number {
  const grace = spec.TaskTemplate.ContainerSpec.StopGracePeriod
  return grace === undefined ? 10_000 : grace / 1e6
}
