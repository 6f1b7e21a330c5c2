// Admission control for runs and pulls: which images, host ports, host IPs, bind mounts and
// resource sizes berth allows. A denial names the rule, so an operator can see which one to change.
import type { Policy } from './config.ts'
import { BerthError } from './errors.ts'
import { matchesPattern, parseImage, type ImageRef, type ParsedImage } from './image-ref.ts'
import type { Mount, RunSpec } from './engine/types.ts'
import type { RunRequest } from './schemas/containers.ts'

export const LABEL_MANAGED = 'io.berth.managed'
export const LABEL_OWNER = 'io.berth.owner'
const RESERVED_LABEL_PREFIX = 'io.berth.'
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
export function admitRun (policy: Policy, body: RunRequest, owner: string): RunSpec {
  const image = imageFrom(body.image, 'body/image')
  checkImage(policy, image)

  const labels = body.labels ?? {}
  for (const key of Object.keys(labels)) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) throw invalid(`body/labels/${key}`, `is reserved: labels under ${RESERVED_LABEL_PREFIX} are berth's own`)
  }

  const ports = (body.ports ?? []).map((port, index) => {
    if (port.host !== undefined && (port.host < policy.hostPortMin || port.host > policy.hostPortMax)) {
      throw deny('hostPorts', `host port ${port.host} (ports/${index}) is outside the allowed range ${policy.hostPortMin}-${policy.hostPortMax}`)
    }
    if (port.hostIp !== undefined && !policy.hostIps.includes('*') && !policy.hostIps.includes(port.hostIp)) {
      throw deny('hostIps', `host IP ${port.hostIp} (ports/${index}) is not on the allow-list (BERTH_ALLOWED_HOST_IPS)`)
    }
    return { container: port.container, protocol: port.protocol ?? 'tcp', ...(port.host === undefined ? {} : { host: port.host }), ...(port.hostIp === undefined ? {} : { hostIp: port.hostIp }) }
  })

  const mounts: Mount[] = (body.volumes ?? []).map((volume, index) => {
    if (!volume.source.startsWith('/')) {
      if (!VOLUME_NAME.test(volume.source)) throw invalid(`body/volumes/${index}/source`, 'must be a volume name or an absolute host path')
      return { type: 'volume', source: volume.source, target: volume.target, readOnly: volume.readOnly ?? false }
    }
    const source = normalisePath(volume.source)
    if (source === null) throw invalid(`body/volumes/${index}/source`, 'must not contain ".." or "." segments')
    const allowed = policy.bindPaths.some(prefix => prefix === '/' || source === prefix || source.startsWith(prefix + '/'))
    if (!allowed) throw deny('bindPaths', `bind-mounting host path ${source} is not allowed (BERTH_ALLOWED_BIND_PATHS)`)
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

  return {
    image,
    ...(body.name === undefined ? {} : { name: body.name }),
    ...(body.command === undefined ? {} : { command: body.command }),
    ...(body.entrypoint === undefined ? {} : { entrypoint: body.entrypoint }),
    env: body.env ?? {},
    ...(body.workingDir === undefined ? {} : { workingDir: body.workingDir }),
    ...(body.user === undefined ? {} : { user: body.user }),
    labels: { ...labels, [LABEL_MANAGED]: 'true', [LABEL_OWNER]: owner },
    ports,
    mounts,
    restart: { policy: body.restart?.policy ?? 'no', ...(body.restart?.maxRetries === undefined ? {} : { maxRetries: body.restart.maxRetries }) },
    ...(memory === undefined ? {} : { memory }),
    ...(cpus === undefined ? {} : { cpus }),
    autoRemove: body.autoRemove ?? false,
    pull: body.pull ?? 'missing',
    ...(body.tty ? { tty: true } : {}),
    ...(body.auth === undefined ? {} : { auth: body.auth })
  }
}

// "/data/./x" and "/data/../etc" are refused rather than resolved: a path policy must match what is mounted.
function normalisePath (path: string): string | null {
  const segments = path.split('/').filter(segment => segment !== '')
  if (segments.some(segment => segment === '..' || segment === '.')) return null
  return '/' + segments.join('/')
}
