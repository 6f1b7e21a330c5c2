// docker logs of a container on Kubernetes: the logs of each of its pods (their main container),
// read through the apiserver, which asks each pod's kubelet. Every line is asked for with its time,
// which berth uses for since/until to the nanosecond (the apiserver's sinceTime has seconds) and to
// put the lines of several replicas in order; the time is shown only when asked for.
import type { V1Pod } from '@kubernetes/client-node'
import { createInterface } from 'node:readline'
import { BerthError } from '../../errors.ts'
import { Inbox } from '../inbox.ts'
import type { LogEntry, LogOptions } from '../types.ts'
import type { KubeClient } from './client.ts'
import { CONTAINER_NAME } from './mapping.ts'
import { podState } from './reading.ts'

interface Line {
  nanos: bigint
  entry: LogEntry
}

/** "2024-05-01T10:00:00.123456789Z the line" → nanoseconds since the epoch, and the line. */
export function splitTimestamp (text: string): { nanos: bigint, time: string, line: string } | null {
  const space = text.indexOf(' ')
  const time = space === -1 ? text : text.slice(0, space)
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(time)
  if (match === null) return null
  const seconds = BigInt(Date.parse(`${match[1] as string}Z`) / 1000)
  const fraction = BigInt((match[2] ?? '').padEnd(9, '0'))
  return { nanos: seconds * 1_000_000_000n + fraction, time, line: space === -1 ? '' : text.slice(space + 1) }
}

/** The pods whose logs there are: those whose container has started (running, or ended). */
export function podsWithLogs (pods: V1Pod[]): V1Pod[] {
  return pods.filter(pod => {
    const state = podState(pod)
    return state === 'running' || state === 'complete' || state === 'failed' || (state === 'shutdown' && pod.status?.phase === 'Running')
  })
}

export async function readPodLogs (client: KubeClient, pods: V1Pod[], options: LogOptions): Promise<AsyncIterable<LogEntry>> {
  const now = BigInt(Date.now()) * 1_000_000n
  const follow = options.follow && (options.until === undefined || options.until > now)
  // tail=0 asks for nothing that is there: only what comes from now on.
  const since = options.tail === 0 ? (options.since !== undefined && options.since > now ? options.since : now) : options.since
  const inbox = new Inbox<Line>()
  // Pods whose log is still being read; the inbox closes when the last is done, once all are open.
  let open = 0
  let allOpen = false
  let failure: unknown = null
  const connection = new AbortController()
  const stop = (): void => connection.abort()
  const untilTimer = follow && options.until !== undefined ? setTimeout(stop, Number((options.until - now) / 1_000_000n)) : null
  options.signal?.addEventListener('abort', stop, { once: true })

  const opened = pods.map(async pod => {
    const name = pod.metadata?.name ?? ''
    let response
    try {
      response = await client.stream(`/api/v1/namespaces/${encodeURIComponent(client.namespace)}/pods/${encodeURIComponent(name)}/log`, {
        container: CONTAINER_NAME,
        timestamps: 'true',
        follow: String(follow),
        ...(options.tail === undefined || options.tail === 0 ? {} : { tailLines: String(options.tail) }),
        // The apiserver's sinceTime has seconds: the lines of that second are sorted out below.
        ...(since === undefined ? {} : { sinceTime: new Date(Number(since / 1_000_000n)).toISOString().replace(/\.\d+Z$/, 'Z') })
      }, { subject: 'container', target: name, signal: connection.signal })
    } catch (error) {
      // A pod whose container stopped being there since it was listed has nothing to say.
      if (error instanceof BerthError && error.code === 'engine_error' && /waiting to start|is terminated|not found/i.test(error.message)) return
      throw error
    }
    open++
    const done = (): void => {
      open--
      if (open === 0 && allOpen) inbox.close()
    }
    const broke = (error: Error): void => { if (!connection.signal.aborted) failure = error }
    response.on('error', broke)
    response.on('close', done)
    const lines = createInterface({ input: response, crlfDelay: Infinity })
    // readline hands its input's errors on as its own.
    lines.on('error', broke)
    lines.on('line', (text: string) => {
      const parsed = splitTimestamp(text)
      if (parsed === null) return
      if (since !== undefined && parsed.nanos < since) return
      if (options.until !== undefined && parsed.nanos > options.until) return
      inbox.push({
        nanos: parsed.nanos,
        entry: {
          stream: 'stdout',
          line: parsed.line,
          ...(options.timestamps ? { time: parsed.time } : {}),
          task: name,
          ...(pod.spec?.nodeName === undefined ? {} : { node: pod.spec.nodeName })
        }
      })
    })
  })
  try {
    await Promise.all(opened)
    allOpen = true
    if (open === 0) inbox.close()
  } catch (error) {
    stop()
    if (untilTimer !== null) clearTimeout(untilTimer)
    options.signal?.removeEventListener('abort', stop)
    throw error
  }

  async function * entries (): AsyncGenerator<LogEntry> {
    try {
      // Without follow: every pod's lines in, then all of them in time order.
      if (!follow) await inbox.settle((a, b) => (a.nanos < b.nanos ? -1 : a.nanos > b.nanos ? 1 : 0))
      for (let next = await inbox.take(); next !== undefined; next = await inbox.take()) yield next.entry
      if (failure !== null) throw new BerthError('engine_unavailable', `the log stream broke: ${(failure as Error).message}`, {}, { cause: failure, headers: { 'retry-after': '5' } })
    } finally {
      stop()
      if (untilTimer !== null) clearTimeout(untilTimer)
      options.signal?.removeEventListener('abort', stop)
    }
  }
  return entries()
}
