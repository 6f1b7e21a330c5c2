// Images as one requester may build, name and share them: what a build may fetch (every FROM and
// COPY --from against the image allow-list), the names it may take (on the allow-list, and free or
// its own unless it is an admin: images are shared by every token), and who uses an image.
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

  /** A build as the engine will run it, once policy admits it; the context is added by the caller. */
  async admitBuild (requester: Principal, query: BuildQuery, dockerfile: string): Promise<Omit<BuildSpec, 'context'>> {
    const buildArgs = pairs(query.buildArg ?? [], 'querystring/buildArg')
    const labels = pairs(query.label ?? [], 'querystring/label')
    for (const key of Object.keys(labels)) {
      if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`querystring/label/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
    }
    let parsed
    try {
      parsed = parseDockerfile(dockerfile, buildArgs, query.target)
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
    const tags = (query.tag ?? []).map((tag, index) => this.#tagRef(tag, `querystring/tag/${index}`))
    for (const tag of tags) await this.checkName(requester, tag)
    return {
      dockerfile: query.dockerfile,
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
   * Whether the requester may make `ref` name an image: always for an admin; otherwise only when the
   * name is free or already names an image this token built. Images are shared by every token, and a
   * name such as python:3.12 that somebody else's runs rely on is not any one token's to move.
   */
  async checkName (requester: Principal, ref: ImageRef): Promise<void> {
    if (requester.admin) return
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

  /** The push target: a tag on the allow-list. */
  pushRef (input: string): ImageRef {
    return this.#tagRef(input, 'body/image')
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

/** An id (full or short) goes to the engine as it is; a reference is validated and made explicit. */
export function engineReference (input: string, field: string): string {
  if (/^(sha256:)?[a-f0-9]{12,64}$/.test(input)) return input
  const parsed = imageFrom(input, field)
  return parsed.kind === 'id' ? parsed.id : parsed.ref.reference
}
