// Containers as one requester may use them: finding one by id, id prefix or name without saying
// whether anything else exists, and running one under the policy, the token's quota and the
// ownership of the volumes it mounts. Routes call this; it calls the engine.
import { checkRun } from '../engine/capabilities.ts'
import type { Policy } from '../config.ts'
import type { Container, ContainerExit, RunSpec } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { PortConflictError } from '../engine/types.ts'
import { BerthError } from '../errors.ts'
import { isClientLeft } from '../http/aborts.ts'
import type { ValidatedRunRequest } from '../schemas/containers.ts'
import type { WaitResult } from '../schemas/lifecycle.ts'
import { checkBindDirectory } from './binds.ts'
import { networkForRun } from './networks.ts'
import { notFound, type Ownership, type Principal } from './ownership.ts'
import { admitRun } from './policy.ts'
import { runSpecOf } from './run-spec.ts'
import type { Quotas } from './quotas.ts'

export class ContainerAccess {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #policy: Policy
  readonly #quotas: Quotas
  /** The clock an expiry's end is set on. */
  readonly #now: () => number

  constructor (engine: Backend, ownership: Ownership, policy: Policy, quotas: Quotas, now: () => number = Date.now) {
    this.#engine = engine
    this.#ownership = ownership
    this.#policy = policy
    this.#quotas = quotas
    this.#now = now
  }

  /** A container the requester may see, or not_found as if it did not exist. */
  async find (requester: Principal, idOrName: string): Promise<Container> {
    let container: Container | null = null
    try {
      container = await this.#engine.containers.inspect(idOrName)
    } catch (error) {
      if (!(error instanceof BerthError && (error.code === 'not_found' || error.code === 'ambiguous_id'))) throw error
    }
    if (container !== null && this.#ownership.owns(requester, container.labels)) return container
    // No such container, one the requester may not see, or an id prefix shared with containers it
    // may not see: resolve among its own, so the answer says nothing of anybody else's.
    const own = await this.#engine.containers.list({ all: true, labels: this.#ownership.filtersFor(requester) })
    const named = own.filter(candidate => candidate.name === idOrName)
    const matches = named.length > 0 ? named : own.filter(candidate => candidate.id.startsWith(idOrName))
    if (matches.length === 0) throw notFound('container', idOrName)
    if (matches.length > 1) throw new BerthError('ambiguous_id', `${idOrName} matches ${matches.length} containers; give more of the id`, { matches: matches.length })
    return await this.#engine.containers.inspect((matches[0] as { id: string }).id)
  }

  /** The engine's label filters for listing what the requester may see, with its own on top. */
  listFilters (requester: Principal, labels: string[] = []): string[] {
    return [...labels, ...this.#ownership.filtersFor(requester)]
  }

  /**
   * docker run -d for a requester: admitted by policy, within its quota, mounting only volumes it
   * owns (creating the missing ones as its own). A failed run leaves neither a container nor a
   * volume it created behind.
   */
  async run (requester: Principal, body: ValidatedRunRequest): Promise<Container> {
    const spec = runSpecOf(body, this.#policy, this.#ownership, requester.name, this.#now())
    admitRun(this.#policy, this.#ownership, spec, requester.name)
    checkRun(this.#engine, spec)
    for (const mount of spec.mounts) if (mount.type === 'bind') await checkBindDirectory(mount.source)
    const network = await networkForRun(this.#engine, this.#ownership, requester, spec.network, spec.aliases)
    if (network !== undefined) spec.network = network
    return await this.#quotas.admit(requester, spec, async () => {
      const created = await this.#claimVolumes(requester, spec)
      try {
        return await this.#engine.containers.run(spec)
      } catch (error) {
        await this.#removeVolumes(created)
        if (error instanceof PortConflictError && error.port !== null) {
          throw this.#ownership.portConflict(requester, error.port, error.holder, error.message)
        }
        throw error
      }
    })
  }

  /** Sets the replicas of a container the requester may see; more of them must fit its quota. */
  async scale (requester: Principal, idOrName: string, replicas: number): Promise<{ changed: boolean, container: Container }> {
    const container = await this.find(requester, idOrName)
    let changed: boolean
    try {
      ({ changed } = await this.#quotas.admitScale(requester, container, replicas, async () => await this.#engine.containers.scale(container.id, replicas)))
    } catch (error) {
      if (error instanceof PortConflictError && error.port !== null) throw this.#ownership.portConflict(requester, error.port, error.holder, error.message)
      throw error
    }
    return { changed, container: await this.#engine.containers.inspect(container.id) }
  }

  /** Named volumes: the requester's own are mounted, missing ones are created as its own, any other is not found. */
  async #claimVolumes (requester: Principal, spec: RunSpec): Promise<string[]> {
    const created: string[] = []
    try {
      for (const mount of spec.mounts) {
        if (mount.type !== 'volume') continue
        let volume
        try {
          volume = await this.#engine.part('volumes').inspect(mount.source)
        } catch (error) {
          if (!(error instanceof BerthError && error.code === 'not_found')) throw error
          // Inside the run's admission: the volume is made with the size every volume gets unasked.
          await this.#quotas.checkStorage(requester.name, this.#engine.part('volumes').capacityFor(undefined))
          // Creating a name that exists returns the existing volume: its labels tell whose it is.
          // On a cluster, on a node the run may be placed on: the run then goes where its volume is.
          volume = await this.#engine.part('volumes').create(mount.source, this.#ownership.labelsFor(requester.name), spec.placement === undefined ? {} : { placement: spec.placement })
          if (this.#ownership.owns(requester, volume.labels)) created.push(volume.name)
        }
        this.#ownership.visible(requester, volume, 'volume', mount.source)
      }
    } catch (error) {
      await this.#removeVolumes(created)
      throw error
    }
    return created
  }

  async #removeVolumes (names: string[]): Promise<void> {
    for (const name of names) await this.#engine.part('volumes').remove(name).catch(() => {})
  }

  // ---- Environments (issue 14)

  /**
   * docker wait: the exit of a container (one `find` gave the requester), when it stops (or the
   * timeout passes first). An autoRemove container is removed once its exit is known: that is what
   * berth kept it for, and the wait is where its exit is collected.
   */
  async wait (container: Pick<Container, 'id' | 'autoRemove'>, options: { signal: AbortSignal, timeoutMs?: number }): Promise<WaitResult> {
    const { id, autoRemove } = container
    const deadline = new AbortController()
    const timer = options.timeoutMs === undefined ? null : setTimeout(() => deadline.abort(), options.timeoutMs)
    let exit: ContainerExit
    try {
      exit = await this.#engine.part('wait').wait(id, { signal: AbortSignal.any([options.signal, deadline.signal]) })
    } catch (error) {
      if (deadline.signal.aborted && !options.signal.aborted) return { stopped: false, exitCode: null, oomKilled: false, error: null, removed: false }
      // A client that left is answered nobody; berth closing (or the token revoked) is said to the client.
      if (options.signal.aborted && isClientLeft(options.signal.reason)) throw options.signal.reason
      if (options.signal.aborted) throw new BerthError('engine_unavailable', 'the wait ended before the container stopped: berth is closing; wait again', {}, { headers: { 'retry-after': '5' } })
      throw error
    } finally {
      if (timer !== null) clearTimeout(timer)
    }
    let removed = false
    if (autoRemove) {
      // As --rm does: with its anonymous volumes. Somebody else removing it first is fine.
      await this.#engine.containers.remove(id, { force: true, volumes: true }).catch((error: unknown) => {
        if (!(error instanceof BerthError && error.code === 'not_found')) throw error
      })
      removed = true
    }
    return { stopped: true, ...exit, removed }
  }
}
