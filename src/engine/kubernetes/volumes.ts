// The kubernetes backend's volumes part: a named volume is a PersistentVolumeClaim of the same name
// in berth's namespace, made in the configured storage class (or the cluster's default one) with a
// size and an access mode; whatever provisions that class makes its PersistentVolume. Never a host
// path. Reads come from the watch-fed copy of the claims; the containers that mount one are read
// from the workloads' pod templates, so a stopped container (scaled to none) keeps it in use too.
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node'
import { KUBE_VOLUME_DEFAULTS, type KubeVolumeSettings } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import type { VolumeUser } from '../../schemas/volumes.ts'
import type { VolumesPart } from '../parts.ts'
import type { Volume, VolumeDetails } from '../types.ts'
import { LABEL_MANAGED_BY, checkVolumeName, claimOf, type Workload } from './mapping.ts'
import { claimsOf, idOf, labelsOf, matchesLabels, stateOf, volumeOfClaim } from './reading.ts'
import type { KubeShared } from './shared.ts'

export class KubeVolumes implements VolumesPart {
  readonly #shared: KubeShared
  readonly #settings: KubeVolumeSettings

  constructor (shared: KubeShared) {
    this.#shared = shared
    this.#settings = shared.options.volumes ?? KUBE_VOLUME_DEFAULTS
  }

  async list (options: { labels: string[] } & VolumeDetails): Promise<Volume[]> {
    await this.#shared.ready()
    return this.#claims()
      .filter(claim => matchesLabels(labelsOf(claim), options.labels))
      .map(claim => volumeOfClaim(claim, this.#users(claim.metadata?.name ?? '', options.usedBy)))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  async inspect (name: string, details: VolumeDetails = {}): Promise<Volume> {
    return volumeOfClaim(await this.#claim(name), this.#users(name, details.usedBy))
  }

  /** The bytes a claim made with this size asked for gets; past the cap (BERTH_KUBE_VOLUME_MAX_SIZE) it is refused. */
  capacityFor (size: number | undefined): number {
    const bytes = size ?? this.#settings.defaultBytes
    if (bytes > this.#settings.maxBytes) {
      throw new BerthError('policy_denied', `a volume may hold at most ${this.#settings.maxBytes} bytes here (BERTH_KUBE_VOLUME_MAX_SIZE); ${bytes} were asked for`, { rule: 'volumeSize' })
    }
    return bytes
  }

  async create (name: string, labels: Record<string, string>, options: { size?: number } = {}): Promise<Volume> {
    checkVolumeName(name)
    const bytes = this.capacityFor(options.size)
    const namespace = this.#shared.namespace
    try {
      const made = await this.#shared.client.call({ subject: 'volume', target: name }, async call =>
        await this.#shared.client.core.createNamespacedPersistentVolumeClaim({ namespace, body: claimOf(name, labels, bytes, this.#settings) }, call))
      this.#shared.claims.apply(made)
      return volumeOfClaim(made, [])
    } catch (error) {
      // As docker does: a volume of that name is answered as it is; its labels say whose it is.
      if (error instanceof BerthError && error.code === 'name_conflict') return await this.inspect(name)
      throw error
    }
  }

  /**
   * Refused while a container mounts it. Resolves once the claim is gone; a claim a pod outside
   * berth still mounts stays (Kubernetes keeps it until that pod is gone), and that is said (503).
   */
  async remove (name: string): Promise<void> {
    const claim = await this.#claim(name)
    const users = this.#users(name, [])
    if (users.length > 0) throw new BerthError('volume_in_use', `volume ${name} is in use`, { volume: name })
    const namespace = this.#shared.namespace
    await this.#shared.client.call({ subject: 'volume', target: name }, async call =>
      await this.#shared.client.core.deleteNamespacedPersistentVolumeClaim({ namespace, name }, call)).catch((error: unknown) => {
      if (!(error instanceof BerthError && error.code === 'not_found')) throw error
    })
    const uid = claim.metadata?.uid
    const waitMs = this.#shared.client.timeoutMs * 3
    const deadline = Date.now() + waitMs
    for (;;) {
      await this.#shared.ready()
      const still = this.#shared.claims.get(name)
      if (still === undefined || still.metadata?.uid !== uid) return
      if (Date.now() >= deadline) {
        throw new BerthError('engine_unavailable', `volume ${name} is not gone yet after ${waitMs} ms: a pod still mounts its PersistentVolumeClaim (Kubernetes keeps it until that pod is gone); ask again to wait for it`,
          { volume: name }, { headers: { 'retry-after': '5' } })
      }
      await sleep(this.#shared.pollMs)
    }
  }

  /** berth's claims: those it made (a claim of the namespace made otherwise is not a berth volume). */
  #claims (): V1PersistentVolumeClaim[] {
    return this.#shared.claims.list().filter(claim => claim.metadata?.labels?.[LABEL_MANAGED_BY] === 'berth')
  }

  async #claim (name: string): Promise<V1PersistentVolumeClaim> {
    await this.#shared.ready()
    const claim = this.#shared.claims.get(name)
    if (claim === undefined || claim.metadata?.labels?.[LABEL_MANAGED_BY] !== 'berth') throw new BerthError('not_found', `volume ${name} was not found`)
    return claim
  }

  /** The containers whose pods mount the claim, among those whose labels match `filters` (none asked: []). */
  #users (name: string, filters: string[] | undefined): VolumeUser[] {
    if (filters === undefined) return []
    return this.#shared.workloads()
      .filter(workload => claimsOf(workload.object).includes(name) && matchesLabels(labelsOf(workload.object), filters))
      .map(workload => userOf(workload, this.#shared))
      .sort((a, b) => a.name.localeCompare(b.name))
  }
}

function userOf (workload: Workload, shared: KubeShared): VolumeUser {
  const id = idOf(workload.object)
  return { id, name: workload.object.metadata?.name ?? '', state: stateOf(workload, shared.podsOf(id)) }
}
