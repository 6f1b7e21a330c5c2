// The docker backend's expiry part. A container's expiry is in its labels, fixed once it is made; a
// moved end (PUT …/expiry) is kept beside it in a small volume labelled with the container's id and
// the new end — berth's bookkeeping, listed to nobody. The newest such lease wins; older ones go.
import type Docker from 'dockerode'
import { LABEL_DEPLOYMENT, LABEL_EXPIRES_AT, LABEL_EXPIRY_ACTION, LABEL_LEASE_FOR, LABEL_MANAGED } from '../../access/ownership.ts'
import type { ExpiryPart } from '../parts.ts'
import type { ContainerState, ExpiringContainer } from '../types.ts'
import { expiryOf } from './mapping.ts'
import { withSignal, type DockerTransport } from './transport.ts'

interface Lease {
  volume: string
  container: string
  expiresAt: string
  /** When it was written (ms), from its name: the newest wins. */
  written: number
}

export class DockerExpiry implements ExpiryPart {
  readonly #transport: DockerTransport

  constructor (transport: DockerTransport) {
    this.#transport = transport
  }

  async list (labels: string[]): Promise<ExpiringContainer[]> {
    const [containers, leases] = await Promise.all([
      this.#transport.call({ subject: 'container', target: 'containers' },
        (docker, signal) => docker.listContainers({ all: true, filters: { label: [...labels, LABEL_EXPIRY_ACTION] }, abortSignal: signal })),
      this.#leases([...labels, LABEL_LEASE_FOR])
    ])
    const latest = latestLeases(leases)
    const ids = new Set(containers.map(container => container.Id))
    // The moved ends of containers that are gone (removed, also behind berth's back) are forgotten.
    for (const lease of leases) if (!ids.has(lease.container)) await this.#removeVolume(lease.volume).catch(() => {})
    return containers.flatMap(info => {
      const { expiry } = expiryOf(info.Labels ?? {}, latest.get(info.Id)?.expiresAt)
      return expiry === undefined ? [] : [{ id: info.Id, name: (info.Names[0] ?? '').replace(/^\//, ''), state: info.State as ContainerState, labels: info.Labels ?? {}, expiry }]
    })
  }

  async set (id: string, expiresAt: string): Promise<void> {
    const info = await this.#transport.call({ subject: 'container', target: id }, (docker, signal) => docker.getContainer(id).inspect({ abortSignal: signal }))
    const before = await this.#leases([`${LABEL_LEASE_FOR}=${info.Id}`])
    const name = `berth-lease-${info.Id.slice(0, 12)}-${Date.now()}`
    const deployment = info.Config.Labels?.[LABEL_DEPLOYMENT]
    const labels = { [LABEL_MANAGED]: 'true', ...(deployment === undefined ? {} : { [LABEL_DEPLOYMENT]: deployment }), [LABEL_LEASE_FOR]: info.Id, [LABEL_EXPIRES_AT]: expiresAt }
    await this.#transport.call({ subject: 'volume', target: name },
      (docker, signal) => docker.createVolume({ Name: name, Labels: labels, abortSignal: signal } as Docker.VolumeCreateOptions))
    for (const lease of before) await this.#removeVolume(lease.volume).catch(() => {})
  }

  /** The moved end of one container's time to live, when it was moved. */
  async movedEnd (containerId: string): Promise<string | undefined> {
    return latestLeases(await this.#leases([`${LABEL_LEASE_FOR}=${containerId}`])).get(containerId)?.expiresAt
  }

  async #leases (labels: string[]): Promise<Lease[]> {
    const listed = await this.#transport.call({ subject: 'volume', target: 'volumes' },
      (docker, signal) => docker.listVolumes({ filters: { label: labels }, abortSignal: signal } as Docker.VolumeListOptions))
    return (listed.Volumes ?? []).flatMap(volume => {
      const container = volume.Labels?.[LABEL_LEASE_FOR]
      const expiresAt = volume.Labels?.[LABEL_EXPIRES_AT]
      const written = Number(/-(\d+)$/.exec(volume.Name)?.[1])
      return container === undefined || expiresAt === undefined ? [] : [{ volume: volume.Name, container, expiresAt, written }]
    })
  }

  async #removeVolume (name: string): Promise<void> {
    await this.#transport.call({ subject: 'volume', target: name }, (docker, signal) => docker.getVolume(name).remove(withSignal(signal)))
  }
}

function latestLeases (leases: Lease[]): Map<string, Lease> {
  const latest = new Map<string, Lease>()
  for (const lease of leases) {
    const known = latest.get(lease.container)
    if (known === undefined || lease.written > known.written) latest.set(lease.container, lease)
  }
  return latest
}
