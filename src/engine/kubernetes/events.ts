// berth's event stream on Kubernetes: watches of the Deployments and Jobs (berth's containers) and
// the pods (their replicas) in berth's namespace, translated into docker-events words. A cursor holds
// the resource version each watch reached, so a resume repeats nothing and, as long as the apiserver
// still has that history (its watch cache, minutes), misses nothing; past it the stream starts again
// from now.
import type { KubernetesObject, V1Deployment, V1Job, V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { Inbox } from '../inbox.ts'
import type { EngineEvent, EventsOptions } from '../types.ts'
import type { ResourceCache } from './cache.ts'
import type { KubeClient } from './client.ts'
import { mapKubeError } from './errors.ts'
import { ANNOTATION_ACTION, ANNOTATION_ACTION_AT, CONTAINER_NAME, LABEL_ID } from './mapping.ts'
import { exitOf, idOf, jobOutcome, labelsOf, podProblem, podState, podsOf, timeOf } from './reading.ts'

export interface EventSources {
  client: KubeClient
  deployments: ResourceCache<V1Deployment>
  jobs: ResourceCache<V1Job>
  pods: ResourceCache<V1Pod>
}

interface Cursor {
  deployments: string
  pods: string
  /** Empty in a cursor given out before berth ran Jobs: those are followed from now. */
  jobs: string
}

export function parseKubeCursor (text: string): Cursor | null {
  const match = /^k(\d{1,20})\.(\d{1,20})(?:\.(\d{1,20}))?$/.exec(text)
  return match === null ? null : { deployments: match[1] as string, pods: match[2] as string, jobs: match[3] ?? '' }
}

function formatCursor (cursor: Cursor): string {
  return `k${cursor.deployments}.${cursor.pods}.${cursor.jobs}`
}

type Translate = (type: string, object: KubernetesObject) => Omit<EngineEvent, 'cursor'> | null

export async function kubeEvents (sources: EventSources, options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
  const after = options.after === undefined ? null : parseKubeCursor(options.after)
  if (options.after !== undefined && after === null) {
    throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
  }
  const { client, deployments, jobs, pods } = sources
  // Without a cursor, from the versions the copies held at `since` (or now).
  const timeout = client.timeoutMs
  await Promise.all([deployments.ready(timeout), jobs.ready(timeout), pods.ready(timeout)])
  const caches = { deployments, jobs, pods }
  const cursor: Cursor = after === null
    ? (options.since === undefined
        ? { deployments: deployments.resourceVersion, pods: pods.resourceVersion, jobs: jobs.resourceVersion }
        : { deployments: deployments.versionAt(options.since), pods: pods.versionAt(options.since), jobs: jobs.versionAt(options.since) })
    : { ...after, jobs: after.jobs === '' ? jobs.resourceVersion : after.jobs }

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
            if (object.code === 410) cursor[kind] = caches[kind].resourceVersion
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

  // What berth did is stamped on the workload (action and when): a new stamp is one event. Seen for
  // the first time in a resumed stream, a Deployment whose controller has not caught up with its
  // spec yet is the change that was made.
  const workloadFacts = new Map<string, { stamp: string | undefined, finished: boolean }>()
  const translateWorkload = (type: string, object: KubernetesObject, kind: 'service' | 'job'): Omit<EngineEvent, 'cursor'> | null => {
    const workload = object as V1Deployment | V1Job
    const uid = workload.metadata?.uid ?? ''
    const generation = workload.metadata?.generation ?? 0
    const stamp = workload.metadata?.annotations?.[ANNOTATION_ACTION_AT]
    const finished = kind === 'job' && jobOutcome(workload as V1Job) !== null
    const removing = workload.metadata?.deletionTimestamp !== undefined && workload.metadata.deletionTimestamp !== null
    const known = workloadFacts.get(uid)
    workloadFacts.set(uid, { stamp, finished })
    let action: string | null = null
    let exitCode: number | undefined
    if (type === 'ADDED') action = 'create'
    else if (type === 'DELETED') action = 'destroy'
    else if (removing) action = null
    else if (known === undefined ? kind === 'service' && generation > 1 && ((workload.status as { observedGeneration?: number } | undefined)?.observedGeneration ?? 0) < generation : stamp !== known.stamp && stamp !== undefined) {
      action = workload.metadata?.annotations?.[ANNOTATION_ACTION] ?? 'update'
    } else if (finished && known !== undefined && !known.finished) {
      // A run that finished by itself: docker's die, with the exit code its pods had.
      action = 'die'
      exitCode = exitOf({ kind: 'job', object: workload as V1Job }, podsOf(idOf(workload), pods.healthy ? pods.list() : []))?.exitCode ?? undefined
    }
    if (action === null) return null
    if (type === 'DELETED') workloadFacts.delete(uid)
    return {
      type: 'container',
      action,
      id: idOf(workload),
      name: workload.metadata?.name ?? null,
      image: workload.spec?.template.spec?.containers[0]?.image ?? null,
      time: (type === 'ADDED' ? timeOf(workload.metadata?.creationTimestamp) : null) ?? new Date().toISOString(),
      labels: labelsOf(workload),
      ...(exitCode === undefined ? {} : { exitCode })
    }
  }
  const translateDeployment: Translate = (type, object) => translateWorkload(type, object, 'service')
  const translateJob: Translate = (type, object) => translateWorkload(type, object, 'job')

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
  // Resolves once every watch is open: the engine answered.
  const opened = Promise.all([
    new Promise<void>((resolve, reject) => { follow('deployments', `/apis/apps/v1${base}/deployments`, translateDeployment, resolve).catch(reject) }),
    new Promise<void>((resolve, reject) => { follow('jobs', `/apis/batch/v1${base}/jobs`, translateJob, resolve).catch(reject) }),
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
