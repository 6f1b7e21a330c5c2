// What berth does to containers over time by itself: it removes an exited autoRemove container
// nobody waited for once its grace period is over. Everything it needs to know is in the engine's
// labels and states, never in memory, so a berth that restarts (or another replica of it) carries on
// where the last one stopped.
import type { FastifyBaseLogger } from 'fastify'
import { LABEL_AUTO_REMOVE, type Ownership } from '../access/ownership.ts'
import type { Engine } from '../engine/types.ts'
import { BerthError } from '../errors.ts'

export interface SweeperOptions {
  /** How often to look; 0 never looks by itself (sweep() still works). */
  intervalMs: number
  autoRemoveGraceMs: number
  log: FastifyBaseLogger
  /** The clock, in ms. */
  now?: () => number
}

/** What one sweep did, by container id. */
export interface SweepReport {
  removed: string[]
}

export class Sweeper {
  readonly #engine: Engine
  readonly #ownership: Ownership
  readonly #options: SweeperOptions
  readonly #now: () => number
  #timer: NodeJS.Timeout | null = null
  #running: Promise<SweepReport> | null = null
  #stopped = false

  constructor (engine: Engine, ownership: Ownership, options: SweeperOptions) {
    this.#engine = engine
    this.#ownership = ownership
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  start (): void {
    if (this.#options.intervalMs === 0 || this.#timer !== null) return
    this.#stopped = false
    this.#timer = setInterval(() => { this.sweep().catch(() => {}) }, this.#options.intervalMs)
    this.#timer.unref()
    this.sweep().catch(() => {})
  }

  /**
   * Stops looking. A sweep under way does no more after the step it is in; it is not waited for,
   * so a stuck engine cannot hold berth's shutdown (each engine call has its own deadline).
   */
  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.#stopped = true
  }

  /** One pass; never two at once (a slow engine makes the next one wait its turn, not pile up). */
  async sweep (): Promise<SweepReport> {
    this.#running ??= this.#sweep().finally(() => { this.#running = null })
    return await this.#running
  }

  async #sweep (): Promise<SweepReport> {
    const report: SweepReport = { removed: [] }
    try {
      await this.#removeCollected(report)
    } catch (error) {
      // The engine may be away; the next sweep tries again.
      if (!this.#stopped) this.#options.log.warn({ err: error }, 'lifecycle sweep failed')
    }
    return report
  }

  async #removeCollected (report: SweepReport): Promise<void> {
    const everyone = this.#ownership.filtersFor({ name: '', admin: true })
    const exited = await this.#engine.listContainers({ all: true, status: ['exited', 'dead'], labels: [...everyone, `${LABEL_AUTO_REMOVE}=true`] })
    for (const summary of exited) {
      if (this.#stopped) return
      const container = await this.#engine.inspectContainer(summary.id).catch(() => null)
      const finished = container?.finishedAt === null || container === null ? NaN : Date.parse(container.finishedAt)
      if (!(finished + this.#options.autoRemoveGraceMs <= this.#now())) continue
      try {
        await this.#engine.removeContainer(summary.id, { force: true, volumes: true })
      } catch (error) {
        if (!(error instanceof BerthError && error.code === 'not_found')) throw error
        continue
      }
      report.removed.push(summary.id)
      this.#options.log.info({ lifecycle: { action: 'remove', reason: 'autoRemove', container: { id: summary.id, name: summary.name }, exitCode: container?.exitCode ?? null } },
        'removed an exited autoRemove container nobody waited for')
    }
  }
}
