// The docker backend's volumes part: the engine's named volumes, with their size (a walk of every
// volume, asked for only when wanted) and the containers that mount them. Volumes and their users
// are read from the engine's watch-fed copy (./copy.ts) while it is current, from the engine otherwise.
import type Docker from 'dockerode'
import { BerthError } from '../../errors.ts'
import { matchesLabels } from '../copy.ts'
import { notSupported, type VolumesPart } from '../parts.ts'
import type { Volume, VolumeDetails } from '../types.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import type { DockerCopy, VolumeRecord } from './copy.ts'
import { volumeOf, volumeSizesOf, volumeUsersOf } from './mapping.ts'
import { withSignal, type DockerTransport } from './transport.ts'

export class DockerVolumes implements VolumesPart {
  readonly #transport: DockerTransport
  readonly #copy: DockerCopy | null

  constructor (transport: DockerTransport, copy: DockerCopy | null = null) {
    this.#transport = transport
    this.#copy = copy
  }

  async list (options: { labels: string[] } & VolumeDetails): Promise<Volume[]> {
    const copy = this.#copy
    const listed = copy?.current === true
      ? [...copy.volumes()].filter(volume => matchesLabels(volume.labels, options.labels))
      : ((await this.#transport.call({ subject: 'volume', target: 'volumes' },
          (docker, signal) => docker.listVolumes({ filters: { label: options.labels }, abortSignal: signal } as Docker.VolumeListOptions))).Volumes ?? []).map(recordOf)
    const [sizes, users] = await this.#details(options)
    return listed.map(volume => ({ ...volume, size: sizes?.get(volume.name) ?? null, usedBy: users?.get(volume.name) ?? [] }))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (name: string, details: VolumeDetails = {}): Promise<Volume> {
    const copy = this.#copy
    let volume: VolumeRecord
    if (copy?.current === true) {
      const held = copy.volume(name)
      if (held === undefined) throw new BerthError('not_found', `volume ${name} was not found`)
      volume = held
    } else {
      volume = recordOf(await this.#transport.call({ subject: 'volume', target: name }, (docker, signal) => docker.getVolume(name).inspect(withSignal(signal))))
    }
    const [sizes, users] = await this.#details(details)
    return { ...volume, size: sizes?.get(volume.name) ?? null, usedBy: users?.get(volume.name) ?? [] }
  }

  async create (name: string, labels: Record<string, string>, options: { node?: string, size?: number } = {}): Promise<Volume> {
    if (options.node !== undefined) throw notSupported('docker', 'node: a single host has one node, where every volume is; leave node out')
    if (options.size !== undefined) throw notSupported('docker', 'a local volume has no size: it holds what the host\'s disk holds (size is for backends that bound volumes, such as Kubernetes)')
    // The engine answers with the volume; dockerode hands back only a handle to it.
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.createVolume({ Name: name, Labels: labels, abortSignal: signal } as Docker.VolumeCreateOptions))
    await this.#copy?.refreshVolume(name)
    return await this.inspect(name)
  }

  capacityFor (): null {
    return null
  }

  async remove (name: string): Promise<void> {
    try {
      await this.#transport.call({ subject: 'volume', target: name },
        (docker, signal) => docker.getVolume(name).remove(withSignal(signal)))
    } finally {
      await this.#copy?.refreshVolume(name)
    }
  }

  async #details (details: VolumeDetails): Promise<[Map<string, number | null> | null, Map<string, VolumeUser[]> | null]> {
    const usedBy = details.usedBy
    return await Promise.all([
      // The engine walks every volume to answer: give it longer than an ordinary call.
      details.size === true
        ? this.#transport.call({ subject: 'engine', target: 'disk usage', timeoutMs: this.#transport.timeoutMs * 6 },
          (docker, signal) => (docker.df as (options: object) => Promise<Parameters<typeof volumeSizesOf>[0]>)(withSignal(signal))).then(volumeSizesOf)
        : null,
      usedBy === undefined ? null : this.#users(usedBy)
    ])
  }

  /** Which containers among those matching `filters` mount which volumes. */
  async #users (filters: string[]): Promise<Map<string, VolumeUser[]>> {
    const copy = this.#copy
    if (copy?.current !== true || !copy.covers(filters)) {
      return volumeUsersOf(await this.#transport.call({ subject: 'container', target: 'containers' },
        (docker, signal) => docker.listContainers({ all: true, filters: filters.length > 0 ? { label: filters } : {}, abortSignal: signal })))
    }
    const users = new Map<string, VolumeUser[]>()
    // Newest first, as the engine lists them.
    const mounting = [...copy.containers()].filter(record => record.volumes.length > 0 && matchesLabels(record.container.labels, filters))
    for (const record of mounting.sort((a, b) => b.createdMicros - a.createdMicros)) {
      const { id, name, state } = record.container
      for (const volume of record.volumes) {
        const list = users.get(volume) ?? []
        list.push({ id, name, state })
        users.set(volume, list)
      }
    }
    return users
  }
}

function recordOf (volume: Docker.VolumeInspectInfo & { CreatedAt?: string }): VolumeRecord {
  const { size: _size, usedBy: _usedBy, ...record } = volumeOf(volume)
  return record
}
