// Kubernetes as berth's containers part, in one namespace per berth deployment. A container is a
// workload of one container: a Deployment when it is a service (restart always or unless-stopped),
// a Job when it is a run that finishes (restart no, the default, or on-failure with its retries);
// its replicas are pods the scheduler places on nodes, `-p` is the pod's hostPort. A run answers when
// its replicas run (or ran), or says why they cannot (a host port no node has free, resources, GPUs,
// an image a node cannot pull, an image that would run as root) and removes what it made: nothing is
// left pending. ps and inspect read watch-fed copies of the namespace, never the apiserver.
import { randomBytes } from 'node:crypto'
import type { V1Deployment, V1Job, V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { notSupported, type ContainersPart } from '../parts.ts'
import { PortConflictError } from '../types.ts'
import type { Container, ContainerSummary, ListContainersOptions, LogEntry, LogOptions, RunSpec, StateChange } from '../types.ts'
import { readPodLogs, podsWithLogs } from './logs.ts'
import { ANNOTATION_EXIT, ANNOTATION_REPLICAS, ANNOTATION_RESTARTED, LABEL_ID, acted, checkName, deploymentOf, isService, jobAgain, jobOf, type Workload } from './mapping.ts'
import { awaitNoPods, awaitReplicas, choosePorts, deletePullSecret, makePullSecret, ownPullSecret, withHolder } from './placement.ts'
import { containerOf, hostPorts, idOf, isRunning, isStopped, isSuspended, isTerminal, jobOutcome, labelsOf, matchesLabels, podExit, podState, replicaCount, summaryOf } from './reading.ts'
import { discard, graceOf, notClean } from './removal.ts'
import { K8S, type KubeShared } from './shared.ts'

const MAX_RANGE_ATTEMPTS = 16

export class KubeContainers implements ContainersPart {
  readonly #shared: KubeShared

  constructor (shared: KubeShared) {
    this.#shared = shared
  }

  /**
   * What a workload cannot be asked for: host paths, and the engine's own knobs that the restricted
   * pod security profile or the pod API do not have.
   */
  check (spec: RunSpec): void {
    const refused: Array<[boolean, string]> = [
      [spec.mounts.some(mount => mount.type === 'bind'), 'bind mounts are not supported on Kubernetes: a host path is another directory on every node, and the restricted pod security profile forbids hostPath volumes; use a named volume (a PersistentVolumeClaim)'],
      [spec.image.kind === 'id', 'on Kubernetes a container runs an image reference that its node pulls, not an image id of one engine'],
      [spec.gpus !== undefined && typeof spec.gpus !== 'number', 'on Kubernetes GPUs are asked for by count (the nvidia.com/gpu resource): "all" and device ids are a single host\'s'],
      [spec.ulimits !== undefined, 'ulimits cannot be set per pod on Kubernetes'],
      [spec.init === true, 'init is not offered on Kubernetes: the container runtime has no --init; use an image whose entrypoint is an init'],
      [spec.stopSignal !== undefined && spec.stopSignal !== 'SIGTERM', 'Kubernetes 1.25 stops a pod with SIGTERM only: another stop signal cannot be given']
    ]
    const reason = refused.find(([applies]) => applies)
    if (reason !== undefined) throw notSupported(K8S, reason[1])
  }

  async list (options: ListContainersOptions): Promise<ContainerSummary[]> {
    const shared = this.#shared
    await shared.ready()
    // The pods by container, once: not the whole pod list again for every workload.
    const pods = new Map<string, V1Pod[]>()
    for (const pod of shared.pods.list()) {
      const id = pod.metadata?.labels?.[LABEL_ID]
      if (id === undefined) continue
      const theirs = pods.get(id)
      if (theirs === undefined) pods.set(id, [pod])
      else theirs.push(pod)
    }
    const now = Date.now()
    return shared.workloads()
      .filter(workload => options.name === undefined || workload.object.metadata?.name === options.name)
      .filter(workload => matchesLabels(labelsOf(workload.object), options.labels ?? []))
      .map(workload => summaryOf(workload, pods.get(idOf(workload.object)) ?? [], now))
      .filter(summary => options.all || summary.state === 'running')
      .filter(summary => options.status === undefined || options.status.length === 0 || options.status.includes(summary.state))
      .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
  }

  async inspect (idOrName: string): Promise<Container> {
    return containerOf(await this.#shared.workload(idOrName), this.#shared.pods.list())
  }

  async run (spec: RunSpec): Promise<Container> {
    const shared = this.#shared
    const name = spec.name ?? `berth-${randomBytes(4).toString('hex')}`
    checkName(name)
    await shared.ready()
    // A Deployment and a Job may share a name on Kubernetes; two containers may not.
    if (shared.taken(name)) throw new BerthError('name_conflict', `the name ${name} is already in use`, { name })
    const ranged = spec.ports.some(port => port.host === undefined)
    const tried = new Set<number>()
    for (let attempt = 1; ; attempt++) {
      const id = randomBytes(16).toString('hex')
      const chosenPorts = ranged ? choosePorts(shared, spec.ports, tried) : new Map<number, number>()
      const secret = await makePullSecret(shared, spec, name, id)
      let workload: Workload
      try {
        workload = await this.#create(spec, { id, name, chosenPorts, ...(secret === null ? {} : { pullSecret: secret }) })
      } catch (error) {
        if (secret !== null) await deletePullSecret(shared, secret)
        throw error
      }
      try {
        if (secret !== null && workload.kind === 'service') await ownPullSecret(shared, secret, workload)
        await awaitReplicas(shared, id, spec.replicas ?? 1, { before: new Set(), ports: hostPorts(workload.object) })
      } catch (error) {
        // A run that cannot run leaves nothing behind: not the workload, nor a pod of it on any node.
        try {
          await discard(shared, workload, { force: true })
        } catch (cleanup) {
          throw notClean(error, cleanup)
        }
        if (ranged && error instanceof PortConflictError && attempt < MAX_RANGE_ATTEMPTS && chosenPorts.size > 0) continue
        throw withHolder(shared, error, id)
      }
      return await this.inspect(id)
    }
  }

  async #create (spec: RunSpec, options: Parameters<typeof deploymentOf>[1]): Promise<Workload> {
    const shared = this.#shared
    const namespace = shared.namespace
    if (isService(spec)) {
      const body = deploymentOf(spec, options)
      const made = await shared.client.call({ subject: 'container', target: options.name }, async call => await shared.client.apps.createNamespacedDeployment({ namespace, body }, call))
      shared.deployments.apply(made)
      return { kind: 'service', object: made }
    }
    return await this.#createJob(jobOf(spec, options))
  }

  async #createJob (body: V1Job): Promise<Workload> {
    const shared = this.#shared
    const made = await shared.client.call({ subject: 'container', target: body.metadata?.name ?? '' }, async call =>
      await shared.client.batch.createNamespacedJob({ namespace: shared.namespace, body }, call))
    shared.jobs.apply(made)
    return { kind: 'job', object: made }
  }

  async start (idOrName: string): Promise<StateChange> {
    const workload = await this.#shared.workload(idOrName)
    return workload.kind === 'service' ? await this.#startService(workload.object) : await this.#startJob(workload.object)
  }

  async stop (idOrName: string, options: { timeout?: number }): Promise<StateChange> {
    const workload = await this.#shared.workload(idOrName)
    return workload.kind === 'service' ? await this.#stopService(workload.object, options.timeout) : await this.#stopJob(workload.object, options.timeout)
  }

  async restart (idOrName: string, options: { timeout?: number }): Promise<StateChange> {
    const workload = await this.#shared.workload(idOrName)
    if (workload.kind === 'service') return await this.#restartService(workload.object, options.timeout)
    // A run that finishes is stopped, then run again from the start, as docker restart does.
    await this.#stopJob(workload.object, options.timeout)
    const stopped = await this.#shared.workload(idOf(workload.object))
    await this.#startJob(stopped.object as V1Job)
    return { changed: true }
  }

  async remove (idOrName: string, options: { force: boolean }): Promise<void> {
    const workload = await this.#shared.workload(idOrName)
    if (!options.force && this.#shared.podsOf(idOf(workload.object)).some(isRunning)) {
      throw new BerthError('container_running', `container ${idOrName} is running; stop it first or remove it with force=true`)
    }
    await discard(this.#shared, workload, { force: options.force })
  }

  async scale (idOrName: string, replicas: number): Promise<StateChange> {
    const workload = await this.#shared.workload(idOrName)
    if (workload.kind === 'job') {
      if (replicasOfJob(workload.object) === replicas) return { changed: false }
      throw notSupported(K8S, 'a run that finishes (restart no or on-failure) is a Job that runs the replicas it was run with; only a service (restart always or unless-stopped) can be scaled')
    }
    return await this.#scaleService(workload.object, replicas)
  }

  async logs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const workload = await this.#shared.workload(idOrName)
    return await readPodLogs(this.#shared.client, podsWithLogs(this.#shared.podsOf(idOf(workload.object))), options)
  }

  // ---- services: Deployments

  async #startService (deployment: V1Deployment): Promise<StateChange> {
    const shared = this.#shared
    if (!isStopped(deployment)) return { changed: false }
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    const before = new Set(shared.podsOf(id).map(pod => pod.metadata?.uid ?? ''))
    await shared.patch({ kind: 'service', object: deployment }, { metadata: { annotations: { [ANNOTATION_REPLICAS]: null, [ANNOTATION_EXIT]: null, ...acted('start') } }, spec: { replicas: count } })
    try {
      await awaitReplicas(shared, id, count, { before, ports: hostPorts(deployment) })
    } catch (error) {
      // Like a container whose start failed, it stays as it was: stopped.
      const current = shared.current(id)
      if (current !== null) await this.#scaleToNone(current, count).catch(() => {})
      await awaitNoPods(shared, id, 0).catch(() => {})
      throw withHolder(shared, error, id)
    }
    return { changed: true }
  }

  async #stopService (deployment: V1Deployment, timeout: number | undefined): Promise<StateChange> {
    const shared = this.#shared
    const id = idOf(deployment)
    const pods = shared.podsOf(id)
    const stopped = isStopped(deployment)
    if (!stopped) await this.#scaleToNone({ kind: 'service', object: deployment }, replicaCount(deployment))
    // A stop's own timeout replaces the grace period the pods were started with.
    if (timeout !== undefined) await shared.deletePods(pods, timeout)
    // Like docker stop, done when the replicas are: their host ports are free again then.
    await awaitNoPods(shared, id, timeout ?? graceOf(deployment))
    const changed = !stopped && pods.some(pod => podState(pod) !== 'shutdown')
    if (changed) await this.#recordExit(id, pods)
    return { changed }
  }

  async #restartService (deployment: V1Deployment, timeout: number | undefined): Promise<StateChange> {
    const shared = this.#shared
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    const pods = shared.podsOf(id)
    await shared.patch({ kind: 'service', object: deployment }, {
      metadata: { annotations: { [ANNOTATION_REPLICAS]: null, [ANNOTATION_EXIT]: null, ...acted('restart') } },
      spec: { replicas: count, template: { metadata: { annotations: { [ANNOTATION_RESTARTED]: new Date().toISOString() } } } }
    })
    if (timeout !== undefined) await shared.deletePods(pods, timeout)
    try {
      await awaitReplicas(shared, id, count, { before: new Set(pods.map(pod => pod.metadata?.uid ?? '')), ports: hostPorts(deployment), extraMs: (timeout ?? graceOf(deployment)) * 1000 })
    } catch (error) {
      throw withHolder(shared, error, id)
    }
    return { changed: true }
  }

  async #scaleService (deployment: V1Deployment, replicas: number): Promise<StateChange> {
    const shared = this.#shared
    const workload: Workload = { kind: 'service', object: deployment }
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    if (count === replicas) return { changed: false }
    if (isStopped(deployment)) {
      // A stopped container keeps the count for its next start.
      await shared.patch(workload, { metadata: { annotations: { [ANNOTATION_REPLICAS]: String(replicas), ...acted('scale') } } })
      return { changed: true }
    }
    const before = new Set(shared.podsOf(id).map(pod => pod.metadata?.uid ?? ''))
    await shared.patch(workload, { metadata: { annotations: { ...acted('scale') } }, spec: { replicas } })
    try {
      if (replicas > count) await awaitReplicas(shared, id, replicas, { before, ports: hostPorts(deployment), fresh: false })
    } catch (error) {
      // Added replicas that cannot run are taken back: the container runs as many as before.
      const current = shared.current(id)
      if (current !== null) await shared.patch(current, { spec: { replicas: count } }).catch(() => {})
      throw withHolder(shared, error, id)
    }
    return { changed: true }
  }

  /** Scales to none, remembering how many replicas to start again. */
  async #scaleToNone (workload: Workload, count: number): Promise<void> {
    await this.#shared.patch(workload, { metadata: { annotations: { [ANNOTATION_REPLICAS]: String(count), ...acted('stop') } }, spec: { replicas: 0 } })
  }

  // ---- runs that finish: Jobs

  /**
   * docker start: a run that is under way changes nothing; one that finished (or was stopped) runs
   * again from the start. A Job cannot run twice, so its Job is made anew, under the same name and
   * berth id, from what the run asked for.
   */
  async #startJob (job: V1Job): Promise<StateChange> {
    const shared = this.#shared
    const id = idOf(job)
    if (jobOutcome(job) === null && !isSuspended(job)) return { changed: false }
    await discard(shared, { kind: 'job', object: job }, { force: true, keepSecret: true })
    const again = await this.#createJob(jobAgain(job))
    try {
      await awaitReplicas(shared, id, replicasOfJob(job), { before: new Set(), ports: hostPorts(job) })
    } catch (error) {
      // Like a container whose start failed, it stays stopped.
      await shared.patch(again, { spec: { suspend: true } }).catch(() => {})
      await awaitNoPods(shared, id, 0).catch(() => {})
      throw withHolder(shared, error, id)
    }
    return { changed: true }
  }

  async #stopJob (job: V1Job, timeout: number | undefined): Promise<StateChange> {
    const shared = this.#shared
    const id = idOf(job)
    const live = shared.podsOf(id).filter(pod => !isTerminal(pod))
    if (jobOutcome(job) !== null || isSuspended(job)) {
      await awaitNoPods(shared, id, timeout ?? graceOf(job))
      return { changed: false }
    }
    // Suspended, the Job controller deletes its pods and makes none until it is resumed (never: a start makes it anew).
    await shared.patch({ kind: 'job', object: job }, { metadata: { annotations: { ...acted('stop') } }, spec: { suspend: true } })
    if (timeout !== undefined) await shared.deletePods(live, timeout)
    await awaitNoPods(shared, id, timeout ?? graceOf(job))
    await this.#recordExit(id, live)
    return { changed: true }
  }

  /**
   * Writes down how the replicas berth stopped ended (their pods, which knew, are gone): the last
   * state the watch saw of each, or killed (137) when none had said.
   */
  async #recordExit (id: string, pods: V1Pod[]): Promise<void> {
    const shared = this.#shared
    const exits = pods.flatMap(pod => {
      const exit = podExit(shared.pods.departed(pod.metadata?.uid ?? '') ?? pod)
      return exit === null ? [] : [exit]
    }).sort((a, b) => (b.finishedAt ?? '').localeCompare(a.finishedAt ?? ''))
    const exit = exits[0] ?? { exitCode: 137, oomKilled: false, finishedAt: new Date().toISOString() }
    const current = shared.current(id)
    if (current === null) return
    await shared.patch(current, { metadata: { annotations: { [ANNOTATION_EXIT]: JSON.stringify({ exitCode: exit.exitCode, oomKilled: exit.oomKilled, finishedAt: exit.finishedAt ?? new Date().toISOString() }) } } })
  }
}

function replicasOfJob (job: V1Job): number {
  return job.spec?.completions ?? 1
}
