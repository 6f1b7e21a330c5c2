// Reads what a registry says about an image: its manifest (for the platform asked), then its config
// blob — when it was made, its labels, its platform, and the steps that made it (docker history).
// A cluster's nodes report only an image's names and size; the registry they pulled it from is where
// the rest is. Registry API v2 (distribution spec): anonymous, Basic, or a Bearer token fetched from
// the realm the registry names, with the credentials berth was configured with for that registry.
// What is read by digest never changes, so it is kept; a tag is asked again each time.
import type { RegistryCredentials } from '../config.ts'
import { BerthError } from '../errors.ts'
import type { ImageRef } from './image-ref.ts'
import type { ImageHistoryEntry } from './types.ts'

const MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const ACCEPT = [MANIFEST, OCI_MANIFEST, LIST, OCI_INDEX].join(', ')
/** A manifest or config larger than this is not one berth reads. */
const MAX_DOCUMENT = 4 * 1024 * 1024
const KEPT = 512

/** An image as its registry describes it. */
export interface RegistryImage {
  /** The manifest digest: `repo@digest` names exactly this image. */
  digest: string
  createdAt: string | null
  architecture: string
  os: string
  labels: Record<string, string>
  /** The layers and config as stored (compressed). */
  size: number
  /** docker history, newest first; sizes are the compressed layers. */
  history: ImageHistoryEntry[]
}

export interface RegistryReaderOptions {
  /** Credentials by registry host, as BERTH_REGISTRY_AUTH_FILE gives them. */
  auth: Record<string, RegistryCredentials>
  /** Registries read over plain HTTP besides the loopback ones (as the engine's insecure-registries). */
  insecure: readonly string[]
  timeoutMs: number
}

interface Descriptor { mediaType?: string, digest: string, size: number, platform?: { architecture?: string, os?: string, variant?: string } }
interface Manifest { mediaType?: string, config?: Descriptor, layers?: Descriptor[], manifests?: Descriptor[] }
interface ConfigBlob {
  created?: string
  architecture?: string
  os?: string
  config?: { Labels?: Record<string, string> | null }
  history?: Array<{ created?: string, created_by?: string, comment?: string, empty_layer?: boolean }>
}

export class RegistryReader {
  readonly #options: RegistryReaderOptions
  readonly #kept = new Map<string, RegistryImage>()
  readonly #tokens = new Map<string, string>()

  constructor (options: RegistryReaderOptions) {
    this.#options = options
  }

  /** The image `ref` names, for this platform when the name is a multi-platform index. */
  async read (ref: ImageRef, platform: { os: string, architecture: string }, signal?: AbortSignal): Promise<RegistryImage> {
    const key = ref.digest === undefined ? undefined : `${ref.name}@${ref.digest}/${platform.os}/${platform.architecture}`
    const known = key === undefined ? undefined : this.#kept.get(key)
    if (known !== undefined) return known
    let { body: manifest, digest } = await this.#manifest(ref, ref.digest ?? ref.tag ?? 'latest', signal)
    if (manifest.manifests !== undefined) {
      if (!Array.isArray(manifest.manifests)) throw unreadable(ref, 'its index has no list of manifests')
      const chosen = manifest.manifests.find(entry => entry.platform?.os === platform.os && entry.platform.architecture === platform.architecture) ??
        manifest.manifests.find(entry => entry.platform?.os === platform.os)
      if (chosen === undefined) throw new BerthError('image_not_found', `${ref.reference} has no image for ${platform.os}/${platform.architecture}`, { image: ref.reference })
      ;({ body: manifest, digest } = await this.#manifest(ref, chosen.digest, signal))
    }
    if (manifest.config === undefined) throw unreadable(ref, 'its manifest names no config')
    const config = await this.#json<ConfigBlob>(ref, `blobs/${manifest.config.digest}`, 'application/json', signal)
    const image = imageOf(digest, manifest, config.body)
    if (key !== undefined) {
      if (this.#kept.size >= KEPT) this.#kept.delete(this.#kept.keys().next().value as string)
      this.#kept.set(key, image)
    }
    return image
  }

  async #manifest (ref: ImageRef, reference: string, signal?: AbortSignal): Promise<{ body: Manifest, digest: string }> {
    const { body, response } = await this.#json<Manifest>(ref, `manifests/${reference}`, ACCEPT, signal)
    const digest = response.headers.get('docker-content-digest') ?? (reference.startsWith('sha256:') ? reference : null)
    if (digest === null) throw unreadable(ref, 'the registry did not say the manifest\'s digest')
    return { body, digest }
  }

  async #json<T> (ref: ImageRef, path: string, accept: string, signal?: AbortSignal): Promise<{ body: T, response: Response }> {
    const url = `${this.#base(ref.registry)}/v2/${ref.path}/${path}`
    const deadline = AbortSignal.timeout(this.#options.timeoutMs)
    const bounded = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
    let response: Response
    try {
      response = await this.#fetch(ref, url, accept, bounded)
    } catch (error) {
      if (signal?.aborted === true) throw error
      throw new BerthError('engine_unavailable', `berth could not reach ${ref.registry} to read ${ref.reference}: ${(error as Error).message}`, {}, { cause: error })
    }
    if (response.status === 404) {
      await response.body?.cancel()
      throw new BerthError('image_not_found', `${ref.registry} has no ${ref.reference}`, { image: ref.reference })
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw unreadable(ref, `the registry answered ${response.status}`)
    }
    const length = Number(response.headers.get('content-length') ?? '0')
    if (length > MAX_DOCUMENT) {
      await response.body?.cancel()
      throw unreadable(ref, `its ${path.split('/')[0] ?? ''} is ${length} bytes, more than berth reads`)
    }
    const text = await readBounded(response, ref, signal)
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch (error) {
      throw unreadable(ref, `the registry's answer is not JSON: ${(error as Error).message}`)
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw unreadable(ref, 'the registry\'s answer is not a JSON object')
    return { body: body as T, response }
  }

  /** GET, answering the registry's challenge once: Basic with the credentials, or a Bearer token from its realm. */
  async #fetch (ref: ImageRef, url: string, accept: string, signal: AbortSignal): Promise<Response> {
    const scope = `repository:${ref.path}:pull`
    const cached = this.#tokens.get(`${ref.registry} ${scope}`)
    const first = await fetch(url, { headers: { accept, ...(cached === undefined ? {} : { authorization: cached }) }, signal, redirect: 'follow' })
    if (first.status !== 401) return first
    await first.body?.cancel()
    const challenge = first.headers.get('www-authenticate') ?? ''
    const credentials = this.#options.auth[ref.registry]
    let authorization: string
    if (/^basic/i.test(challenge)) {
      if (credentials?.username === undefined) return first
      authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ''}`).toString('base64')}`
    } else {
      const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map(match => [match[1] as string, match[2] as string]))
      const realm = this.#realm(ref, params.realm)
      if (realm === null) return first
      if (params.service !== undefined) realm.searchParams.set('service', params.service)
      realm.searchParams.set('scope', params.scope ?? scope)
      const basic = credentials?.username === undefined ? {} : { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ''}`).toString('base64')}` }
      // The realm gets the registry's credentials: it is asked as named, never where a redirect points.
      const answer = await fetch(realm, { headers: basic, signal, redirect: 'error' })
      if (!answer.ok) {
        await answer.body?.cancel()
        return first
      }
      const token = await answer.json() as { token?: string, access_token?: string }
      const value = token.token ?? token.access_token
      if (value === undefined) return first
      authorization = `Bearer ${value}`
    }
    this.#tokens.set(`${ref.registry} ${scope}`, authorization)
    return await fetch(url, { headers: { accept, authorization }, signal, redirect: 'follow' })
  }

  /**
   * Where a registry sends berth for a token, if berth may go there with its credentials: over HTTPS
   * (plain HTTP only from a registry read over HTTP), never to a link-local address (a cloud's
   * metadata service).
   */
  #realm (ref: ImageRef, named: string | undefined): URL | null {
    if (named === undefined) return null
    let realm: URL
    try {
      realm = new URL(named)
    } catch {
      return null
    }
    const plainRegistry = this.#base(ref.registry).startsWith('http:')
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && plainRegistry)) return null
    const host = realm.hostname.replace(/^\[|\]$/g, '')
    if (/^169\.254\./.test(host) || /^fe[89ab][0-9a-f]:/i.test(host)) return null
    return realm
  }

  #base (registry: string): string {
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry
    const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    const plain = name === 'localhost' || name === '::1' || /^127\./.test(name) || this.#options.insecure.includes(registry)
    return `${plain ? 'http' : 'https'}://${host}`
  }
}

/** The image from its manifest and config: history newest first, each step's size its layer's. */
export function imageOf (digest: string, manifest: Manifest, config: ConfigBlob): RegistryImage {
  // What a registry sends is not trusted to have the shape the spec gives it.
  const layers = Array.isArray(manifest.layers) ? manifest.layers : []
  let layer = 0
  const steps = (Array.isArray(config.history) ? config.history : []).filter(step => typeof step === 'object' && step !== null).map(step => {
    const layerSize = step.empty_layer === true ? 0 : layers[layer++]?.size
    return {
      id: null,
      createdAt: timeOf(step.created) ?? timeOf(config.created) ?? UNKNOWN_CREATED,
      createdBy: typeof step.created_by === 'string' ? step.created_by : '',
      size: Number.isSafeInteger(layerSize) ? layerSize as number : 0,
      comment: typeof step.comment === 'string' ? step.comment : '',
      tags: []
    }
  })
  return {
    digest,
    createdAt: timeOf(config.created),
    architecture: typeof config.architecture === 'string' ? config.architecture : '',
    os: typeof config.os === 'string' ? config.os : '',
    labels: typeof config.config?.Labels === 'object' && config.config.Labels !== null ? config.config.Labels : {},
    size: layers.reduce((sum, entry) => sum + (Number.isSafeInteger(entry.size) ? entry.size : 0), Number.isSafeInteger(manifest.config?.size) ? manifest.config?.size as number : 0),
    history: steps.reverse()
  }
}

/** docker's own "unknown" time, where an image's config says none. */
export const UNKNOWN_CREATED = '0001-01-01T00:00:00Z'

/** A time the config gives, if it is one. */
function timeOf (value: unknown): string | null {
  return typeof value === 'string' && !Number.isNaN(Date.parse(value)) ? value : null
}

/** The body, read up to MAX_DOCUMENT bytes (a registry that sends more is refused, not buffered); a broken read is the registry away. */
async function readBounded (response: Response, ref: ImageRef, signal?: AbortSignal): Promise<string> {
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    if (response.body === null) return ''
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      size += chunk.length
      if (size > MAX_DOCUMENT) {
        await response.body.cancel().catch(() => {})
        throw unreadable(ref, `a document of more than ${MAX_DOCUMENT} bytes, more than berth reads`)
      }
      chunks.push(chunk)
    }
  } catch (error) {
    if (error instanceof BerthError || signal?.aborted === true) throw error
    throw new BerthError('engine_unavailable', `berth could not read ${ref.reference} from ${ref.registry}: ${(error as Error).message}`, {}, { cause: error })
  }
  return Buffer.concat(chunks).toString('utf8')
}

function unreadable (ref: ImageRef, why: string): BerthError {
  return new BerthError('engine_error', `berth could not read ${ref.reference} from ${ref.registry}: ${why}`)
}
