// Images on Kubernetes: what the nodes hold, and pulls onto them. A node has its own image store
// that only its kubelet drives, so berth pulls with a short-lived pod per node (puller.ts) and lists
// what the nodes report holding (node.status.images: names and sizes, by default the kubelet's 50
// largest). An image's id here is its manifest digest — what the nodes name it by and what a
// container's pods report running — and what the nodes do not say (when it was made, its labels,
// platform and history) is read from the registry it came from (registry.ts), kept by digest.
// Removing an image from a node is the kubelet's own garbage collection: the backend has no such part.
import type { V1Node } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { parseImage, type ImageRef } from '../image-ref.ts'
import type { ImagesPart } from '../parts.ts'
import { notSupported } from '../parts.ts'
import { RegistryReader, UNKNOWN_CREATED, type RegistryImage } from '../registry.ts'
import type { Image, ImageHistoryEntry, ImageSummary, ListImagesOptions, PulledImage, PullOptions } from '../types.ts'
import { outcomeOf, pullOntoNodes } from './puller.ts'
import type { KubeShared } from './shared.ts'

/** A registry berth could not read is not asked again for this long (its rate limit counts the nodes' pulls too). */
const UNREADABLE_MS = 60_000
/** Registry reads a list makes at once. */
const READS_AT_ONCE = 8

/** One image as the nodes hold it: every name it has on any node, and where it is. */
export interface HeldImage {
  digest: string
  /** `repo@digest` as the registry knows it, to read it by. */
  source: ImageRef
  tags: string[]
  digests: string[]
  size: number
  nodes: string[]
  platform: { os: string, architecture: string }
}

export class KubeImages implements ImagesPart {
  readonly #shared: KubeShared
  readonly #registry: RegistryReader
  readonly #unreadable = new Map<string, number>()

  constructor (shared: KubeShared, insecureRegistries: readonly string[]) {
    this.#shared = shared
    this.#registry = new RegistryReader({ auth: shared.options.registryAuth ?? {}, insecure: insecureRegistries, timeoutMs: shared.client.timeoutMs })
  }

  async pull (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    if (options.platform !== undefined) {
      // A node pulls the image for its own platform: a platform is honoured only where every node has it.
      const platforms = new Set(heldPlatforms(await this.#shared.nodes(options.signal)))
      if (platforms.size !== 1 || !platforms.has(options.platform)) {
        throw notSupported('kubernetes', `platform: each node pulls the image for its own platform (${[...platforms].join(', ') || 'none'}); leave platform out, or place the run with node.platform constraints`)
      }
    }
    let started = false
    const pulled = await pullOntoNodes(this.#shared, ref.reference, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.auth === undefined ? {} : { auth: options.auth }),
      onNode: pull => {
        if (pull.state === 'pulling' && !started) {
          started = true
          options.onProgress?.({ kind: 'started', node: pull.node })
        }
        const outcome = outcomeOf(pull)
        if (outcome !== null) options.onProgress?.({ kind: 'node', outcome })
      }
    })
    const digest = pulled.digest
    const held = digest === null ? undefined : heldImages(await this.#shared.nodes(options.signal)).find(image => image.digest === digest)
    return {
      id: digest ?? '',
      reference: ref.reference,
      digest,
      tags: held?.tags ?? (ref.tag === undefined ? [] : [ref.reference]),
      nodes: pulled.nodes.flatMap(node => outcomeOf(node) ?? [])
    }
  }

  async list (options: ListImagesOptions): Promise<ImageSummary[]> {
    const held = heldImages(await this.#shared.nodes())
    const described = await mapBounded(held, READS_AT_ONCE, async image => ({ image, about: await this.#described(image) }))
    const listed: ImageSummary[] = []
    for (const { image, about } of described) {
      const names = narrowed(image, options.reference)
      if (names === null) continue
      if (options.dangling === true && names.tags.length > 0) continue
      if (options.dangling === false && names.tags.length === 0) continue
      const labels = about?.labels ?? {}
      if (!(options.labels ?? []).every(wanted => hasLabel(labels, wanted))) continue
      listed.push({ id: image.digest, tags: names.tags, digests: names.digests, createdAt: about?.createdAt ?? UNKNOWN_CREATED, size: image.size, labels, nodes: image.nodes })
    }
    return listed.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || a.id.localeCompare(b.id))
  }

  /** What the nodes and (when it can be read) the registry say; without the registry, what the nodes say. */
  async inspect (reference: string): Promise<Image> {
    const image = await this.#held(reference)
    const about = await this.#described(image)
    return {
      id: image.digest,
      tags: image.tags,
      digests: image.digests,
      createdAt: about?.createdAt ?? UNKNOWN_CREATED,
      size: image.size,
      labels: about?.labels ?? {},
      nodes: image.nodes,
      architecture: about?.architecture || image.platform.architecture,
      os: about?.os || image.platform.os
    }
  }

  /** The steps the registry says made it; none when the registry cannot be read now. */
  async history (reference: string): Promise<ImageHistoryEntry[]> {
    const image = await this.#held(reference)
    const steps = (await this.#described(image))?.history ?? []
    // As docker history: the newest step is the image itself, with its id and names.
    return steps.map((step, index) => index === 0 ? { ...step, id: image.digest, tags: image.tags } : step)
  }

  /** The image a reference (a digest as id, repo:tag or repo@digest) names among those the nodes hold. */
  async #held (reference: string): Promise<HeldImage> {
    const held = heldImages(await this.#shared.nodes())
    const parsed = parseImage(reference)
    // An id as docker takes it: the digest, or a prefix of it (12 hex digits and more), with or without sha256:.
    const prefix = /^(sha256:)?[0-9a-f]{12,64}$/.test(reference) ? `sha256:${reference.replace(/^sha256:/, '')}` : null
    const found = prefix !== null
      ? held.find(image => image.digest.startsWith(prefix))
      : typeof parsed === 'string'
        ? undefined
        : parsed.kind === 'id'
          ? held.find(image => image.digest === parsed.id)
          : held.find(image => parsed.ref.digest !== undefined
            ? image.digest === parsed.ref.digest && image.digests.some(name => name.startsWith(`${parsed.ref.repository}@`))
            : image.tags.includes(parsed.ref.reference))
    if (found === undefined) throw new BerthError('image_not_found', `image ${reference} is not on any node of the cluster`, { image: reference })
    return found
  }

  /** What the registry says of an image, or null when it cannot be read now (the list goes on without it). */
  async #described (image: HeldImage): Promise<RegistryImage | null> {
    const registry = image.source.registry
    if ((this.#unreadable.get(registry) ?? 0) > Date.now()) return null
    try {
      return await this.#registry.read(image.source, image.platform)
    } catch {
      // Away, refusing berth's credentials, or rate-limiting: not asked again for a while.
      this.#unreadable.set(registry, Date.now() + UNREADABLE_MS)
      return null
    }
  }
}

/** The platform a node pulls images for, as its kubelet reports it. */
function platformOf (node: V1Node): { os: string, architecture: string } {
  return { os: node.status?.nodeInfo?.operatingSystem ?? 'linux', architecture: node.status?.nodeInfo?.architecture ?? 'amd64' }
}

/** The platforms of the nodes, as `os/arch`. */
function heldPlatforms (nodes: V1Node[]): string[] {
  return nodes.map(node => {
    const { os, architecture } = platformOf(node)
    return `${os}/${architecture}`
  })
}

/**
 * The images the nodes report, one per manifest digest: the names it has anywhere (familiar, as
 * docker prints them), its size, the nodes holding it. An image a node holds without a registry
 * digest (imported onto it by hand) has no id berth could give it and is left out.
 */
export function heldImages (nodes: V1Node[]): HeldImage[] {
  const byDigest = new Map<string, HeldImage>()
  for (const node of nodes) {
    const name = node.metadata?.name ?? ''
    const platform = platformOf(node)
    for (const entry of node.status?.images ?? []) {
      const refs = (entry.names ?? []).flatMap(named => {
        const parsed = parseImage(named)
        return typeof parsed === 'string' || parsed.kind !== 'ref' ? [] : [parsed.ref]
      })
      const source = refs.find(ref => ref.digest !== undefined)
      if (source?.digest === undefined) continue
      const tags = refs.filter(ref => ref.digest === undefined && ref.tag !== undefined).map(ref => ref.reference)
      const digests = refs.filter(ref => ref.digest !== undefined).map(ref => ref.reference)
      const known = byDigest.get(source.digest)
      if (known === undefined) {
        byDigest.set(source.digest, { digest: source.digest, source, tags, digests, size: entry.sizeBytes ?? 0, nodes: [name], platform })
        continue
      }
      known.tags = union(known.tags, tags)
      known.digests = union(known.digests, digests)
      known.size = Math.max(known.size, entry.sizeBytes ?? 0)
      if (!known.nodes.includes(name)) known.nodes.push(name)
    }
  }
  return [...byDigest.values()].map(image => ({ ...image, tags: image.tags.sort(), digests: image.digests.sort(), nodes: image.nodes.sort() }))
}

/**
 * docker images --filter reference=PATTERN: an image matches when one of its names (repo:tag, or repo)
 * matches the pattern as a path glob (`*` stops at `/`); its names are narrowed to the matching ones.
 * null: it does not match.
 */
export function narrowed (image: Pick<HeldImage, 'tags' | 'digests'>, pattern: string | undefined): { tags: string[], digests: string[] } | null {
  if (pattern === undefined) return { tags: image.tags, digests: image.digests }
  const glob = globOf(pattern)
  const repositoryOf = (name: string): string => name.replace(/@.*$/, '').replace(/:[^:/]*$/, '')
  const tags = image.tags.filter(name => glob.test(name) || glob.test(repositoryOf(name)))
  const digests = image.digests.filter(name => glob.test(repositoryOf(name)))
  return tags.length === 0 && digests.length === 0 ? null : { tags, digests }
}

function globOf (pattern: string): RegExp {
  let source = ''
  for (const char of pattern) {
    if (char === '*') source += '[^/]*'
    else if (char === '?') source += '[^/]'
    else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${source}$`)
}

function hasLabel (labels: Record<string, string>, wanted: string): boolean {
  const eq = wanted.indexOf('=')
  return eq === -1 ? wanted in labels : labels[wanted.slice(0, eq)] === wanted.slice(eq + 1)
}

function union (a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])]
}

async function mapBounded<T, R> (items: T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index] as T)
    }
  }))
  return results
}
