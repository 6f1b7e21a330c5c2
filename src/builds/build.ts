// One build as berth runs it: its state, a replayable record of its events (so a client can follow
// it from any point, or after it ended), and the cancel that stops it at the engine.
import { randomUUID } from 'node:crypto'
import type { BuildProgress, BuiltImage } from '../engine/types.ts'
import { BerthError } from '../errors.ts'

export type BuildEvent =
  | { type: 'queued' }
  | { type: 'started' }
  | { type: 'step', step: number, total: number, instruction: string }
  | { type: 'output', step: number, stream: 'stdout' | 'stderr', line: string }
  | { type: 'layer', step: number, id: string, cached: boolean }
  | { type: 'status', message: string }
  | { type: 'built', image: BuiltImage }
  | { type: 'error', error: BerthError }

export interface BuildEntry {
  /** Position in the build's history, from 1: the SSE event id, and what Last-Event-ID resumes after. */
  seq: number
  event: BuildEvent
}

export type BuildState = 'queued' | 'building' | 'succeeded' | 'failed' | 'cancelled'
export type Listener = (entry: BuildEntry) => void

/** What the build was asked for, as its job shows it. */
export interface BuildSummary {
  tags: string[]
  dockerfile: string
  target: string | null
  platform: string | null
  contextSize: number
}

/** A replay keeps at most this many output lines (the newest); steps, layers and the outcome are always kept. */
export const MAX_REPLAYED_OUTPUT = 1000

export function isFinal (event: BuildEvent): boolean {
  return event.type === 'built' || event.type === 'error'
}

export function cancelled (why: string): BerthError {
  return new BerthError('build_cancelled', `the build was cancelled: ${why}`)
}

export class Build {
  readonly id = randomUUID()
  readonly owner: string
  readonly summary: BuildSummary
  readonly createdAt: Date
  finishedAt: Date | null = null
  state: BuildState = 'queued'
  result: BuiltImage | null = null
  error: BerthError | null = null
  /** The step under way (or the last one reached). */
  step: { number: number, total: number, instruction: string } | null = null
  /** Resolves when nothing of the build runs at the engine any more, and its context is removed. */
  readonly settled: Promise<void>
  readonly #abort = new AbortController()
  #settle: () => void = () => {}
  #seq = 0
  #log: BuildEntry[] = []
  #outputs = 0
  readonly #listeners = new Set<Listener>()

  constructor (owner: string, summary: BuildSummary, createdAt: Date) {
    this.owner = owner
    this.summary = summary
    this.createdAt = createdAt
    this.settled = new Promise(resolve => { this.#settle = resolve })
  }

  get signal (): AbortSignal {
    return this.#abort.signal
  }

  get finished (): boolean {
    return this.state === 'succeeded' || this.state === 'failed' || this.state === 'cancelled'
  }

  /** Stops the build: at the engine when it runs there, at once when it still waits for a slot. */
  cancel (error: BerthError): void {
    if (this.finished || this.#abort.signal.aborted) return
    this.#abort.abort(error)
    if (this.state === 'queued') this.fail(error)
  }

  /** The built image, or the error the build ended with. */
  async outcome (): Promise<BuiltImage> {
    const last = await new Promise<BuildEvent>(resolve => {
      this.subscribe(0, entry => { if (isFinal(entry.event)) resolve(entry.event) })
    })
    if (last.type === 'error') throw last.error
    return (last as { image: BuiltImage }).image
  }

  /** Replays the history after `after`, then follows until the build ends. Returns the unsubscribe function. */
  subscribe (after: number, listener: Listener): () => void {
    for (const entry of this.#log) if (entry.seq > after) listener(entry)
    if (this.finished) return () => {}
    const bounded: Listener = entry => { if (entry.seq > after) listener(entry) }
    this.#listeners.add(bounded)
    return () => { this.#listeners.delete(bounded) }
  }

  // The methods below are for Builds, which runs the engine call.

  queued (): void {
    this.#record({ type: 'queued' })
  }

  started (): void {
    this.state = 'building'
    this.#record({ type: 'started' })
  }

  progress (report: BuildProgress): void {
    if (this.finished) return
    switch (report.kind) {
      case 'step':
        this.step = { number: report.number, total: report.total, instruction: report.instruction }
        this.#record({ type: 'step', step: report.number, total: report.total, instruction: report.instruction })
        return
      case 'output':
        this.#record({ type: 'output', step: report.step, stream: report.stream, line: report.line })
        return
      case 'layer':
        this.#record({ type: 'layer', step: report.step, id: report.id, cached: report.cached })
        return
      case 'status':
        this.#record({ type: 'status', message: report.message })
    }
  }

  succeed (image: BuiltImage, at: Date): void {
    if (this.finished) return
    this.state = 'succeeded'
    this.result = image
    this.finishedAt = at
    this.#record({ type: 'built', image })
  }

  fail (error: BerthError, at: Date = new Date()): void {
    if (this.finished) return
    this.state = error.code === 'build_cancelled' ? 'cancelled' : 'failed'
    this.error = error
    this.finishedAt = at
    this.#record({ type: 'error', error })
  }

  settle (): void {
    this.#settle()
  }

  #record (event: BuildEvent): void {
    const entry = { seq: ++this.#seq, event }
    this.#log.push(entry)
    if (event.type === 'output' && ++this.#outputs > MAX_REPLAYED_OUTPUT + 100) {
      // Drop the oldest output lines in one pass, a hundred at a time.
      let drop = this.#outputs - MAX_REPLAYED_OUTPUT
      this.#log = this.#log.filter(kept => kept.event.type !== 'output' || drop-- <= 0)
      this.#outputs = MAX_REPLAYED_OUTPUT
    }
    for (const listener of [...this.#listeners]) listener(entry)
    if (isFinal(event)) this.#listeners.clear()
  }
}
