// Answers what Node's HTTP parser refuses before a request reaches Fastify — a request not received
// in time, headers too large, bytes that are not HTTP — as problem+json like every other error.
// Fastify's default answers in its own JSON shape and logs the error with the raw bytes received,
// which can hold an Authorization header.
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.ts'
import { BerthError, problemOf } from '../errors.ts'

// Required, not imported: an ES module's import of node:http reads every export, and three of them
// (WebSocket, CloseEvent, MessageEvent) are getters that load Node's bundled fetch, undici: 2.3 MiB
// of heap from the start, where berth needs it only once it asks a registry (fetch) itself.
const { STATUS_CODES } = createRequire(import.meta.url)('node:http') as typeof import('node:http')

export function clientErrorHandler (limits: Config['limits']) {
  return function (this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
    // The client went away: nobody to answer.
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    const problem = error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new BerthError('request_timeout', `send the headers within ${limits.headersTimeoutMs} ms and the whole request within ${limits.requestTimeoutMs} ms`)
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new BerthError('headers_too_large', 'the request headers exceed the size berth reads')
        : new BerthError('validation_failed', 'the request is not valid HTTP/1.1')
    const requestId = randomUUID()
    this.log.debug({ requestId, code: problem.code, reason: error.code }, 'client error')
    // As Node itself does: never a second response over one already begun on this connection.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage
    if (socket.writable && (inFlight == null || inFlight.headersSent !== true)) {
      const body = JSON.stringify(problemOf(problem, requestId))
      socket.write(`HTTP/1.1 ${problem.statusCode} ${STATUS_CODES[problem.statusCode] ?? ''}\r\n` +
        'Content-Type: application/problem+json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-Id: ${requestId}\r\n` +
        'Connection: close\r\n\r\n' + body)
    }
    socket.destroy(error)
  }
}
