// The connection to one Docker engine, shared by the backends that speak the Docker API (a single
// host, a Swarm manager, a cluster's builder): negotiates the API version, bounds every call with its
// own deadline, maps what fails to berth's errors, and forgets the connection when the engine goes
// away. An engine is reached by its unix socket, or over TCP (with TLS unless it is on loopback).
// Before dockerode: keeps the transports berth never uses from loading (see the module).
import './unused-transports.ts'
import Docker from 'dockerode'
import type { IncomingMessage } from 'node:http'
import type { Agent } from 'node:https'
import type { Duplex } from 'node:stream'
import type { EngineAddress } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import type { EngineInfo } from '../types.ts'
import { isConnectionFailure, mapEngineError, type Subject } from './errors.ts'

/** The newest API version berth is written against; older engines down to MIN_API are spoken to in their own version. */
export const MAX_API = '1.47'
export const MIN_API = '1.40'

/** A Swarm node's engine behind berth's agent: HTTPS over connections that `agent` makes and authenticates (src/agent/channel.ts). */
export interface AgentAddress {
  through: { host: string, port: number, agent: Agent }
}

export type TransportOptions = (EngineAddress | AgentAddress) & { timeoutMs: number }

/** dockerode's connection options for an address. */
function connectionOf (address: EngineAddress | AgentAddress): Docker.DockerOptions {
  if ('through' in address) {
    const { host, port, agent } = address.through
    return { host, port, protocol: 'https', agent } as Docker.DockerOptions
  }
  if ('socketPath' in address) return { socketPath: address.socketPath }
  return address.tls === null
    ? { host: address.host, port: address.port, protocol: 'http' }
    : { host: address.host, port: address.port, protocol: 'https', ca: address.tls.ca, cert: address.tls.cert, key: address.tls.key }
}

export interface CallOptions {
  subject: Subject
  target: string
  /** Overrides the per-call deadline (stop waits for the container's own grace period). */
  timeoutMs?: number
  signal?: AbortSignal
}

/**
 * An empty id or name names nothing, and is not sent: the engine answers a path with an empty segment
 * (`GET /containers//json`) with a redirect that docker-modem follows to a URL it cannot parse,
 * thrown where no caller can catch it. No route sends one (every id and name parameter needs a
 * character); this keeps every other caller from taking the process down with one.
 */
function named (options: CallOptions): void {
  if (options.target !== '') return
  // The codes the engine's own 404 would have been mapped to (errors.ts).
  throw options.subject === 'image'
    ? new BerthError('image_not_found', 'no image has an empty name', { image: '' })
    : new BerthError('not_found', `no ${options.subject} has an empty name`)
}

export class DockerTransport {
  readonly timeoutMs: number
  readonly #connection: Docker.DockerOptions
  #docker: Docker | null = null
  #info: EngineInfo | null = null
  #connecting: Promise<Docker> | null = null

  constructor (options: TransportOptions) {
    this.#connection = connectionOf(options)
    this.timeoutMs = options.timeoutMs
  }

  /** Asks the engine now (this is what /readyz uses), and answers what it said at negotiation. */
  async info (): Promise<EngineInfo> {
    await this.call({ subject: 'engine', target: 'engine' }, (docker, signal) => (docker.ping as (options: object) => Promise<unknown>)(withSignal(signal)))
    return this.#info as EngineInfo
  }

  async call<T> (options: CallOptions, fn: (docker: Docker, signal: AbortSignal) => Promise<T>): Promise<T> {
    named(options)
    const docker = await this.#client()
    const timeoutMs = options.timeoutMs ?? this.timeoutMs
    // A deadline cleared as soon as the call ends: AbortSignal.timeout would keep its timer and
    // signal alive for the whole timeout after every call, which under load fills the old generation.
    const deadline = new AbortController()
    const timer = setTimeout(() => deadline.abort(), timeoutMs)
    const signal = options.signal ? AbortSignal.any([deadline.signal, options.signal]) : deadline.signal
    try {
      return await fn(docker, signal)
    } catch (error) {
      // The engine went away: negotiate again when it is back, it may have been upgraded meanwhile.
      if (isConnectionFailure(error)) this.#docker = null
      throw mapEngineError(error, options.subject, options.target, timeoutMs)
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Opens a long-lived response from the engine. The per-call deadline covers only the setup (until the
   * engine answers); after that only the caller's signal ends the stream, and with it the connection.
   */
  async openStream (options: CallOptions, open: (docker: Docker, signal: AbortSignal) => Promise<unknown>): Promise<IncomingMessage> {
    named(options)
    const docker = await this.#client()
    const connection = new AbortController()
    const cancel = (): void => { connection.abort(options.signal?.reason) }
    options.signal?.addEventListener('abort', cancel, { once: true })
    if (options.signal?.aborted) cancel()
    const timeoutMs = options.timeoutMs ?? this.timeoutMs
    const deadline = setTimeout(() => { connection.abort(new DOMException('the engine did not answer in time', 'TimeoutError')) }, timeoutMs)
    try {
      const stream = await open(docker, connection.signal) as IncomingMessage
      stream.once('close', () => options.signal?.removeEventListener('abort', cancel))
      return stream
    } catch (error) {
      options.signal?.removeEventListener('abort', cancel)
      if (options.signal?.aborted) throw options.signal.reason
      if (isConnectionFailure(error)) this.#docker = null
      throw mapEngineError(error, options.subject, options.target, timeoutMs)
    } finally {
      clearTimeout(deadline)
    }
  }

  /** A raw streamed GET (dockerode buffers some endpoints whole into memory when not following). */
  async streamGet (options: CallOptions, path: string, query: Record<string, unknown>): Promise<IncomingMessage> {
    return await this.openStream(options, (docker, signal) => new Promise((resolve, reject) => {
      docker.modem.dial({
        path: `${path}?`,
        method: 'GET',
        options: query,
        isStream: true,
        abortSignal: signal,
        statusCodes: { 200: true, 404: 'no such object', 500: 'server error', 501: 'not implemented', 503: 'node is not part of a swarm' }
      }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data))
    }))
  }

  /**
   * A raw streamed request of any method, for the engine's responses that come late or long (a wait
   * answers when the container stops, an archive is as long as the files): only the setup is bounded.
   * `body` is JSON, or a stream sent as it is read (an archive).
   */
  async streamRequest (options: CallOptions, request: { method: 'GET' | 'POST' | 'PUT' | 'HEAD', path: string, query?: Record<string, unknown>, body?: object | NodeJS.ReadableStream }): Promise<IncomingMessage> {
    const { method, path, query = {}, body } = request
    const file = body !== undefined && typeof (body as NodeJS.ReadableStream).pipe === 'function' ? body as NodeJS.ReadableStream : undefined
    return await this.openStream(options, (docker, signal) => new Promise((resolve, reject) => {
      docker.modem.dial({
        path: `${path}?`,
        method,
        // _query/_body keep a JSON body out of the URL (docker-modem would copy it into the query string too).
        options: file === undefined ? { _query: query, _body: body ?? {} } : query,
        ...(file === undefined ? {} : { file, headers: { 'Content-Type': 'application/x-tar' } }),
        isStream: true,
        abortSignal: signal,
        statusCodes: { 200: true, 400: 'bad parameter', 403: 'forbidden', 404: 'no such object', 409: 'conflict', 500: 'server error', 501: 'not implemented', 503: 'unavailable' }
      }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data))
    }))
  }

  /**
   * A plain JSON request, bounded like every call: for the engine endpoints whose dockerode method
   * takes no abort signal (a network inspect would otherwise outlive its deadline on a stuck engine).
   */
  async request<T> (options: CallOptions, request: { method: 'GET' | 'POST' | 'DELETE', path: string, query?: Record<string, unknown>, body?: object }): Promise<T> {
    const { method, path, query = {}, body = {} } = request
    return await this.call(options, (docker, signal) => new Promise<T>((resolve, reject) => {
      docker.modem.dial({
        path: `${path}?`,
        method,
        options: { _query: query, _body: body },
        abortSignal: signal,
        statusCodes: { 200: true, 201: true, 204: true, 304: true, 400: 'bad parameter', 403: 'forbidden', 404: 'no such object', 409: 'conflict', 500: 'server error', 503: 'unavailable' }
      }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data as T))
    }))
  }

  /**
   * A connection the engine takes over both ways (an exec with stdin): the request upgrades and the
   * socket carries stdin in and the output out. Only the setup is bounded; the signal ends it.
   */
  async hijack (options: CallOptions, request: { path: string, body: object }): Promise<Duplex> {
    const socket = await this.openStream(options, (docker, signal) => new Promise((resolve, reject) => {
      docker.modem.dial({
        path: `${request.path}?`,
        method: 'POST',
        options: { _query: {}, _body: request.body },
        hijack: true,
        openStdin: true,
        abortSignal: signal,
        statusCodes: { 101: true, 200: true, 404: 'no such object', 409: 'conflict', 500: 'server error' }
      }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data))
    })) as unknown as Duplex
    // The upgraded socket outlives the request the signal was tied to: the signal ends it too.
    const end = (): void => { socket.destroy() }
    options.signal?.addEventListener('abort', end, { once: true })
    socket.once('close', () => options.signal?.removeEventListener('abort', end))
    return socket
  }

  async #client (): Promise<Docker> {
    if (this.#docker !== null) return this.#docker
    this.#connecting ??= this.#negotiate().finally(() => { this.#connecting = null })
    return await this.#connecting
  }

  // dockerode pins no version by itself; ask the engine which one it speaks and use the lower of the two.
  async #negotiate (): Promise<Docker> {
    const probe = new Docker(this.#connection)
    let version: Docker.DockerVersion
    try {
      version = await (probe.version as (options: object) => Promise<Docker.DockerVersion>)(withSignal(AbortSignal.timeout(this.timeoutMs)))
    } catch (error) {
      throw mapEngineError(error, 'engine', 'engine', this.timeoutMs)
    }
    const apiVersion = compareVersions(version.ApiVersion, MAX_API) < 0 ? version.ApiVersion : MAX_API
    if (compareVersions(apiVersion, MIN_API) < 0) {
      throw new BerthError('engine_unavailable', `the engine speaks API ${version.ApiVersion}; berth needs ${MIN_API} or newer`)
    }
    this.#info = { version: version.Version, apiVersion, os: version.Os, arch: version.Arch }
    this.#docker = new Docker({ ...this.#connection, version: `v${apiVersion}` })
    return this.#docker
  }
}

// dockerode 5 takes an abortSignal on every call; @types/dockerode (written for 4) does not know it on all of them.
export function withSignal (signal: AbortSignal): Record<string, never> {
  return { abortSignal: signal } as unknown as Record<string, never>
}

export function compareVersions (a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split('.').map(Number)
  const [bMajor = 0, bMinor = 0] = b.split('.').map(Number)
  return aMajor - bMajor || aMinor - bMinor
}
