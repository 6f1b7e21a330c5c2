// The problems an operation answers, declared in one place: every 4xx and 5xx as
// application/problem+json, the codes each status can carry as an enum, and an example of each code,
// all from the registry in src/errors.ts. Routes name the codes their handler and the engine can
// answer (`problems(...)`); plugins/problems.ts adds the ones berth's plugins answer for a route.
import { Type, type Static, type TSchema } from 'typebox'
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

// ---- The members each code adds (RFC 9457 extension members), declared per code

const named = Type.Object({
  id: Type.String({ description: 'Its id.' }),
  name: Type.String({ description: 'Its name.' })
}, { additionalProperties: false })
const image = Type.String({ description: 'The image reference it was about.' })
const failureReason = (what: string) => Type.String({ description: `Why the ${what} failed: registry_auth (credentials refused or missing), registry_unreachable, or other.` })

/**
 * The members a problem of each code may carry besides the RFC 9457 ones. Each member is optional
 * here: some paths to a code know more than others (a port conflict names its holder only to a token
 * that may see it). The OpenAPI document declares one schema per code from this (`PortConflictProblem`…),
 * so a client can narrow on `code`; the tests hold every problem berth answers to it.
 */
export const PROBLEM_MEMBERS: { [C in ErrorCode]?: Record<string, TSchema> } = {
  validation_failed: {
    errors: Type.Array(Type.Object({
      location: Type.String({ description: 'Where: body, querystring, params, headers (or arguments, for an MCP tool).' }),
      path: Type.String({ description: 'A JSON pointer to the field within it; "" for the whole.' }),
      message: Type.String({ description: 'What is wrong with it.' })
    }, { additionalProperties: false }), { description: 'Each field that is wrong, and why.' })
  },
  forbidden: { scope: Type.Enum(['read', 'write', 'admin', 'build'], { type: 'string', description: 'The scope the operation needs.' }) },
  policy_denied: {
    rule: Type.String({ description: 'The policy rule that refused it: images, hostPorts, hostIps, bindPaths, memory, cpus, shmSize, buildNetwork, imageNames, pushNamespace…' }),
    line: Type.Integer({ description: 'In a build: the Dockerfile line that asked for it.' })
  },
  quota_exceeded: {
    limit: Type.Enum(['containers', 'memory', 'cpus', 'gpus', 'storage'], { type: 'string', description: 'Which of the token\'s quotas (storage: the sizes of its volumes, where volumes have one).' }),
    quota: Type.Number({ description: 'The quota (bytes for memory).' }),
    used: Type.Number({ description: 'What the token holds now.' })
  },
  image_not_found: { image, digest: Type.String({ description: 'The digest asked for, when the image was named by one.' }) },
  method_not_allowed: { allow: Type.Array(Type.String(), { description: 'The methods the path answers, as the Allow header says.' }) },
  not_acceptable: { accepts: Type.Array(Type.String(), { description: 'The media types the operation answers in.' }) },
  name_conflict: { name: Type.String({ description: 'The name that is taken.' }) },
  ambiguous_id: { matches: Type.Integer({ description: 'How many the prefix matches.' }) },
  port_conflict: {
    port: Type.Integer({ description: 'The host port that is taken.' }),
    holder: { ...named, description: 'The container holding it, when it is one the token may see.' }
  },
  image_in_use: { image },
  placement_failed: { reason: Type.String({ description: 'Why no node runs it: constraints, resources, mount, rejected, no_node.' }) },
  not_supported: { backend: Type.Enum(['docker', 'swarm', 'kubernetes'], { type: 'string', description: 'The backend berth drives.' }) },
  pull_failed: { image, reason: failureReason('pull') },
  pull_cancelled: { image },
  engine_error: { engineStatus: Type.Integer({ description: 'The HTTP status the engine answered.' }) },
  placement_timeout: {
    replicas: Type.Integer({ description: 'The replicas asked for.' }),
    running: Type.Integer({ description: 'How many ran in time.' })
  },
  volume_in_use: { volume: Type.String({ description: 'The volume.' }), containers: Type.Array(named, { description: 'The containers using it that the token may see.' }) },
  network_in_use: { network: Type.String({ description: 'The network.' }), containers: Type.Array(named, { description: 'The containers attached that the token may see.' }) },
  build_failed: {
    reason: Type.String({ description: 'step_failed, dockerfile, base_image, timeout or other.' }),
    step: Type.Union([Type.Object({
      number: Type.Integer({ description: 'Step number.' }),
      total: Type.Integer({ description: 'Steps in all.' }),
      instruction: Type.String({ description: 'The instruction.' })
    }, { additionalProperties: false }), Type.Null()], { description: 'The step that failed, when one had begun.' }),
    output: Type.Array(Type.String(), { description: 'The failing step\'s last lines of output.' }),
    exitCode: Type.Integer({ description: 'The failing command\'s exit code.' })
  },
  push_failed: { image, reason: failureReason('push'), imageId: Type.String({ description: 'On a cluster, when the build was made and only its push failed: the image, kept on the builder to push again.' }) },
  invalid_build_context: {
    reason: Type.Enum(['format', 'truncated', 'name', 'duplicate', 'entry_type', 'parent_not_directory', 'link', 'dockerfile', 'dockerignore'], { type: 'string', description: 'The rule of the build context it breaks.' }),
    entry: Type.String({ description: 'The entry of the context that breaks it, when one does.' })
  },
  path_conflict: { path: Type.String({ description: 'The path in the container that is in the way.' }) }
}

/** The document's name of the schema of one code's problems: port_conflict → PortConflictProblem. */
export function problemSchemaName (code: ErrorCode): string {
  return code.split('_').map(word => word.charAt(0).toUpperCase() + word.slice(1)).join('') + 'Problem'
}

/** The schema of one code's problems: a Problem whose code is that one, with the members it adds. */
function problemOfCode (code: ErrorCode): Record<string, unknown> {
  const { status, title } = errorCodes[code]
  const members = JSON.parse(JSON.stringify(PROBLEM_MEMBERS[code] ?? {})) as Record<string, unknown>
  return {
    description: `${code} (${status}): ${title}.`,
    allOf: [
      { $ref: '#/components/schemas/Problem' },
      { type: 'object', required: ['code'], properties: { code: { type: 'string', const: code }, ...members } }
    ]
  }
}

interface Document {
  paths?: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }> }>>
  components?: { schemas?: Record<string, unknown>, responses?: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }>, [key: string]: unknown }
}

/**
 * The document with each code's problem as a schema of its own, and every problem answer declared as
 * one of the schemas of the codes it can carry — where the routes' schemas, which also serialize the
 * answers, say `Problem` with its code narrowed to an enum (a oneOf would make every error answer
 * try each branch).
 */
export function withProblemSchemas<D extends object> (given: D): D {
  const document = given as Document
  const media = [
    ...Object.values(document.paths ?? {}).flatMap(methods => Object.values(methods)).flatMap(operation => Object.values(operation.responses ?? {})),
    ...Object.values(document.components?.responses ?? {})
  ].map(response => response.content?.[PROBLEM_JSON]).filter(found => found !== undefined)
  for (const problem of media) {
    const narrowed = (problem.schema as { allOf?: Array<{ properties?: { code?: { enum?: ErrorCode[] } } }> } | undefined)?.allOf?.[1]?.properties?.code?.enum
    if (narrowed === undefined) continue
    const refs = narrowed.map(code => ({ $ref: `#/components/schemas/${problemSchemaName(code)}` }))
    problem.schema = refs.length === 1 ? refs[0] : { oneOf: refs }
  }
  const schemas = Object.fromEntries((Object.keys(errorCodes) as ErrorCode[]).map(code => [problemSchemaName(code), problemOfCode(code)]))
  document.components = { ...document.components, schemas: { ...document.components?.schemas, ...schemas } }
  return given
}
