// The repo digests of images, as container inspects report them (`imageDigest`). Asking the engine
// costs a second round trip on every inspect (and inspects follow every run, start and stop), so an
// answer is reused for DIGEST_TTL_MS. An image id names fixed content; only its list of digests can
// change, by a pull, push, tag or removal: those made through berth forget every answer at once,
// those made beside it (with the Docker CLI) show within the TTL.
import { BerthError } from '../../errors.ts'
import { imageOf } from './mapping.ts'
import { withSignal, type DockerTransport } from './transport.ts'

export const DIGEST_TTL_MS = 5000
const MAX_CACHED_DIGESTS = 1000

export class ImageDigests {
  readonly #transport: DockerTransport
  readonly #cached = new Map<string, { digests: string[], expires: number }>()
  #generation = 0

  constructor (transport: DockerTransport) {
    this.#transport = transport
  }

  async of (imageId: string): Promise<string[]> {
    const now = Date.now()
    const cached = this.#cached.get(imageId)
    if (cached !== undefined && cached.expires > now) return cached.digests
    const generation = this.#generation
    let digests: string[] = []
    try {
      const image = await this.#transport.call({ subject: 'image', target: imageId }, (docker, signal) => docker.getImage(imageId).inspect(withSignal(signal)))
      digests = imageOf(image).digests
    } catch (error) {
      // The image may have been removed (force) while the container lives on: it still is a container.
      if (!(error instanceof BerthError && error.code === 'image_not_found')) throw error
    }
    // A pull or removal that finished meanwhile makes this answer possibly old: use it, do not keep it.
    if (generation === this.#generation) {
      if (this.#cached.size >= MAX_CACHED_DIGESTS) this.#cached.clear()
      this.#cached.set(imageId, { digests, expires: now + DIGEST_TTL_MS })
    }
    return digests
  }

  /** After a change to images made through berth. */
  forget (): void {
    this.#generation++
    this.#cached.clear()
  }
}
