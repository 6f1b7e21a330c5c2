// berth's TypeScript client: every operation of openapi/openapi.yaml through openapi-fetch, typed by
// openapi-typescript, plus what generators do badly: progress and log/event streams as async
// iterators that reconnect and resume, and problem+json answers as typed exceptions.
import { setTimeout as sleep } from 'node:timers/promises'
import createClient, { type Client } from 'openapi-fetch'
import type { components, operations, paths } from './generated/api.ts'
import { BerthProblem, BerthResponseError, problemOf, type Problem } from './problem.ts'
import { ndjson, sse } from './streams.ts'

export type { components, operations, paths } from './generated/api.ts'
export { BerthProblem, BerthResponseError, type Problem, type ProblemCode, type ProblemOf } from './problem.ts'

export type Schemas = components['schemas']
export type PullEvent = Schemas['PullEvent']
export type BuildEvent = Schemas['BuildEvent']
export type LogEntry = Schemas['LogEntry']
export type BerthEvent = Schemas['Event']
export type BuildQuery = NonNullable<operations['buildImage']['parameters']['query']>
export type LogsQuery = NonNullable<operations['containerLogs']['parameters']['query']>

// Every optional option also takes undefined, so that `token: process.env.BERTH_TOKEN` type-checks
// under exactOptionalPropertyTypes: undefined means the same as leaving it out.
export interface BerthClientOptions {
  /** berth's address, such as http://127.0.0.1:8080 */
  url: string
  /** The secret part of a berth token (BERTH_TOKENS' `name:scope:secret`); none (or "") sends no Authorization. */
  token?: string | undefined
  /** Another fetch (a test's, a proxy's). */
  fetch?: ((input: Request) => Promise<Response>) | undefined
}

export interface StreamOptions {
  /** Aborting it ends the iteration with an AbortError and closes the connection. */
  signal?: AbortSignal | undefined
}

export interface ReconnectOptions extends StreamOptions {
  /** Reconnect when the connection drops or berth answers 502/503/504 (true). */
  reconnect?: boolean | undefined
  /** The first wait before reconnecting, doubled on each failure in a row up to 30 s (1000); an SSE `retry:` replaces it. */
  retryMs?: number | undefined
}

/** One message of an SSE stream: the event and the id that resumes after it (Last-Event-ID). */
export interface Message<T> {
  id: string | undefined
  event: T
}

const NDJSON = 'application/x-ndjson'
const SSE = 'text/event-stream'
const MAX_RETRY_MS = 30_000

type Answer<D> = { data: D, error?: never, response: Response } | { data?: never, error: unknown, response: Response }
/** The data of an openapi-fetch answer that succeeded. */
type Success<A> = Extract<A, { error?: never }> extends { data: infer D } ? D : never

/**
 * The data of a successful answer, or its problem thrown as a BerthProblem:
 * `const container = await ok(berth.POST('/v1/containers', { body }))`.
 */
export async function ok<A extends { data?: unknown, error?: unknown, response: Response }> (call: Promise<A>): Promise<Success<A>> {
  const { data, error, response } = await call
  if (!response.ok) throw problemOf(error, response)
  return data as Success<A>
}

/** The body of an answer without one (openapi-fetch gives none for Content-Length: 0): no lines. */
function empty (): ReadableStream<Uint8Array> {
  return new ReadableStream({ start (controller) { controller.close() } })
}

/** Whether an answer says to come back later rather than never. */
function transient (status: number): boolean {
  return status === 502 || status === 503 || status === 504
}

/** Waits before the next attempt: Retry-After when berth sent one, else the doubling delay. */
async function backOff (attempt: number, retryMs: number, signal: AbortSignal | undefined, response?: Response): Promise<void> {
  const after = Number(response?.headers.get('retry-after'))
  const ms = after > 0 ? after * 1000 : Math.min(retryMs * 2 ** attempt, MAX_RETRY_MS)
  await sleep(ms, undefined, signal ? { signal } : {})
}

export function createBerthClient (options: BerthClientOptions) {
  const api: Client<paths> = createClient<paths>({
    baseUrl: options.url.replace(/\/+$/, ''),
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    ...(options.fetch ? { fetch: options.fetch } : {})
  })

  /** A pull as it happens (`docker pull`): per-layer progress, then `pulled`; a failure is thrown as a BerthProblem. */
  async function * pull (body: Schemas['PullRequest'], { signal }: StreamOptions = {}): AsyncGenerator<PullEvent> {
    const { data, error, response } = await api.POST('/v1/images/pull', { body, headers: { accept: NDJSON }, parseAs: 'stream', signal })
    if (!response.ok) throw problemOf(error, response)
    yield * finalEvents(ndjson<PullEvent>(data ?? empty()), 'pulled', 'the pull')
  }

  /** Starts a pull as a job (`?async=true`) and answers it at once; jobEvents(job.id) follows it. */
  async function startPull (body: Schemas['PullRequest'], { signal }: StreamOptions = {}): Promise<Schemas['PullJob']> {
    const job = await ok(api.POST('/v1/images/pull', { body, params: { query: { async: true } }, signal }))
    // The answer's type is every media type of the 200 and the 202 at once; async=true answers the 202.
    return job as Schemas['PullJob']
  }

  /**
   * A build as it happens (`docker build`): the context is a tar (or gzip'd tar) archive; steps, their
   * output and layers, then `built`; a failure is thrown as a BerthProblem.
   */
  async function * build (context: Uint8Array | Blob, query: BuildQuery, { signal, gzip = false }: StreamOptions & { gzip?: boolean | undefined } = {}): AsyncGenerator<BuildEvent> {
    const { data, error, response } = await api.POST('/v1/images/build', {
      params: { query },
      // The document types a binary body as a string; fetch takes the bytes as they are.
      body: context as unknown as string,
      bodySerializer: (body: unknown) => body,
      headers: { accept: NDJSON, 'content-type': gzip ? 'application/gzip' : 'application/x-tar' },
      parseAs: 'stream',
      signal
    })
    if (!response.ok) throw problemOf(error, response)
    yield * finalEvents(ndjson<BuildEvent>(data ?? empty()), 'built', 'the build')
  }

  /**
   * A container's output (`docker logs [-f]`). Following, a dropped connection is picked up again
   * from the last line's time, without repeating a line; it ends when the container stops.
   */
  async function * logs (idOrName: string, query: LogsQuery = {}, { signal, reconnect = true, retryMs = 1000 }: ReconnectOptions = {}): AsyncGenerator<LogEntry> {
    const follow = query.follow === true
    // Times are asked for always: they are where a reconnect resumes.
    let resume: LogsQuery = { ...query, timestamps: true }
    let lastTime: string | undefined
    let seenAtLastTime = 0
    let attempt = 0
    while (true) {
      let body: ReadableStream<Uint8Array>
      try {
        const { data, error, response } = await api.GET('/v1/containers/{idOrName}/logs', {
          params: { path: { idOrName }, query: resume }, headers: { accept: NDJSON }, parseAs: 'stream', signal
        })
        if (!response.ok) {
          if (!(follow && reconnect && transient(response.status))) throw problemOf(error, response)
          await backOff(attempt++, retryMs, signal, response)
          continue
        }
        body = data ?? empty()
      } catch (error) {
        if (!follow || !reconnect || signal?.aborted || error instanceof BerthProblem || error instanceof BerthResponseError) throw error
        await backOff(attempt++, retryMs, signal)
        continue
      }
      attempt = 0
      // After a reconnect `since` is the last line's time, inclusive: skip the lines of that time already given.
      let skip = seenAtLastTime
      try {
        for await (const entry of ndjson<LogEntry>(body)) {
          if (skip > 0 && entry.time === lastTime) { skip--; continue }
          skip = 0
          if (entry.time === lastTime) seenAtLastTime++
          else { lastTime = entry.time; seenAtLastTime = 1 }
          if (query.timestamps) yield entry
          else { const { time: _time, ...line } = entry; yield line }
        }
      } catch (error) {
        if (!follow || !reconnect || signal?.aborted) throw error
        await backOff(attempt++, retryMs, signal)
      }
      if (!follow || !reconnect) return
      // berth ends a followed log when the container stops (or is removed); any other end is a
      // connection to take up again. berth itself gone is found out by the next attempt.
      try {
        const { data: container, response } = await api.GET('/v1/containers/{idOrName}', { params: { path: { idOrName } }, signal })
        if (response.status === 404 || (container && container.state !== 'running' && container.state !== 'restarting')) return
      } catch (error) {
        if (signal?.aborted) throw error
      }
      if (lastTime) resume = { ...query, timestamps: true, tail: 'all', since: lastTime }
    }
  }

  /**
   * SSE from `path`, resumed with Last-Event-ID after a dropped connection (or from `lastEventId`);
   * `until` says which event is the last one.
   */
  async function * serverSent<T> (request: (lastEventId: string | undefined) => Promise<Answer<ReadableStream<Uint8Array> | null>>, lastEventId: string | undefined, { signal, reconnect = true, retryMs = 1000 }: ReconnectOptions, until: (event: T) => boolean = () => false): AsyncGenerator<Message<T>> {
    let attempt = 0
    while (true) {
      let body: ReadableStream<Uint8Array>
      try {
        const { data, error, response } = await request(lastEventId)
        if (!response.ok) {
          if (!(reconnect && transient(response.status))) throw problemOf(error, response)
          await backOff(attempt++, retryMs, signal, response)
          continue
        }
        body = data ?? empty()
      } catch (error) {
        if (!reconnect || signal?.aborted || error instanceof BerthProblem || error instanceof BerthResponseError) throw error
        await backOff(attempt++, retryMs, signal)
        continue
      }
      attempt = 0
      try {
        for await (const message of sse(body, lastEventId)) {
          if (message.retry !== undefined) retryMs = message.retry
          lastEventId = message.id
          const event = JSON.parse(message.data) as T
          yield { id: message.id, event }
          if (until(event)) return
        }
      } catch (error) {
        if (!reconnect || signal?.aborted) throw error
      }
      if (!reconnect) return
      await backOff(attempt++, retryMs, signal)
    }
  }

  /** Container and image changes as they happen (`docker events`), from `lastEventId` on when given. */
  function events (options: ReconnectOptions & { lastEventId?: string | undefined } = {}): AsyncGenerator<Message<BerthEvent>> {
    return serverSent<BerthEvent>(async lastEventId => await api.GET('/v1/events', {
      params: { header: lastEventId ? { 'last-event-id': lastEventId } : {} }, headers: { accept: SSE }, parseAs: 'stream', signal: options.signal
    }), options.lastEventId, options)
  }

  /** A pull job's events (POST /v1/images/pull?async=true), replayed then live, until `pulled` (or a thrown problem). */
  async function * jobEvents (id: string, options: ReconnectOptions & { lastEventId?: string | undefined } = {}): AsyncGenerator<PullEvent> {
    const messages = serverSent<PullEvent>(async lastEventId => await api.GET('/v1/jobs/{id}/events', {
      params: { path: { id }, header: lastEventId ? { 'last-event-id': lastEventId } : {} }, headers: { accept: SSE }, parseAs: 'stream', signal: options.signal
    }), options.lastEventId, options, event => event.type === 'pulled' || event.type === 'error')
    yield * finalEvents((async function * () { for await (const { event } of messages) yield event })(), 'pulled', 'the pull job')
  }

  return Object.assign(api, { pull, startPull, build, logs, events, jobEvents })
}

export type BerthClient = ReturnType<typeof createBerthClient>

/** Passes events on until the final one: `done` ends it, `error` is thrown; a stream that stops before either is an error too. */
async function * finalEvents<T extends { type: string }> (events: AsyncIterable<T>, done: T['type'], what: string): AsyncGenerator<T> {
  for await (const event of events) {
    if (event.type === 'error') throw new BerthProblem((event as T & { problem: Problem }).problem)
    yield event
    if (event.type === done) return
  }
  throw new Error(`${what} stream ended before its outcome`)
}
