// Named volumes as one requester may use them: the token's own (an admin: all of its deployment's),
// with only the containers it may see named as their users. Another token's volume is not found,
// as if it did not exist; a name taken by one is a conflict that says nothing of whose it is.
import { randomBytes } from 'node:crypto'
import type { Volume } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import type { CreateVolumeRequest } from '../schemas/volumes.ts'
import { LABEL_LEASE_FOR, RESERVED_LABEL_PREFIX, notFound, type Ownership, type Principal } from './ownership.ts'
import { invalid } from './policy.ts'
import type { Quotas } from './quotas.ts'

export class VolumeAccess {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #quotas: Quotas

  constructor (engine: Backend, ownership: Ownership, quotas: Quotas) {
    this.#engine = engine
    this.#ownership = ownership
    this.#quotas = quotas
  }

  async list (requester: Principal, options: { labels?: string[] | undefined, size: boolean }): Promise<Volume[]> {
    const visible = this.#ownership.filtersFor(requester)
    const volumes = await this.#engine.part('volumes').list({ labels: [...(options.labels ?? []), ...visible], size: options.size, usedBy: visible })
    return volumes.filter(volume => !bookkeeping(volume))
  }

  /** A volume the requester may see, or not_found as if it did not exist. */
  async find (requester: Principal, name: string, options: { size?: boolean } = {}): Promise<Volume> {
    let volume: Volume
    try {
      volume = await this.#engine.part('volumes').inspect(name, { size: options.size ?? false, usedBy: this.#ownership.filtersFor(requester) })
    } catch (error) {
      if (error instanceof BerthError && error.code === 'not_found') throw notFound('volume', name)
      throw error
    }
    if (bookkeeping(volume)) throw notFound('volume', name)
    return this.#ownership.visible(requester, volume, 'volume', name)
  }

  /**
   * docker volume create: a new volume of the requester's. Its own volume of that name is answered
   * as it is (`created: false`), as the CLI does; a name somebody else holds is name_conflict.
   */
  async create (requester: Principal, body: CreateVolumeRequest): Promise<{ volume: Volume, created: boolean }> {
    const labels = body.labels ?? {}
    for (const key of Object.keys(labels)) {
      if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`body/labels/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
    }
    // The engine's own choice of name when none is given: 64 hex digits.
    const name = body.name ?? randomBytes(32).toString('hex')
    const existing = await this.#engine.part('volumes').inspect(name).catch((error: unknown) => {
      if (error instanceof BerthError && error.code === 'not_found') return null
      throw error
    })
    if (existing !== null) return { volume: this.#taken(requester, existing), created: false }
    const part = this.#engine.part('volumes')
    const size = body.size === undefined ? {} : { size: body.size }
    // Creating a name that exists (made meanwhile) returns that volume: its labels tell whose it is.
    const made = await this.#quotas.admitVolume(requester, part.capacityFor(body.size),
      async () => await part.create(name, { ...labels, ...this.#ownership.labelsFor(requester.name) }, { ...size, ...(body.node === undefined ? {} : { node: body.node }) }))
    return { volume: this.#taken(requester, made), created: true }
  }

  /**
   * docker volume rm. In use (by a container in any state) is volume_in_use naming the users the
   * requester may see; with `force` those containers are removed first — only when every user is
   * one the requester may remove, which is checked before anything is removed: a refusal leaves all
   * as it was. The ids of the containers removed go into `removed` as they go.
   */
  async remove (requester: Principal, name: string, options: { force: boolean, removed: string[] }): Promise<void> {
    // The requester's view first, then everybody's: a user that appears between the two is one more
    // the requester's view lacks, so it refuses rather than removes.
    const visible = (await this.find(requester, name)).usedBy
    const everyone = (await this.#engine.part('volumes').inspect(name, { usedBy: [] })).usedBy
    if (everyone.length > 0) {
      if (!options.force) throw inUse(name, visible)
      const own = new Set(visible.map(user => user.id))
      if (everyone.some(user => !own.has(user.id))) {
        throw inUse(name, visible, `volume ${name} is ${visible.length === 0 ? '' : 'also '}in use by a container token "${requester.name}" may not remove: nothing was removed`)
      }
      for (const user of everyone) {
        await this.#engine.containers.remove(user.id, { force: true, volumes: false }).catch((failure: unknown) => {
          if (!(failure instanceof BerthError && failure.code === 'not_found')) throw failure
        })
        options.removed.push(user.id)
      }
    }
    try {
      await this.#engine.part('volumes').remove(name)
    } catch (error) {
      // Mounted meanwhile (a run that came between the look and the removal).
      if (!(error instanceof BerthError && error.code === 'volume_in_use')) throw error
      throw inUse(name, (await this.find(requester, name)).usedBy)
    }
  }

  #taken (requester: Principal, volume: Volume): Volume {
    if (bookkeeping(volume) || !this.#ownership.owns(requester, volume.labels)) {
      throw new BerthError('name_conflict', `the volume name ${volume.name} is already in use`, { name: volume.name })
    }
    return volume
  }
}

/** A volume berth keeps for itself (a container's moved expiry): nobody's data, listed to nobody. */
function bookkeeping (volume: Volume): boolean {
  return volume.labels[LABEL_LEASE_FOR] !== undefined
}

function inUse (name: string, users: Volume['usedBy'], detail?: string): BerthError {
  const named = users.map(user => user.name)
  detail ??= named.length === 0
    ? `volume ${name} is in use by a container`
    : `volume ${name} is in use by ${named.length === 1 ? 'container' : 'containers'} ${named.join(', ')}; remove ${named.length === 1 ? 'it' : 'them'} first, or remove the volume with force=true`
  return new BerthError('volume_in_use', detail, { volume: name, containers: users.map(user => ({ id: user.id, name: user.name })) })
}
