// What a Swarm manager answers beyond a single engine's errors, in berth's codes: a manager that
// cannot serve (not a manager, no leader, still electing one) is unavailable, not broken; a
// cluster-wide (ingress) port taken by another service is a port conflict naming it; an update that
// raced another one is retried by the engine.
import { BerthError } from '../../errors.ts'
import { engineMessage, mapEngineError, type DockerModemError } from '../docker/errors.ts'
import { PortConflictError } from '../types.ts'

/** The manager refused an update made against an older version of the service: read it again and retry. */
export class OutOfSequenceError extends BerthError {
  constructor (cause: unknown) {
    super('engine_error', 'the service changed while berth updated it', {}, { cause })
  }
}

const UNAVAILABLE = /not a swarm manager|does not have a leader|swarm is not ready|raft|code = (Unavailable|DeadlineExceeded)|context deadline exceeded|swarm component/i

export function mapSwarmError (error: unknown, target: string): BerthError {
  const mapped = error instanceof BerthError ? error : mapEngineError(error, 'engine', target, 0)
  const raw = (error instanceof BerthError ? error.cause : error) as DockerModemError | undefined
  const status = raw?.statusCode
  if (typeof status !== 'number' || raw === undefined) return mapped
  const message = engineMessage(raw)
  if (status === 503 || UNAVAILABLE.test(message)) {
    return new BerthError('engine_unavailable', `the Swarm manager cannot serve now: ${message}`, {}, { cause: raw, headers: { 'retry-after': '5' } })
  }
  if (status === 409 && /name conflicts with an existing object/i.test(message)) {
    return new BerthError('name_conflict', `the container name ${target} is already in use`, { name: target }, { cause: raw })
  }
  const ingress = /port '(\d+)' is already in use by service '([^']*)' \(([a-z0-9]+)\)/i.exec(message)
  if (ingress !== null) {
    // The manager names the holder; its labels (who may see it) are looked up by the engine.
    return new PortConflictError(Number(ingress[1]), { id: ingress[3] as string, name: ingress[2] as string, labels: {} }, undefined, raw)
  }
  if (status === 400 && /valid as a DNS name component|name must be \d+ characters or fewer/i.test(message)) {
    return new BerthError('validation_failed', `on a Swarm cluster the container name ${target} must be a DNS name component: at most 63 letters, digits, "_" or "-", without "." and not ending in "-"`,
      { errors: [{ location: 'body', path: '/name', message: 'must be a DNS name component on a cluster' }] }, { cause: raw })
  }
  if (/update out of sequence/i.test(message)) return new OutOfSequenceError(raw)
  return mapped
}
