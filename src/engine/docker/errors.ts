// Maps what dockerode and the Docker engine report to berth's error codes. No Docker status
// code leaks through unmapped: anything not recognised here becomes engine_error.
import { BerthError } from '../../errors.ts'
import { PortConflictError } from '../types.ts'

export interface DockerModemError extends Error {
  statusCode?: number
  code?: string
  json?: { message?: string } | null
}

/** What the failed call was about, so a 404 can say "container" or "image". */
export type Subject = 'container' | 'image' | 'volume' | 'network' | 'engine'

const CONNECTION_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EACCES', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET'])

/** An engine over TCP with TLS that the certificates do not let berth reach (either side refused the other). */
function isTlsFailure (code: string | undefined): boolean {
  return code !== undefined && (/^ERR_SSL_|^ERR_TLS_|CERT|^EPROTO$/.test(code) || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
}

export function engineMessage (error: DockerModemError): string {
  const fromBody = error.json?.message
  if (typeof fromBody === 'string' && fromBody.length > 0) return fromBody.trim()
  // docker-modem's own message: "(HTTP code 404) no such container - No such container: x "
  return error.message.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim()
}

export function isConnectionFailure (error: unknown): boolean {
  const err = error as DockerModemError
  return err?.name === 'AbortError' || err?.name === 'TimeoutError' || (typeof err?.code === 'string' && (CONNECTION_CODES.has(err.code) || isTlsFailure(err.code)))
}

/** "Bind for 0.0.0.0:8080 failed: port is already allocated", "listen tcp4 0.0.0.0:8080: bind: address already in use" */
export function conflictingPort (message: string): number | null {
  const allocated = /:(\d{1,5}) failed: port is already allocated/.exec(message)
  const inUse = /listen (?:tcp|udp|sctp)[46]? [^\s]*:(\d{1,5}): bind: address already in use/.exec(message)
  const port = allocated?.[1] ?? inUse?.[1]
  return port === undefined ? null : Number(port)
}

export function mapEngineError (error: unknown, subject: Subject, target: string, timeoutMs: number): BerthError {
  if (error instanceof BerthError) return error
  const err = error as DockerModemError
  if (isConnectionFailure(err)) {
    const detail = err.name === 'AbortError' || err.name === 'TimeoutError'
      ? `the container engine did not answer within ${timeoutMs} ms`
      : isTlsFailure(err.code)
        ? `cannot reach the container engine over TLS (${err.code}): its certificate and berth's (ca.pem, cert.pem, key.pem) must come from one CA`
        : `cannot reach the container engine (${err.code})`
    return new BerthError('engine_unavailable', detail, {}, { cause: error, headers: { 'retry-after': '5' } })
  }
  const status = err?.statusCode
  if (typeof status !== 'number') {
    return new BerthError('engine_error', 'the container engine failed unexpectedly', {}, { cause: error })
  }
  const message = engineMessage(err)
  // The engine (or what stands in front of it: berth's agent on a Swarm node) says it cannot serve now.
  if (status === 503) {
    return new BerthError('engine_unavailable', `the engine cannot serve now: ${message}`, {}, { cause: error, headers: { 'retry-after': '5' } })
  }
  if (status === 404) {
    if (subject === 'image' || /no such image/i.test(message)) {
      return new BerthError('image_not_found', `image ${target} was not found`, { image: target }, { cause: error })
    }
    return new BerthError('not_found', `${subject} ${target} was not found`, {}, { cause: error })
  }
  if (status === 409) {
    // 'Conflict. The container name "/x" is already in use by container "…"': the name is in the message.
    const taken = /container name "\/?([^"]+)" is already in use/i.exec(message)
    if (taken !== null || /is already in use by container/i.test(message)) {
      const name = taken?.[1] ?? target
      return new BerthError('name_conflict', `the container name ${name} is already in use`, { name }, { cause: error })
    }
    if (/cannot remove a running container|stop the container before/i.test(message)) {
      return new BerthError('container_running', `container ${target} is running; stop it first or remove it with force=true`, {}, { cause: error })
    }
    if (subject === 'image') {
      return new BerthError('image_in_use', `image ${target} is in use: ${message}`, { image: target }, { cause: error })
    }
    if (subject === 'network' && /already exists/i.test(message)) {
      return new BerthError('name_conflict', `the network name ${target} is already in use`, { name: target }, { cause: error })
    }
    // "remove x: volume is in use - [ids]": the ids may be anybody's, so they are not repeated.
    if (subject === 'volume' && /volume is in use/i.test(message)) {
      return new BerthError('volume_in_use', `volume ${target} is in use by a container`, { volume: target }, { cause: error })
    }
  }
  if (subject === 'network' && /has active endpoints/i.test(message)) {
    return new BerthError('network_in_use', `network ${target} has containers attached`, { network: target }, { cause: error })
  }
  if (status === 400) {
    return new BerthError('validation_failed', `the engine rejected the request: ${message}`, {}, { cause: error })
  }
  // Found only at start: the engine has no GPU runtime (no device driver for the gpu capability), or
  // the GPU runtime refused the devices asked for.
  if (/could not select device driver .* with capabilities: \[\[gpu\]\]|nvidia-container-cli/i.test(message)) {
    return new BerthError('gpu_unavailable', `the engine cannot give ${target} the GPUs asked for: ${message}`, {}, { cause: error })
  }
  const port = conflictingPort(message)
  if (port !== null) return new PortConflictError(port, null, undefined, error)
  // A host port range with every port taken.
  if (/all ports are allocated/i.test(message)) return new PortConflictError(null, null, 'no host port is free in the allowed range', error)
  // The engine resolves an id prefix among all its containers; who asked may see only some of them.
  if (/multiple IDs found with provided prefix/i.test(message)) {
    return new BerthError('ambiguous_id', `${target} matches more than one ${subject}; give more of the id`, {}, { cause: error })
  }
  return new BerthError('engine_error', `the engine answered ${status}: ${message}`, { engineStatus: status }, { cause: error })
}
