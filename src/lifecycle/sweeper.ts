// What berth does to containers over time by itself: it removes an exited autoRemove container
// nobody waited for once its grace period is over, and it stops or removes a container that expired
// — its time to live over, or idle too long. What it acts on is in the engine's labels and states,
// never in memory, so a berth that restarts (or another replica of it) carries on where the last
// one stopped. Only idleness is measured here, between two looks: after a restart the idle clock
// starts again, so a container is never taken for idle sooner than it should be.
import type { FastifyBaseLogger } from 'fastify'
import { LABEL_AUTO_REMOVE, LABEL_OWNER, type Ownership } from '../access/ownership.ts'
import type { ExpiringContainer } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
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
  expired: Array<{ id: string, action: 'stop' | 'remove', reason: 'ttl' | 'idle' }>
}

/** Idle means less CPU than this share of one core between two looks… */
export const IDLE_CPU_SHARE = 0.01
/** …and fewer bytes in and out than this. */
export const IDLE_NETWORK_BYTES = 4096

interface Sample {
  cpuSeconds: number
  networkBytes: number
  at: number
  lastActive: number
}

export class Sweeper {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #options: SweeperOptions
  readonly #now: () => number
  #timer: NodeJS.Timeout | null = null
  #running: Promise<SweepReport> | null = null
  #stopped = false
  /** The last look at each container with an idle timeout. */
  readonly #samples = new Map<string, Sample>()
  /** When berth last did something in a container for somebody (an exec): that is not idle. */
  readonly #touched = new Map<string, number>()

  constructor (engine: Backend, ownership: Ownership, options: SweeperOptions) {
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

  /** Somebody works in the container through berth now (an exec): it is not idle. */
  touch (id: string): void {
    this.#touched.set(id, this.#now())
  }

  async #sweep (): Promise<SweepReport> {
    const report: SweepReport = { removed: [], expired: [] }
    for (const step of [this.#removeCollected, this.#expire]) {
      try {
        await step.call(this, report)
      } catch (error) {
        // The engine may be away; the next sweep tries again.
        if (!this.#stopped) this.#options.log.warn({ err: error }, 'lifecycle sweep failed')
      }
    }
    return report
  }

  async #expire (report: SweepReport): Promise<void> {
    const expiring = await this.#engine.part('expiry').list(this.#ownership.filtersFor({ name: '', admin: true }))
    const seen = new Set<string>()
    const acting: Array<Promise<void>> = []
    for (const container of expiring) {
      if (this.#stopped) return
      seen.add(container.id)
      const { expiry } = container
      const running = container.state === 'running' || container.state === 'paused' || container.state === 'restarting'
      // Stopping is for what runs; removing is for what is there, in whatever state.
      if ((expiry.action === 'stop' && !running) || container.state === 'removing') {
        this.#samples.delete(container.id)
        continue
      }
      const now = this.#now()
      let reason: 'ttl' | 'idle' | null = null
      if (expiry.expiresAt !== null && Date.parse(expiry.expiresAt) <= now) reason = 'ttl'
      else if (expiry.idleTimeout !== null && running && await this.#idleFor(container.id, now).catch(() => 0) >= expiry.idleTimeout * 1000) reason = 'idle'
      if (reason !== null) acting.push(this.#act(container, reason, report))
    }
    // Side by side: a stop waits out the container's grace period, which must not hold up the others.
    await Promise.all(acting)
    for (const id of [...this.#samples.keys()]) if (!seen.has(id)) this.#samples.delete(id)
    for (const id of [...this.#touched.keys()]) if (!seen.has(id)) this.#touched.delete(id)
  }

  async #act (container: ExpiringContainer, reason: 'ttl' | 'idle', report: SweepReport): Promise<void> {
    const { action } = container.expiry
    try {
      if (action === 'stop') await this.#engine.containers.stop(container.id, {})
      else await this.#engine.containers.remove(container.id, { force: true, volumes: true })
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) {
        this.#options.log.warn({ err: error, container: { id: container.id, name: container.name } }, 'could not expire a container')
      }
      return
    }
    this.#samples.delete(container.id)
    report.expired.push({ id: container.id, action, reason })
    this.#options.log.info({ lifecycle: { action, reason, container: { id: container.id, name: container.name }, owner: container.labels[LABEL_OWNER] ?? null } },
      reason === 'ttl' ? 'a container\'s time to live is over' : 'a container sat idle past its idle timeout')
  }

  /** How long the container has been idle, as far as this berth has seen (0 at its first look). */
  async #idleFor (id: string, now: number): Promise<number> {
    const readings = await this.#engine.part('stats').stats(id, { stream: false, oneShot: true })
    const reading = (await readings[Symbol.asyncIterator]().next()).value
    if (reading === undefined) return 0
    const networkBytes = reading.network.rxBytes + reading.network.txBytes
    const last = this.#samples.get(id)
    const touched = this.#touched.get(id) ?? 0
    // A first look, or counters that went back (it was restarted): it starts being watched now.
    const fresh = last === undefined || reading.cpuSeconds < last.cpuSeconds || networkBytes < last.networkBytes
    const busy = fresh ||
      reading.cpuSeconds - last.cpuSeconds > IDLE_CPU_SHARE * (now - last.at) / 1000 ||
      networkBytes - last.networkBytes > IDLE_NETWORK_BYTES ||
      touched > last.at
    const lastActive = busy ? now : last.lastActive
    this.#samples.set(id, { cpuSeconds: reading.cpuSeconds, networkBytes, at: now, lastActive })
    return now - lastActive
  }

  async #removeCollected (report: SweepReport): Promise<void> {
    const everyone = this.#ownership.filtersFor({ name: '', admin: true })
    const exited = await this.#engine.containers.list({ all: true, status: ['exited', 'dead'], labels: [...everyone, `${LABEL_AUTO_REMOVE}=true`] })
    for (const summary of exited) {
      if (this.#stopped) return
      const container = await this.#engine.containers.inspect(summary.id).catch(() => null)
      const finished = container?.finishedAt === null || container === null ? NaN : Date.parse(container.finishedAt)
      if (!(finished + this.#options.autoRemoveGraceMs <= this.#now())) continue
      try {
        await this.#engine.containers.remove(summary.id, { force: true, volumes: true })
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
