// An async pull job: a pull a token asked to run in the background, owned by that token, readable
// (and cancellable) until berth forgets it.
import { randomUUID } from 'node:crypto'
import type { BerthError } from '../errors.ts'
import type { PullSnapshot } from './progress.ts'
import { cancelled, type Listener, type PullEntry, type PullState, type SharedPull } from './shared-pull.ts'

/** An async pull: berth's record of a pull a token asked to run in the background. */
export class Job {
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
  markCancelled (at: Date): void {
    this.#cancelled = { seq: this.pull.seq + 1, event: { type: 'error', error: cancelled(this.pull.ref, 'the job was cancelled') } }
    this.#progress = this.pull.snapshot()
    this.finishedAt = at
    for (const notify of [...this.#onCancel]) notify()
    this.#onCancel.clear()
  }
}
