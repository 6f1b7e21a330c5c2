// Who may see what berth made: the one home of its labels, of visibility and of the redaction of
// what a requester may not see. Everything berth creates on an engine carries the deployment it
// belongs to and the token that made it; a berth sees only its own deployment's objects, and a
// token that is not admin only its own. Anything else is answered as if it did not exist.
import type { Scope } from '../config.ts'
import { BerthError } from '../errors.ts'

export const LABEL_MANAGED = 'io.berth.managed'
export const LABEL_OWNER = 'io.berth.owner'
export const LABEL_DEPLOYMENT = 'io.berth.deployment'
/**
 * An autoRemove container. berth removes it itself once its exit has been collected — a wait
 * answered, or the grace period over (src/lifecycle) — rather than the engine at once, which would
 * take its logs and exit code with it.
 */
export const LABEL_AUTO_REMOVE = 'io.berth.auto-remove'

/**
 * On images a build made: `<deployment>/<token>`. Not the owner label: a container inherits its
 * image's labels, and a container made from this image by anyone else must not look like the builder's.
 */
export const LABEL_BUILT_BY = 'io.berth.built-by'
/**
 * A container's expiry, as it was run (src/lifecycle sweeps them): when its time to live ends
 * (RFC 3339), how long it may sit idle (seconds), and what then (stop or remove). Labels cannot
 * change after create: a moved end lives on the engine beside it (the docker backend keeps it in a
 * labelled volume, LABEL_LEASE_FOR).
 */
export const LABEL_EXPIRES_AT = 'io.berth.expires-at'
export const LABEL_IDLE_TIMEOUT = 'io.berth.idle-timeout'
export const LABEL_EXPIRY_ACTION = 'io.berth.expiry-action'
/** An object that holds the moved expiry of this container id: berth's bookkeeping, nobody's data. */
export const LABEL_LEASE_FOR = 'io.berth.lease-for'
/** Labels under this prefix are berth's own: a run body cannot set them. */
export const RESERVED_LABEL_PREFIX = 'io.berth.'

/** Who asks: a token's name and scopes, and whether it is an admin (who sees everything of its deployment). */
export interface Principal {
  name: string
  scopes: Scope[]
  admin: boolean
}

/** What ownership needs of a principal. */
type Requester = Pick<Principal, 'name' | 'admin'>

/** What a port conflict knows of the container holding the port; shown only to who may see it. */
/** The kinds of object berth makes and owns. */
export type Kind = 'container' | 'volume' | 'network'

export interface PortHolder {
  id: string
  name: string
  labels: Record<string, string>
}

export class Ownership {
  readonly deployment: string

  constructor (deployment: string) {
    this.deployment = deployment
  }

  /** The labels every object berth creates for `owner` carries. */
  labelsFor (owner: string): Record<string, string> {
    return { [LABEL_MANAGED]: 'true', [LABEL_DEPLOYMENT]: this.deployment, [LABEL_OWNER]: owner }
  }

  /** The label a build gives the image it makes for `owner`. */
  builtByLabel (owner: string): Record<string, string> {
    return { [LABEL_BUILT_BY]: `${this.deployment}/${owner}` }
  }

  /** Whether the requester may move or remove the names of an image with these labels: an admin, or the token that built it. */
  built (requester: Requester, labels: Record<string, string>): boolean {
    return requester.admin || labels[LABEL_BUILT_BY] === `${this.deployment}/${requester.name}`
  }

  /** Engine label filters that select exactly what the requester may see. */
  filtersFor (requester: Requester): string[] {
    const deployment = `${LABEL_DEPLOYMENT}=${this.deployment}`
    return requester.admin ? [deployment] : [deployment, `${LABEL_OWNER}=${requester.name}`]
  }

  owns (requester: Requester, labels: Record<string, string>): boolean {
    return labels[LABEL_DEPLOYMENT] === this.deployment && (requester.admin || labels[LABEL_OWNER] === requester.name)
  }

  /** The object, when the requester may see it; otherwise the same not_found as for one that does not exist. */
  visible<T extends { labels: Record<string, string> }> (requester: Requester, object: T, kind: Kind, idOrName: string): T {
    if (!this.owns(requester, object.labels)) throw notFound(kind, idOrName)
    return object
  }

  /**
   * A port conflict as the requester may see it: the holder is named only to a token allowed to
   * see that container; to anybody else the conflict says the port is taken and nothing more.
   */
  portConflict (requester: Requester, port: number, holder: PortHolder | null, detail?: string): BerthError {
    if (holder === null || !this.owns(requester, holder.labels)) {
      return new BerthError('port_conflict', detail ?? `host port ${port} is already allocated`, { port })
    }
    return new BerthError('port_conflict', `host port ${port} is already allocated by container ${holder.name}`,
      { port, holder: { id: holder.id, name: holder.name } })
  }
}

export function notFound (kind: Kind, idOrName: string): BerthError {
  return new BerthError('not_found', `${kind} ${idOrName} was not found`)
}
