// Admission control for runs and pulls: which images, host ports, host IPs, bind mounts and
// resource sizes berth allows. It only decides (src/access/run-spec.ts makes the spec and fills in
// its defaults); a denial names the rule, so an operator can see which one to change.
import type { Policy } from '../config.ts'
import { BerthError } from '../errors.ts'
import { matchesPattern, parseImage, type ImageRef, type ParsedImage } from '../engine/image-ref.ts'
import type { RunSpec } from '../engine/types.ts'
import { bindDirectory } from './binds.ts'
import type { Ownership } from './ownership.ts'

export function deny (rule: string, detail: string): BerthError {
  return new BerthError('policy_denied', detail, { rule })
}

export function invalid (field: string, detail: string): BerthError {
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

/** Decides whether a run may go to the engine as specified; throws policy_denied naming the rule. */
export function admitRun (policy: Policy, ownership: Ownership, spec: RunSpec, owner: string): void {
  checkImage(policy, spec.image)
  spec.ports.forEach((port, index) => {
    if (port.host !== undefined && (port.host < policy.hostPortMin || port.host > policy.hostPortMax)) {
      throw deny('hostPorts', `host port ${port.host} (ports/${index}) is outside the allowed range ${policy.hostPortMin}-${policy.hostPortMax}`)
    }
    if (!policy.hostIps.includes('*') && (port.hostIp === undefined || !policy.hostIps.includes(port.hostIp))) {
      throw deny('hostIps', `host IP ${port.hostIp ?? 'of every interface'} (ports/${index}) is not on the allow-list (BERTH_ALLOWED_HOST_IPS)`)
    }
  })
  // Only the token's own directory under an allowed root, never a path below it: a container
  // that has that directory mounted can put a symlink anywhere inside it, and the engine
  // follows links in a bind source when it mounts (also on every later start).
  const own = policy.bindPaths.map(root => bindDirectory(root, ownership.deployment, owner))
  for (const mount of spec.mounts) {
    if (mount.type === 'bind' && !own.includes(mount.source)) {
      const hint = own.length === 0 ? 'no host paths may be bind-mounted (BERTH_ALLOWED_BIND_PATHS)' : `a token may bind-mount only its own directory: ${own.join(' or ')}`
      throw deny('bindPaths', `bind-mounting host path ${mount.source} is not allowed: ${hint}`)
    }
  }
  if (policy.maxMemoryBytes !== null && spec.memory !== undefined && spec.memory > policy.maxMemoryBytes) {
    throw deny('maxMemory', `memory ${spec.memory} exceeds the allowed maximum of ${policy.maxMemoryBytes} bytes`)
  }
  if (policy.maxCpus !== null && spec.cpus !== undefined && spec.cpus > policy.maxCpus) {
    throw deny('maxCpus', `cpus ${spec.cpus} exceeds the allowed maximum of ${policy.maxCpus}`)
  }
  // Reservations (a cluster's) are held to the same maxima as limits.
  if (policy.maxMemoryBytes !== null && spec.reservations?.memory != null && spec.reservations.memory > policy.maxMemoryBytes) {
    throw deny('maxMemory', `reserved memory ${spec.reservations.memory} exceeds the allowed maximum of ${policy.maxMemoryBytes} bytes`)
  }
  if (policy.maxCpus !== null && spec.reservations?.cpus != null && spec.reservations.cpus > policy.maxCpus) {
    throw deny('maxCpus', `reserved cpus ${spec.reservations.cpus} exceed the allowed maximum of ${policy.maxCpus}`)
  }
  // ---- Environments (issue 14)
  spec.ports.forEach((port, index) => {
    const range = port.hostRange
    if (range !== undefined && (range.min < policy.hostPortMin || range.max > policy.hostPortMax)) {
      throw deny('hostPorts', `host ports ${range.min}-${range.max} (ports/${index}) reach outside the allowed range ${policy.hostPortMin}-${policy.hostPortMax}`)
    }
  })
  if (policy.maxShmBytes !== null && spec.shmSize !== undefined && spec.shmSize > policy.maxShmBytes) {
    throw deny('maxShmSize', `shmSize ${spec.shmSize} exceeds the allowed maximum of ${policy.maxShmBytes} bytes`)
  }
}
