// What each engine backend can do. A route that only some backends have says so in its
// `config.backends`; the capabilities plugin answers 501 not_supported on the others, and the
// OpenAPI document lists the backends of every operation. Run bodies are checked here too: a field
// a backend cannot honour is refused, never ignored or imitated.
import { LABEL_EXPIRY_ACTION } from '../access/ownership.ts'
import { BerthError } from '../errors.ts'
import type { EngineKind, RunSpec } from './types.ts'

export const BACKENDS: readonly EngineKind[] = ['docker', 'swarm']

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The backends that have this operation; absent means all of them. */
    backends?: readonly EngineKind[]
    /** Why the other backends do not: the detail of their 501. */
    unsupported?: string
  }
}

export function notSupported (kind: EngineKind, detail: string): BerthError {
  return new BerthError('not_supported', detail, { backend: kind })
}

/** The sentence the OpenAPI document adds to an operation that only some backends have. */
export function backendsSentence (backends: readonly EngineKind[], why: string | undefined): string {
  const others = BACKENDS.filter(kind => !backends.includes(kind))
  return `Backends: ${backends.join(', ')} only; on ${others.join(', ')} this answers 501 not_supported${why === undefined ? '' : ` (${why})`}.`
}

/** Refuses what a run asks for that the backend cannot honour, before anything is created. */
export function checkRunCapabilities (kind: EngineKind, spec: RunSpec): void {
  if (kind === 'docker') {
    const cluster = [
      ...(spec.replicas !== undefined && spec.replicas !== 1 ? ['replicas'] : []),
      ...(spec.placement !== undefined ? ['placement'] : []),
      ...(spec.reservations !== undefined ? ['resources.reservations'] : [])
    ]
    if (cluster.length > 0) {
      throw notSupported(kind, `${cluster.join(', ')} need a cluster: the docker backend runs one container on one host (BERTH_ENGINE=swarm schedules replicas over nodes)`)
    }
    return
  }
  if (spec.labels[LABEL_EXPIRY_ACTION] !== undefined) {
    throw notSupported(kind, 'expiry is single-host for now: on a Swarm cluster nothing would stop or remove the service when it expires')
  }
  if (spec.autoRemove) {
    throw notSupported(kind, 'autoRemove is not supported on a Swarm cluster: a service\'s tasks are kept and replaced by the orchestrator; remove the container when done')
  }
  if (spec.mounts.some(mount => mount.type === 'volume')) {
    throw notSupported(kind, 'named volumes are not supported on a Swarm cluster: each node has its own volumes, so a replica would see different data, and their ownership cannot be checked on every node')
  }
  const pinned = spec.ports.find(port => port.hostIp !== undefined && port.hostIp !== '0.0.0.0' && port.hostIp !== '::')
  if (pinned !== undefined) {
    throw notSupported(kind, `Swarm publishes a port on every address of a node; binding port ${pinned.container} to host IP ${pinned.hostIp} is not possible ` +
      '(with BERTH_ALLOWED_HOST_IPS set, allow 0.0.0.0 to publish on a cluster)')
  }
}
