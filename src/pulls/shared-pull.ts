// One engine pull and everyone waiting on it: identical pulls under way share it, and it keeps a
// replayable record of its events, so a client can follow it from any point.
import type { RegistryCredentials } from '../config.ts'
import type { ImageRef } from '../engine/image-ref.ts'
import type { LayerProgress, NodePull, PulledImage, PullProgress } from '../engine/types.ts'
import { BerthError } from '../errors.ts'
import { PullTracker, layerKey, type PullSnapshot } from './progress.ts'

export type PullEvent =
  | { type: 'queued', image: string }
  | { type: 'started', image: string }
  | { type: 'progress', layer: LayerProgress, fraction: number, layers: { total: number, done: number } }
  | ({ type: 'node' } & NodePull)
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

export type Listener = (entry: PullEntry) => void

export function isFinal (event: PullEvent): boolean {
  return event.type === 'pulled' || event.type === 'error'
}

export function cancelled (ref: ImageRef, why: string): BerthError {
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
    if (report.kind === 'node') {
      this.#record({ type: 'node', ...report.outcome })
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
      const previous = this.#latest.get(layerKey(event.layer))
      const before = previous === undefined ? undefined : this.#log[previous]?.event
      if (previous !== undefined && before?.type === 'progress' && before.layer.phase === event.layer.phase) {
        this.#log[previous] = undefined
        this.#holes++
      }
      this.#latest.set(layerKey(event.layer), this.#log.length)
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
      if (entry?.event.type === 'progress') this.#latest.set(layerKey(entry.event.layer), index)
    })
  }
}
