// A run held against the backend it goes to: a field that needs a part the backend lacks is refused
// with that part's reason, and what the backend's containers cannot honour is refused by them —
// before anything is created, never ignored or imitated.
import { LABEL_EXPIRY_ACTION } from '../access/ownership.ts'
import type { Backend } from './parts.ts'
import type { RunSpec } from './types.ts'

export function checkRun (backend: Backend, spec: RunSpec): void {
  if (spec.labels[LABEL_EXPIRY_ACTION] !== undefined) backend.part('expiry')
  if (spec.mounts.some(mount => mount.type === 'volume')) backend.part('volumes')
  if (spec.network !== undefined || (spec.aliases?.length ?? 0) > 0) backend.part('networks')
  backend.containers.check(spec)
}
