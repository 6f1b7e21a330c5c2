// What the Kubernetes backend's parts share: one apiserver client and watch-fed copies of berth's
// namespace — its Deployments and Jobs (berth's containers), their pods, and its
// PersistentVolumeClaims (berth's volumes) — listed once, then kept current by watches, so reads
// cost the apiserver nothing. A container is found here by name, id or unique id prefix, whichever
// kind of workload it is.
import type { KubeConfig, V1Deployment, V1Job, V1Node, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node'
import { ApiException } from '@kubernetes/client-node'
import type { KubeVolumeSettings, RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { notSupported } from '../parts.ts'
import type { EngineInfo } from '../types.ts'
import { ResourceCache } from './cache.ts'
import { KubeClient, mergePatch } from './client.ts'
import { LABEL_ID, type Workload } from './mapping.ts'
import { idOf, podsOf } from './reading.ts'

export interface KubernetesEngineOptions {
  /** A kubeconfig file, a loaded config, or null for the service account of the pod berth runs in. */
  kubeconfig: string | KubeConfig | null
  context?: string
  namespace: string
  timeoutMs: number
  /** How long a run, start, restart or scale waits for its replicas to run. */
  placementTimeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
  /** How named volumes' PersistentVolumeClaims are made (the defaults of KUBE_VOLUME_DEFAULTS when absent). */
  volumes?: KubeVolumeSettings
  /** How often the copies are looked at while waiting for pods. */
  pollMs?: number
}

export const K8S = 'kubernetes' as const

export class KubeShared {
  readonly client: KubeClient
  readonly options: KubernetesEngineOptions
  readonly deployments: ResourceCache<V1Deployment>
  readonly jobs: ResourceCache<V1Job>
  readonly pods: ResourceCache<V1Pod>
  readonly claims: ResourceCache<V1PersistentVolumeClaim>
  readonly pollMs: number

  constructor (options: KubernetesEngineOptions) {
    this.options = options
    this.client = new KubeClient(options)
    this.pollMs = options.pollMs ?? 100
    const client = this.client
    const ns = options.namespace
    const namespace = encodeURIComponent(ns)
    this.deployments = new ResourceCache<V1Deployment>({
      what: 'deployments',
      path: `/apis/apps/v1/namespaces/${namespace}/deployments`,
      list: async () => await client.call({ subject: 'engine', target: 'deployments' }, async call => await client.apps.listNamespacedDeployment({ namespace: ns }, call)),
      watch: client.watch
    })
    this.jobs = new ResourceCache<V1Job>({
      what: 'jobs',
      path: `/apis/batch/v1/namespaces/${namespace}/jobs`,
      list: async () => await client.call({ subject: 'engine', target: 'jobs' }, async call => await client.batch.listNamespacedJob({ namespace: ns }, call)),
      watch: client.watch
    })
    this.pods = new ResourceCache<V1Pod>({
      what: 'pods',
      path: `/api/v1/namespaces/${namespace}/pods`,
      list: async () => await client.call({ subject: 'engine', target: 'pods' }, async call => await client.core.listNamespacedPod({ namespace: ns }, call)),
      watch: client.watch
    })
    this.claims = new ResourceCache<V1PersistentVolumeClaim>({
      what: 'persistent volume claims',
      path: `/api/v1/namespaces/${namespace}/persistentvolumeclaims`,
      list: async () => await client.call({ subject: 'engine', target: 'persistentvolumeclaims' }, async call => await client.core.listNamespacedPersistentVolumeClaim({ namespace: ns }, call)),
      watch: client.watch
    })
    for (const cache of this.#caches()) cache.start()
  }

  #caches (): Array<ResourceCache<V1Deployment> | ResourceCache<V1Job> | ResourceCache<V1Pod> | ResourceCache<V1PersistentVolumeClaim>> {
    return [this.deployments, this.jobs, this.pods, this.claims]
  }

  get namespace (): string {
    return this.client.namespace
  }

  async close (): Promise<void> {
    await Promise.all(this.#caches().map(async cache => await cache.stop()))
  }

  /** The apiserver answers, and berth's copies of its namespace are current. */
  async info (): Promise<EngineInfo> {
    const version = await this.client.call({ subject: 'engine', target: 'version' }, async call => await this.client.version.getCode(call))
    await this.ready()
    const [os, arch] = (version.platform ?? '/').split('/')
    return { version: version.gitVersion, apiVersion: `${version.major}.${version.minor}`, os: os ?? '', arch: arch ?? '' }
  }

  async ready (): Promise<void> {
    await Promise.all(this.#caches().map(async cache => await cache.ready(this.client.timeoutMs)))
  }

  /** Every container: the Deployments and the Jobs berth made. */
  workloads (): Workload[] {
    return [
      ...this.deployments.list().map(object => ({ kind: 'service', object }) as Workload),
      ...this.jobs.list().map(object => ({ kind: 'job', object }) as Workload)
    ]
  }

  /** A container by name, id, or unique id prefix, from the copies. */
  async workload (idOrName: string): Promise<Workload> {
    await this.ready()
    const byName = this.#named(idOrName)
    if (byName !== null) return byName
    const all = this.workloads()
    const exact = all.find(workload => idOf(workload.object) === idOrName)
    if (exact !== undefined) return exact
    const matches = all.filter(workload => idOf(workload.object).startsWith(idOrName))
    if (matches.length > 1) throw new BerthError('ambiguous_id', `${idOrName} matches ${matches.length} containers; give more of the id`, { matches: matches.length })
    if (matches.length === 0) throw new BerthError('not_found', `container ${idOrName} was not found`)
    return matches[0] as Workload
  }

  #named (name: string): Workload | null {
    const deployment = this.deployments.get(name)
    if (deployment !== undefined) return { kind: 'service', object: deployment }
    const job = this.jobs.get(name)
    return job === undefined ? null : { kind: 'job', object: job }
  }

  /** The container of this id as the copies have it now; null once it is gone. */
  current (id: string): Workload | null {
    return this.workloads().find(workload => idOf(workload.object) === id) ?? null
  }

  /** Whether a name is taken by a container of either kind. */
  taken (name: string): boolean {
    return this.#named(name) !== null
  }

  /** The pods of a container, newest first. */
  podsOf (id: string): V1Pod[] {
    return podsOf(id, this.pods.list())
  }

  /** Pods carrying a container's id, whatever made them. */
  podsWithId (id: string): V1Pod[] {
    return this.pods.list().filter(pod => pod.metadata?.labels?.[LABEL_ID] === id)
  }

  /** A merge patch of a container's workload; the copy has the answer at once. */
  async patch (workload: Workload, patch: object): Promise<Workload> {
    const name = workload.object.metadata?.name ?? ''
    const namespace = this.namespace
    if (workload.kind === 'service') {
      const patched = await this.client.call({ subject: 'container', target: name }, async call =>
        await this.client.apps.patchNamespacedDeployment({ namespace, name, body: patch }, mergePatch(call)))
      this.deployments.apply(patched)
      return { kind: 'service', object: patched }
    }
    const patched = await this.client.call({ subject: 'container', target: name }, async call =>
      await this.client.batch.patchNamespacedJob({ namespace, name, body: patch }, mergePatch(call)))
    this.jobs.apply(patched)
    return { kind: 'job', object: patched }
  }

  /** Deletes pods (their grace period given, or theirs), a pod already gone being fine. */
  async deletePods (pods: V1Pod[], graceSeconds?: number): Promise<void> {
    for (const pod of pods) {
      const name = pod.metadata?.name ?? ''
      await this.client.call({ subject: 'container', target: name }, async call =>
        await this.client.core.deleteNamespacedPod({ namespace: this.namespace, name, ...(graceSeconds === undefined ? {} : { gracePeriodSeconds: graceSeconds }) }, call)).catch((error: unknown) => {
        if (!(error instanceof BerthError && error.code === 'not_found')) throw error
      })
    }
  }

  /** The cluster's nodes; berth's namespaced Role cannot list them without the node reader ClusterRole. */
  async nodes (signal?: AbortSignal): Promise<V1Node[]> {
    try {
      return (await this.client.call({ subject: 'nodes', target: 'nodes', ...(signal === undefined ? {} : { signal }) }, async call => await this.client.core.listNode({}, call))).items
    } catch (error) {
      if (forbidden(error)) {
        throw notSupported(K8S, 'berth\'s Role is namespaced and nodes are cluster-wide: grant its ServiceAccount a ClusterRole that may list nodes (deploy/kubernetes/nodes-reader.yaml) to see them')
      }
      throw error
    }
  }
}

/** The apiserver refused berth's credentials for this (its Role does not grant it). */
export function forbidden (error: unknown): boolean {
  return error instanceof BerthError && error.cause instanceof ApiException && error.cause.code === 403
}
