// A Docker engine's image store as berth's images, builds and disk parts: pull (reading the stream
// itself, since a pull that fails part-way still answers 200), list, inspect, history, remove,
// build, tag, push, prune and disk usage. The docker backend uses it for its own engine; a cluster
// backend can point it at a builder engine. Every change to images forgets the digests containers
// report, so an inspect never shows a digest the change made stale.
import type { IncomingMessage } from 'node:http'
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import type { ImageRef } from '../image-ref.ts'
import type { BuildsPart, DiskPart, ImagesPart } from '../parts.ts'
import type {
  BuildOptions, BuildSpec, BuiltImage, DiskUsage, Image, ImageHistoryEntry, ImageRemoval, ImageSummary, ListImagesOptions, PruneImagesOptions,
  PruneReport, PulledImage, PullOptions, PushedImage, PushOptions
} from '../types.ts'
import type { ImageDigests } from './digests.ts'
import { mapEngineError } from './errors.ts'
import * as work from './image-work.ts'
import { digestFromRepoDigests, imageOf, imageSummaryOf, pullFailureReason, toAuthConfig } from './mapping.ts'
import { readPullStream } from './pull-stream.ts'
import { layerProgress } from './streams.ts'
import { withSignal, type DockerTransport } from './transport.ts'

export class DockerImages implements ImagesPart, BuildsPart, DiskPart {
  readonly #transport: DockerTransport
  readonly #registryAuth: Record<string, RegistryCredentials>
  readonly #digests: ImageDigests

  constructor (transport: DockerTransport, registryAuth: Record<string, RegistryCredentials>, digests: ImageDigests) {
    this.#transport = transport
    this.#registryAuth = registryAuth
    this.#digests = digests
  }

  async pull (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    const auth = toAuthConfig(options.auth ?? this.#registryAuth[ref.registry], ref.registry)
    let stream: IncomingMessage
    try {
      // The engine answers once the registry served the manifest; the deadline covers only that.
      stream = await this.#transport.openStream({ subject: 'image', target: ref.reference, ...(options.signal ? { signal: options.signal } : {}) },
        (docker, signal) => docker.createImage({
          fromImage: ref.repository,
          // A tag or a digest, never empty: an empty tag would make the engine pull every tag.
          tag: ref.digest ?? ref.tag ?? 'latest',
          ...(options.platform ? { platform: options.platform } : {}),
          ...(auth ? { authconfig: auth } : {}),
          abortSignal: signal
        }))
    } catch (error) {
      throw this.#pullError(error, ref)
    }
    const onProgress = options.onProgress
    onProgress?.({ kind: 'started' })
    const result = await readPullStream(stream, options.signal, onProgress === undefined
      ? undefined
      : (line) => {
          const layer = layerProgress(line)
          if (layer !== null) onProgress({ kind: 'layer', layer })
        })
    if (result.error !== null) {
      throw new BerthError('pull_failed', `pulling ${ref.reference} failed: ${result.error}`, { image: ref.reference })
    }
    this.#digests.forget()
    const image = await this.inspect(ref.reference)
    const digest = result.digest ?? digestFromRepoDigests(image.digests, ref.repository)
    return { id: image.id, reference: ref.reference, digest, tags: image.tags }
  }

  async list (options: ListImagesOptions): Promise<ImageSummary[]> {
    const filters: Record<string, string[]> = {}
    if (options.reference) filters.reference = [options.reference]
    if (options.dangling !== undefined) filters.dangling = [String(options.dangling)]
    if (options.labels?.length) filters.label = options.labels
    const images = await this.#transport.call({ subject: 'image', target: 'images' },
      (docker, signal) => docker.listImages({ filters, abortSignal: signal }))
    return images.map(imageSummaryOf)
  }

  async inspect (reference: string): Promise<Image> {
    const image = await this.#transport.call({ subject: 'image', target: reference },
      (docker, signal) => docker.getImage(reference).inspect(withSignal(signal)))
    return imageOf(image)
  }

  async history (reference: string): Promise<ImageHistoryEntry[]> {
    return await work.imageHistory(this.#transport, reference)
  }

  async remove (reference: string, options: { force: boolean }): Promise<ImageRemoval> {
    const result = await this.#transport.call({ subject: 'image', target: reference },
      (docker, signal) => docker.getImage(reference).remove({ force: options.force, abortSignal: signal })) as Array<{ Untagged?: string, Deleted?: string }>
    this.#digests.forget()
    return {
      untagged: result.flatMap(entry => entry.Untagged === undefined ? [] : [entry.Untagged]),
      deleted: result.flatMap(entry => entry.Deleted === undefined ? [] : [entry.Deleted])
    }
  }

  async untag (reference: string): Promise<ImageRemoval> {
    return await this.remove(reference, { force: false })
  }

  async build (spec: BuildSpec, options: BuildOptions): Promise<BuiltImage> {
    try {
      return await work.buildImage(this.#transport, this.#registryAuth, spec, options)
    } finally {
      this.#digests.forget()
    }
  }

  async tag (source: string, target: ImageRef): Promise<void> {
    await work.tagImage(this.#transport, source, target)
    this.#digests.forget()
  }

  async push (ref: ImageRef, options: PushOptions): Promise<PushedImage> {
    try {
      return await work.pushImage(this.#transport, this.#registryAuth, ref, options)
    } finally {
      // A push gives the image a digest in that repository.
      this.#digests.forget()
    }
  }

  async pruneImages (options: PruneImagesOptions): Promise<PruneReport> {
    try {
      return await work.pruneImages(this.#transport, options)
    } finally {
      this.#digests.forget()
    }
  }

  async pruneBuildCache (): Promise<PruneReport> {
    return await work.pruneBuildCache(this.#transport)
  }

  async usage (): Promise<DiskUsage> {
    return await work.diskUsage(this.#transport)
  }

  #pullError (error: unknown, ref: ImageRef): BerthError {
    const mapped = mapEngineError(error, 'image', ref.reference, this.#transport.timeoutMs)
    // A pinned run asks for exactly one image: when the registry no longer has it, nothing else runs in its place.
    if (mapped.code === 'image_not_found' && ref.digest !== undefined) {
      return new BerthError('image_not_found', `registry ${ref.registry} has no image ${ref.repository}@${ref.digest} (it may have been deleted); nothing else is run in its place`, { image: ref.reference, digest: ref.digest }, { cause: error })
    }
    if (mapped.code === 'engine_error' || mapped.code === 'validation_failed') {
      const message = mapped.message.replace(/^the engine (answered \d+|rejected the request): /, '')
      return new BerthError('pull_failed', `pulling ${ref.reference} failed: ${message}`, { image: ref.reference, reason: pullFailureReason(message) }, { cause: error })
    }
    return mapped
  }
}
