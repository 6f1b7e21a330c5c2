// The problems an operation answers, declared in one place: every 4xx and 5xx as
// application/problem+json, the codes each status can carry as an enum, and an example of each code,
// all from the registry in src/errors.ts. Routes name the codes their handler and the engine can
// answer (`problems(...)`); plugins/problems.ts adds the ones berth's plugins answer for a route.
import { Type, type Static } from 'typebox'
import { errorCodes, type ErrorCode } from '../errors.ts'
import { exampleProblem, type Problem } from './common.ts'

export const PROBLEM_JSON = 'application/problem+json'

/** Any call into the engine: a failure berth does not map (502), no engine to ask (503). */
export const ENGINE: ErrorCode[] = ['engine_error', 'engine_unavailable']
/** A container named by id, id prefix or name, as the token may see it, then asked of the engine. */
export const CONTAINER: ErrorCode[] = ['not_found', 'ambiguous_id', ...ENGINE]

/**
 * Codes every request can be answered with before a route is chosen (too slow, headers too large),
 * declared as the 4XX range; and internal_error, a bug in berth, on every operation.
 */
export const ANY_REQUEST: ErrorCode[] = ['request_timeout', 'headers_too_large', 'internal_error']
const RANGE_CODES = new Set<ErrorCode>(['request_timeout', 'headers_too_large'])

interface ProblemMedia {
  schema: ReturnType<typeof Type.Unsafe<Static<typeof Problem>>>
  examples: Record<string, { summary: string, value: Record<string, unknown> }>
}
export interface ProblemResponse {
  description: string
  content: { [PROBLEM_JSON]: ProblemMedia }
}

/** What an example says in place of the registry's: the detail and extension members. */
export type ExampleOverrides = Partial<Record<ErrorCode, { detail: string, [extension: string]: unknown }>>

/** The response key a code is declared under: its status, or 4xx for what any request can meet. */
function statusKey (code: ErrorCode): string {
  return RANGE_CODES.has(code) ? '4xx' : String(errorCodes[code].status)
}

/**
 * The problem responses of an operation that can answer `codes`: one per status, problem+json, the
 * status's codes as an enum and an example of each. `instance` (the route's path) goes into the examples.
 */
export function problems (...codes: ErrorCode[]): Record<string, ProblemResponse> {
  return problemsAt(undefined, codes)
}

export function problemsAt (instance: string | undefined, codes: Iterable<ErrorCode>, overrides: ExampleOverrides = {}): Record<string, ProblemResponse> {
  const byStatus = new Map<string, ErrorCode[]>()
  for (const code of new Set(codes)) {
    const key = statusKey(code)
    byStatus.set(key, [...(byStatus.get(key) ?? []), code])
  }
  const keys = [...byStatus.keys()].sort()
  return Object.fromEntries(keys.map(key => {
    const inStatus = (byStatus.get(key) as ErrorCode[]).sort()
    const response: ProblemResponse = {
      description: inStatus.map(code => `${code}: ${errorCodes[code].title}.`).join(' '),
      content: {
        [PROBLEM_JSON]: {
          schema: Type.Unsafe<Static<typeof Problem>>({
            allOf: [Type.Ref('Problem'), { type: 'object', properties: { code: { type: 'string', enum: inStatus } } }]
          }),
          examples: Object.fromEntries(inStatus.map(code => [code, { summary: errorCodes[code].title, value: exampleProblem(code, instance, overrides[code]) }]))
        }
      }
    }
    return [key, response]
  }))
}

/** The codes a response map declares as problems, in any status: what problems() put there. */
export function declaredCodes (responses: Record<string, unknown> | undefined): Set<ErrorCode> {
  const codes = new Set<ErrorCode>()
  for (const response of Object.values(responses ?? {})) {
    const media = (response as Partial<ProblemResponse>).content?.[PROBLEM_JSON]
    const narrowed = (media?.schema as { allOf?: Array<{ properties?: { code?: { enum?: ErrorCode[] } } }> } | undefined)?.allOf?.[1]
    for (const code of narrowed?.properties?.code?.enum ?? []) codes.add(code)
  }
  return codes
}

/** Whether `code` is declared for a response of this status in the response map. */
export function declares (responses: Record<string, unknown> | undefined, status: number, code: ErrorCode): boolean {
  if (errorCodes[code].status !== status) return false
  const response = (responses ?? {})[statusKey(code)]
  return declaredCodes(response === undefined ? {} : { [statusKey(code)]: response }).has(code)
}
