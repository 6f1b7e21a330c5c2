// A validated run body made into the engine's RunSpec: references parsed, berth's labels added, and
// every default filled in here and only here — the schema's own (ajv applied them) and the
// policy's (bind on the allowed host IP, choose host ports inside the allowed range, the maximum
// memory and CPUs as the limit when none is asked for). Admission (policy.ts) then only decides.
import type { Policy } from '../config.ts'
import type { Mount, PortRequest, RunSpec } from '../engine/types.ts'
import type { ValidatedRunRequest } from '../schemas/containers.ts'
import { LABEL_AUTO_REMOVE, LABEL_EXPIRES_AT, LABEL_EXPIRY_ACTION, LABEL_IDLE_TIMEOUT, RESERVED_LABEL_PREFIX, type Ownership } from './ownership.ts'
import { imageFrom, invalid } from './policy.ts'
import { MAX_PORTS, parsePortString, parseVolumeString, type PortForm } from './cli-forms.ts'

/**
 * The host ports an engine hands out when asked for "any free port" (Linux's default
 * ip_local_port_range). A policy range that holds all of it can leave the choice to the engine;
 * a narrower one must give the engine the range, or the port lands outside it.
 */
export const ENGINE_EPHEMERAL_PORTS = { min: 32768, max: 60999 }
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/

export function runSpecOf (body: ValidatedRunRequest, policy: Policy, ownership: Ownership, owner: string, now: number = Date.now()): RunSpec {
  const image = imageFrom(body.image, 'body/image')
  const labels = body.labels ?? {}
  for (const key of Object.keys(labels)) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`body/labels/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
  }

  const engineChoosesInRange = policy.hostPortMin <= ENGINE_EPHEMERAL_PORTS.min && policy.hostPortMax >= ENGINE_EPHEMERAL_PORTS.max
  // An omitted host IP would bind every interface: with an allow-list, bind the first allowed one.
  const defaultHostIp = policy.hostIps.includes('*') ? undefined : policy.hostIps[0]
  // Strings are the CLI's forms (a range is several bindings); objects get their defaults here:
  // validation fills none inside a union of an object and a string.
  const requested = (body.ports ?? []).flatMap((port, index): PortForm[] => typeof port === 'string'
    ? parsePortString(port, `body/ports/${index}`)
    : [{ container: port.container, protocol: port.protocol ?? 'tcp', ...(port.host === undefined ? {} : { host: port.host }), ...(port.hostIp === undefined ? {} : { hostIp: port.hostIp }) }])
  if (requested.length > MAX_PORTS) throw invalid('body/ports', `binds ${requested.length} ports once ranges are expanded; a run binds ${MAX_PORTS} at most`)
  const ports = requested.map((port): PortRequest => {
    const hostIp = port.hostIp ?? defaultHostIp
    const host = port.host !== undefined
      ? { host: port.host }
      : port.hostRange !== undefined
        ? { hostRange: port.hostRange }
        : engineChoosesInRange ? {} : { hostRange: { min: policy.hostPortMin, max: policy.hostPortMax } }
    return { container: port.container, protocol: port.protocol, ...host, ...(hostIp === undefined ? {} : { hostIp }) }
  })

  const mounts: Mount[] = (body.volumes ?? []).map((entry, index) => {
    const at = typeof entry === 'string' ? `body/volumes/${index}` : `body/volumes/${index}/source`
    const volume = typeof entry === 'string' ? parseVolumeString(entry, at) : { ...entry, readOnly: entry.readOnly ?? false }
    if (!volume.source.startsWith('/')) {
      if (!VOLUME_NAME.test(volume.source)) throw invalid(at, 'must be a volume name or an absolute host path')
      return { type: 'volume', source: volume.source, target: volume.target, readOnly: volume.readOnly }
    }
    const source = normalisePath(volume.source)
    if (source === null) throw invalid(at, 'must not contain ".." or "." segments')
    if (volume.target.includes(':')) throw invalid(typeof entry === 'string' ? at : `body/volumes/${index}/target`, 'of a bind mount must not contain ":"')
    return { type: 'bind', source, target: volume.target, readOnly: volume.readOnly }
  })

  const nofile = body.ulimits?.nofile
  if (nofile !== undefined && nofile.soft > nofile.hard) throw invalid('body/ulimits/nofile', `has a soft limit (${nofile.soft}) above its hard limit (${nofile.hard})`)

  const restartPolicy = body.restart?.policy ?? 'no'
  if (body.autoRemove && restartPolicy !== 'no') throw invalid('body/autoRemove', `cannot be combined with restart policy "${restartPolicy}": a container that is removed when it exits is not restarted`)

  const memory = body.resources?.memory ?? policy.maxMemoryBytes ?? undefined
  const cpus = body.resources?.cpus ?? policy.maxCpus ?? undefined
  // Reservations (a cluster's) cannot exceed the limits.
  const reservations = body.resources?.reservations
  if (reservations?.memory !== undefined && memory !== undefined && reservations.memory > memory) {
    throw invalid('body/resources/reservations/memory', `must not exceed the memory limit (${memory})`)
  }
  if (reservations?.cpus !== undefined && cpus !== undefined && reservations.cpus > cpus) {
    throw invalid('body/resources/reservations/cpus', `must not exceed the cpu limit (${cpus})`)
  }
  return {
    image,
    ...(body.replicas === undefined ? {} : { replicas: body.replicas }),
    ...(body.placement === undefined ? {} : { placement: { constraints: body.placement.constraints ?? [], spread: body.placement.spread ?? [] } }),
    ...(reservations === undefined ? {} : { reservations }),
    ...(body.name === undefined ? {} : { name: body.name }),
    ...(body.command === undefined ? {} : { command: body.command }),
    ...(body.entrypoint === undefined ? {} : { entrypoint: body.entrypoint }),
    env: body.env ?? {},
    ...(body.workingDir === undefined ? {} : { workingDir: body.workingDir }),
    ...(body.user === undefined ? {} : { user: body.user }),
    labels: { ...labels, ...ownership.labelsFor(owner), ...(body.autoRemove ? { [LABEL_AUTO_REMOVE]: 'true' } : {}), ...expiryLabels(body, now) },
    ports,
    mounts,
    restart: { policy: restartPolicy, ...(body.restart?.maxRetries === undefined ? {} : { maxRetries: body.restart.maxRetries }) },
    ...(memory === undefined ? {} : { memory }),
    ...(cpus === undefined ? {} : { cpus }),
    autoRemove: body.autoRemove,
    pull: body.pull,
    ...(body.tty ? { tty: true } : {}),
    ...(body.auth === undefined ? {} : { auth: body.auth }),
    // ---- Environments (issue 14)
    ...(body.shmSize === undefined ? {} : { shmSize: body.shmSize }),
    ...(body.hostname === undefined ? {} : { hostname: body.hostname }),
    ...(nofile === undefined ? {} : { ulimits: { nofile } }),
    ...(body.init === undefined ? {} : { init: body.init }),
    ...(body.readOnly === undefined ? {} : { readOnly: body.readOnly }),
    ...(body.stopSignal === undefined ? {} : { stopSignal: body.stopSignal }),
    ...(body.stopTimeout === undefined ? {} : { stopTimeout: body.stopTimeout }),
    ...(body.gpus === undefined ? {} : { gpus: body.gpus }),
    // As named: ContainerAccess#run resolves it among the requester's networks.
    ...(body.network === undefined ? {} : { network: body.network }),
    ...(body.aliases === undefined ? {} : { aliases: body.aliases })
  }
}

// "/data/./x" and "/data/../etc" are refused rather than resolved: a path policy must match what is mounted.
function normalisePath (path: string): string | null {
  const segments = path.split('/').filter(segment => segment !== '')
  if (segments.some(segment => segment === '..' || segment === '.')) return null
  return '/' + segments.join('/')
}

/** An expiry is kept as labels, so that it outlives berth: the sweeper reads them from the engine. */
function expiryLabels (body: ValidatedRunRequest, now: number): Record<string, string> {
  const expiry = body.expiry
  if (expiry === undefined) return {}
  if (expiry.ttl === undefined && expiry.idleTimeout === undefined) throw invalid('body/expiry', 'needs a ttl, an idleTimeout or both')
  return {
    [LABEL_EXPIRY_ACTION]: expiry.action ?? 'stop',
    ...(expiry.ttl === undefined ? {} : { [LABEL_EXPIRES_AT]: new Date(now + expiry.ttl * 1000).toISOString() }),
    ...(expiry.idleTimeout === undefined ? {} : { [LABEL_IDLE_TIMEOUT]: String(expiry.idleTimeout) })
  }
}
