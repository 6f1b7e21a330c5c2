// The Docker host's side of building and sharing images: build (and clean up what a failed or
// cancelled build made), tag, push, history, prune and disk usage. DockerImages delegates to these.
import type Docker from 'dockerode'
import type { IncomingMessage } from 'node:http'
import type { RegistryCredentials } from '../../config.ts'
import { LABEL_MANAGED } from '../../access/ownership.ts'
import { BerthError } from '../../errors.ts'
import type { ImageRef } from '../image-ref.ts'
import type {
  BuildOptions, BuildSpec, BuiltImage, DiskUsage, ImageHistoryEntry, PruneImagesOptions, PruneReport, PushedImage, PushOptions, PushPhase
} from '../types.ts'
import { BuildStreamReader, readBuildStream, type BuildStreamResult } from './build-stream.ts'
import { mapEngineError } from './errors.ts'
import { pullFailureReason, toAuthConfig } from './mapping.ts'
import { readPullStream } from './pull-stream.ts'
import type { PullLine } from './streams.ts'
import type { DockerTransport } from './transport.ts'

/** How long berth waits for the engine to stop a cancelled build's step container before it removes it itself. */
const STOP_WAIT_MS = 5000

interface Dial {
  path: string
  method: 'GET' | 'POST'
  options?: Record<string, unknown>
  statusCodes?: Record<number, true | string>
}

// docker-modem with only what is asked for in the query: dockerode copies every option, the abort signal included, into the URL.
function dial<T> (docker: Docker, request: Dial, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    docker.modem.dial({
      path: request.path,
      method: request.method,
      options: request.options ?? {},
      abortSignal: signal,
      statusCodes: request.statusCodes ?? { 200: true, 404: 'no such object', 500: 'server error' }
    }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data as T))
  })
}

export async function buildImage (transport: DockerTransport, registryAuth: Record<string, RegistryCredentials>, spec: BuildSpec, options: BuildOptions): Promise<BuiltImage> {
  const query: Record<string, unknown> = {
    dockerfile: spec.dockerfile,
    t: spec.tags.map(tag => tag.reference),
    // Intermediate containers go also when a step fails: a failed build leaves none behind.
    rm: true,
    forcerm: true,
    networkmode: spec.network === 'none' ? 'none' : 'default',
    ...(Object.keys(spec.buildArgs).length > 0 ? { buildargs: spec.buildArgs } : {}),
    ...(Object.keys(spec.labels).length > 0 ? { labels: spec.labels } : {}),
    ...(spec.target === undefined ? {} : { target: spec.target }),
    ...(spec.platform === undefined ? {} : { platform: spec.platform }),
    ...(spec.pull ? { pull: '1' } : {}),
    ...(spec.noCache ? { nocache: true } : {}),
    ...(spec.memory === undefined ? {} : { memory: spec.memory, memswap: -1 }),
    ...(spec.cpus === undefined ? {} : { cpuperiod: 100_000, cpuquota: Math.round(spec.cpus * 100_000) })
  }
  // The server's registry credentials, for bases pulled from private registries (X-Registry-Config, never the URL).
  const registryconfig = Object.fromEntries(Object.entries(registryAuth).map(([registry, credentials]) => [registry, toAuthConfig(credentials, registry)]))
  const target = spec.tags[0]?.reference ?? 'build'
  const since = Date.now()
  let stream: IncomingMessage
  try {
    stream = await transport.openStream({ subject: 'image', target, ...(options.signal ? { signal: options.signal } : {}) },
      (docker, signal) => new Promise((resolve, reject) => {
        docker.modem.dial({
          path: '/build?',
          method: 'POST',
          file: spec.context(),
          options: query,
          ...(Object.keys(registryconfig).length > 0 ? { registryconfig } : {}),
          abortSignal: signal,
          isStream: true,
          statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' }
        }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data))
      }))
  } catch (error) {
    if (error instanceof BerthError && error.code === 'validation_failed') {
      // 400: the builder refused the Dockerfile (an unknown instruction, a target it does not have).
      const message = error.message.replace(/^the engine rejected the request: /, '')
      throw new BerthError('build_failed', `the build failed: ${message}`, { reason: 'dockerfile', step: null, output: [] }, { cause: error })
    }
    throw error
  }
  const reader = new BuildStreamReader(options.onProgress)
  let result: BuildStreamResult
  try {
    result = await readBuildStream(stream, options.signal, reader)
  } catch (error) {
    // Cancelled (or out of time): the engine stops the step when its connection goes; make sure, then clear up.
    await discard(transport, reader.result, since)
    throw error
  }
  if (result.error !== null || result.imageId === null) {
    await discard(transport, result, since)
    const failure = result.error ?? { message: 'the builder reported no image', exitCode: null, step: null, output: [] }
    const reason = failure.exitCode !== null || /returned a non-zero code/.test(failure.message)
      ? 'step_failed'
      : failure.step !== null && /^FROM\s/i.test(failure.step.instruction) ? 'base_image' : 'other'
    const where = failure.step === null ? '' : ` at step ${failure.step.number}/${failure.step.total} (${failure.step.instruction})`
    throw new BerthError('build_failed', `the build failed${where}: ${failure.message}`, {
      reason,
      step: failure.step,
      output: failure.output,
      ...(failure.exitCode === null ? {} : { exitCode: failure.exitCode })
    })
  }
  return { id: result.imageId, tags: spec.tags.map(tag => tag.reference) }
}

/**
 * What a build that did not finish made: its step's container (once the engine has stopped it) and the
 * images it committed. The engine removes a cancelled step's container itself, but a step whose
 * container was made just before the cancel has not said so yet: any container made since the build
 * began from the image that step started from is waited for too (never removed: it may be another's).
 */
async function discard (transport: DockerTransport, result: BuildStreamResult, since: number): Promise<void> {
  const deadline = Date.now() + STOP_WAIT_MS
  const pending = async (): Promise<boolean> => {
    if (result.running !== null && await exists(transport, result.running)) return true
    if (result.lastImage === null) return false
    const ancestor = result.lastImage
    const made = await transport.call({ subject: 'container', target: 'containers' },
      (docker, signal) => docker.listContainers({ all: true, filters: { ancestor: [ancestor] }, abortSignal: signal }))
    return made.some(container => container.Created >= Math.floor(since / 1000) && container.Labels?.[LABEL_MANAGED] === undefined)
  }
  while (Date.now() < deadline && await pending().catch(() => false)) await new Promise(resolve => setTimeout(resolve, 100))
  const running = result.running
  if (running !== null) {
    await transport.call({ subject: 'container', target: running },
      (docker, signal) => docker.getContainer(running).remove({ force: true, v: true, abortSignal: signal })).catch(() => {})
  }
  // Newest first, each alone: an older one is the parent of a newer one, and cached images are not this build's.
  for (const id of [...result.created].reverse()) {
    await transport.call({ subject: 'image', target: id },
      (docker, signal) => docker.getImage(id).remove({ noprune: true, abortSignal: signal })).catch(() => {})
  }
}

async function exists (transport: DockerTransport, container: string): Promise<boolean> {
  try {
    await transport.call({ subject: 'container', target: container }, (docker, signal) => docker.getContainer(container).inspect({ abortSignal: signal }))
    return true
  } catch (error) {
    if (error instanceof BerthError && error.code === 'not_found') return false
    throw error
  }
}

export async function tagImage (transport: DockerTransport, source: string, target: ImageRef): Promise<void> {
  if (target.tag === undefined || target.digest !== undefined) throw new BerthError('validation_failed', `${target.reference} is not a repo:tag to tag with`)
  const repo = target.repository
  const tag = target.tag
  await transport.call({ subject: 'image', target: source },
    (docker, signal) => dial(docker, { path: `/images/${encodeURIComponent(source)}/tag?`, method: 'POST', options: { repo, tag }, statusCodes: { 201: true, 400: 'bad parameter', 404: 'no such image', 409: 'conflict', 500: 'server error' } }, signal))
}

const PUSH_PHASES: Record<string, PushPhase> = {
  Preparing: 'preparing',
  Waiting: 'waiting',
  Pushing: 'pushing',
  Pushed: 'pushed',
  'Layer already exists': 'exists'
}

export async function pushImage (transport: DockerTransport, registryAuth: Record<string, RegistryCredentials>, ref: ImageRef, options: PushOptions): Promise<PushedImage> {
  if (ref.tag === undefined || ref.digest !== undefined) throw new BerthError('validation_failed', `${ref.reference} is not a repo:tag to push`)
  // The engine wants credentials in a header even for a registry that needs none.
  const auth = toAuthConfig(options.auth ?? registryAuth[ref.registry], ref.registry) ?? {}
  let stream: IncomingMessage
  try {
    stream = await transport.openStream({ subject: 'image', target: ref.reference, ...(options.signal ? { signal: options.signal } : {}) },
      (docker, signal) => docker.getImage(ref.repository).push({ tag: ref.tag, authconfig: auth, abortSignal: signal } as Docker.ImagePushOptions))
  } catch (error) {
    const mapped = mapEngineError(error, 'image', ref.reference, transport.timeoutMs)
    if (mapped.code !== 'engine_error' && mapped.code !== 'validation_failed') throw mapped
    const message = mapped.message.replace(/^the engine (answered \d+|rejected the request): /, '')
    throw new BerthError('push_failed', `pushing ${ref.reference} failed: ${message}`, { image: ref.reference, reason: pullFailureReason(message) }, { cause: error })
  }
  let pushed: { Digest?: string, Size?: number } | null = null
  const result = await readPullStream(stream, options.signal, (line: PullLine & { aux?: { Digest?: string, Size?: number } }) => {
    if (line.aux?.Digest !== undefined) pushed = line.aux
    const onProgress = options.onProgress
    if (onProgress === undefined || typeof line.id !== 'string' || typeof line.status !== 'string') return
    const phase = PUSH_PHASES[line.status] ?? (line.status.startsWith('Mounted from') ? 'mounted' : line.status.startsWith('Retrying in') ? 'retrying' : undefined)
    if (phase === undefined) return
    const { current, total } = line.progressDetail ?? {}
    onProgress({ id: line.id, phase, current: typeof current === 'number' && current >= 0 ? current : 0, total: typeof total === 'number' && total > 0 ? total : null })
  })
  if (result.error !== null) {
    // The engine answers 200 also for a tag it does not have, and says so in the stream.
    if (/does not exist locally/i.test(result.error)) throw new BerthError('image_not_found', `image ${ref.reference} is not on the engine: tag an image with that name first`, { image: ref.reference })
    throw new BerthError('push_failed', `pushing ${ref.reference} failed: ${result.error}`, { image: ref.reference, reason: pullFailureReason(result.error) })
  }
  const aux = pushed as { Digest?: string, Size?: number } | null
  if (aux?.Digest === undefined) throw new BerthError('push_failed', `pushing ${ref.reference} ended without a digest from the registry`, { image: ref.reference, reason: 'other' })
  return { reference: ref.reference, digest: aux.Digest, size: typeof aux.Size === 'number' ? aux.Size : null }
}

interface HistoryLine { Id: string, Created: number, CreatedBy: string, Tags: string[] | null, Size: number, Comment: string }

export async function imageHistory (transport: DockerTransport, reference: string): Promise<ImageHistoryEntry[]> {
  const lines = await transport.call({ subject: 'image', target: reference },
    (docker, signal) => dial<HistoryLine[]>(docker, { path: `/images/${encodeURIComponent(reference)}/history`, method: 'GET' }, signal))
  return lines.map(line => ({
    id: line.Id === '<missing>' ? null : line.Id,
    createdAt: new Date(line.Created * 1000).toISOString(),
    createdBy: line.CreatedBy,
    size: line.Size,
    comment: line.Comment,
    tags: (line.Tags ?? []).filter(tag => tag !== '<none>:<none>')
  }))
}

export async function pruneImages (transport: DockerTransport, options: PruneImagesOptions): Promise<PruneReport> {
  const filters: Record<string, string[]> = { dangling: [String(options.dangling)] }
  if (options.labels?.length) filters.label = options.labels
  const report = await transport.call({ subject: 'image', target: 'images', timeoutMs: transport.timeoutMs * 6 },
    (docker, signal) => dial<{ ImagesDeleted: Array<{ Deleted?: string, Untagged?: string }> | null, SpaceReclaimed: number }>(docker,
      { path: '/images/prune?', method: 'POST', options: { filters } }, signal))
  return {
    deleted: (report.ImagesDeleted ?? []).flatMap(entry => entry.Deleted === undefined ? [] : [entry.Deleted]),
    spaceReclaimed: report.SpaceReclaimed ?? 0
  }
}

export async function pruneBuildCache (transport: DockerTransport): Promise<PruneReport> {
  const report = await transport.call({ subject: 'engine', target: 'build cache', timeoutMs: transport.timeoutMs * 6 },
    (docker, signal) => dial<{ CachesDeleted: string[] | null, SpaceReclaimed: number }>(docker, { path: '/build/prune?', method: 'POST' }, signal))
  return { deleted: report.CachesDeleted ?? [], spaceReclaimed: report.SpaceReclaimed ?? 0 }
}

interface DfReport {
  LayersSize?: number
  Images?: Array<{ Size: number, SharedSize: number, Containers: number }> | null
  Containers?: Array<{ SizeRw?: number }> | null
  Volumes?: Array<{ UsageData?: { Size?: number } | null }> | null
  BuildCache?: Array<{ Size: number, InUse: boolean, Shared: boolean }> | null
}

export async function diskUsage (transport: DockerTransport): Promise<DiskUsage> {
  const df = await transport.call({ subject: 'engine', target: 'disk usage', timeoutMs: transport.timeoutMs * 6 },
    (docker, signal) => dial<DfReport>(docker, { path: '/system/df', method: 'GET' }, signal))
  const images = df.Images ?? []
  const cache = df.BuildCache ?? []
  const positive = (size: number | undefined): number => typeof size === 'number' && size > 0 ? size : 0
  return {
    // As `docker system df` counts it: what images no container uses hold beyond the layers they share.
    images: { count: images.length, size: positive(df.LayersSize), reclaimable: images.filter(image => image.Containers === 0).reduce((sum, image) => sum + positive(image.Size - positive(image.SharedSize)), 0) },
    containers: { count: (df.Containers ?? []).length, size: (df.Containers ?? []).reduce((sum, container) => sum + positive(container.SizeRw), 0) },
    volumes: { count: (df.Volumes ?? []).length, size: (df.Volumes ?? []).reduce((sum, volume) => sum + positive(volume.UsageData?.Size), 0) },
    buildCache: { count: cache.length, size: cache.reduce((sum, entry) => sum + positive(entry.Size), 0), reclaimable: cache.filter(entry => !entry.InUse && !entry.Shared).reduce((sum, entry) => sum + positive(entry.Size), 0) }
  }
}
