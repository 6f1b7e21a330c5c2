// One shape of watch-fed copy for every backend: what an engine holds, listed once and kept current
// from its stream of changes, so that reads cost the engine nothing. A session opens the stream,
// lists, says when the copy holds the list (from then on it is current) and applies changes until
// the stream ends or breaks. Then the copy is no longer current: it may have missed a change, so
// nothing is read from it until the next session has listed again. Each backend says how it lists
// and follows (docker: its events, then an inspect of what changed; Kubernetes: list and watch;
// Swarm: its events and a poll of the tasks, which it publishes no events of); berth's own writes
// are applied by asking for a refresh of what they changed, which resolves once it is in the copy.
import { setTimeout as sleep } from 'node:timers/promises'
import { BerthError } from '../errors.ts'

export interface CopySession {
  /** Aborted when the copy stops: the session ends, closing its stream. */
  signal: AbortSignal
  /** Says that the copy now holds everything listed and the changes that came meanwhile: it is current. */
  synced: () => void
}

export interface CopySource {
  /** What the copy holds, for messages: "the engine's containers". */
  what: string
  /**
   * One session: lists, calls `synced`, and follows changes until the stream ends (resolves) or
   * breaks (rejects). Either way the copy stops being current and the next session lists again.
   */
  session: (session: CopySession) => Promise<void>
  /** How long to wait before the next session after one that failed: doubles from `first` up to `max`. */
  retryMs?: { first: number, max: number }
}

/** A copy's lifecycle: sessions one after the other, and whether what it holds is current. */
export class WatchedCopy {
  readonly #source: CopySource
  #current = false
  #failure: unknown = null
  #stopped = false
  #running: Promise<void> | null = null
  readonly #stop = new AbortController()
  #generation = 0
  #waiters: Array<() => void> = []
  /** Ends the wait before the next session early: somebody is waiting for the copy. */
  #retryNow: AbortController | null = null

  constructor (source: CopySource) {
    this.#source = source
  }

  get what (): string {
    return this.#source.what
  }

  /** Whether reads may be answered from the copy now. */
  get current (): boolean {
    return this.#current
  }

  /** How many times it has listed: a read that sees the same number before and after saw one unbroken session. */
  get generation (): number {
    return this.#generation
  }

  /** Why the last session ended, when it failed; null while current. */
  get failure (): unknown {
    return this.#failure
  }

  start (): void {
    this.#running ??= this.#run()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#stop.abort()
    this.#wake()
    await this.#running
  }

  /**
   * Resolves once the copy is current, or rejects with why not (engine_unavailable) by the deadline.
   * A copy waiting to try again after a failure tries at once.
   */
  async ready (timeoutMs: number): Promise<void> {
    if (this.#current) return
    this.#retryNow?.abort()
    if (!this.#stopped) {
      const timer = new AbortController()
      await Promise.race([
        new Promise<void>(resolve => { this.#waiters.push(resolve) }),
        sleep(timeoutMs, undefined, { signal: timer.signal }).catch(() => {})
      ])
      timer.abort()
    }
    if (!this.#current) throw this.unavailable()
  }

  /** engine_unavailable: the copy cannot be trusted until it has caught up, and why. */
  unavailable (): BerthError {
    if (this.#failure instanceof BerthError && this.#failure.code === 'engine_unavailable') return this.#failure
    const why = this.#failure instanceof Error ? `: ${this.#failure.message}` : ''
    return new BerthError('engine_unavailable', `berth has lost its watch of ${this.#source.what} and is catching up${why}`, {},
      { ...(this.#failure === null ? {} : { cause: this.#failure }), headers: { 'retry-after': '5' } })
  }

  async #run (): Promise<void> {
    const retry = this.#source.retryMs ?? { first: 250, max: 5000 }
    let delay = retry.first
    while (!this.#stopped) {
      let synced = false
      try {
        await this.#source.session({
          signal: this.#stop.signal,
          synced: () => {
            if (this.#stopped) return
            synced = true
            this.#generation++
            this.#current = true
            this.#failure = null
            this.#wake()
          }
        })
      } catch (error) {
        this.#failure = error
      }
      this.#current = false
      if (this.#stopped) break
      // A session that got as far as listing had a working engine: the next one starts at once.
      if (synced && this.#failure === null) continue
      if (synced) delay = retry.first
      const retryNow = new AbortController()
      this.#retryNow = retryNow
      await sleep(delay, undefined, { signal: AbortSignal.any([this.#stop.signal, retryNow.signal]) }).catch(() => {})
      this.#retryNow = null
      delay = Math.min(delay * 2, retry.max)
    }
    this.#current = false
    this.#wake()
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }
}

/**
 * Brings single objects of a copy up to date by reading them again, each one read at a time: a
 * refresh asked for while its object is being read is done by one more read after that one, so the
 * last read of an object always began after the last change it was asked for, and reads of one
 * object never overtake each other. At most `concurrency` reads run at once; the first to fail is
 * handed to `failed` (the session then ends: the copy may have missed that change).
 */
export class Refresher {
  readonly #read: (key: string) => Promise<void>
  readonly #concurrency: number
  readonly #failed: (error: unknown) => void
  readonly #entries = new Map<string, { running: boolean, again: boolean, waiting: Array<() => void>, next: Array<() => void> }>()
  readonly #queue: string[] = []
  #active = 0
  #settled: Array<() => void> = []
  #closed = false

  constructor (read: (key: string) => Promise<void>, options: { concurrency: number, failed: (error: unknown) => void }) {
    this.#read = read
    this.#concurrency = options.concurrency
    this.#failed = options.failed
  }

  /** Resolves once a read of `key` that began after this call is done (or the refresher is closed). */
  async request (key: string): Promise<void> {
    if (this.#closed) return
    let entry = this.#entries.get(key)
    if (entry === undefined) {
      entry = { running: false, again: false, waiting: [], next: [] }
      this.#entries.set(key, entry)
      this.#queue.push(key)
    }
    const current = entry
    await new Promise<void>(resolve => {
      if (current.running) {
        current.again = true
        current.next.push(resolve)
      } else {
        current.waiting.push(resolve)
      }
      this.#pump()
    })
  }

  /** Whether nothing is being read or waiting to be. */
  get idle (): boolean {
    return this.#entries.size === 0
  }

  /** Resolves once nothing is being read or waiting to be. */
  async settled (): Promise<void> {
    if (this.#entries.size === 0 || this.#closed) return
    await new Promise<void>(resolve => { this.#settled.push(resolve) })
  }

  /** Lets every waiter go and starts nothing more: the session it served has ended. */
  close (): void {
    this.#closed = true
    for (const entry of this.#entries.values()) for (const resolve of [...entry.waiting, ...entry.next]) resolve()
    this.#entries.clear()
    this.#queue.length = 0
    this.#settle()
  }

  #pump (): void {
    while (!this.#closed && this.#active < this.#concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift() as string
      const entry = this.#entries.get(key)
      if (entry === undefined) continue
      entry.running = true
      const waiting = entry.waiting
      entry.waiting = []
      this.#active++
      this.#read(key).then(() => {
        for (const resolve of waiting) resolve()
      }, (error: unknown) => {
        for (const resolve of waiting) resolve()
        if (!this.#closed) this.#failed(error)
      }).finally(() => {
        this.#active--
        entry.running = false
        if (entry.again && !this.#closed) {
          entry.again = false
          entry.waiting = entry.next
          entry.next = []
          this.#queue.push(key)
        } else if (this.#entries.get(key) === entry) {
          for (const resolve of entry.next) resolve()
          this.#entries.delete(key)
        }
        this.#pump()
        if (this.#entries.size === 0) this.#settle()
      })
    }
  }

  #settle (): void {
    const settled = this.#settled
    this.#settled = []
    for (const resolve of settled) resolve()
  }
}

/** `key` or `key=value` label filters, all of which must hold (as the engine's label filter). */
export function matchesLabels (labels: Record<string, string>, filters: readonly string[]): boolean {
  return filters.every(filter => {
    const eq = filter.indexOf('=')
    if (eq === -1) return Object.hasOwn(labels, filter)
    return labels[filter.slice(0, eq)] === filter.slice(eq + 1)
  })
}
