// Shared models: the problem+json error body and the pieces containers and images both use.
import { Type, type Static, type TSchema } from 'typebox'
import { errorCodes, PROBLEM_TYPE_BASE, type ErrorCode } from '../errors.ts'

/** A reference to a schema registered with addSchema, typed as the schema it points at. */
export function ref<T extends TSchema> (schema: T, description?: string) {
  const id = (schema as { $id?: unknown }).$id
  if (typeof id !== 'string') throw new Error('ref() needs a schema with an $id')
  // A description beside the $ref becomes the response's description in the OpenAPI document.
  return Type.Unsafe<Static<T>>(description === undefined ? Type.Ref(id) : { ...Type.Ref(id), description })
}

/**
 * A map whose keys must match a pattern. TypeBox's Record lets keys that miss its pattern through
 * unvalidated, so the keys are checked with propertyNames and every value against `value`.
 */
export function keyedMap<V extends TSchema> (keyPattern: string, value: V, options: { description: string, maxProperties: number }) {
  return Type.Unsafe<Record<string, Static<V>>>({ type: 'object', propertyNames: { pattern: keyPattern }, additionalProperties: value, ...options })
}

/**
 * A problem body as berth would send it for `code`, from the registry's example unless `example` is
 * given: the Problem schema's examples, and each operation's in schemas/problems.ts.
 */
export function exampleProblem (code: ErrorCode, instance?: string, example: { detail: string, [extension: string]: unknown } = errorCodes[code].example): Record<string, unknown> {
  const { status, title } = errorCodes[code]
  const { detail, ...extensions } = example
  return {
    ...extensions,
    type: PROBLEM_TYPE_BASE + code,
    title,
    status,
    detail,
    code,
    ...(instance === undefined ? {} : { instance }),
    requestId: '7f3c1a52-9d4e-4b8a-a1f6-2c5e8d0b9a41'
  }
}

export const Problem = Type.Object({
  type: Type.String({ description: 'A URI naming the kind of problem; one per `code`.' }),
  title: Type.String({ description: 'A short, human-readable summary of the kind of problem.' }),
  status: Type.Integer({ description: 'The HTTP status code of this response.' }),
  detail: Type.String({ description: 'What went wrong with this request, in words.' }),
  code: Type.Enum(Object.keys(errorCodes) as Array<keyof typeof errorCodes>, { type: 'string', description: 'Stable machine-readable error code.' }),
  instance: Type.Optional(Type.String({ description: 'The request path the problem occurred on.' })),
  requestId: Type.String({ description: 'The request id, also in the x-request-id header and in berth\'s logs.' })
}, {
  $id: 'Problem',
  additionalProperties: true,
  description: 'An RFC 9457 problem, sent as application/problem+json. Some codes add members: `port` and `holder` (port_conflict), `errors` (validation_failed), ' +
    '`rule` (policy_denied), `backend` (not_supported), `reason` (placement_failed, pull_failed, push_failed, build_failed), `allow` (method_not_allowed)… ' +
    'Each code has a schema of its own that declares them (`PortConflictProblem`, `ValidationFailedProblem`…), and each operation declares its error answers ' +
    'as one of the schemas of the codes it can answer there; the examples here show every code.',
  examples: (Object.keys(errorCodes) as ErrorCode[]).map(code => exampleProblem(code))
})

export const PortBinding = Type.Object({
  container: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port inside the container.' }),
  host: Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Null()], { description: 'Host port bound to it; null on a cluster for a port the engine is to choose while no replica runs.' }),
  protocol: Type.Enum(['tcp', 'udp', 'sctp'], { type: 'string', description: 'Transport protocol.' }),
  hostIp: Type.String({ description: 'Host address the port is bound on; "" or 0.0.0.0 means every interface.' })
}, { $id: 'PortBinding', additionalProperties: false, description: 'A host port bound to a container port.' })
export type PortBinding = Static<typeof PortBinding>

export const Labels = Type.Record(Type.String(), Type.String(), { description: 'Labels as key/value pairs.' })

export const Health = Type.Object({
  status: Type.String({ description: '"ok" when alive, "ready" when the engine answers.' }),
  engine: Type.Optional(Type.Object({
    version: Type.String({ description: 'Engine version.' }),
    apiVersion: Type.String({ description: 'The API version berth negotiated with the engine.' }),
    os: Type.String({ description: 'Engine operating system.' }),
    arch: Type.String({ description: 'Engine architecture.' })
  }, { additionalProperties: false, description: 'The engine berth talks to.' }))
}, { $id: 'Health', additionalProperties: false, description: 'Liveness or readiness.' })

/** Which replica of a container a process or file operation is for (on a cluster). */
export const replicaField = Type.Optional(Type.String({
  pattern: '^([1-9][0-9]{0,3}|[a-z0-9]{1,25})$',
  description: 'On a cluster: the replica, by slot (`1`, `2`…) or task id (or a unique prefix of one); by default the running replica with the lowest slot. ' +
    'A container on one host is its one replica, `1`.'
}))

export const ReplicaQuery = Type.Object({ replica: replicaField }, { additionalProperties: false })

export const commonSchemas = [Problem, PortBinding, Health]
