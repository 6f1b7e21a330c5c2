// The docker backend: one Docker engine, reached by its socket, with every part berth has.
import type Docker from 'dockerode'
import { LABEL_DEPLOYMENT } from '../../access/ownership.ts'
import type { Config, RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { defineBackend, type Core, type NodesPart } from '../parts.ts'
import type { EngineEvent, EventsOptions } from '../types.ts'
import { DockerContainers } from './containers.ts'
import { DockerCopy, type DockerCopyOptions } from './copy.ts'
import { ImageDigests } from './digests.ts'
import { DockerExpiry } from './expiry.ts'
import { DockerImages } from './images.ts'
import { nodeOfEngine, type EngineSystemInfo } from './mapping.ts'
import { DockerNetworks } from './networks.ts'
import { dockerExec, dockerFiles, dockerStats, dockerWait } from './processes.ts'
import { dockerSpecs } from './specs.ts'
import { engineTime, parseCursor, readEventStream } from './streams.ts'
import { DockerTransport, withSignal } from './transport.ts'
import { DockerVolumes } from './volumes.ts'

export interface DockerHostOptions {
  socketPath: string
  timeoutMs: number
  registryAuth?: Record<string, RegistryCredentials>
  /** How the copy follows the engine; false for none, every read then asking the engine (what tests compare the copy with). */
  copy?: DockerCopyOptions | false
  /** berth's deployment: the copy holds its containers only, the only ones berth ever shows. */
  deployment?: string
}

/**
 * What the docker backend's parts share: the engine's transport, the watch-fed copy of its containers,
 * images and volumes that ps, inspect, images, volumes and every ownership check read, its image store
 * and the digests inspects report.
 */
export class DockerHost {
  readonly transport: DockerTransport
  readonly copy: DockerCopy | null
  readonly digests: ImageDigests
  readonly images: DockerImages
  readonly expiry: DockerExpiry

  constructor (options: DockerHostOptions) {
    this.transport = new DockerTransport(options)
    this.copy = options.copy === false
      ? null
      : new DockerCopy(this.transport, { ...(options.deployment === undefined ? {} : { labels: [`${LABEL_DEPLOYMENT}=${options.deployment}`] }), ...options.copy })
    this.digests = new ImageDigests(this.transport, this.copy)
    this.images = new DockerImages(this.transport, options.registryAuth ?? {}, this.digests, this.copy)
    this.expiry = new DockerExpiry(this.transport, this.copy)
    this.copy?.start()
  }

  /** docker events of containers and images, resumable from a cursor this engine gave out. */
  async events (options: EventsOptions): Promise<AsyncIterable<EngineEvent>> {
    const after = options.after === undefined ? null : parseCursor(options.after)
    if (options.after !== undefined && after === null) {
      throw new BerthError('validation_failed', `${options.after} is not an event cursor this engine gave out`)
    }
    const since = after !== null ? engineTime(after.nanos) : options.since === undefined ? undefined : engineTime(BigInt(options.since.getTime()) * 1_000_000n)
    const stream = await this.transport.openStream({ subject: 'engine', target: 'events', ...(options.signal ? { signal: options.signal } : {}) },
      (docker, signal) => docker.getEvents({ ...(since === undefined ? {} : { since }), filters: { type: ['container', 'image'] }, abortSignal: signal } as Docker.GetEventsOptions))
    const events = readEventStream(stream, after, options.signal)
    return this.copy === null ? events : inCopyOrder(events, this.copy)
  }

  core (): Core {
    return {
      // Ready when the engine answers now and the copy is current.
      info: async () => {
        const info = await this.transport.info()
        await this.copy?.ready(this.transport.timeoutMs)
        return info
      },
      events: async (options) => await this.events(options),
      close: async () => { await this.copy?.stop() }
    }
  }

  /** The one engine, as a cluster would list a node of its own. */
  nodes (): NodesPart {
    return {
      list: async () => {
        const info = await this.transport.call({ subject: 'engine', target: 'engine' }, (docker, signal) => (docker.info as (options: object) => Promise<unknown>)(withSignal(signal))) as EngineSystemInfo
        return [nodeOfEngine(info)]
      }
    }
  }
}

/** The docker host's options from berth's config. */
export function dockerHostOptions (config: Config): DockerHostOptions {
  const engine = config.engine
  if (engine.kind !== 'docker') throw new Error(`the docker backend was opened with a ${engine.kind} config`)
  return { socketPath: engine.socketPath, timeoutMs: engine.timeoutMs, registryAuth: config.registryAuth, deployment: config.deployment }
}

export const docker = defineBackend<DockerHost>({
  kind: 'docker',
  summary: 'a container is a container of one Docker engine',
  open: config => new DockerHost(dockerHostOptions(config)),
  core: host => host.core(),
  parts: {
    containers: host => new DockerContainers(host.transport, host.images, host.digests, host.expiry, host.copy),
    images: host => host.images,
    imageRemoval: host => host.images,
    builds: host => host.images,
    disk: host => host.images,
    volumes: host => new DockerVolumes(host.transport, host.copy),
    networks: host => new DockerNetworks(host.transport),
    exec: host => dockerExec(host.transport),
    stats: host => dockerStats(host.transport),
    files: host => dockerFiles(host.transport),
    wait: host => dockerWait(host.transport, host.copy),
    nodes: host => host.nodes(),
    expiry: host => host.expiry,
    specs: host => dockerSpecs(host.transport)
  }
})

/** Each event once the copy holds what it changed: a client that reads right after an event reads what it said. */
async function * inCopyOrder (events: AsyncIterable<EngineEvent>, copy: DockerCopy): AsyncGenerator<EngineEvent> {
  for await (const event of events) {
    // A failed read ends the copy's session, and reads then ask the engine: the event goes out either way.
    await copy.refreshFor(event).catch(() => {})
    yield event
  }
}
