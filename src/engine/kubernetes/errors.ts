// What the apiserver and the HTTP client report, in berth's error codes. No apiserver status leaks
// through unmapped: anything not recognised here becomes engine_error.
import { ApiException } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'

/** What the failed call was about, so a 404 can say what was not found. */
export type Subject = 'container' | 'secret' | 'engine' | 'nodes' | 'volume' | 'image' | 'stats'

/** The apiserver's Status object, the body of every error it answers with. */
interface KubeStatus {
  message?: string
  reason?: string
  code?: number
}

const CONNECTION_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'EAI_AGAIN'])

export function statusOf (error: unknown): KubeStatus {
  if (!(error instanceof ApiException)) return {}
  const body: unknown = error.body
  if (body !== null && typeof body === 'object') return body as KubeStatus
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as KubeStatus
    } catch {
      return { message: body }
    }
  }
  return {}
}

/** The connection to the apiserver failed (refused, reset, cut, timed out), as opposed to an answer. */
export function isConnectionFailure (error: unknown): boolean {
  if (error instanceof ApiException) return false
  let cause: unknown = error
  for (let depth = 0; depth < 4 && cause !== undefined && cause !== null; depth++) {
    const err = cause as { name?: string, code?: string, cause?: unknown }
    if (err.name === 'AbortError' || err.name === 'TimeoutError') return true
    if (typeof err.code === 'string' && CONNECTION_CODES.has(err.code)) return true
    cause = err.cause
  }
  return error instanceof TypeError && /fetch failed/.test(error.message)
}

export function unavailable (detail: string, cause?: unknown): BerthError {
  return new BerthError('engine_unavailable', detail, {}, { ...(cause === undefined ? {} : { cause }), headers: { 'retry-after': '5' } })
}

export function mapKubeError (error: unknown, subject: Subject, target: string, context: { timedOut: boolean, timeoutMs: number, server: string }): BerthError {
  if (error instanceof BerthError) return error
  if (context.timedOut) return unavailable(`the Kubernetes apiserver did not answer within ${context.timeoutMs} ms`, error)
  if (isConnectionFailure(error)) return unavailable(`cannot reach the Kubernetes apiserver at ${context.server}`, error)
  if (!(error instanceof ApiException)) return new BerthError('engine_error', 'the Kubernetes client failed unexpectedly', {}, { cause: error })
  const status = statusOf(error)
  const message = status.message ?? ''
  switch (error.code) {
    case 404:
      return new BerthError('not_found', `${subject} ${target} was not found`, {}, { cause: error })
    case 409:
      if (status.reason === 'AlreadyExists') return new BerthError('name_conflict', `the name ${target} is already in use`, { name: target }, { cause: error })
      break
    case 401:
    case 403:
      // berth's own credentials are wrong or its Role too narrow: an operator's problem, not the client's.
      return new BerthError('engine_error', `the apiserver refused berth's credentials for this (${message || error.code}): check berth's ServiceAccount and Role`, {}, { cause: error })
    case 422:
      return new BerthError('validation_failed', `Kubernetes refused it: ${message}`, {}, { cause: error })
    case 429:
    case 500:
    case 503:
    case 504:
      return unavailable(`the Kubernetes apiserver is not able to answer now (${error.code}${message === '' ? '' : `: ${message}`})`, error)
  }
  return new BerthError('engine_error', `the Kubernetes apiserver answered ${error.code}${message === '' ? '' : `: ${message}`}`, {}, { cause: error })
}
