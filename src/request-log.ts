// One log line per request. Fastify writes two by default (incoming, completed); each is a write
// to stdout, and on the machines berth was measured on a write costs more than the rest of a
// short request (bench/, profiled). The one line carries what both did: method, path, status, time.
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

/** Probes and scrapes come every few seconds and say nothing new: they log at debug. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics'])

export class RequestLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'requestId' })
  }

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = {
      req: { method: request.method, url: request.url },
      res: { statusCode: reply.statusCode },
      responseTime: reply.elapsedTime,
      ...(isMutation(request) ? { audit: auditOf(request, reply) } : {})
    }
    if ('audit' in line) {
      if (error) reply.log.error({ ...line, err: error }, 'audit')
      else reply.log.info(line, 'audit')
    } else if (error) reply.log.error({ ...line, err: error }, 'request errored')
    else if (QUIET.has(pathOf(request))) reply.log.debug(line, 'request completed')
    else reply.log.info(line, 'request completed')
  }
}

/** Calls that change something on the engine: each one's line is its audit record. */
function isMutation (request: FastifyRequest): boolean {
  return request.method !== 'GET' && request.method !== 'HEAD' && request.url.startsWith('/v1/')
}

function auditOf (request: FastifyRequest, reply: FastifyReply) {
  return {
    actor: request.principal?.name ?? null,
    action: `${request.method} ${request.routeOptions.url ?? pathOf(request)}`,
    target: request.params ?? {},
    status: reply.statusCode
  }
}

export function pathOf (request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url
}
