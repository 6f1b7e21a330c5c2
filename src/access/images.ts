// Images as one requester may build, name and share them: what a build may fetch (every FROM and
// COPY --from against the image allow-list), the names it may take (on the allow-list, and free or
// its own unless it is an admin: images are shared by every token), where it may push (its push
// namespace, BERTH_PUSH_NAMESPACE: a registry is shared by every token, and berth often pushes with
// the server's own credentials, so berth is what keeps one token from overwriting another's), and
// who uses an image.
import type { Policy } from '../config.ts'
import type { ImageRef } from '../engine/image-ref.ts'
import type { BuildSpec, Image } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import { BerthError } from '../errors.ts'
import { DockerfileError, parseDockerfile } from '../builds/dockerfile.ts'
import type { BuildQuery } from '../schemas/builds.ts'
import { RESERVED_LABEL_PREFIX, type Ownership, type Principal } from './ownership.ts'
import { checkImage, deny, imageFrom, invalid } from './policy.ts'

export interface ImageUser {
  id: string
  name: string
  state: string
}

export class ImageAccess {
  readonly #engine: Backend
  readonly #ownership: Ownership
  readonly #policy: Policy

  constructor (engine: Backend, ownership: Ownership, policy: Policy) {
    this.#engine = engine
    this.#ownership = ownership
    this.#policy = policy
  }

  /**
   * A build as the engine will run it, once policy admits it; the context is added by the caller.
   * `dockerfile` is the Dockerfile as berth read it from the context and its cleaned path there: the
   * engine is told to read that path of berth's context, which holds exactly that text.
   */
  async admitBuild (requester: Principal, query: BuildQuery, dockerfile: { text: string, path: string }): Promise<Omit<BuildSpec, 'context'>> {
    const buildArgs = pairs(query.buildArg ?? [], 'querystring/buildArg')
    const labels = pairs(query.label ?? [], 'querystring/label')
    for (const key of Object.keys(labels)) {
      if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`querystring/label/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
    }
    let parsed
    try {
      parsed = parseDockerfile(dockerfile.text, buildArgs, query.target)
    } catch (error) {
      if (!(error instanceof DockerfileError)) throw error
      throw new BerthError('validation_failed', `${query.dockerfile} ${error.message}`, { errors: [{ location: 'dockerfile', path: `/${error.line}`, message: error.message }] })
    }
    // Every image the build may fetch, before anything reaches the engine.
    for (const use of parsed.images) {
      try {
        checkImage(this.#policy, { kind: 'ref', ref: use.ref })
      } catch (error) {
        if (!(error instanceof BerthError)) throw error
        throw new BerthError('policy_denied', `${use.instruction} (Dockerfile line ${use.line}): ${error.message}`, { ...error.extensions, line: use.line })
      }
    }
    if (query.network === 'default' && !this.#policy.buildNetwork) {
      throw deny('buildNetwork', 'RUN steps may not have a network (BERTH_BUILD_NETWORK); build with network=none')
    }
    // The engine fetches an ADD's URL itself, from its host's network, whatever network RUN steps get.
    const url = parsed.urls[0]
    if (url !== undefined && query.network !== 'default') {
      throw new BerthError('policy_denied', `${url.instruction} (Dockerfile line ${url.line}): ADD ${/^https?:\/\//i.test(url.source) ? 'fetches' : 'may fetch'} ${url.source} from the engine's own network, and this build has none; ` +
        (this.#policy.buildNetwork ? 'build with network=default, or ' : '') + 'put the file in the context and COPY it', { rule: 'buildNetwork', line: url.line })
    }
    // Where a build pushes what it tags (a cluster's builder), each tag is a push too: in the namespace.
    const publishes = this.#engine.part('builds').publishes === true
    const tags = (query.tag ?? []).map((tag, index) => publishes ? this.pushRef(requester, tag, `querystring/tag/${index}`) : this.#tagRef(tag, `querystring/tag/${index}`))
    for (const tag of tags) await this.checkName(requester, tag)
    return {
      dockerfile: dockerfile.path,
      tags,
      buildArgs,
      labels: { ...labels, ...this.#ownership.builtByLabel(requester.name) },
      ...(query.target === undefined ? {} : { target: query.target }),
      ...(query.platform === undefined ? {} : { platform: query.platform }),
      pull: query.pull,
      noCache: query.noCache,
      network: query.network,
      ...(this.#policy.maxMemoryBytes === null ? {} : { memory: this.#policy.maxMemoryBytes }),
      ...(this.#policy.maxCpus === null ? {} : { cpus: this.#policy.maxCpus })
    }
  }

  /** A `repo:tag` a requester may give an image: on the allow-list, no digest. */
  #tagRef (input: string, field: string): ImageRef {
    const parsed = imageFrom(input, field)
    if (parsed.kind === 'id' || parsed.ref.digest !== undefined) throw invalid(field, 'must be a name repo[:tag], not an id or a digest')
    checkImage(this.#policy, parsed)
    return parsed.ref
  }

  /**
   * Whether the requester may make `ref` name an image: always for an admin. A name in a push
   * namespace is its token's alone: nobody else may take it, even when it is free here (who runs it
   * would take another's image for that token's), and the token may take it from any image. Any other
   * name only when it is free or already names an image this token built: images are shared by every
   * token, and a name such as python:3.12 that somebody else's runs rely on is not any one token's to move.
   */
  async checkName (requester: Principal, ref: ImageRef): Promise<void> {
    if (requester.admin) return
    const holder = this.#namespaceHolder(ref.path)
    if (holder !== null) {
      if (holder === requester.name) return
      throw deny('pushNamespace', `${ref.reference} is in the namespace of token "${holder}" (BERTH_PUSH_NAMESPACE): only that token or an admin names an image there`)
    }
    let current: Image
    try {
      current = await this.#engine.part('builds').inspect(ref.reference)
    } catch (error) {
      if (error instanceof BerthError && error.code === 'image_not_found') return
      throw error
    }
    if (!this.#ownership.built(requester, current.labels)) {
      throw deny('imageNames', `${ref.reference} names an image token "${requester.name}" did not build; only an admin can move or remove that name`)
    }
  }

  /** docker tag: `tag` then names the image `source` names. */
  async tag (requester: Principal, source: string, tag: string): Promise<{ id: string, tag: string }> {
    const target = this.#tagRef(tag, 'body/tag')
    const image = await this.#engine.part('builds').inspect(engineReference(source, 'body/source'))
    await this.checkName(requester, target)
    await this.#engine.part('builds').tag(image.id, target)
    return { id: image.id, tag: target.reference }
  }

  /** Removes one name; the image goes with its last name unless a container uses it. */
  async untag (requester: Principal, name: string): Promise<{ untagged: string[], deleted: string[] }> {
    const ref = this.#tagRef(name, 'body/image')
    // Not found is image_not_found, for admins too, before any ownership is judged.
    await this.#engine.part('builds').inspect(ref.reference)
    await this.checkName(requester, ref)
    return await this.#engine.part('builds').untag(ref.reference)
  }

  /** The push target: a tag on the allow-list, in the requester's push namespace unless it is an admin. */
  pushRef (requester: Principal, input: string, field = 'body/image'): ImageRef {
    const ref = this.#tagRef(input, field)
    const own = this.namespaceOf(requester.name)
    if (requester.admin || own === null || ref.path === own || ref.path.startsWith(`${own}/`)) return ref
    throw deny('pushNamespace', `token "${requester.name}" may push only to repositories under ${own}/ (BERTH_PUSH_NAMESPACE); ${ref.reference} is outside it`)
  }

  /** The repository path under which `token` pushes, in every registry; null when pushes may go to any name. */
  namespaceOf (token: string): string | null {
    const template = this.#policy.pushNamespace
    return template === null ? null : template.replaceAll('{deployment}', this.#ownership.deployment).replaceAll('{token}', token)
  }

  /**
   * The token whose push namespace a repository path is in, or null when it is in none. A namespace
   * without {token} is everybody's: nobody holds it.
   */
  #namespaceHolder (path: string): string | null {
    const template = this.#policy.pushNamespace
    if (template === null || !template.includes('{token}')) return null
    let captured = false
    const pattern = template.split(/(\{deployment\}|\{token\})/).map(part => {
      if (part === '{deployment}') return escapeRegExp(this.#ownership.deployment)
      if (part !== '{token}') return escapeRegExp(part)
      // Every {token} is the same token.
      if (captured) return '\\1'
      captured = true
      return '([^/]+)'
    }).join('')
    return new RegExp(`^${pattern}(?:/|$)`).exec(path)?.[1] ?? null
  }

  /** The containers using an image that the requester may see. */
  async usedBy (requester: Principal, imageId: string): Promise<ImageUser[]> {
    const containers = await this.#engine.containers.list({ all: true, labels: this.#ownership.filtersFor(requester) })
    return containers.filter(container => container.imageId === imageId).map(container => ({ id: container.id, name: container.name, state: container.state }))
  }

  /** How many containers the requester may see use each image, by image id. */
  async usage (requester: Principal): Promise<Map<string, number>> {
    const containers = await this.#engine.containers.list({ all: true, labels: this.#ownership.filtersFor(requester) })
    const counts = new Map<string, number>()
    for (const container of containers) counts.set(container.imageId, (counts.get(container.imageId) ?? 0) + 1)
    return counts
  }
}

// KEY=value pairs from repeated query parameters; the schema has checked the key.
function pairs (entries: string[], field: string): Record<string, string> {
  const map: Record<string, string> = {}
  for (const entry of entries) {
    const eq = entry.indexOf('=')
    const key = entry.slice(0, eq)
    if (key in map) throw invalid(`${field}/${key}`, 'is given twice')
    map[key] = entry.slice(eq + 1)
  }
  return map
}

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** An id (full or short) goes to the engine as it is; a reference is validated and made explicit. */
export function engineReference (input: string, field: string): string {
  if (/^(sha256:)?[a-f0-9]{12,64}$/.test(input)) return input
  const parsed = imageFrom(input, field)
  return parsed.kind === 'id' ? parsed.id : parsed.ref.reference
}
