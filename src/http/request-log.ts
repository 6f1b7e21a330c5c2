// One log line per request. Fastify writes two by default (incoming, completed); each is a write
// to stdout, and on the machines berth was measured on a write costs more than the rest of a
// short request (bench/, profiled). The one line carries what both did: method, path, status, time.
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import { redactSecrets } from './log-redactions.ts'
import { mergeTargets, type AuditTarget } from '../plugins/audit.ts'

/** Probes and scrapes come every few seconds and say nothing new: they log at debug. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics'])

export class RequestLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'requestId' })
  }

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // A credential in the query string is refused, but it was sent: it must not reach the log (also
    // without the logger's own serializer, so this line does not depend on how the logger was made).
    const line = { req: { method: request.method, url: redactSecrets(request.url) }, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime }
    if (isMutation(request)) {
      const audited = { ...line, audit: auditOf(request, reply) }
      if (error) reply.log.error({ ...audited, err: error }, 'audit')
      else reply.log.info(audited, 'audit')
    } else if (error) reply.log.error({ ...line, err: error }, 'request errored')
    // The route's pattern, already at hand: no need to cut the query string off the URL.
    else if (QUIET.has(request.routeOptions.url ?? '')) reply.log.debug(line, 'request completed')
    else reply.log.info(line, 'request completed')
  }
}

/** Calls that change something on the engine: each one's line is its audit record. A WebSocket upgrade runs a command (exec). */
function isMutation (request: FastifyRequest): boolean {
  return ((request.method !== 'GET' && request.method !== 'HEAD') || (request as { ws?: boolean }).ws === true) && request.url.startsWith('/v1/')
}

function auditOf (request: FastifyRequest, reply: FastifyReply) {
  return {
    actor: request.principal?.name ?? null,
    action: `${request.method} ${request.routeOptions.url ?? pathOf(request)}`,
    target: mergeTargets(requestedTarget(request.params), request.auditTarget ?? {}),
    status: reply.statusCode
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
