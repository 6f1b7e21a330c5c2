// Caps how many pulls or runs go to the engine at once; the rest wait in a bounded queue.
import { BerthError } from '../errors.ts'

export class Limiter {
  readonly #max: number
  readonly #maxQueue: number
  readonly #what: string
  #active = 0
  readonly #queue: Array<() => void> = []

  constructor (what: string, max: number, maxQueue = max * 16) {
    this.#what = what
    this.#max = max
    this.#maxQueue = maxQueue
  }

  get active (): number {
    return this.#active
  }

  /** Tasks waiting for a slot. */
  get queued (): number {
    return this.#queue.length
  }

  /** Every slot is taken: a task started now would wait. */
  get busy (): boolean {
    return this.#active >= this.#max
  }

  /** The queue is full as well: a task started now would be refused with rate_limited. */
  get full (): boolean {
    return this.busy && this.#queue.length >= this.#maxQueue
  }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) {
      if (this.#queue.length >= this.#maxQueue) {
        throw new BerthError('rate_limited', `too many ${this.#what} are under way; try again shortly`, {}, { headers: { 'retry-after': '2' } })
      }
      await new Promise<void>(resolve => this.#queue.push(resolve))
    } else {
      this.#active++
    }
    try {
      return await task()
    } finally {
      // Hand the slot straight to the next waiter, so the count never dips and lets a newcomer overtake.
      const next = this.#queue.shift()
      if (next) next(); else this.#active--
    }
  }
}
