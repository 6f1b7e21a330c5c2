// Kubernetes as berth's containers part, in one namespace per berth deployment: a container is a Deployment
// of one container, its replicas are pods the scheduler places on nodes, `-p` is the pod's hostPort.
// A run answers when its replicas run, or says why they cannot (a host port no node has free,
// resources, GPUs, an image a node cannot pull, an image that would run as root) and removes what it
// made: nothing is left pending. Stop scales to none and remembers the count; start brings it back.
// ps and inspect read watch-fed copies of the namespace's Deployments and pods, never the apiserver.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { KubeConfig, V1Deployment, V1Node, V1Pod, V1Secret } from '@kubernetes/client-node'
import { ApiException } from '@kubernetes/client-node'
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { notSupported, type ContainersPart } from '../parts.ts'
import { chooseHostPorts } from '../host-ports.ts'
import { PortConflictError } from '../types.ts'
import type {
  Container, ContainerSummary, EngineEvent, EngineInfo, EventsOptions, ListContainersOptions, LogEntry, LogOptions, Node, PortRequest, RunSpec, StateChange
} from '../types.ts'
import { ResourceCache } from './cache.ts'
import { KubeClient, mergePatch } from './client.ts'
import { kubeEvents } from './events.ts'
import { podFailure } from './failures.ts'
import { readPodLogs, podsWithLogs } from './logs.ts'
import {
  ANNOTATION_ACTION, ANNOTATION_REPLICAS, ANNOTATION_RESTARTED, LABEL_ID, LABEL_MANAGED_BY, bytesOf, checkName, coresOf, containerOfDeployment, hostPorts, idOf,
  isRunning, isStopped, labelsOf, podState, podsOf, replicaCount, summaryOf, taskOf, deploymentOf
} from './mapping.ts'

export interface KubernetesEngineOptions {
  /** A kubeconfig file, a loaded config, or null for the service account of the pod berth runs in. */
  kubeconfig: string | KubeConfig | null
  context?: string
  namespace: string
  timeoutMs: number
  /** How long a run, start, restart or scale waits for its replicas to run. */
  placementTimeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
  /** How often the copies are looked at while waiting for pods. */
  pollMs?: number
}

const MAX_RANGE_ATTEMPTS = 16

const K8S = 'kubernetes' as const

export class KubeCluster implements ContainersPart {
  readonly #client: KubeClient
  readonly #options: KubernetesEngineOptions
  readonly #deployments: ResourceCache<V1Deployment>
  readonly #pods: ResourceCache<V1Pod>
  readonly #pollMs: number

  constructor (options: KubernetesEngineOptions) {
    this.#options = options
    this.#client = new KubeClient(options)
    this.#pollMs = options.pollMs ?? 100
    const client = this.#client
    const namespace = encodeURIComponent(options.namespace)
    this.#deployments = new ResourceCache<V1Deployment>({
      what: 'deployments',
      path: `/apis/apps/v1/namespaces/${namespace}/deployments`,
      list: async () => await client.call({ subject: 'engine', target: 'deployments' }, async call => await client.apps.listNamespacedDeployment({ namespace: options.namespace }, call)),
      watch: client.watch
    })
    this.#pods = new ResourceCache<V1Pod>({
      what: 'pods',
      path: `/api/v1/namespaces/${namespace}/pods`,
      list: async () => await client.call({ subject: 'engine', target: 'pods' }, async call => await client.core.listNamespacedPod({ namespace: options.namespace }, call)),
      watch: client.watch
    })
    this.#deployments.start()
    this.#pods.start()
  }

  async close (): Promise<void> {
    await Promise.all([this.#deployments.stop(), this.#pods.stop()])
  }

  /** The apiserver answers, and berth's copies of its namespace are current. */
  async info (): Promise<EngineInfo> {
    const version = await this.#client.call({ subject: 'engine', target: 'version' }, async call => await this.#client.version.getCode(call))
    await this.#ready()
    const [os, arch] = (version.platform ?? '/').split('/')
    return { version: version.gitVersion, apiVersion: `${version.major}.${version.minor}`, os: os ?? '', arch: arch ?? '' }
  }

  /**
   * What a Deployment cannot be asked for. A replica that exits is always restarted (a Deployment's
   * pods have restartPolicy Always), so on-failure is refused; `no`, the default, is taken to mean
   * that nothing was asked for and is reported as always. Host paths and the engine's own knobs that
   * the restricted pod security profile or the pod API do not have are refused.
   */
  check (spec: RunSpec): void {
    const refused: Array<[boolean, string]> = [
      [spec.autoRemove, 'autoRemove is not supported on Kubernetes: a Deployment\'s pods are replaced when they exit; remove the container when done'],
      [spec.restart.policy === 'on-failure', 'restart on-failure is not possible on Kubernetes: a Deployment restarts its replicas whenever they exit'],
      [spec.mounts.some(mount => mount.type === 'bind'), 'bind mounts are not supported on Kubernetes: a host path is another directory on every node, and the restricted pod security profile forbids hostPath volumes'],
      [spec.image.kind === 'id', 'on Kubernetes a container runs an image reference that its node pulls, not an image id of one engine'],
      [spec.gpus !== undefined && typeof spec.gpus !== 'number', 'on Kubernetes GPUs are asked for by count (the nvidia.com/gpu resource): "all" and device ids are a single host\'s'],
      [spec.ulimits !== undefined, 'ulimits cannot be set per pod on Kubernetes'],
      [spec.init === true, 'init is not offered on Kubernetes: the container runtime has no --init; use an image whose entrypoint is an init'],
      [spec.stopSignal !== undefined && spec.stopSignal !== 'SIGTERM', 'Kubernetes 1.25 stops a pod with SIGTERM only: another stop signal cannot be given']
    ]
    const reason = refused.find(([applies]) => applies)
    if (reason !== undefined) throw notSupported(K8S, reason[1])
  }

  async listNodes (): Promise<Node[]> {
    let nodes: V1Node[]
    try {
      nodes = (await this.#client.call({ subject: 'nodes', target: 'nodes' }, async call => await this.#client.core.listNode({}, call))).items
    } catch (error) {
      if (error instanceof BerthError && error.cause instanceof ApiException && error.cause.code === 403) {
        throw notSupported(K8S, 'berth\'s Role is namespaced and nodes are cluster-wide: grant its ServiceAccount a ClusterRole that may list nodes (deploy/kubernetes/nodes-reader.yaml) to see them')
      }
      throw error
    }
    return nodes.map(nodeOf).sort((a, b) => a.name.localeCompare(b.name))
  }

  async list (options: ListContainersOptions): Promise<ContainerSummary[]> {
    await this.#ready()
    // The pods by container, once: not the whole pod list again for every Deployment.
    const pods = new Map<string, V1Pod[]>()
    for (const pod of this.#pods.list()) {
      const id = pod.metadata?.labels?.[LABEL_ID]
      if (id === undefined) continue
      const theirs = pods.get(id)
      if (theirs === undefined) pods.set(id, [pod])
      else theirs.push(pod)
    }
    return this.#deployments.list()
      .filter(deployment => options.name === undefined || deployment.metadata?.name === options.name)
      .filter(deployment => matchesLabels(labelsOf(deployment), options.labels ?? []))
      .map(deployment => summaryOf(deployment, pods.get(idOf(deployment)) ?? []))
      .filter(summary => options.all || summary.state === 'running')
      .filter(summary => options.status === undefined || options.status.length === 0 || options.status.includes(summary.state))
      .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
  }

  async inspect (idOrName: string): Promise<Container> {
    return containerOfDeployment(await this.#deployment(idOrName), this.#pods.list())
  }

  async run (spec: RunSpec): Promise<Container> {
    const name = spec.name ?? `berth-${randomBytes(4).toString('hex')}`
    checkName(name)
    await this.#ready()
    const ranged = spec.ports.some(port => port.host === undefined)
    const tried = new Set<number>()
    for (let attempt = 1; ; attempt++) {
      const id = randomBytes(16).toString('hex')
      const chosenPorts = ranged ? this.#choosePorts(spec.ports, tried) : new Map<number, number>()
      const secret = await this.#pullSecret(spec, name, id)
      let deployment: V1Deployment
      try {
        deployment = deploymentOf(spec, { id, name, chosenPorts, ...(secret === null ? {} : { pullSecret: secret }) })
        deployment = await this.#client.call({ subject: 'container', target: name }, async call =>
          await this.#client.apps.createNamespacedDeployment({ namespace: this.#client.namespace, body: deployment }, call))
      } catch (error) {
        if (secret !== null) await this.#deleteSecret(secret)
        throw error
      }
      this.#deployments.apply(deployment)
      try {
        if (secret !== null) await this.#ownSecret(secret, deployment)
        await this.#awaitReplicas(id, spec.replicas ?? 1, new Set(), hostPorts(deployment))
      } catch (error) {
        // A run that cannot run leaves nothing behind: not the Deployment, nor a pod of it on any node.
        await this.#discard(deployment, true)
        if (secret !== null) await this.#deleteSecret(secret)
        if (ranged && error instanceof PortConflictError && attempt < MAX_RANGE_ATTEMPTS && chosenPorts.size > 0) continue
        throw this.#withHolder(error, id)
      }
      return await this.inspect(id)
    }
  }

  async start (idOrName: string): Promise<StateChange> {
    const deployment = await this.#deployment(idOrName)
    if (!isStopped(deployment)) return { changed: false }
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    const before = new Set(podsOf(deployment, this.#pods.list()).map(pod => pod.metadata?.uid ?? ''))
    await this.#patch(deployment, { metadata: { annotations: { [ANNOTATION_REPLICAS]: null, [ANNOTATION_ACTION]: 'start' } }, spec: { replicas: count } })
    try {
      await this.#awaitReplicas(id, count, before, hostPorts(deployment))
    } catch (error) {
      // Like a container whose start failed, it stays as it was: stopped.
      await this.#scaleToNone(await this.#deployment(id), count).catch(() => {})
      await this.#awaitNoPods(id, 0).catch(() => {})
      throw this.#withHolder(error, id)
    }
    return { changed: true }
  }

  async stop (idOrName: string, options: { timeout?: number }): Promise<StateChange> {
    const deployment = await this.#deployment(idOrName)
    const id = idOf(deployment)
    const pods = podsOf(deployment, this.#pods.list())
    const stopped = isStopped(deployment)
    if (!stopped) await this.#scaleToNone(deployment, replicaCount(deployment))
    // A stop's own timeout replaces the grace period the pods were started with.
    if (options.timeout !== undefined) await this.#deletePods(pods, options.timeout)
    // Like docker stop, done when the replicas are: their host ports are free again then.
    await this.#awaitNoPods(id, options.timeout ?? graceOf(deployment))
    return { changed: !stopped && pods.some(pod => podState(pod) !== 'shutdown') }
  }

  async restart (idOrName: string, options: { timeout?: number }): Promise<StateChange> {
    const deployment = await this.#deployment(idOrName)
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    const pods = podsOf(deployment, this.#pods.list())
    await this.#patch(deployment, {
      metadata: { annotations: { [ANNOTATION_REPLICAS]: null, [ANNOTATION_ACTION]: 'restart' } },
      spec: { replicas: count, template: { metadata: { annotations: { [ANNOTATION_RESTARTED]: new Date().toISOString() } } } }
    })
    if (options.timeout !== undefined) await this.#deletePods(pods, options.timeout)
    try {
      await this.#awaitReplicas(id, count, new Set(pods.map(pod => pod.metadata?.uid ?? '')), hostPorts(deployment), (options.timeout ?? graceOf(deployment)) * 1000)
    } catch (error) {
      throw this.#withHolder(error, id)
    }
    return { changed: true }
  }

  async remove (idOrName: string, options: { force: boolean }): Promise<void> {
    const deployment = await this.#deployment(idOrName)
    if (!options.force && podsOf(deployment, this.#pods.list()).some(isRunning)) {
      throw new BerthError('container_running', `container ${idOrName} is running; stop it first or remove it with force=true`)
    }
    await this.#discard(deployment, options.force)
  }

  async scale (idOrName: string, replicas: number): Promise<StateChange> {
    const deployment = await this.#deployment(idOrName)
    const id = idOf(deployment)
    const count = replicaCount(deployment)
    if (count === replicas) return { changed: false }
    if (isStopped(deployment)) {
      // A stopped container keeps the count for its next start.
      await this.#patch(deployment, { metadata: { annotations: { [ANNOTATION_REPLICAS]: String(replicas), [ANNOTATION_ACTION]: 'scale' } } })
      return { changed: true }
    }
    const before = new Set(podsOf(deployment, this.#pods.list()).map(pod => pod.metadata?.uid ?? ''))
    await this.#patch(deployment, { metadata: { annotations: { [ANNOTATION_ACTION]: 'scale' } }, spec: { replicas } })
    try {
      if (replicas > count) await this.#awaitReplicas(id, replicas, before, hostPorts(deployment), 0, false)
    } catch (error) {
      // Added replicas that cannot run are taken back: the container runs as many as before.
      await this.#patch(await this.#deployment(id), { spec: { replicas: count } }).catch(() => {})
      throw this.#withHolder(error, id)
    }
    return { changed: true }
  }

  async logs (idOrName: string, options: LogOptions): Promise<AsyncIterable<LogEntry>> {
    const deployment = await this.#deployment(idOrName)
    return await readPodLogs(this.#client, podsWithLogs(podsOf(deployment, this.#pods.list())), options)
  }

  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    return await kubeEvents({ client: this.#client, deployments: this.#deployments, pods: this.#pods }, options)
  }

  // ---- Deployments and pods

  async #ready (): Promise<void> {
    await Promise.all([this.#deployments.ready(this.#client.timeoutMs), this.#pods.ready(this.#client.timeoutMs)])
  }

  /** A Deployment by name, id, or unique id prefix, from the copy. */
  async #deployment (idOrName: string): Promise<V1Deployment> {
    await this.#ready()
    const named = this.#deployments.get(idOrName)
    if (named !== undefined) return named
    const all = this.#deployments.list()
    const exact = all.find(deployment => idOf(deployment) === idOrName)
    if (exact !== undefined) return exact
    const matches = all.filter(deployment => idOf(deployment).startsWith(idOrName))
    if (matches.length > 1) throw new BerthError('ambiguous_id', `${idOrName} matches ${matches.length} containers; give more of the id`, { matches: matches.length })
    if (matches.length === 0) throw new BerthError('not_found', `container ${idOrName} was not found`)
    return matches[0] as V1Deployment
  }

  async #patch (deployment: V1Deployment, patch: object): Promise<void> {
    const name = deployment.metadata?.name ?? ''
    const patched = await this.#client.call({ subject: 'container', target: name }, async call =>
      await this.#client.apps.patchNamespacedDeployment({ namespace: this.#client.namespace, name, body: patch }, mergePatch(call)))
    this.#deployments.apply(patched)
  }

  /** Scales to none, remembering how many replicas to start again. */
  async #scaleToNone (deployment: V1Deployment, count: number): Promise<void> {
    await this.#patch(deployment, { metadata: { annotations: { [ANNOTATION_REPLICAS]: String(count), [ANNOTATION_ACTION]: 'stop' } }, spec: { replicas: 0 } })
  }

  /**
   * Waits until `replicas` replicas run (or ran: a command that exits at once has run), or a pod
   * shows it cannot run. Pods in `before` are not the operation's; with `fresh` only new pods count.
   */
  async #awaitReplicas (id: string, replicas: number, before: Set<string>, ports: number[], extraMs = 0, fresh = true): Promise<void> {
    const deadline = Date.now() + this.#options.placementTimeoutMs + extraMs
    for (;;) {
      const deployment = await this.#deployment(id)
      const pods = podsOf(deployment, this.#pods.list())
      const added = pods.filter(pod => !before.has(pod.metadata?.uid ?? '') && podState(pod) !== 'shutdown')
      for (const pod of added) {
        const failure = podFailure(pod, ports)
        if (failure !== null) throw failure
      }
      const counted = fresh ? added : pods.filter(pod => podState(pod) !== 'shutdown')
      const ran = counted.filter(pod => isRunning(pod) || (pod.status?.containerStatuses?.[0]?.restartCount ?? 0) > 0 || podState(pod) === 'complete' || podState(pod) === 'failed')
      if (ran.length >= replicas) return
      if (Date.now() >= deadline) {
        const waiting = added.map(pod => taskOf(pod, deployment)).map(task => `${task.id}: ${task.state}${task.node === null ? '' : ` on ${task.node}`}${task.error === null ? '' : ` (${task.error})`}`)
        throw new BerthError('placement_timeout', `the cluster did not run ${replicas} ${replicas === 1 ? 'replica' : 'replicas'} within ${this.#options.placementTimeoutMs} ms: ${waiting.length === 0 ? 'no pod was created' : waiting.join(', ')}`,
          { replicas, running: ran.length })
      }
      await sleep(this.#pollMs)
    }
  }

  /** Waits (bounded) until no pod of the container is left on any node. */
  async #awaitNoPods (id: string, graceSeconds: number): Promise<void> {
    const deadline = Date.now() + graceSeconds * 1000 + this.#client.timeoutMs
    while (Date.now() < deadline) {
      await this.#ready()
      if (!this.#pods.list().some(pod => pod.metadata?.labels?.[LABEL_ID] === id)) return
      await sleep(this.#pollMs)
    }
  }

  async #deletePods (pods: V1Pod[], graceSeconds: number): Promise<void> {
    for (const pod of pods) {
      const name = pod.metadata?.name ?? ''
      await this.#client.call({ subject: 'container', target: name }, async call =>
        await this.#client.core.deleteNamespacedPod({ namespace: this.#client.namespace, name, gracePeriodSeconds: graceSeconds }, call)).catch((error: unknown) => {
        if (!(error instanceof BerthError && error.code === 'not_found')) throw error
      })
    }
  }

  /** Removes the Deployment (its pods at once with `force`, as docker rm -f kills) and waits until its pods are gone. */
  async #discard (deployment: V1Deployment, force: boolean): Promise<void> {
    const name = deployment.metadata?.name ?? ''
    const id = idOf(deployment)
    try {
      await this.#client.call({ subject: 'container', target: name }, async call =>
        await this.#client.apps.deleteNamespacedDeployment({ namespace: this.#client.namespace, name, propagationPolicy: 'Background' }, call))
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    }
    this.#deployments.forget(deployment)
    const grace = force ? 0 : graceOf(deployment)
    // The garbage collector removes the pods with their ReplicaSet; a forced removal does not wait for their grace.
    if (force) await this.#deletePods(this.#pods.list().filter(pod => pod.metadata?.labels?.[LABEL_ID] === id), 0)
    await this.#awaitNoPods(id, grace)
  }

  // ---- ports, registry credentials

  /**
   * Host ports from a range (the policy's) for the ports that have none: a pod's hostPort is always
   * a number, so berth picks ports no container of its namespace holds, trying others when the
   * scheduler finds one taken on every node.
   */
  #choosePorts (ports: PortRequest[], tried: Set<number>): Map<number, number> {
    return chooseHostPorts(ports, this.#deployments.list().flatMap(hostPorts), tried)
  }

  /** Names the container holding a conflicting port, when it is one of this namespace's: its labels say who may be told. */
  #withHolder (error: unknown, self: string): unknown {
    if (!(error instanceof PortConflictError) || error.port === null) return error
    const port = error.port
    const holder = this.#deployments.healthy
      ? this.#deployments.list().find(deployment => idOf(deployment) !== self && !isStopped(deployment) && hostPorts(deployment).includes(port))
      : undefined
    if (holder === undefined) return error
    return new PortConflictError(port, { id: idOf(holder), name: holder.metadata?.name ?? '', labels: labelsOf(holder) }, error.message, error)
  }

  /** An image pull secret with the run's registry credentials (or berth's own for that registry), or null without any. */
  async #pullSecret (spec: RunSpec, name: string, id: string): Promise<string | null> {
    if (spec.image.kind !== 'ref') return null
    const registry = spec.image.ref.registry
    const credentials = spec.auth ?? this.#options.registryAuth?.[registry]
    if (credentials === undefined) return null
    const auth = credentials.identitytoken !== undefined
      ? { identitytoken: credentials.identitytoken }
      : { username: credentials.username ?? '', password: credentials.password ?? '', auth: Buffer.from(`${credentials.username ?? ''}:${credentials.password ?? ''}`).toString('base64') }
    const secretName = `${name}-pull-${id.slice(0, 8)}`
    const body: V1Secret = {
      metadata: { name: secretName, labels: { [LABEL_ID]: id, [LABEL_MANAGED_BY]: 'berth' } },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry]: auth } }) }
    }
    await this.#client.call({ subject: 'secret', target: secretName }, async call =>
      await this.#client.core.createNamespacedSecret({ namespace: this.#client.namespace, body }, call))
    return secretName
  }

  /** The secret goes with the Deployment: Kubernetes removes it when the Deployment is removed. */
  async #ownSecret (secret: string, deployment: V1Deployment): Promise<void> {
    const owner = { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata?.name ?? '', uid: deployment.metadata?.uid ?? '' }
    await this.#client.call({ subject: 'secret', target: secret }, async call =>
      await this.#client.core.patchNamespacedSecret({ namespace: this.#client.namespace, name: secret, body: { metadata: { ownerReferences: [owner] } } }, mergePatch(call)))
  }

  async #deleteSecret (secret: string): Promise<void> {
    await this.#client.call({ subject: 'secret', target: secret }, async call =>
      await this.#client.core.deleteNamespacedSecret({ namespace: this.#client.namespace, name: secret }, call)).catch(() => {})
  }
}

/** Seconds a replica is given to stop. */
function graceOf (deployment: V1Deployment): number {
  return deployment.spec?.template.spec?.terminationGracePeriodSeconds ?? 30
}

/** `key` or `key=value` label filters, all of which must hold. */
export function matchesLabels (labels: Record<string, string>, filters: string[]): boolean {
  return filters.every(filter => {
    const eq = filter.indexOf('=')
    if (eq === -1) return filter in labels
    return labels[filter.slice(0, eq)] === filter.slice(eq + 1)
  })
}

function nodeOf (node: V1Node): Node {
  const ready = node.status?.conditions?.find(condition => condition.type === 'Ready')
  const address = node.status?.addresses?.find(candidate => candidate.type === 'InternalIP')?.address ?? null
  const labels = node.metadata?.labels ?? {}
  return {
    id: node.metadata?.uid ?? '',
    name: node.metadata?.name ?? '',
    address,
    role: 'control-plane' in labels || 'node-role.kubernetes.io/control-plane' in labels ? 'manager' : 'worker',
    leader: false,
    state: ready?.status === 'True' ? 'ready' : ready?.status === 'False' ? 'down' : 'unknown',
    availability: node.spec?.unschedulable === true ? 'drain' : 'active',
    labels,
    resources: { cpus: coresOf(node.status?.capacity?.cpu) ?? 0, memory: bytesOf(node.status?.capacity?.memory) ?? 0 },
    engineVersion: node.status?.nodeInfo?.containerRuntimeVersion ?? '',
    os: node.status?.nodeInfo?.operatingSystem ?? '',
    arch: node.status?.nodeInfo?.architecture ?? ''
  }
}
