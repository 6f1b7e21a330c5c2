// Parses and normalises image references the way the Docker CLI does ("busybox" means
// docker.io/library/busybox:latest), so policy can match them and pulls never mean "all tags".

const DEFAULT_REGISTRY = 'docker.io'
const hostComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domainRe = new RegExp(`^(?:${hostComponent}(?:\\.${hostComponent})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`)
const pathComponentRe = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const tagRe = /^[\w][\w.-]{0,127}$/
const digestRe = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/
const imageIdRe = /^sha256:[a-f0-9]{64}$/

export interface ImageRef {
  /** `name` = registry + "/" + path, the canonical repository name policy matches against. */
  name: string
  registry: string
  path: string
  tag: string | undefined
  digest: string | undefined
  /** What to hand the engine: the familiar form with an explicit tag or digest. */
  reference: string
  /** The repository as the engine's pull wants it in `fromImage`. */
  repository: string
}

export type ParsedImage = { kind: 'id', id: string } | { kind: 'ref', ref: ImageRef }

/** Returns the parsed reference, or a sentence saying what is wrong with it. */
export function parseImage (input: string): ParsedImage | string {
  if (input.length === 0) return 'must not be empty'
  if (input.length > 512) return 'must be at most 512 characters'
  if (imageIdRe.test(input)) return { kind: 'id', id: input }

  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!digestRe.test(digest)) return `has an invalid digest "${printable(digest)}"`
  }

  let tag: string | undefined
  const lastColon = rest.lastIndexOf(':')
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1)
    rest = rest.slice(0, lastColon)
    if (!tagRe.test(tag)) return `has an invalid tag "${printable(tag)}"`
  }

  const parts = rest.split('/')
  let registry = DEFAULT_REGISTRY
  const first = parts[0] ?? ''
  // The first component names a registry only if it looks like a host, as in the Docker CLI.
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!domainRe.test(first)) return `has an invalid registry "${printable(first)}"`
    registry = first
    parts.shift()
  }
  if (parts.length === 0 || parts.some(part => !pathComponentRe.test(part))) {
    return `has an invalid repository name "${printable(rest)}" (lowercase letters, digits and separators only)`
  }
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift('library')
  const path = parts.join('/')
  const name = `${registry}/${path}`
  if (name.length > 255) return 'has a repository name longer than 255 characters'

  const repository = registry === DEFAULT_REGISTRY ? path.replace(/^library\//, '') : name
  if (tag === undefined && digest === undefined) tag = 'latest'
  const reference = repository + (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`)
  return { kind: 'ref', ref: { name, registry, path, tag, digest, reference, repository } }
}

/** Glob match where `*` stands for any run of characters, `/` included. */
export function matchesPattern (value: string, pattern: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map(escapeRegExp).join('.*') + '$')
  return re.test(value)
}

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// Keeps control characters out of error messages (and so out of logs and headers).
function printable (text: string): string {
  return JSON.stringify(text).slice(1, -1).slice(0, 200)
}

/** The repository of a reference as a cluster names it (registry/path, without tag or digest); null for none. */
export function repositoryOf (image: string): string | null {
  const name = image.split('@')[0] as string
  const slash = name.lastIndexOf('/')
  const colon = name.lastIndexOf(':')
  const repository = colon > slash ? name.slice(0, colon) : name
  return repository === '' ? null : repository
}
