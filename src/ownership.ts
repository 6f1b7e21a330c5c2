// Who may see a container: the token whose name its owner label carries, and admins. Anybody else is
// answered as if the container did not exist.
import { BerthError } from './errors.ts'
import type { Container } from './engine/types.ts'
import { LABEL_OWNER } from './policy.ts'

/** Who asks: a token's name, and whether it is an admin (who sees everything). */
export interface Requester {
  name: string
  admin: boolean
}

export function ownsContainer (requester: Requester, labels: Record<string, string>): boolean {
  return requester.admin || labels[LABEL_OWNER] === requester.name
}

export function visibleContainer (requester: Requester, container: Container, idOrName: string): Container {
  if (!ownsContainer(requester, container.labels)) throw new BerthError('not_found', `container ${idOrName} was not found`)
  return container
}
