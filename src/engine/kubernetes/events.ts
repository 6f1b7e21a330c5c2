// berth's event stream on Kubernetes: watches of the Deployments (berth's containers) and the pods
// (their replicas) in berth's namespace, translated into docker-events words. A cursor holds the
// resource version each watch reached, so a resume repeats nothing and, as long as the apiserver
// still has that history (its watch cache, minutes), misses nothing; past it the stream starts again
// from now.
import type { KubernetesObject, V1Deployment, V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { Inbox } from '../inbox.ts'
import type { EngineEvent, EventsOptions } from '../types.ts'
import type { ResourceCache } from './cache.ts'
import type { KubeClient } from './client.ts'
import { mapKubeError } from './errors.ts'
import { ANNOTATION_ACTION, CONTAINER_NAME, LABEL_ID, idOf, labelsOf, podProblem, podState, timeOf } from './mapping.ts'

export interface EventSources {
  client: KubeClient
  deployments: ResourceCache<V1Deployment>
  pods: ResourceCache<V1Pod>
}

interface Cursor {
  deployments: string
  pods: string
}

export function parseKubeCursor (text: string): Cursor | null {
  const match = /^k(\d{1,20})\.(\d{1,20})$/.exec(text)
  return match === null ? null : { deployments: match[1] as string, pods: match[2] as string }
}

function formatCursor (cursor: Cursor): string {
  return `k${cursor.deployments}.${cursor.pods}`
}

type Translate = (type: string, object: KubernetesObject) => Omit<EngineEvent, 'cursor'> | null

export async function kubeEvents (sources: EventSources, options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
  const after = options.after === undefined ? null : parseKubeCursor(options.after)
  if (options.after !== undefined && after === null) {
    throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
  }
  const { client, deployments, pods } = sources
  // Without a cursor, from the versions the copies held at `since` (or now).
  const timeout = client.timeoutMs
  await Promise.all([deployments.ready(timeout), pods.ready(timeout)])
  const cursor: Cursor = after ?? (options.since === undefined
    ? { deployments: deployments.resourceVersion, pods: pods.resourceVersion }
    : { deployments: deployments.versionAt(options.since), pods: pods.versionAt(options.since) })

  const inbox = new Inbox<EngineEvent>()
  let failure: unknown = null
  // The open watch of each kind (a watch ended by the apiserver is replaced by the next).
  const watches = new Map<keyof Cursor, AbortController>()
  const finish = (error: unknown): void => {
    if (inbox.closed) return
    if (!(options.signal?.aborted ?? false)) failure = error
    for (const watch of watches.values()) watch.abort()
    inbox.close()
  }
  const stop = (): void => finish(null)
  options.signal?.addEventListener('abort', stop, { once: true })

  /**
   * Follows one kind from its cursor position. The apiserver ends a watch now and then (and the
   * client ends an idle one): that is picked up again from where it was; a failure ends the stream.
   */
  const follow = async (kind: keyof Cursor, path: string, translate: Translate, onOpen: () => void): Promise<void> => {
    let connected = false
    for (;;) {
      if (inbox.closed) return
      const outcome = await new Promise<unknown>(resolve => {
        let closed = false
        client.watch.watch(path, { resourceVersion: cursor[kind], allowWatchBookmarks: true }, (type: string, object: KubernetesObject & { code?: number }) => {
          if (type === 'ERROR') {
            // Too old a version to resume from: the history is gone; from now on.
            if (object.code === 410) cursor[kind] = (kind === 'deployments' ? deployments : pods).resourceVersion
            return
          }
          const version = object.metadata?.resourceVersion
          if (version !== undefined) cursor[kind] = version
          if (type === 'BOOKMARK') return
          const event = translate(type, object)
          if (event !== null) inbox.push({ ...event, cursor: formatCursor(cursor) })
        }, (error: unknown) => {
          closed = true
          resolve(error ?? null)
        }).then(watch => {
          watches.set(kind, watch)
          if (inbox.closed) watch.abort()
          // A watch that failed to open has already closed by the time it is handed back.
          if (!closed && !connected) {
            connected = true
            onOpen()
          }
        }, resolve)
      })
      if (inbox.closed) return
      if (outcome !== null && (outcome as { name?: string }).name !== 'TimeoutError') {
        if (!connected) throw outcome
        finish(outcome)
        return
      }
    }
  }

  const deploymentFacts = new Map<string, number>()
  const translateDeployment: Translate = (type, object) => {
    const deployment = object as V1Deployment
    const uid = deployment.metadata?.uid ?? ''
    // A spec change moves the generation (status updates do not); generation 1 is the one it was created with.
    const generation = deployment.metadata?.generation ?? 0
    const known = deploymentFacts.get(uid)
    deploymentFacts.set(uid, generation)
    let action: string | null
    if (type === 'ADDED') action = 'create'
    else if (type === 'DELETED') action = 'destroy'
    else if (known === undefined ? generation > 1 && (deployment.status?.observedGeneration ?? 0) < generation : known !== generation) action = deployment.metadata?.annotations?.[ANNOTATION_ACTION] ?? 'update'
    else action = null
    if (action === null) return null
    const labels = labelsOf(deployment)
    return {
      type: 'container',
      action,
      id: idOf(deployment),
      name: deployment.metadata?.name ?? null,
      image: deployment.spec?.template.spec?.containers[0]?.image ?? null,
      time: (type === 'ADDED' ? timeOf(deployment.metadata?.creationTimestamp) : null) ?? new Date().toISOString(),
      labels
    }
  }

  const podFacts = new Map<string, string>()
  const translatePod: Translate = (type, object) => {
    const pod = object as V1Pod
    const uid = pod.metadata?.uid ?? ''
    if (type === 'DELETED') {
      podFacts.delete(uid)
      return null
    }
    const state = podState(pod)
    const problem = podProblem(pod)
    const key = `${state}|${problem?.reason ?? ''}`
    if (podFacts.get(uid) === key) return null
    podFacts.set(uid, key)
    if (problem === null && !['running', 'complete', 'failed', 'shutdown'].includes(state)) return null
    const main = pod.status?.containerStatuses?.find(status => status.name === CONTAINER_NAME)
    const exitCode = main?.state?.terminated?.exitCode
    return {
      type: 'task',
      action: state,
      id: pod.metadata?.name ?? uid,
      name: pod.metadata?.name ?? null,
      image: pod.spec?.containers[0]?.image ?? null,
      time: timeOf(pod.metadata?.deletionTimestamp) ?? timeOf(main?.state?.terminated?.finishedAt) ?? timeOf(main?.state?.running?.startedAt) ?? new Date().toISOString(),
      labels: labelsOf(pod),
      service: pod.metadata?.labels?.[LABEL_ID] ?? '',
      ...(pod.spec?.nodeName === undefined ? {} : { node: pod.spec.nodeName }),
      ...(problem === null ? {} : { detail: problem.message === '' ? problem.reason : `${problem.reason}: ${problem.message}` }),
      ...(exitCode === undefined ? {} : { exitCode })
    }
  }

  const base = `/namespaces/${encodeURIComponent(client.namespace)}`
  // Resolves once both watches are open: the engine answered.
  const opened = Promise.all([
    new Promise<void>((resolve, reject) => { follow('deployments', `/apis/apps/v1${base}/deployments`, translateDeployment, resolve).catch(reject) }),
    new Promise<void>((resolve, reject) => { follow('pods', `/api/v1${base}/pods`, translatePod, resolve).catch(reject) })
  ])
  try {
    await opened
  } catch (error) {
    finish(null)
    options.signal?.removeEventListener('abort', stop)
    throw mapKubeError(error, 'engine', 'events', { timedOut: false, timeoutMs: timeout, server: client.server })
  }

  async function * feed (): AsyncGenerator<EngineEvent> {
    try {
      for (let next = await inbox.take(); next !== undefined; next = await inbox.take()) yield next
      if (failure !== null) {
        throw new BerthError('engine_unavailable', `the apiserver watch broke: ${(failure as Error).message}`, {}, { cause: failure, headers: { 'retry-after': '5' } })
      }
    } finally {
      options.signal?.removeEventListener('abort', stop)
      finish(null)
    }
  }
  return feed()
}
