// The docker backend's volumes part: the engine's named volumes, with their size (a walk of every
// volume, asked for only when wanted) and the containers that mount them.
import type Docker from 'dockerode'
import { notSupported, type VolumesPart } from '../parts.ts'
import type { Volume, VolumeDetails } from '../types.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import { volumeOf, volumeSizesOf, volumeUsersOf } from './mapping.ts'
import { withSignal, type DockerTransport } from './transport.ts'

export class DockerVolumes implements VolumesPart {
  readonly #transport: DockerTransport

  constructor (transport: DockerTransport) {
    this.#transport = transport
  }

  async list (options: { labels: string[] } & VolumeDetails): Promise<Volume[]> {
    const listed = await this.#transport.call({ subject: 'volume', target: 'volumes' },
      (docker, signal) => docker.listVolumes({ filters: { label: options.labels }, abortSignal: signal } as Docker.VolumeListOptions))
    const [sizes, users] = await this.#details(options)
    return (listed.Volumes ?? []).map(volume => volumeOf(volume, sizes?.get(volume.Name) ?? null, users?.get(volume.Name) ?? []))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (name: string, details: VolumeDetails = {}): Promise<Volume> {
    const volume = await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).inspect(withSignal(signal)))
    const [sizes, users] = await this.#details(details)
    return volumeOf(volume, sizes?.get(volume.Name) ?? null, users?.get(volume.Name) ?? [])
  }

  async create (name: string, labels: Record<string, string>, options: { node?: string, size?: number } = {}): Promise<Volume> {
    if (options.node !== undefined) throw notSupported('docker', 'node: a single host has one node, where every volume is; leave node out')
    if (options.size !== undefined) throw notSupported('docker', 'a local volume has no size: it holds what the host\'s disk holds (size is for backends that bound volumes, such as Kubernetes)')
    // The engine answers with the volume; dockerode hands back only a handle to it.
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.createVolume({ Name: name, Labels: labels, abortSignal: signal } as Docker.VolumeCreateOptions))
    return await this.inspect(name)
  }

  capacityFor (): null {
    return null
  }

  async remove (name: string): Promise<void> {
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.getVolume(name).remove(withSignal(signal)))
  }

  async #details (details: VolumeDetails): Promise<[Map<string, number | null> | null, Map<string, VolumeUser[]> | null]> {
    const usedBy = details.usedBy
    return await Promise.all([
      // The engine walks every volume to answer: give it longer than an ordinary call.
      details.size === true
        ? this.#transport.call({ subject: 'engine', target: 'disk usage', timeoutMs: this.#transport.timeoutMs * 6 },
          (docker, signal) => (docker.df as (options: object) => Promise<Parameters<typeof volumeSizesOf>[0]>)(withSignal(signal))).then(volumeSizesOf)
        : null,
      usedBy === undefined
        ? null
        : this.#transport.call({ subject: 'container', target: 'containers' },
          (docker, signal) => docker.listContainers({ all: true, filters: usedBy.length > 0 ? { label: usedBy } : {}, abortSignal: signal })).then(volumeUsersOf)
    ])
  }
}
