// The Swarm endpoints of a manager's Docker API, over the single-host backend's transport (API
// negotiation, per-call deadlines, connection errors): one typed request function, with the
// request body and registry credentials kept out of the URL.
import type Docker from 'dockerode'
import type { IncomingMessage } from 'node:http'
import type { DockerTransport } from '../docker/transport.ts'
import type { Subject } from '../docker/errors.ts'
import { mapSwarmError } from './errors.ts'

export interface Request {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  query?: Record<string, unknown>
  body?: object
  /** Registry credentials, sent as X-Registry-Auth (the manager hands them to the nodes that pull). */
  auth?: Record<string, string>
  subject?: Subject
  /** What the call is about, for a not_found. */
  target?: string
  timeoutMs?: number
  signal?: AbortSignal
}

export class SwarmApi {
  readonly transport: DockerTransport

  constructor (transport: DockerTransport) {
    this.transport = transport
  }

  async request<T> (request: Request): Promise<T> {
    const subject = request.subject ?? 'engine'
    const target = request.target ?? request.path
    try {
      return await this.transport.call({
        subject,
        target,
        ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
        ...(request.signal === undefined ? {} : { signal: request.signal })
      }, async (docker, signal) => await dial<T>(docker, request, signal))
    } catch (error) {
      throw await mapSwarmError(error, target)
    }
  }

  async get<T> (path: string, query: Record<string, unknown> = {}, about: Pick<Request, 'subject' | 'target'> = {}): Promise<T> {
    return await this.request<T>({ method: 'GET', path, query, ...about })
  }

  /** A long-lived GET (logs, events): the deadline covers only the engine's answer. */
  async stream (path: string, query: Record<string, unknown>, about: Pick<Request, 'subject' | 'target' | 'signal'>): Promise<IncomingMessage> {
    try {
      return await this.transport.streamGet({ subject: about.subject ?? 'engine', target: about.target ?? path, ...(about.signal ? { signal: about.signal } : {}) }, path, query)
    } catch (error) {
      throw await mapSwarmError(error, about.target ?? path)
    }
  }
}

async function dial<T> (docker: Docker, request: Request, signal: AbortSignal): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    docker.modem.dial({
      path: `${request.path}?`,
      method: request.method,
      // _query and _body: docker-modem would otherwise copy the body into the URL as well.
      options: { _query: request.query ?? {}, _body: request.body ?? {} },
      ...(request.auth === undefined ? {} : { authconfig: request.auth }),
      abortSignal: signal,
      statusCodes: { 200: true, 201: true, 204: true }
    }, (error: unknown, data: unknown) => error ? reject(error) : resolve(data as T))
  })
}
