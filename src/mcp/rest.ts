// How a tool acts: it calls berth's own REST route inside the app (app.inject), as the agent's token,
// so that authentication, scopes, ownership, policy, quotas, rate limits, validation, metrics and the
// audit line are the route's own — nothing an agent can do that its token cannot do over /v1. The
// injected request carries the /mcp request's id and client address, so its log and audit lines
// name the agent's call, and it ends when the agent's connection does. Bodies are read as they
// come, up to a bound: a tool result travels whole in one message.
import type { FastifyInstance } from 'fastify'
import type { Problem } from '../errors.ts'

/** Who calls, from the /mcp request: what every injected request carries. */
export interface Caller {
  /** The Authorization header as the agent sent it (none when berth runs without authentication). */
  authorization: string | undefined
  requestId: string
  address: string
  /** Ends with the agent's connection, a revoked token, or berth closing. */
  signal: AbortSignal
}

export interface RestCall {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  url: string
  query: Record<string, string | string[]>
  /** A JSON body, or bytes sent as `contentType`. */
  body?: unknown
  contentType?: string
  accept: string
  /** The most of the answer's body read; past it the call is ended and the answer is `truncated`. */
  limit: number
}

export interface RestAnswer {
  status: number
  headers: Record<string, string | string[] | number | undefined>
  body: Buffer
  /** The body went on past the limit: `body` is its first `limit` bytes. */
  truncated: boolean
  /**
   * The body broke off after the answer began: the route failed half-way (the engine went away, a
   * download reached BERTH_MAX_DOWNLOAD). HTTP says no more than that, here as to any client.
   */
  broken: boolean
}

export async function callRoute (app: FastifyInstance, caller: Caller, call: RestCall): Promise<RestAnswer> {
  // Ends the call when the body is long enough, as well as with the caller.
  const enough = new AbortController()
  const bytes = Buffer.isBuffer(call.body)
  const response = await app.inject({
    method: call.method,
    url: call.url,
    query: call.query,
    headers: {
      ...(caller.authorization === undefined ? {} : { authorization: caller.authorization }),
      'x-request-id': caller.requestId,
      accept: call.accept,
      ...(call.body === undefined ? {} : { 'content-type': call.contentType ?? 'application/json' })
    },
    ...(call.body === undefined ? {} : { payload: bytes ? call.body as Buffer : JSON.stringify(call.body) }),
    remoteAddress: caller.address,
    signal: AbortSignal.any([caller.signal, enough.signal]),
    payloadAsStream: true
  })
  const chunks: Buffer[] = []
  let size = 0
  let truncated = false
  let broken = false
  try {
    for await (const chunk of response.stream()) {
      const piece = chunk as Buffer
      const room = call.limit - size
      if (piece.length > room) {
        chunks.push(piece.subarray(0, room))
        truncated = true
        break
      }
      chunks.push(piece)
      size += piece.length
    }
  } catch (error) {
    if (caller.signal.aborted) throw error
    broken = true
  } finally {
    if (truncated) enough.abort()
  }
  return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks), truncated, broken }
}

/** The problem of an error answer (every one berth gives is problem+json). */
export function problemOfAnswer (answer: RestAnswer): Problem {
  return JSON.parse(answer.body.toString('utf8')) as Problem
}
