// Admission control for runs and pulls: which images, host ports, host IPs, bind mounts and
// resource sizes berth allows. A denial names the rule, so an operator can see which one to change.
import type { Policy } from '../config.ts'
import { BerthError } from '../errors.ts'
import { matchesPattern, parseImage, type ImageRef, type ParsedImage } from '../image-ref.ts'
import type { Mount, PortRequest, RunSpec } from '../engine/types.ts'
import type { RunRequest } from '../schemas/containers.ts'
import { bindDirectory } from './binds.ts'
import { RESERVED_LABEL_PREFIX, type Ownership } from './ownership.ts'

/**
 * The host ports an engine hands out when asked for "any free port" (Linux's default
 * ip_local_port_range). A policy range that holds all of it can leave the choice to the engine;
 * a narrower one must give the engine the range, or the port lands outside it.
 */
export const ENGINE_EPHEMERAL_PORTS = { min: 32768, max: 60999 }
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/

export function deny (rule: string, detail: string): BerthError {
  return new BerthError('policy_denied', detail, { rule })
}

function invalid (field: string, detail: string): BerthError {
  return new BerthError('validation_failed', `${field} ${detail}`, { errors: [{ location: 'body', path: '/' + field.split('/').slice(1).join('/'), message: detail }] })
}

/** Parses a reference from a request field, or fails with validation_failed naming the field. */
export function imageFrom (input: string, field: string): ParsedImage {
  const parsed = parseImage(input)
  if (typeof parsed === 'string') throw invalid(field, parsed)
  return parsed
}

/** Pulls and runs are only of images the allow-list names; checked before any network call. */
export function checkImage (policy: Policy, image: ParsedImage): void {
  if (policy.images.includes('*')) return
  if (image.kind === 'id') {
    throw deny('images', 'an image id cannot be matched against the image allow-list; name the image by reference')
  }
  if (!policy.images.some(pattern => matchesPattern(image.ref.name, pattern))) {
    throw deny('images', `image ${image.ref.name} is not on the allow-list (BERTH_ALLOWED_IMAGES)`)
  }
}

export function checkPullRef (policy: Policy, input: string): ImageRef {
  const image = imageFrom(input, 'body/image')
  if (image.kind === 'id') throw invalid('body/image', 'must be a reference (repo[:tag] or repo@digest): an image id cannot be pulled')
  checkImage(policy, image)
  return image.ref
}

/** Turns a validated run request into an engine RunSpec, enforcing the policy on the way. */
export function admitRun (policy: Policy, ownership: Ownership, body: RunRequest, owner: string): RunSpec {
  const image = imageFrom(body.image, 'body/image')
  checkImage(policy, image)

  const labels = body.labels ?? {}
  for (const key of Object.keys(labels)) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`body/labels/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
  }

  const engineChoosesInRange = policy.hostPortMin <= ENGINE_EPHEMERAL_PORTS.min && policy.hostPortMax >= ENGINE_EPHEMERAL_PORTS.max
  // An omitted host IP would bind every interface: with an allow-list, bind the first allowed one.
  const defaultHostIp = policy.hostIps.includes('*') ? undefined : policy.hostIps[0]
  const ports = (body.ports ?? []).map((port, index): PortRequest => {
    if (port.host !== undefined && (port.host < policy.hostPortMin || port.host > policy.hostPortMax)) {
      throw deny('hostPorts', `host port ${port.host} (ports/${index}) is outside the allowed range ${policy.hostPortMin}-${policy.hostPortMax}`)
    }
    if (port.hostIp !== undefined && !policy.hostIps.includes('*') && !policy.hostIps.includes(port.hostIp)) {
      throw deny('hostIps', `host IP ${port.hostIp} (ports/${index}) is not on the allow-list (BERTH_ALLOWED_HOST_IPS)`)
    }
    const hostIp = port.hostIp ?? defaultHostIp
    const host = port.host !== undefined
      ? { host: port.host }
      : engineChoosesInRange ? {} : { hostRange: { min: policy.hostPortMin, max: policy.hostPortMax } }
    return { container: port.container, protocol: port.protocol ?? 'tcp', ...host, ...(hostIp === undefined ? {} : { hostIp }) }
  })

  const mounts: Mount[] = (body.volumes ?? []).map((volume, index) => {
    if (!volume.source.startsWith('/')) {
      if (!VOLUME_NAME.test(volume.source)) throw invalid(`body/volumes/${index}/source`, 'must be a volume name or an absolute host path')
      return { type: 'volume', source: volume.source, target: volume.target, readOnly: volume.readOnly ?? false }
    }
    const source = normalisePath(volume.source)
    if (source === null) throw invalid(`body/volumes/${index}/source`, 'must not contain ".." or "." segments')
    // Only the token's own directory under an allowed root, never a path below it: a container
    // that has that directory mounted can put a symlink anywhere inside it, and the engine
    // follows links in a bind source when it mounts (also on every later start).
    const own = policy.bindPaths.map(root => bindDirectory(root, ownership.deployment, owner))
    if (!own.includes(source)) {
      const hint = own.length === 0 ? 'no host paths may be bind-mounted (BERTH_ALLOWED_BIND_PATHS)' : `a token may bind-mount only its own directory: ${own.join(' or ')}`
      throw deny('bindPaths', `bind-mounting host path ${source} is not allowed: ${hint}`)
    }
    if (volume.target.includes(':')) throw invalid(`body/volumes/${index}/target`, 'of a bind mount must not contain ":"')
    return { type: 'bind', source, target: volume.target, readOnly: volume.readOnly ?? false }
  })

  const memory = body.resources?.memory ?? policy.maxMemoryBytes ?? undefined
  if (policy.maxMemoryBytes !== null && memory !== undefined && memory > policy.maxMemoryBytes) {
    throw deny('maxMemory', `memory ${memory} exceeds the allowed maximum of ${policy.maxMemoryBytes} bytes`)
  }
  const cpus = body.resources?.cpus ?? policy.maxCpus ?? undefined
  if (policy.maxCpus !== null && cpus !== undefined && cpus > policy.maxCpus) {
    throw deny('maxCpus', `cpus ${cpus} exceeds the allowed maximum of ${policy.maxCpus}`)
  }

  // Reservations (a cluster's) are held to the same maxima as limits, and cannot exceed the limits.
  const reservations = body.resources?.reservations
  if (reservations?.memory !== undefined) {
    if (policy.maxMemoryBytes !== null && reservations.memory > policy.maxMemoryBytes) {
      throw deny('maxMemory', `reserved memory ${reservations.memory} exceeds the allowed maximum of ${policy.maxMemoryBytes} bytes`)
    }
    if (memory !== undefined && reservations.memory > memory) throw invalid('body/resources/reservations/memory', `must not exceed the memory limit (${memory})`)
  }
  if (reservations?.cpus !== undefined) {
    if (policy.maxCpus !== null && reservations.cpus > policy.maxCpus) throw deny('maxCpus', `reserved cpus ${reservations.cpus} exceed the allowed maximum of ${policy.maxCpus}`)
    if (cpus !== undefined && reservations.cpus > cpus) throw invalid('body/resources/reservations/cpus', `must not exceed the cpu limit (${cpus})`)
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
    labels: { ...labels, ...ownership.labelsFor(owner) },
    ports,
    mounts,
    restart: { policy: body.restart?.policy ?? 'no', ...(body.restart?.maxRetries === undefined ? {} : { maxRetries: body.restart.maxRetries }) },
    ...(memory === undefined ? {} : { memory }),
    ...(cpus === undefined ? {} : { cpus }),
    autoRemove: body.autoRemove ?? false,
    pull: body.pull ?? 'missing',
    ...(body.tty ? { tty: true } : {}),
    ...(body.stopTimeout === undefined ? {} : { stopTimeout: body.stopTimeout }),
    ...(body.auth === undefined ? {} : { auth: body.auth })
  }
}

// "/data/./x" and "/data/../etc" are refused rather than resolved: a path policy must match what is mounted.
function normalisePath (path: string): string | null {
  const segments = path.split('/').filter(segment => segment !== '')
  if (segments.some(segment => segment === '..' || segment === '.')) return null
  return '/' + segments.join('/')
}
