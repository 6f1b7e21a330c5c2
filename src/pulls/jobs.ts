// berth's pulls: identical pulls under way share one engine pull (never across credentials), and
// async pull jobs outlive the request that started them for a bounded time, on an injectable clock.
import { createHmac, randomBytes } from 'node:crypto'
import type { Principal } from '../access/ownership.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import type { Limiter } from '../http/limiter.ts'
import { Job } from './job.ts'
import { SharedPull, isFinal, type PullSpec } from './shared-pull.ts'

export interface PullJobsOptions {
  /** How long a finished job stays readable. */
  retentionMs: number
  /** How many jobs are kept at most, finished or not; the oldest finished make room first. */
  maxJobs: number
  /** The clock retention is measured on (tests move it); Date.now by default. */
  now?: () => number
}

export interface Follower {
  pull: SharedPull
  /** Lets go of the pull (idempotent); the last one to let go of an unfinished pull cancels it. */
  release: () => boolean
}

export class PullJobs {
  readonly #engine: Backend
  readonly #limiter: Limiter
  readonly #options: PullJobsOptions
  readonly #running = new Map<string, SharedPull>()
  readonly #jobs = new Map<string, Job>()
  // Credentials only ever appear in dedupe keys as a keyed hash, and the key dies with the process.
  readonly #secret = randomBytes(32)
  readonly #now: () => number

  constructor (engine: Backend, limiter: Limiter, options: PullJobsOptions) {
    this.#engine = engine
    this.#limiter = limiter
    this.#options = options
    this.#now = options.now ?? Date.now
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
  start (spec: PullSpec, owner: string): Job {
    this.#makeRoom()
    const pull = this.#shared(spec)
    pull.hold()
    const job = new Job(owner, pull)
    this.#jobs.set(job.id, job)
    pull.subscribe(0, Infinity, entry => { if (isFinal(entry.event)) job.finishedAt ??= new Date(this.#now()) })
    return job
  }

  /** The job, when the requester may see it; anybody else's job is as unknown as one that never was. */
  get (id: string, requester: Principal): Job {
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
  async cancel (job: Job, waitMs: number): Promise<void> {
    if (job.finished) return
    job.markCancelled(new Date(this.#now()))
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
        pull.succeed(await this.#engine.part('images').pull(spec.ref, {
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
    const now = this.#now()
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
