// A container's expiry as its labels keep it (src/access/run-spec.ts writes them at run), with the
// end moved since when a backend kept a moved one beside it: what every backend's inspect and expiry
// part answer, read the same way.
import { LABEL_EXPIRES_AT, LABEL_EXPIRY_ACTION, LABEL_IDLE_TIMEOUT } from '../access/ownership.ts'
import type { Expiry } from '../schemas/lifecycle.ts'

export function expiryOf (labels: Record<string, string>, movedTo?: string): { expiry?: Expiry } {
  const action = labels[LABEL_EXPIRY_ACTION]
  if (action !== 'stop' && action !== 'remove') return {}
  const idle = Number(labels[LABEL_IDLE_TIMEOUT])
  return { expiry: { expiresAt: movedTo ?? labels[LABEL_EXPIRES_AT] ?? null, idleTimeout: Number.isInteger(idle) && idle > 0 ? idle : null, action } }
}
