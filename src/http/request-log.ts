// One log line per request. Fastify writes two by default (incoming, completed); each is a write
// to stdout, and on the machines berth was measured on a write costs more than the rest of a
// short request (bench/, profiled). The one line carries what both did: method, path, status, time.
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import { redactSecrets } from './log-redactions.ts'
import { mergeTargets, type AuditTarget } from '../plugins/audit.ts'

/** The status a request's line says when its client left before the answer (nginx's "client closed request"); never sent. */
export const CLIENT_LEFT = 499

/** Probes and scrapes come every few seconds and say nothing new: they log at debug. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics'])

export class RequestLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'requestId' })
  }

  override incomingRequest (): void {}

  /**
   * Fastify writes the line when the response has finished, or failed on its way out. A client that
   * leaves first closes the response with neither: this writes its line then, so that no request
   * (and no mutation's audit) goes unlogged. Called for every request, as it comes in.
   */
  watch (request: FastifyRequest, reply: FastifyReply): void {
    // First among the listeners: fastify writes its line from its own.
    reply.raw.prependOnceListener('finish', () => { finished.add(reply.raw) })
    reply.raw.once('close', () => {
      if (!finished.has(reply.raw)) this.requestCompleted(null, request, reply)
    })
  }

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // One line per request, whichever of finish, error and close comes first.
    if (logged.has(request)) return
    logged.add(request)
    // A response that did not finish lost its connection (a write error is the connection failing
    // under it), most often because the client left: an everyday event, no fault. Before its status
    // was sent, the line says 499.
    const complete = error == null && (reply.raw.writableFinished || finished.has(reply.raw))
    const statusCode = reply.raw.headersSent ? reply.statusCode : CLIENT_LEFT
    // A credential in the query string is refused, but it was sent: it must not reach the log (also
    // without the logger's own serializer, so this line does not depend on how the logger was made).
    const line = {
      req: { method: request.method, url: redactSecrets(request.url) },
      res: { statusCode },
      responseTime: reply.elapsedTime,
      ...(complete ? {} : { finished: false }),
      ...(error == null ? {} : { err: error })
    }
    if (isMutation(request)) reply.log.info({ ...line, audit: auditOf(request, statusCode) }, 'audit')
    else if (!complete) reply.log.info(line, 'the response ended before it was complete')
    // The route's pattern, already at hand: no need to cut the query string off the URL.
    else if (QUIET.has(request.routeOptions.url ?? '')) reply.log.debug(line, 'request completed')
    else reply.log.info(line, 'request completed')
  }
}

/** The requests whose line is written, and the responses that finished (as their 'finish' said). */
const logged = new WeakSet<FastifyRequest>()
const finished = new WeakSet<object>()

/** Calls that change something on the engine: each one's line is its audit record. A WebSocket upgrade runs a command (exec). */
function isMutation (request: FastifyRequest): boolean {
  return ((request.method !== 'GET' && request.method !== 'HEAD') || (request as { ws?: boolean }).ws === true) && request.url.startsWith('/v1/')
}

function auditOf (request: FastifyRequest, status: number) {
  return {
    actor: request.principal?.name ?? null,
    action: `${request.method} ${request.routeOptions.url ?? pathOf(request)}`,
    target: mergeTargets(requestedTarget(request.params), request.auditTarget ?? {}),
    status
  }
}

// What a route's path names, by parameter name: known as soon as the route matched, so also a call
// refused before its handler ran (no token, no scope, a bad body) names what it was aimed at.
const PATH_TARGETS: Record<string, (value: string) => AuditTarget> = {
  idOrName: value => ({ container: { requested: value } }),
  ref: value => ({ image: value }),
  id: value => ({ job: value }),
  volume: value => ({ volume: value }),
  network: value => ({ network: { requested: value } })
}

function requestedTarget (params: unknown): AuditTarget {
  let target: AuditTarget = {}
  for (const [key, value] of Object.entries(params ?? {})) {
    const of = PATH_TARGETS[key]
    if (of !== undefined && typeof value === 'string') target = mergeTargets(target, of(value))
  }
  return target
}

export function pathOf (request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url
}
