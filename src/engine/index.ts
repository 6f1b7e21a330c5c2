// The backends berth drives, and the parts each is composed of. Which backend has what is said here
// and in each backend's definition, once: routes name the part they need, and a backend without it
// answers 501 not_supported with its reason; the OpenAPI document's `x-berth-backends` follows.
//
//               containers images imageRemoval builds disk volumes networks exec stats files wait nodes expiry specs
//   docker          ✓        ✓         ✓         ✓     ✓      ✓       ✓      ✓     ✓     ✓    ✓     ✓     ✓      ✓
//   swarm           ✓        ✓         ✓         ✓     ✓      ✓       ✓      ✓     ✓     ✓    ✓     ✓     ✓      ✓
//   kubernetes      ✓        ✓                   ✓     ✓      ✓              ✓     ✓     ✓    ✓     ✓     ✓      ✓
//
// (builds and disk on a cluster: with a builder engine, BERTH_BUILDER; without one they are absent)
// (images, image removal, volumes, exec, stats and files on swarm: with berth's agent on every node, BERTH_SWARM_AGENT_SECRET_FILE)
// (drawn by partsTable(); test/capabilities.test.ts keeps it true to the definitions)
import type { Config } from '../config.ts'
import { docker } from './docker/backend.ts'
import { kubernetes } from './kubernetes/backend.ts'
import { catalogue, PART_NAMES, type Backend, type BackendCatalogue, type PartName } from './parts.ts'
import { swarm } from './swarm/backend.ts'
import type { EngineKind } from './types.ts'

export const BACKENDS: Record<EngineKind, BackendCatalogue> = {
  docker: catalogue(docker),
  swarm: catalogue(swarm),
  kubernetes: catalogue(kubernetes)
}
export const BACKEND_KINDS = Object.keys(BACKENDS) as EngineKind[]

/** Opens the backend berth's config names. */
export async function createBackend (config: Config): Promise<Backend> {
  return await BACKENDS[config.engine.kind].open(config)
}

/** The backends that have (or can be configured to have) a part. */
export function backendsWith (part: PartName): EngineKind[] {
  return BACKEND_KINDS.filter(kind => BACKENDS[kind].offers(part))
}

/** The sentence the OpenAPI document adds to an operation that some backends lack or need configured for: which, and why. */
export function lackingSentence (part: PartName): string | undefined {
  const lacking = BACKEND_KINDS.flatMap(kind => {
    const why = BACKENDS[kind].never(part)
    return why === undefined ? [] : [`on ${kind}: ${why}`]
  })
  const needs = BACKEND_KINDS.flatMap(kind => {
    const requires = BACKENDS[kind].requires(part)
    return requires === undefined ? [] : [`on ${kind} only with ${requires}`]
  })
  if (lacking.length === 0 && needs.length === 0) return undefined
  return [
    `Backends: ${words(backendsWith(part))}${needs.length === 0 ? '' : ` (${needs.join('; ')}; 501 not_supported without)`}`,
    ...(lacking.length === 0 ? [] : [`it answers 501 not_supported ${lacking.join('; ')}`])
  ].join('; ') + '.'
}

/** The table at the top of this file, drawn from the definitions (test/capabilities.test.ts compares the two). */
export function partsTable (): string[] {
  const first = Math.max(...BACKEND_KINDS.map(kind => kind.length)) + 2
  const header = ' '.repeat(first) + PART_NAMES.join(' ')
  const rows = BACKEND_KINDS.map(kind => (kind.padEnd(first) + PART_NAMES.map(part => (BACKENDS[kind].offers(part) ? '✓' : '').padStart(Math.ceil(part.length / 2)).padEnd(part.length)).join(' ')).trimEnd())
  return [header, ...rows]
}

/** docker · docker and swarm · docker, swarm and kubernetes */
function words (kinds: readonly string[]): string {
  return kinds.length <= 1 ? kinds.join('') : `${kinds.slice(0, -1).join(', ')} and ${kinds.at(-1)}`
}
