// Quotas per token (OWASP API4): the most containers, memory and CPUs a token may hold at once,
// counted over its containers in every state (a stopped one can be started again without asking).
// On a cluster each replica counts as a container, with its own limits. The storage quota counts
// the sizes of the token's volumes where a backend gives volumes one (Kubernetes' claims); docker's
// local volumes have none and count nothing. Runs, scales and volume creations of one token are
// admitted one at a time, so concurrent ones cannot race past the limit.
import type { Quota } from '../config.ts'
import type { Container, RunSpec } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import type { GpuRequest } from '../schemas/containers.ts'
import { BerthError } from '../errors.ts'
import type { Ownership, Principal } from './ownership.ts'

export interface Usage {
  containers: number
  memoryBytes: number
  cpus: number
  /** GPUs asked for by count or ids; `all` counts as every GPU there is (Infinity). */
  gpus: number
}

export class Quotas {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #defaults: Quota
  readonly #tokenQuota: (name: string) => Partial<Quota> | undefined
  /** The tail of each token's queue of admissions: the next one waits for it. */
  readonly #queues = new Map<string, Promise<unknown>>()

  /** `tokenQuota` answers a token's own quota as configured now (tokens can be reloaded). */
  constructor (engine: Backend, ownership: Ownership, defaults: Quota, tokenQuota: (name: string) => Partial<Quota> | undefined) {
    this.#engine = engine
    this.#ownership = ownership
    this.#defaults = defaults
    this.#tokenQuota = tokenQuota
  }

  quotaOf (name: string): Quota {
    return { ...this.#defaults, ...this.#tokenQuota(name) }
  }

  /** Runs `create` when the spec fits the owner's quota, with no other run of that owner in between. */
  async admit<T> (requester: Principal, spec: RunSpec, create: () => Promise<T>): Promise<T> {
    return await this.#admit(requester, { replicas: spec.replicas ?? 1, memory: spec.memory, cpus: spec.cpus, gpus: spec.gpus }, create)
  }

  /** Runs `scale` when the replicas added to the container fit the owner's quota (fewer always do). */
  async admitScale<T> (requester: Principal, container: Container, replicas: number, scale: () => Promise<T>): Promise<T> {
    const added = replicas - (container.replicas?.count ?? 1)
    if (added <= 0) return await scale()
    const { memory, cpus } = container.resources
    return await this.#admit(requester, { replicas: added, memory: memory ?? undefined, cpus: cpus ?? undefined }, scale)
  }

  /**
   * Runs `create` (which makes a volume that may hold `bytes`; null: unbounded) when it fits the
   * owner's storage quota, with no other admission of that owner in between.
   */
  async admitVolume<T> (requester: Principal, bytes: number | null, create: () => Promise<T>): Promise<T> {
    if (this.quotaOf(requester.name).storageBytes === null) return await create()
    return await this.#inTurn(requester.name, async () => {
      await this.checkStorage(requester.name, bytes)
      return await create()
    })
  }

  /** Refuses a volume of `bytes` that would take the owner past its storage quota (inside an admission's turn). */
  async checkStorage (owner: string, bytes: number | null): Promise<void> {
    const quota = this.quotaOf(owner).storageBytes
    if (quota === null || bytes === null) return
    const volumes = await this.#engine.part('volumes').list({ labels: this.#ownership.filtersFor({ name: owner, admin: false }) })
    const used = volumes.reduce((sum, volume) => sum + (volume.capacity ?? 0), 0)
    if (used + bytes > quota) {
      throw exceeded('storage', `a volume of ${bytes} bytes on top of the ${used} the token's volumes hold exceeds its storage quota of ${quota}; remove a volume first`, quota, used)
    }
  }

  async #admit<T> (requester: Principal, demand: Demand, create: () => Promise<T>): Promise<T> {
    const quota = this.quotaOf(requester.name)
    if (quota.containers === null && quota.memoryBytes === null && quota.cpus === null && quota.gpus === null && quota.storageBytes === null) return await create()
    return await this.#inTurn(requester.name, async () => {
      this.#check(quota, demand, await this.usage(requester.name, quota))
      return await create()
    })
  }

  /** Runs `work` after every earlier admission of the owner has finished. */
  async #inTurn<T> (owner: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(owner) ?? Promise.resolve()
    const turn = previous.then(work)
    const tail = turn.catch(() => {})
    this.#queues.set(owner, tail)
    try {
      return await turn
    } finally {
      if (this.#queues.get(owner) === tail) this.#queues.delete(owner)
    }
  }

  /** What the token holds now: its containers of this deployment, in every state. */
  async usage (owner: string, quota: Quota): Promise<Usage> {
    const held = await this.#engine.containers.list({ all: true, labels: this.#ownership.filtersFor({ name: owner, admin: false }) })
    const usage: Usage = { containers: 0, memoryBytes: 0, cpus: 0, gpus: 0 }
    for (const container of held) usage.containers += container.replicas?.count ?? 1
    if (quota.memoryBytes === null && quota.cpus === null && quota.gpus === null) return usage
    // The list does not carry limits; only the token's own containers are inspected.
    const inspected = await Promise.all(held.map(async container => await this.#engine.containers.inspect(container.id).catch(() => null)))
    for (const container of inspected) {
      const replicas = container?.replicas?.count ?? 1
      usage.memoryBytes += (container?.resources.memory ?? 0) * replicas
      usage.cpus += (container?.resources.cpus ?? 0) * replicas
      usage.gpus += gpuCount(container?.gpus) * replicas
    }
    return usage
  }

  #check (quota: Quota, demand: Demand, used: Usage): void {
    const { replicas } = demand
    if (quota.containers !== null && used.containers + replicas > quota.containers) {
      const asked = replicas === 1 ? '' : ` (${replicas} replicas count as ${replicas})`
      throw exceeded('containers', `the token holds ${used.containers} of its ${quota.containers} containers${asked}; remove one first`, quota.containers, used.containers)
    }
    if (quota.memoryBytes !== null) {
      if (demand.memory === undefined) throw exceeded('memory', 'the token has a memory quota: set resources.memory', quota.memoryBytes, used.memoryBytes)
      const memory = demand.memory * replicas
      if (used.memoryBytes + memory > quota.memoryBytes) {
        throw exceeded('memory', `memory ${memory} on top of the ${used.memoryBytes} bytes the token holds exceeds its quota of ${quota.memoryBytes}`, quota.memoryBytes, used.memoryBytes)
      }
    }
    if (quota.cpus !== null) {
      if (demand.cpus === undefined) throw exceeded('cpus', 'the token has a CPU quota: set resources.cpus', quota.cpus, used.cpus)
      const cpus = demand.cpus * replicas
      // Rounded as the engine keeps them (nano-CPUs), so 0.1 + 0.2 fits a quota of 0.3.
      if (Math.round((used.cpus + cpus) * 1e9) > Math.round(quota.cpus * 1e9)) {
        throw exceeded('cpus', `cpus ${cpus} on top of the ${used.cpus} the token holds exceeds its quota of ${quota.cpus}`, quota.cpus, used.cpus)
      }
    }
    // ---- Environments (issue 14)
    if (quota.gpus !== null && demand.gpus !== undefined) {
      if (quota.gpus === 0) throw exceeded('gpus', 'the token may not use GPUs', 0, used.gpus)
      if (demand.gpus === 'all') throw exceeded('gpus', `the token has a GPU quota of ${quota.gpus}: ask for a count or device ids, not "all"`, quota.gpus, used.gpus)
      const asked = gpuCount(demand.gpus) * replicas
      if (used.gpus + asked > quota.gpus) {
        throw exceeded('gpus', `${asked} GPUs on top of the ${used.gpus} the token holds exceed its quota of ${quota.gpus}`, quota.gpus, used.gpus)
      }
    }
  }
}

/** What a run or a scale adds: replicas, each with these limits. */
interface Demand {
  replicas: number
  memory: number | undefined
  cpus: number | undefined
  gpus?: GpuRequest | undefined
}

function gpuCount (gpus: GpuRequest | undefined): number {
  if (gpus === undefined) return 0
  if (gpus === 'all') return Infinity
  return typeof gpus === 'number' ? gpus : gpus.length
}

function exceeded (limit: 'containers' | 'memory' | 'cpus' | 'gpus' | 'storage', detail: string, quota: number, used: number): BerthError {
  return new BerthError('quota_exceeded', detail, { limit, quota, used })
}
