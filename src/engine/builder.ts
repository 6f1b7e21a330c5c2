// A cluster's builder: a Docker engine the operator names (BERTH_BUILDER) where images for the
// cluster are built, tagged and pushed from — the docker backend's image store pointed elsewhere.
// A cluster's nodes pull from registries, so a build there pushes every tag it made, and answers
// with the digest each registry stored: `repo@digest` then runs the very same image on any node.
import type { Config, EngineAddress } from '../config.ts'
import { BerthError } from '../errors.ts'
import { ImageDigests } from './docker/digests.ts'
import { DockerImages } from './docker/images.ts'
import { DockerTransport } from './docker/transport.ts'
import { absent, configured, type Absent, type BuildsPart, type DiskPart } from './parts.ts'
import type { BuildOptions, BuildSpec, BuiltImage, Image, ImageRemoval, PushedImage, PushOptions } from './types.ts'
import type { ImageRef } from './image-ref.ts'

export const NO_BUILDER = 'no builder engine is configured: set BERTH_BUILDER to a Docker engine (unix:///path/docker.sock, or tcp://host:port with BERTH_BUILDER_CERT_PATH) that builds and pushes the cluster\'s images'

/** Builds on the builder, then pushes every tag, so the cluster's nodes can pull what was built. */
export class ClusterBuilds implements BuildsPart {
  readonly publishes = true
  readonly #store: DockerImages

  constructor (store: DockerImages) {
    this.#store = store
  }

  async build (spec: BuildSpec, options: BuildOptions): Promise<BuiltImage> {
    const built = await this.#store.build(spec, options)
    const pushed: PushedImage[] = []
    for (const tag of spec.tags) {
      options.onProgress?.({ kind: 'status', message: `pushing ${tag.reference} for the cluster's nodes` })
      try {
        pushed.push(await this.#store.push(tag, { ...(options.signal === undefined ? {} : { signal: options.signal }) }))
      } catch (error) {
        // The image stays on the builder, tagged: POST /v1/images/push sends it once the registry takes it.
        if (!(error instanceof BerthError)) throw error
        throw new BerthError(error.code, `built ${built.id}, but the cluster's nodes cannot pull it: ${error.message}; push it again with POST /v1/images/push`,
          { ...error.extensions, imageId: built.id }, { cause: error })
      }
    }
    return { ...built, pushed }
  }

  async inspect (reference: string): Promise<Image> { return await this.#store.inspect(reference) }
  async tag (source: string, target: ImageRef): Promise<void> { await this.#store.tag(source, target) }
  async untag (reference: string): Promise<ImageRemoval> { return await this.#store.untag(reference) }
  async push (ref: ImageRef, options: PushOptions): Promise<PushedImage> { return await this.#store.push(ref, options) }
}

/** One builder store per configured address (the builds and disk parts share its connection). */
const stores = new WeakMap<EngineAddress, DockerImages>()

function storeOf (config: Config): DockerImages | null {
  const address = config.builder
  if (address === null) return null
  let store = stores.get(address)
  if (store === undefined) {
    const transport = new DockerTransport({ ...address, timeoutMs: config.engine.timeoutMs })
    store = new DockerImages(transport, config.registryAuth, new ImageDigests(transport))
    stores.set(address, store)
  }
  return store
}

const REQUIRES = 'a builder engine (BERTH_BUILDER)'

/** A cluster backend's builds part: on the builder, when one is configured. */
export const builderBuilds = configured<unknown, 'builds'>(REQUIRES, (_shared, config): BuildsPart | Absent => {
  const store = storeOf(config)
  return store === null ? absent(NO_BUILDER) : new ClusterBuilds(store)
})

/** A cluster backend's disk part: the builder's images and build cache (the nodes' own are the cluster's to keep). */
export const builderDisk = configured<unknown, 'disk'>(REQUIRES, (_shared, config): DiskPart | Absent => {
  return storeOf(config) ?? absent(`${NO_BUILDER}; the images on the cluster's nodes are pruned by the cluster, not berth`)
})
