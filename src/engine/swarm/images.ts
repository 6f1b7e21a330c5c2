// Images on a cluster: each node has its own store. A pull goes to every active node at once, each
// through its agent by the docker backend's own pull — so each node's layers are reported as they
// move, and each node's failure is said as such (the registry wants credentials, has no such image,
// the node is down) while the others carry on; it succeeds when a node has the image. (A global Swarm
// job per pull would tell only that a task failed, not which layer got where, nor cancel cleanly.)
// The list is the nodes' images together, each saying on which nodes it is; inspect and history come
// from a node that has it; remove takes it from every node, unless a container still runs from it.
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { ImageDigests } from '../docker/digests.ts'
import { DockerImages } from '../docker/images.ts'
import { pullFailureReason } from '../docker/mapping.ts'
import type { ImageRef } from '../image-ref.ts'
import type { ImagesPart } from '../parts.ts'
import type { Image, ImageHistoryEntry, ImageRemoval, ImageSummary, ListImagesOptions, NodePull, PulledImage, PullOptions } from '../types.ts'
import type { Agents } from './agents.ts'
import type { SwarmCluster } from './cluster.ts'
import { isNodeLost, nodeRefOf, type NodeRef } from './mapping.ts'

export class SwarmImages implements ImagesPart {
  readonly #cluster: SwarmCluster
  readonly #agents: Agents
  readonly #registryAuth: Record<string, RegistryCredentials>
  readonly #stores = new Map<string, DockerImages>()

  constructor (cluster: SwarmCluster, agents: Agents) {
    this.#cluster = cluster
    this.#agents = agents
    this.#registryAuth = cluster.options.registryAuth ?? {}
  }

  async pull (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    const nodes = (await this.#cluster.reads.nodes()).map(nodeRefOf).filter(node => node.availability === 'active')
    let started = false
    const outcomes = await Promise.all(nodes.map(async (node): Promise<{ outcome: NodePull, pulled?: PulledImage, error?: BerthError }> => {
      let result: { outcome: NodePull, pulled?: PulledImage, error?: BerthError }
      try {
        if (isNodeLost(node) || node.state !== 'ready') throw new BerthError('engine_unavailable', `node ${node.name} is ${node.state}`)
        const pulled = await this.#agents.on(node, async engine => await this.#store(node, engine).pull(ref, {
          ...(options.platform === undefined ? {} : { platform: options.platform }),
          ...(options.auth === undefined ? {} : { auth: options.auth }),
          ...(options.signal === undefined ? {} : { signal: options.signal }),
          onProgress: report => {
            if (report.kind === 'started') {
              // The registry served the manifest: the pull as a whole has started, once.
              if (!started) options.onProgress?.({ kind: 'started', node: node.name })
              started = true
            } else if (report.kind === 'layer') {
              // The node goes on the layer: each node's copy of a layer is progress of its own.
              options.onProgress?.({ kind: 'layer', layer: { ...report.layer, node: node.name }, node: node.name })
            }
          }
        }))
        result = { outcome: { node: node.name, state: 'pulled', reason: null, detail: null }, pulled }
      } catch (error) {
        if (options.signal?.aborted === true) throw error
        const failure = error instanceof BerthError ? error : new BerthError('pull_failed', `pulling ${ref.reference} on ${node.name} failed`, {}, { cause: error })
        result = { outcome: { node: node.name, state: 'failed', reason: reasonOf(failure), detail: failure.message }, error: failure }
      }
      options.onProgress?.({ kind: 'node', outcome: result.outcome })
      return result
    }))
    const pulled = outcomes.find(outcome => outcome.pulled !== undefined)?.pulled
    const perNode = outcomes.map(outcome => outcome.outcome)
    if (pulled !== undefined) return { ...pulled, nodes: perNode }
    throw failedEverywhere(ref, outcomes.flatMap(outcome => outcome.error === undefined ? [] : [outcome.error]), perNode)
  }

  async list (options: ListImagesOptions): Promise<ImageSummary[]> {
    const perNode = await this.#onEachNode(async store => await store.list(options))
    const byId = new Map<string, ImageSummary & { nodes: string[] }>()
    for (const { node, value: images } of perNode) {
      for (const image of images) {
        const known = byId.get(image.id)
        if (known === undefined) {
          byId.set(image.id, { ...image, nodes: [node.name] })
          continue
        }
        // One image by id: the names it has on any node, and where it is.
        known.tags = union(known.tags, image.tags)
        known.digests = union(known.digests, image.digests)
        known.nodes.push(node.name)
      }
    }
    return [...byId.values()].map(image => ({ ...image, nodes: image.nodes.sort() })).sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
  }

  async inspect (reference: string): Promise<Image> {
    const found = await this.#having(reference)
    const first = found[0] as { value: Image }
    return { ...first.value, nodes: found.map(({ node }) => node.name).sort() }
  }

  async history (reference: string): Promise<ImageHistoryEntry[]> {
    const [first] = await this.#having(reference)
    return await this.#agents.on((first as { node: NodeRef }).node, async engine => await this.#store((first as { node: NodeRef }).node, engine).history(reference))
  }

  async remove (reference: string, options: { force: boolean }): Promise<ImageRemoval> {
    const found = await this.#having(reference)
    const image = (found[0] as { value: Image }).value
    if (!options.force) {
      // A container on a cluster is a service: one that runs from it (in any state) would need it back on its next start.
      const users = (await this.#cluster.reads.services()).filter(service => usesImage(service.Spec.TaskTemplate.ContainerSpec.Image, reference, image))
      if (users.length > 0) throw new BerthError('image_in_use', `image ${reference} is in use by ${users.length === 1 ? 'a container' : `${users.length} containers`}`, { image: reference })
    }
    const removals = await Promise.all(found.map(async ({ node }) => await this.#agents.on(node, async engine => await this.#store(node, engine).remove(reference, options))))
    return { untagged: union(...removals.map(removal => removal.untagged)), deleted: union(...removals.map(removal => removal.deleted)) }
  }

  /** The image on every node that answers and has it; image_not_found when none has. */
  async #having (reference: string): Promise<Array<{ node: NodeRef, value: Image }>> {
    const perNode = await this.#onEachNode(async store => await store.inspect(reference).catch((error: unknown) => {
      if (error instanceof BerthError && error.code === 'image_not_found') return null
      throw error
    }))
    const found = perNode.flatMap(({ node, value }) => value === null ? [] : [{ node, value }])
    if (found.length === 0) throw new BerthError('image_not_found', `image ${reference} was not found on any node that answers`, { image: reference })
    return found
  }

  /** A read on each node that answers. */
  async #onEachNode<T> (read: (store: DockerImages) => Promise<T>): Promise<Array<{ node: NodeRef, value: T }>> {
    const nodes = (await this.#cluster.reads.nodes()).map(nodeRefOf).filter(node => node.state === 'ready')
    return await Promise.all(nodes.map(async node => ({ node, value: await this.#agents.on(node, async engine => await read(this.#store(node, engine))) })))
  }

  #store (node: NodeRef, engine: ReturnType<Agents['engine']>): DockerImages {
    const key = `${node.id}@${node.address ?? ''}`
    let store = this.#stores.get(key)
    if (store === undefined) {
      store = new DockerImages(engine, this.#registryAuth, new ImageDigests(engine))
      this.#stores.set(key, store)
    }
    return store
  }
}

/** Why a node's pull failed, in the words a client switches on. */
function reasonOf (error: BerthError): NodePull['reason'] {
  if (error.code === 'image_not_found') return 'not_found'
  if (error.code === 'engine_unavailable' || /stream broke|socket hang up|ECONNRESET/i.test(error.message)) return 'node_down'
  const reason = (error.extensions.reason as string | undefined) ?? pullFailureReason(error.message)
  return reason === 'registry_auth' || reason === 'registry_unreachable' ? reason : 'other'
}

/** No node has the image: the nodes' own error when they all say the same, else pull_failed naming each. */
function failedEverywhere (ref: ImageRef, errors: BerthError[], nodes: NodePull[]): BerthError {
  const reasons = new Set(nodes.map(node => node.reason))
  const first = errors[0]
  if (first !== undefined && reasons.size === 1 && !reasons.has('node_down')) {
    return new BerthError(first.code, first.message, { ...first.extensions, nodes }, { cause: first, headers: first.headers })
  }
  const said = nodes.map(node => `${node.node}: ${node.detail ?? node.reason}`).join('; ')
  return new BerthError('pull_failed', nodes.length === 0 ? `no node is active to pull ${ref.reference} onto` : `no node could pull ${ref.reference}: ${said}`,
    { image: ref.reference, reason: [...reasons][0] === 'registry_auth' ? 'registry_auth' : 'other', nodes })
}

function union (...lists: string[][]): string[] {
  return [...new Set(lists.flat())].sort()
}

/** Whether a service's image (as it runs it: repo[:tag][@digest]) is this image. */
function usesImage (serviceImage: string, reference: string, image: Image): boolean {
  if (serviceImage === reference || serviceImage.startsWith(`${reference}@`)) return true
  const digest = serviceImage.split('@')[1]
  return digest !== undefined && image.digests.some(known => known.endsWith(`@${digest}`))
}
