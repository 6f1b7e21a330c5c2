// Provides `request.audit(target)`: how a mutating route says what it acted on, for its audit line
// (src/request-log.ts). Called as soon as the route knows the target, and again when it knows more,
// so that a call that fails half-way is still audited with what it was asked to act on.
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'

export interface AuditTarget {
  container?: {
    /** The id or name as the client wrote it. */
    requested?: string
    id?: string
    name?: string
  }
  /** The image reference asked for, or the one a container runs. */
  image?: string
  imageId?: string
  /** The repository digest (`sha256:…`); null when the image has none (built locally, never pushed). */
  digest?: string | null
  /** Volume names and bind-mounted host paths of a run. */
  volumes?: string[]
  job?: string
  /** The replicas a scale asked for. */
  replicas?: number
  /** A build's id, and the names it gives its image (issue 15). */
  build?: string
  tags?: string[]
  /** What an image removal untagged and deleted, as the engine reported it. */
  untagged?: string[]
  deleted?: string[]
  /** A volume created, removed or mounted by name. */
  volume?: string
  /** Containers removed along with the target (a forced volume removal). */
  removed?: string[]
  /** The new end of a container's time to live. */
  expiresAt?: string
  /** A path in a container that files were written to. */
  path?: string
  /** The program an exec runs (never its arguments, which may hold secrets), and the engine's id of the exec. */
  command?: string
  exec?: string
  /** A network created, removed, connected to or disconnected from: as requested, and resolved. */
  network?: { requested?: string, id?: string, name?: string }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Adds to what this request's audit line names as its target. */
    audit (target: AuditTarget): void
    auditTarget: AuditTarget | null
  }
}

/** Two partial targets as one; the container's fields merge, so a resolved id joins the requested name. */
export function mergeTargets (before: AuditTarget, after: AuditTarget): AuditTarget {
  const merged = { ...before, ...after }
  if (before.container !== undefined && after.container !== undefined) merged.container = { ...before.container, ...after.container }
  if (before.network !== undefined && after.network !== undefined) merged.network = { ...before.network, ...after.network }
  return merged
}

export default fp(async (app) => {
  app.decorateRequest('auditTarget', null)
  app.decorateRequest('audit', function (this: FastifyRequest, target: AuditTarget) {
    this.auditTarget = mergeTargets(this.auditTarget ?? {}, target)
  })
}, { name: 'berth-audit' })
