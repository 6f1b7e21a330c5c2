// What berth's agent lets through to its node's Docker engine: the few calls berth's parts make on a
// node (exec, stats, files, wait, images, named volumes), and nothing else — no container is created,
// started or given privileges through it. What a call is about decides what is checked before it is
// forwarded: a container (or an exec in one) must be one berth made; a volume created or removed must
// be berth's; a body that could widen a container's powers (a privileged exec, driver options that
// bind a host path) is refused. Pure functions; the proxy does the looking up.
import { LABEL_MANAGED } from '../access/ownership.ts'

/** What a call is about, which the proxy checks before forwarding it. */
export type Subject =
  | { kind: 'engine' }
  | { kind: 'container', id: string }
  | { kind: 'exec', id: string }
  | { kind: 'volume', name: string }
  /** A volume create: the body is read and checked. */
  | { kind: 'new-volume' }
  /** An exec create in a container: the container is checked, and the body. */
  | { kind: 'new-exec', id: string }

interface Rule {
  methods: readonly string[]
  path: RegExp
  subject: (match: RegExpExecArray, query: URLSearchParams) => Subject | string
}

const ID = '([A-Za-z0-9][A-Za-z0-9_.-]{0,127})'
const engine = (): Subject => ({ kind: 'engine' })
const container = (match: RegExpExecArray): Subject => ({ kind: 'container', id: decodeURIComponent(match[1] as string) })

const RULES: readonly Rule[] = [
  { methods: ['GET', 'HEAD'], path: /^\/_ping$/, subject: engine },
  { methods: ['GET'], path: /^\/(version|info)$/, subject: engine },
  // The node's containers, for who uses a volume there (berth filters by its labels).
  { methods: ['GET'], path: /^\/containers\/json$/, subject: engine },
  { methods: ['GET'], path: new RegExp(`^/containers/${ID}/json$`), subject: container },
  { methods: ['GET'], path: new RegExp(`^/containers/${ID}/stats$`), subject: container },
  { methods: ['GET', 'HEAD', 'PUT'], path: new RegExp(`^/containers/${ID}/archive$`), subject: container },
  { methods: ['POST'], path: new RegExp(`^/containers/${ID}/wait$`), subject: container },
  { methods: ['POST'], path: new RegExp(`^/containers/${ID}/exec$`), subject: match => ({ kind: 'new-exec', id: decodeURIComponent(match[1] as string) }) },
  { methods: ['POST'], path: new RegExp(`^/exec/${ID}/(start|resize)$`), subject: match => ({ kind: 'exec', id: match[1] as string }) },
  { methods: ['GET'], path: new RegExp(`^/exec/${ID}/json$`), subject: match => ({ kind: 'exec', id: match[1] as string }) },
  // A pull from a registry; `fromSrc` would import any tarball as an image.
  {
    methods: ['POST'],
    path: /^\/images\/create$/,
    subject: (_match, query) => query.has('fromSrc') || !query.has('fromImage') ? 'an image is pulled by fromImage, never imported' : engine()
  },
  { methods: ['GET'], path: /^\/images\/json$/, subject: engine },
  { methods: ['GET'], path: /^\/images\/(.+)\/(json|history)$/, subject: engine },
  { methods: ['DELETE'], path: /^\/images\/([^?]+)$/, subject: engine },
  { methods: ['GET'], path: /^\/volumes$/, subject: engine },
  { methods: ['GET'], path: new RegExp(`^/volumes/${ID}$`), subject: engine },
  { methods: ['POST'], path: /^\/volumes\/create$/, subject: () => ({ kind: 'new-volume' }) },
  { methods: ['DELETE'], path: new RegExp(`^/volumes/${ID}$`), subject: match => ({ kind: 'volume', name: decodeURIComponent(match[1] as string) }) },
  // Volume sizes.
  { methods: ['GET'], path: /^\/system\/df$/, subject: engine }
]

/** The API path without its version prefix (/v1.41/containers/json → /containers/json). */
export function unversioned (path: string): string {
  return path.replace(/^\/v\d+\.\d+(?=\/)/, '')
}

/** What a request is about, or why it is refused. */
export function classify (method: string, url: string): Subject | { refused: string } {
  const parsed = new URL(url, 'http://agent')
  const path = unversioned(parsed.pathname)
  for (const rule of RULES) {
    if (!rule.methods.includes(method)) continue
    const match = rule.path.exec(path)
    if (match === null) continue
    const subject = rule.subject(match, parsed.searchParams)
    return typeof subject === 'string' ? { refused: subject } : subject
  }
  return { refused: `${method} ${path} is not something berth's agent forwards` }
}

/** Whether labels are those of something berth made. */
export function managed (labels: Record<string, string> | null | undefined): boolean {
  return labels?.[LABEL_MANAGED] === 'true'
}

/** Why an exec create is refused, or null: a privileged exec would give a tenant's command powers its container lacks. */
export function execBodyRefusal (body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return 'an exec is created from a JSON object'
  return (body as { Privileged?: unknown }).Privileged === true ? 'a privileged exec is not forwarded' : null
}

/** Why a volume create is refused, or null: berth's label on it, the local driver, and no driver options (they can bind a host path). */
export function volumeBodyRefusal (body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return 'a volume is created from a JSON object'
  const { Labels, Driver, DriverOpts } = body as { Labels?: Record<string, string>, Driver?: unknown, DriverOpts?: Record<string, unknown> | null }
  if (!managed(Labels)) return `a volume is created only with berth's label ${LABEL_MANAGED}=true`
  if (Driver !== undefined && Driver !== '' && Driver !== 'local') return 'a volume is created with the local driver only'
  if (DriverOpts !== undefined && DriverOpts !== null && Object.keys(DriverOpts).length > 0) return 'a volume is created without driver options'
  return null
}
