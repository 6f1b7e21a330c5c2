// What one or more engine connections deliver, for one reader to take in order: items are pushed as
// they arrive, the reader waits when there are none, and closing ends the reading once the rest has
// been taken. The event and log streams of the cluster backends read through it.
export class Inbox<T> {
  readonly #items: T[] = []
  #closed = false
  #wake: (() => void) | null = null

  push (item: T): void {
    this.#items.push(item)
    this.#notify()
  }

  /** No more items will come; what is held can still be taken. */
  close (): void {
    this.#closed = true
    this.#notify()
  }

  get closed (): boolean {
    return this.#closed
  }

  /** The next item, waiting for one; undefined once it is closed and empty. */
  async take (): Promise<T | undefined> {
    for (;;) {
      const item = this.#items.shift()
      if (item !== undefined) return item
      if (this.#closed) return undefined
      await new Promise<void>(resolve => { this.#wake = resolve })
    }
  }

  /** Takes everything it holds now, without waiting. */
  drain (): T[] {
    return this.#items.splice(0)
  }

  /** Waits until it is closed, then puts what it holds in this order. */
  async settle (compare: (a: T, b: T) => number): Promise<void> {
    for (;;) {
      if (this.#closed) break
      await new Promise<void>(resolve => { this.#wake = resolve })
    }
    this.#items.sort(compare)
  }

  #notify (): void {
    this.#wake?.()
    this.#wake = null
  }
}
