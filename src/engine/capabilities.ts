// What each engine backend can do. A route that only some backends have says so in its
// `config.backends`; the capabilities plugin answers 501 not_supported on the others, and the
// OpenAPI document lists the backends of every operation. Run bodies are checked here too: a field
// a backend cannot honour is refused, never ignored or imitated.
import { LABEL_EXPIRY_ACTION } from '../access/ownership.ts'
import { BerthError } from '../errors.ts'
import type { EngineKind, RunSpec } from './types.ts'

export const BACKENDS: readonly EngineKind[] = ['docker', 'swarm', 'kubernetes']

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
  return `Backends: ${words(backends)} only; on ${words(others)} this answers 501 not_supported${why === undefined ? '' : ` (${why})`}.`
}

/** docker · docker and swarm · docker, swarm and kubernetes */
function words (kinds: readonly EngineKind[]): string {
  return kinds.length <= 1 ? kinds.join('') : `${kinds.slice(0, -1).join(', ')} and ${kinds.at(-1)}`
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
  if (kind === 'kubernetes') {
    checkKubernetesRun(spec)
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

/**
 * What a Deployment cannot be asked for. A replica that exits is always restarted (a Deployment's
 * pods have restartPolicy Always), so on-failure is refused; `no`, the default, is taken to mean
 * that nothing was asked for and is reported as always. Host paths and the engine's own knobs that
 * the restricted pod security profile or the pod API do not have are refused.
 */
function checkKubernetesRun (spec: RunSpec): void {
  const refused: Array<[boolean, string]> = [
    [spec.labels[LABEL_EXPIRY_ACTION] !== undefined, 'expiry is not there yet on Kubernetes: nothing would stop or remove the Deployment when it expires'],
    [spec.autoRemove, 'autoRemove is not supported on Kubernetes: a Deployment\'s pods are replaced when they exit; remove the container when done'],
    [spec.restart.policy === 'on-failure', 'restart on-failure is not possible on Kubernetes: a Deployment restarts its replicas whenever they exit'],
    [spec.mounts.some(mount => mount.type === 'volume'), 'named volumes are not there yet on Kubernetes (they would be PersistentVolumeClaims)'],
    [spec.mounts.some(mount => mount.type === 'bind'), 'bind mounts are not supported on Kubernetes: a host path is another directory on every node, and the restricted pod security profile forbids hostPath volumes'],
    [spec.image.kind === 'id', 'on Kubernetes a container runs an image reference that its node pulls, not an image id of one engine'],
    [spec.gpus !== undefined && typeof spec.gpus !== 'number', 'on Kubernetes GPUs are asked for by count (the nvidia.com/gpu resource): "all" and device ids are a single host\'s'],
    [spec.ulimits !== undefined, 'ulimits cannot be set per pod on Kubernetes'],
    [spec.init === true, 'init is not offered on Kubernetes: the container runtime has no --init; use an image whose entrypoint is an init'],
    [spec.stopSignal !== undefined && spec.stopSignal !== 'SIGTERM', 'Kubernetes 1.25 stops a pod with SIGTERM only: another stop signal cannot be given'],
    [spec.network !== undefined || (spec.aliases?.length ?? 0) > 0, 'networks through berth are single-host; on Kubernetes every pod is on the cluster network']
  ]
  const reason = refused.find(([applies]) => applies)
  if (reason !== undefined) throw notSupported('kubernetes', reason[1])
}
