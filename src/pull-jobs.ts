// Pulls as berth's own long-running work: identical pulls under way share one engine pull, every
// pull keeps a replayable record of its events, and async pull jobs outlive the request that started
// them, owned by its token, for a bounded time.
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import type { RegistryCredentials } from './config.ts'
import type { Engine, LayerProgress, PulledImage, PullProgress } from './engine/types.ts'
import { BerthError, problemOf } from './errors.ts'
import type { ImageRef } from './image-ref.ts'
import type { Limiter } from './limiter.ts'
import type { Requester } from './access/ownership.ts'
import { PullTracker, type PullSnapshot } from './pull-progress.ts'
import type { PullJob as PullJobView } from './schemas/jobs.ts'

export type PullEvent =
  | { type: 'queued', image: string }
  | { type: 'started', image: string }
  | { type: 'progress', layer: LayerProgress, fraction: number, layers: { total: number, done: number } }
  | { type: 'pulled', image: PulledImage }
  | { type: 'error', error: BerthError }

export interface PullEntry {
  /** Position in the pull's history, from 1: the SSE event id, and what Last-Event-ID resumes after. */
  seq: number
  event: PullEvent
}

export type PullState = 'queued' | 'pulling' | 'succeeded' | 'failed' | 'cancelled'

export interface PullSpec {
  ref: ImageRef
  platform?: string
  auth?: RegistryCredentials
}

type Listener = (entry: PullEntry) => void

export function isFinal (event: PullEvent): boolean {
  return event.type === 'pulled' || event.type === 'error'
}

/** A pull event as a client receives it: an error becomes the same problem body the error handler writes. */
export function wirePullEvent (event: PullEvent, requestId: string, instance: string): Record<string, unknown> {
  if (event.type === 'error') return { type: 'error', problem: problemOf(event.error, requestId, instance) }
  return event
}

function cancelled (ref: ImageRef, why: string): BerthError {
  return new BerthError('pull_cancelled', `the pull of ${ref.reference} was cancelled: ${why}`, { image: ref.reference })
}

/**
 * One engine pull and everyone waiting on it. It runs while anybody holds it — a client following it,
 * or an async job — and is cancelled at the engine when the last one lets go before it finished.
 */
export class SharedPull {
  readonly ref: ImageRef
  readonly platform: string | null
  readonly tracker = new PullTracker()
  state: PullState = 'queued'
  result: PulledImage | null = null
  error: BerthError | null = null
  /** Resolves when the engine call is over (or never began): nothing of this pull runs at the engine any more. */
  readonly settled: Promise<void>
  readonly #abort = new AbortController()
  #settle: () => void = () => {}
  #holders = 0
  #seq = 0
  // The history; a progress report that only updates a layer within its phase replaces the one
  // before it, so a pull of minutes replays in a few lines per layer.
  #log: Array<PullEntry | undefined> = []
  #holes = 0
  readonly #latest = new Map<string, number>()
  readonly #listeners = new Set<Listener>()

  constructor (ref: ImageRef, platform: string | null) {
    this.ref = ref
    this.platform = platform
    this.settled = new Promise(resolve => { this.#settle = resolve })
  }

  get signal (): AbortSignal {
    return this.#abort.signal
  }

  get finished (): boolean {
    return this.state === 'succeeded' || this.state === 'failed' || this.state === 'cancelled'
  }

  get seq (): number {
    return this.#seq
  }

  snapshot (): PullSnapshot {
    return this.tracker.snapshot()
  }

  hold (): void {
    this.#holders++
  }

  /** Lets go of the pull; answers true when that was the last hold and the pull is now being cancelled. */
  release (why: string): boolean {
    this.#holders = Math.max(0, this.#holders - 1)
    if (this.#holders > 0 || this.finished) return false
    this.cancel(why)
    return true
  }

  /** Stops the engine pull; a pull still waiting for a slot ends here and then, without reaching the engine. */
  cancel (why: string): void {
    if (this.finished || this.#abort.signal.aborted) return
    this.#abort.abort(cancelled(this.ref, why))
    if (this.state === 'queued') {
      this.fail(this.#abort.signal.reason as BerthError)
      this.#settle()
    }
  }

  /** Resolves with the first event: whether the engine took the pull, or why it did not. */
  async first (): Promise<PullEvent> {
    const first = this.#log.find(entry => entry !== undefined)
    if (first !== undefined) return first.event
    return await new Promise(resolve => {
      const listener: Listener = entry => {
        this.#listeners.delete(listener)
        resolve(entry.event)
      }
      this.#listeners.add(listener)
    })
  }

  /** The pulled image, or the error the pull ended with. */
  async outcome (): Promise<PulledImage> {
    // The final event is the last one delivered: no need to unsubscribe.
    const last = await new Promise<PullEvent>(resolve => {
      this.subscribe(0, Infinity, entry => { if (isFinal(entry.event)) resolve(entry.event) })
    })
    if (last.type === 'error') throw last.error
    return (last as { image: PulledImage }).image
  }

  /**
   * Replays the history after `after` (up to and including `upTo`), then follows while `upTo` is not
   * reached. Returns the unsubscribe function; nothing is delivered after it is called.
   */
  subscribe (after: number, upTo: number, listener: Listener): () => void {
    for (const entry of this.#log) {
      if (entry !== undefined && entry.seq > after && entry.seq <= upTo) listener(entry)
    }
    if (this.finished || this.#seq >= upTo) return () => {}
    const bounded: Listener = entry => { if (entry.seq > after && entry.seq <= upTo) listener(entry) }
    this.#listeners.add(bounded)
    return () => { this.#listeners.delete(bounded) }
  }

  // The methods below are for PullJobs, which runs the engine call.

  queued (): void {
    this.#record({ type: 'queued', image: this.ref.reference })
  }

  progress (report: PullProgress): void {
    if (this.finished) return
    if (report.kind === 'started') {
      this.#record({ type: 'started', image: this.ref.reference })
      return
    }
    const layer = this.tracker.update(report.layer)
    this.#record({ type: 'progress', layer, fraction: this.tracker.fraction, layers: this.tracker.counts })
  }

  succeed (image: PulledImage): void {
    if (this.finished) return
    this.tracker.finish()
    this.state = 'succeeded'
    this.result = image
    this.#record({ type: 'pulled', image })
  }

  fail (error: BerthError): void {
    if (this.finished) return
    this.state = error.code === 'pull_cancelled' ? 'cancelled' : 'failed'
    this.error = error
    this.#record({ type: 'error', error })
  }

  settle (): void {
    this.#settle()
  }

  #record (event: PullEvent): void {
    const entry = { seq: ++this.#seq, event }
    if (event.type === 'progress') {
      const previous = this.#latest.get(event.layer.id)
      const before = previous === undefined ? undefined : this.#log[previous]?.event
      if (previous !== undefined && before?.type === 'progress' && before.layer.phase === event.layer.phase) {
        this.#log[previous] = undefined
        this.#holes++
      }
      this.#latest.set(event.layer.id, this.#log.length)
    }
    this.#log.push(entry)
    if (this.#holes > 64 && this.#holes * 2 > this.#log.length) this.#compact()
    for (const listener of [...this.#listeners]) listener(entry)
    if (isFinal(event)) this.#listeners.clear()
  }

  #compact (): void {
    this.#log = this.#log.filter(entry => entry !== undefined)
    this.#holes = 0
    this.#latest.clear()
    this.#log.forEach((entry, index) => {
      if (entry?.event.type === 'progress') this.#latest.set(entry.event.layer.id, index)
    })
  }
}

/** An async pull: berth's record of a pull a token asked to run in the background. */
export class PullJob {
  readonly id = randomUUID()
  readonly owner: string
  readonly pull: SharedPull
  readonly createdAt = new Date()
  finishedAt: Date | null = null
  // A job cancelled while its pull goes on for others ends here, with an event of its own.
  #cancelled: PullEntry | null = null
  #progress: PullSnapshot | null = null
  readonly #onCancel = new Set<() => void>()

  constructor (owner: string, pull: SharedPull) {
    this.owner = owner
    this.pull = pull
  }

  get state (): PullState {
    return this.#cancelled === null ? this.pull.state : 'cancelled'
  }

  get error (): BerthError | null {
    return this.#cancelled === null ? this.pull.error : (this.#cancelled.event as { error: BerthError }).error
  }

  get finished (): boolean {
    return this.#cancelled !== null || this.pull.finished
  }

  get progress (): PullSnapshot {
    return this.#progress ?? this.pull.snapshot()
  }

  subscribe (after: number, listener: Listener): () => void {
    if (this.#cancelled !== null) {
      const cut = this.#cancelled
      this.pull.subscribe(after, cut.seq - 1, listener)
      if (cut.seq > after) listener(cut)
      return () => {}
    }
    const unsubscribe = this.pull.subscribe(after, Infinity, listener)
    const onCancel = (): void => {
      unsubscribe()
      const cut = this.#cancelled as PullEntry
      if (cut.seq > after) listener(cut)
    }
    this.#onCancel.add(onCancel)
    return () => {
      unsubscribe()
      this.#onCancel.delete(onCancel)
    }
  }

  /** Marks the job cancelled; the caller lets go of the shared pull. */
  markCancelled (): void {
    this.#cancelled = { seq: this.pull.seq + 1, event: { type: 'error', error: cancelled(this.pull.ref, 'the job was cancelled') } }
    this.#progress = this.pull.snapshot()
    this.finishedAt = new Date()
    for (const notify of [...this.#onCancel]) notify()
    this.#onCancel.clear()
  }
}

export interface PullJobsOptions {
  /** How long a finished job stays readable. */
  retentionMs: number
  /** How many jobs are kept at most, finished or not; the oldest finished make room first. */
  maxJobs: number
}

export interface Follower {
  pull: SharedPull
  /** Lets go of the pull (idempotent); the last one to let go of an unfinished pull cancels it. */
  release: () => boolean
}

export class PullJobs {
  readonly #engine: Engine
  readonly #limiter: Limiter
  readonly #options: PullJobsOptions
  readonly #running = new Map<string, SharedPull>()
  readonly #jobs = new Map<string, PullJob>()
  // Credentials only ever appear in dedupe keys as a keyed hash, and the key dies with the process.
  readonly #secret = randomBytes(32)

  constructor (engine: Engine, limiter: Limiter, options: PullJobsOptions) {
    this.#engine = engine
    this.#limiter = limiter
    this.#options = options
  }

  /** Joins the identical pull under way, or starts one; the caller holds it until it calls release(). */
  follow (spec: PullSpec): Follower {
    const pull = this.#shared(spec)
    pull.hold()
    let held = true
    return {
      pull,
      release: () => {
        if (!held) return false
        held = false
        return pull.release('no client follows it any more')
      }
    }
  }

  /** Starts an async job: it holds its pull until the pull ends or the job is cancelled. */
  start (spec: PullSpec, owner: string): PullJob {
    this.#makeRoom()
    const pull = this.#shared(spec)
    pull.hold()
    const job = new PullJob(owner, pull)
    this.#jobs.set(job.id, job)
    pull.subscribe(0, Infinity, entry => { if (isFinal(entry.event)) job.finishedAt ??= new Date() })
    return job
  }

  /** The job, when the requester may see it; anybody else's job is as unknown as one that never was. */
  get (id: string, requester: Requester): PullJob {
    this.#prune()
    const job = this.#jobs.get(id)
    if (job === undefined || (!requester.admin && job.owner !== requester.name)) {
      throw new BerthError('not_found', `job ${id} was not found`)
    }
    return job
  }

  /**
   * Cancels the job. When no one else shares its pull, the engine pull is stopped too, and this
   * waits (within `waitMs`) until the engine call is over, so nothing of it is left running.
   */
  async cancel (job: PullJob, waitMs: number): Promise<void> {
    if (job.finished) return
    job.markCancelled()
    if (!job.pull.release('its job was cancelled')) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([job.pull.settled, new Promise(resolve => { timer = setTimeout(resolve, waitMs) })])
    clearTimeout(timer)
  }

  /** Stops every pull under way (berth is shutting down). */
  close (): void {
    for (const pull of this.#running.values()) pull.cancel('berth is shutting down')
  }

  #shared (spec: PullSpec): SharedPull {
    const key = this.#key(spec)
    const running = this.#running.get(key)
    if (running !== undefined && !running.finished) return running
    if (this.#limiter.full) {
      throw new BerthError('rate_limited', 'too many pulls are under way; try again shortly', {}, { headers: { 'retry-after': '2' } })
    }
    const pull = new SharedPull(spec.ref, spec.platform ?? null)
    this.#running.set(key, pull)
    if (this.#limiter.busy) pull.queued()
    this.#limiter.run(async () => {
      if (pull.signal.aborted) return
      pull.state = 'pulling'
      try {
        pull.succeed(await this.#engine.pullImage(spec.ref, {
          ...(spec.platform === undefined ? {} : { platform: spec.platform }),
          ...(spec.auth === undefined ? {} : { auth: spec.auth }),
          signal: pull.signal,
          onProgress: report => pull.progress(report)
        }))
      } catch (error) {
        if (pull.signal.aborted) pull.fail(pull.signal.reason as BerthError)
        else if (error instanceof BerthError) pull.fail(error)
        else pull.fail(new BerthError('internal_error', 'the pull failed unexpectedly', {}, { cause: error }))
      }
    }).catch((error: unknown) => {
      pull.fail(error instanceof BerthError ? error : new BerthError('internal_error', 'the pull failed unexpectedly', {}, { cause: error }))
    }).finally(() => {
      if (this.#running.get(key) === pull) this.#running.delete(key)
      pull.settle()
    })
    return pull
  }

  // Same repository, tag, digest, platform and credentials: the same pull. Different credentials
  // never share one, even for the same image: one client's access must not serve another.
  #key (spec: PullSpec): string {
    const credentials = spec.auth === undefined
      ? 'server'
      : createHmac('sha256', this.#secret).update(JSON.stringify([spec.auth.username ?? '', spec.auth.password ?? '', spec.auth.identitytoken ?? ''])).digest('hex')
    return JSON.stringify([spec.ref.name, spec.ref.tag ?? null, spec.ref.digest ?? null, spec.platform ?? null, credentials])
  }

  #prune (): void {
    const now = Date.now()
    for (const [id, job] of this.#jobs) {
      if (job.finishedAt !== null && now - job.finishedAt.getTime() >= this.#options.retentionMs) this.#jobs.delete(id)
    }
  }

  #makeRoom (): void {
    this.#prune()
    if (this.#jobs.size < this.#options.maxJobs) return
    for (const [id, job] of this.#jobs) {
      if (job.finishedAt !== null) {
        this.#jobs.delete(id)
        return
      }
    }
    throw new BerthError('rate_limited', `${this.#options.maxJobs} pull jobs are under way; wait for one to finish`, {}, { headers: { 'retry-after': '10' } })
  }
}

/** The job as GET /v1/jobs/{id} shows it. */
export function describeJob (job: PullJob, requestId: string): PullJobView {
  const self = `/v1/jobs/${job.id}`
  const error = job.error
  return {
    id: job.id,
    kind: 'pull',
    state: job.state,
    image: job.pull.ref.reference,
    platform: job.pull.platform,
    owner: job.owner,
    createdAt: job.createdAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
    progress: job.progress,
    result: job.state === 'succeeded' ? job.pull.result : null,
    error: error === null ? null : problemOf(error, requestId, self),
    links: { self, events: `${self}/events` }
  }
}
