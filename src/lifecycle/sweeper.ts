// What berth does to containers over time by itself: it removes an exited autoRemove container
// nobody waited for once its grace period is over, and it stops or removes a container that expired
// — its time to live over, or idle too long. What it acts on is in the engine's labels and states,
// never in memory, so a berth that restarts (or another replica of it) carries on where the last
// one stopped. Only idleness is measured here, between two looks: after a restart the idle clock
// starts again, so a container is never taken for idle sooner than it should be.
//
// A look only lists; the work on each container (an idle reading, a stop, a removal) runs beside the
// others, at most `concurrency` at once, and the next look does not wait for it: a stop that waits
// out a long grace period holds up nobody else. An expiry is acted on under the container's own
// hold, after its end is read again: a moved end answered before that counts, and one asked for
// while the container is being stopped is answered once the stop is done.
import type { FastifyBaseLogger } from 'fastify'
import { LABEL_AUTO_REMOVE, LABEL_OWNER, type Ownership } from '../access/ownership.ts'
import type { ContainerSummary, ExpiringContainer } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import { Limiter } from '../http/limiter.ts'

export interface SweeperOptions {
  /** How often to look; 0 never looks by itself (sweep() still works). */
  intervalMs: number
  autoRemoveGraceMs: number
  /** How many containers are worked on at once (readings, stops, removals). */
  concurrency: number
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

type Reason = 'ttl' | 'idle'

export class Sweeper {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #options: SweeperOptions
  readonly #now: () => number
  readonly #slots: Limiter
  #timer: NodeJS.Timeout | null = null
  /** The look under way; the next one starts after it. */
  #looking: Promise<unknown> = Promise.resolve()
  #lookPending = false
  #stopped = false
  /** The last look at each container with an idle timeout. */
  readonly #samples = new Map<string, Sample>()
  /** When berth last did something in a container for somebody (an exec): that is not idle. */
  readonly #touched = new Map<string, number>()
  /** The work under way on each container: a look does not start more on it until that is done. */
  readonly #busy = new Map<string, Promise<void>>()
  /** Per container, the last of what holds it (an expiry acted on, an end moved): each waits for the one before. */
  readonly #held = new Map<string, Promise<void>>()

  constructor (engine: Backend, ownership: Ownership, options: SweeperOptions) {
    this.#engine = engine
    this.#ownership = ownership
    this.#options = options
    this.#now = options.now ?? Date.now
    // No queue bound: work is at most one per container.
    this.#slots = new Limiter('lifecycle actions', options.concurrency, Infinity)
  }

  start (): void {
    if (this.#options.intervalMs === 0 || this.#timer !== null) return
    this.#stopped = false
    this.#timer = setInterval(() => { this.#tick() }, this.#options.intervalMs)
    this.#timer.unref()
    this.#tick()
  }

  /**
   * Stops looking; work not begun yet is dropped. Work under way is not waited for, so a stuck
   * engine cannot hold berth's shutdown (each engine call has its own deadline).
   */
  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.#stopped = true
  }

  /**
   * One look, after any under way, and the work it started: resolves with what that work did. Work
   * on a container that an earlier look started is not waited for (nor reported here).
   */
  async sweep (): Promise<SweepReport> {
    const report: SweepReport = { removed: [], expired: [] }
    const looked = this.#looking.then(async () => await this.#look(report))
    this.#looking = looked.catch(() => {})
    await Promise.all(await looked)
    return report
  }

  /** Somebody works in the container through berth now (an exec): it is not idle. */
  touch (id: string): void {
    this.#touched.set(id, this.#now())
  }

  /**
   * Moves the end of a container's time to live to `ttl` seconds from now, and answers it. Once this
   * resolves, the new end is the one berth keeps to: when the container is being expired meanwhile,
   * this waits until that is done (and a container expired by removal is then not_found).
   */
  async moveExpiry (id: string, ttl: number): Promise<string> {
    const expiresAt = new Date(this.#now() + ttl * 1000).toISOString()
    await this.#hold(id, async () => { await this.#engine.part('expiry').set(id, expiresAt) })
    return expiresAt
  }

  /** A timer's look: skipped while one is still under way, so a slow engine does not pile them up. */
  #tick (): void {
    if (this.#lookPending) return
    this.#lookPending = true
    const report: SweepReport = { removed: [], expired: [] }
    const looked = this.#looking.then(async () => await this.#look(report))
    this.#looking = looked.catch(() => {}).finally(() => { this.#lookPending = false })
  }

  /** Lists what may be due and starts the work on it; answers that work, without waiting for it. */
  async #look (report: SweepReport): Promise<Array<Promise<void>>> {
    if (this.#stopped) return []
    const everyone = this.#ownership.filtersFor({ name: '', admin: true })
    const [expiring, exited] = await Promise.allSettled([
      this.#engine.part('expiry').list(everyone),
      this.#engine.containers.list({ all: true, status: ['exited', 'dead'], labels: [...everyone, `${LABEL_AUTO_REMOVE}=true`] })
    ])
    const work: Array<Promise<void>> = []
    for (const listed of [expiring, exited]) {
      // The engine may be away; the next look tries again.
      if (listed.status === 'rejected' && !this.#stopped) this.#options.log.warn({ err: listed.reason }, 'lifecycle sweep failed')
    }
    if (expiring.status === 'fulfilled') work.push(...this.#expiring(expiring.value, report))
    if (exited.status === 'fulfilled') {
      for (const summary of exited.value) work.push(...this.#start(summary.id, async () => { await this.#removeCollected(summary, report) }))
    }
    return work
  }

  #expiring (expiring: ExpiringContainer[], report: SweepReport): Array<Promise<void>> {
    const work: Array<Promise<void>> = []
    const seen = new Set<string>()
    const now = this.#now()
    for (const container of expiring) {
      seen.add(container.id)
      const { expiry } = container
      const running = isRunning(container.state)
      // Stopping is for what runs; removing is for what is there, in whatever state.
      if ((expiry.action === 'stop' && !running) || container.state === 'removing') {
        this.#samples.delete(container.id)
        continue
      }
      if (expiry.expiresAt !== null && Date.parse(expiry.expiresAt) <= now) {
        work.push(...this.#start(container.id, async () => { await this.#expire(container, 'ttl', now, report) }))
      } else if (expiry.idleTimeout !== null && running) {
        work.push(...this.#start(container.id, async () => { await this.#checkIdle(container, now, report) }))
      }
    }
    for (const id of [...this.#samples.keys()]) if (!seen.has(id)) this.#samples.delete(id)
    for (const id of [...this.#touched.keys()]) if (!seen.has(id)) this.#touched.delete(id)
    return work
  }

  /** Starts `task` on a container in a free slot, unless work on it is under way already. */
  #start (id: string, task: () => Promise<void>): Array<Promise<void>> {
    if (this.#busy.has(id)) return []
    const work = this.#slots.run(async () => {
      if (!this.#stopped) await task()
    }).catch((error: unknown) => {
      if (!this.#stopped) this.#options.log.warn({ err: error, container: { id } }, 'lifecycle work on a container failed')
    }).finally(() => { this.#busy.delete(id) })
    this.#busy.set(id, work)
    return [work]
  }

  /** Runs `task` when nothing else holds the container, and holds it meanwhile. */
  async #hold<T> (id: string, task: () => Promise<T>): Promise<T> {
    const before = this.#held.get(id) ?? Promise.resolve()
    const result = before.then(task)
    const held = result.then(() => {}, () => {})
    this.#held.set(id, held)
    held.then(() => { if (this.#held.get(id) === held) this.#held.delete(id) }, () => {})
    return await result
  }

  async #checkIdle (container: ExpiringContainer, now: number, report: SweepReport): Promise<void> {
    const idleFor = await this.#idleFor(container.id, now).catch(() => 0)
    if (container.expiry.idleTimeout !== null && idleFor >= container.expiry.idleTimeout * 1000) await this.#expire(container, 'idle', now, report)
  }

  /**
   * Stops or removes a container whose end came when it was looked at (`seen`): under its hold, and
   * only when it is still due as it is now — its end read again, no exec since, still running for a stop.
   */
  async #expire (listed: ExpiringContainer, reason: Reason, seen: number, report: SweepReport): Promise<void> {
    await this.#hold(listed.id, async () => {
      let container
      try {
        container = await this.#engine.containers.inspect(listed.id)
      } catch (error) {
        if (error instanceof BerthError && error.code === 'not_found') return
        throw error
      }
      const expiry = container.expiry
      if (expiry === undefined || container.state === 'removing' || (expiry.action === 'stop' && !isRunning(container.state))) return
      if (reason === 'ttl' && !(expiry.expiresAt !== null && Date.parse(expiry.expiresAt) <= this.#now())) return
      if (reason === 'idle' && (this.#touched.get(listed.id) ?? -Infinity) > seen) return
      try {
        if (expiry.action === 'stop') await this.#engine.containers.stop(listed.id, {})
        else await this.#engine.containers.remove(listed.id, { force: true, volumes: true })
      } catch (error) {
        if (!(error instanceof BerthError && error.code === 'not_found')) {
          this.#options.log.warn({ err: error, container: { id: listed.id, name: listed.name } }, 'could not expire a container')
        }
        return
      }
      this.#samples.delete(listed.id)
      report.expired.push({ id: listed.id, action: expiry.action, reason })
      this.#options.log.info({ lifecycle: { action: expiry.action, reason, container: { id: listed.id, name: listed.name }, owner: listed.labels[LABEL_OWNER] ?? null } },
        reason === 'ttl' ? 'a container\'s time to live is over' : 'a container sat idle past its idle timeout')
    })
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

  async #removeCollected (summary: ContainerSummary, report: SweepReport): Promise<void> {
    const container = await this.#engine.containers.inspect(summary.id).catch(() => null)
    const finished = container?.finishedAt === null || container === null ? NaN : Date.parse(container.finishedAt)
    if (!(finished + this.#options.autoRemoveGraceMs <= this.#now())) return
    try {
      await this.#engine.containers.remove(summary.id, { force: true, volumes: true })
    } catch (error) {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
      return
    }
    report.removed.push(summary.id)
    this.#options.log.info({ lifecycle: { action: 'remove', reason: 'autoRemove', container: { id: summary.id, name: summary.name }, exitCode: container?.exitCode ?? null } },
      'removed an exited autoRemove container nobody waited for')
  }
}

function isRunning (state: string): boolean {
  return state === 'running' || state === 'paused' || state === 'restarting'
}
