// berth's builds: each runs in one of a few build slots, within a time limit, owned by the token that
// started it, and stays readable for a while after it ended. A build is never shared: a client that
// follows its own build and leaves cancels it; an async build runs until it ends or is cancelled.
import type { Principal } from '../access/ownership.ts'
import type { BuildSpec } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import type { Limiter } from '../http/limiter.ts'
import { Build, cancelled, type BuildSummary } from './build.ts'
import type { ReceivedContext } from './context.ts'

export interface BuildsOptions {
  /** How long a finished build stays readable. */
  retentionMs: number
  /** How many builds are kept at most, finished or not; the oldest finished make room first. */
  maxBuilds: number
  /** How long a build may take at the engine before it is cancelled. */
  timeoutMs: number
  /** The clock retention is measured on (tests move it); Date.now by default. */
  now?: () => number
}

export interface BuildRequest {
  spec: Omit<BuildSpec, 'context'>
  context: ReceivedContext
  summary: BuildSummary
}

export class Builds {
  readonly #engine: Backend
  readonly #slots: Limiter
  readonly #options: BuildsOptions
  readonly #builds = new Map<string, Build>()
  readonly #now: () => number

  constructor (engine: Backend, slots: Limiter, options: BuildsOptions) {
    this.#engine = engine
    this.#slots = slots
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** Starts a build; its context is removed once the build is over, whatever the outcome. */
  start (request: BuildRequest, owner: string): Build {
    try {
      this.#makeRoom()
      if (this.#slots.full) throw new BerthError('rate_limited', 'too many builds are under way; try again shortly', {}, { headers: { 'retry-after': '10' } })
    } catch (error) {
      request.context.remove().catch(() => {})
      throw error
    }
    const build = new Build(owner, request.summary, new Date(this.#now()))
    this.#builds.set(build.id, build)
    if (this.#slots.busy) build.queued()
    this.#slots.run(async () => {
      if (build.signal.aborted) return
      build.started()
      const timer = setTimeout(() => {
        build.cancel(new BerthError('build_failed', `the build took longer than the limit of ${this.#options.timeoutMs} ms (BERTH_BUILD_TIMEOUT_MS)`, { reason: 'timeout', step: build.step, output: [] }))
      }, this.#options.timeoutMs)
      try {
        build.succeed(await this.#engine.part('builds').build({ ...request.spec, context: request.context.open }, {
          signal: build.signal,
          onProgress: report => build.progress(report)
        }), new Date(this.#now()))
      } finally {
        clearTimeout(timer)
      }
    }).catch((error: unknown) => {
      const reason = build.signal.aborted ? build.signal.reason : error
      build.fail(reason instanceof BerthError ? reason : new BerthError('internal_error', 'the build failed unexpectedly', {}, { cause: error }), new Date(this.#now()))
    }).finally(async () => {
      await request.context.remove().catch(() => {})
      build.settle()
    })
    return build
  }

  /** The build, when the requester may see it; anybody else's build is as unknown as one that never was. */
  get (id: string, requester: Principal): Build {
    this.#prune()
    const build = this.#builds.get(id)
    if (build === undefined || (!requester.admin && build.owner !== requester.name)) {
      throw new BerthError('not_found', `build ${id} was not found`)
    }
    return build
  }

  /** The builds the requester may see, newest first. */
  list (requester: Principal): Build[] {
    this.#prune()
    return [...this.#builds.values()].filter(build => requester.admin || build.owner === requester.name).reverse()
  }

  /** Cancels the build and waits (within `waitMs`) until the engine has stopped it and its leftovers are gone. */
  async cancel (build: Build, why: string, waitMs: number): Promise<void> {
    if (build.finished) return
    build.cancel(cancelled(why))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([build.settled, new Promise(resolve => { timer = setTimeout(resolve, waitMs) })])
    clearTimeout(timer)
  }

  /** Stops every build under way (berth is shutting down) and waits for them to stop. */
  async close (waitMs: number): Promise<void> {
    await Promise.all([...this.#builds.values()].map(build => this.cancel(build, 'berth is shutting down', waitMs)))
  }

  #prune (): void {
    const now = this.#now()
    for (const [id, build] of this.#builds) {
      if (build.finishedAt !== null && now - build.finishedAt.getTime() >= this.#options.retentionMs) this.#builds.delete(id)
    }
  }

  #makeRoom (): void {
    this.#prune()
    if (this.#builds.size < this.#options.maxBuilds) return
    for (const [id, build] of this.#builds) {
      if (build.finishedAt !== null) {
        this.#builds.delete(id)
        return
      }
    }
    throw new BerthError('rate_limited', `${this.#options.maxBuilds} builds are kept; wait for one to finish`, { }, { headers: { 'retry-after': '10' } })
  }
}
