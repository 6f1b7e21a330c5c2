// Every error berth answers with is problem+json with one of its codes: one error handler, one
// not-found handler, the mapping of what fastify and its parsers throw to berth's codes, and the
// declaration of those problems in every operation's schema (so in the OpenAPI document).
import fp from 'fastify-plugin'
import type { FastifyError, RouteOptions } from 'fastify'
import { BerthError, problemOf, type ErrorCode } from '../errors.ts'
import { isClientLeft } from '../http/aborts.ts'
import { CLIENT_LEFT, pathOf } from '../http/request-log.ts'
import { ANY_REQUEST, declaredCodes, PROBLEM_JSON, problemsAt, type ExampleOverrides } from '../schemas/problems.ts'

// The methods a path can have routes for (fastify adds HEAD beside each GET).
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

// The methods whose body fastify parses (a DELETE's too): a body can be malformed, too large or of a
// media type berth does not read.
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** The codes berth's plugins answer on a route, from what the route declares about itself. */
function pluginCodes (route: RouteOptions): ErrorCode[] {
  const { schema = {}, config = {}, url } = route
  const codes: ErrorCode[] = [...ANY_REQUEST]
  const methods = [route.method].flat()
  if (schema.params !== undefined || schema.querystring !== undefined || schema.body !== undefined || schema.headers !== undefined) codes.push('validation_failed')
  if (methods.some(method => BODY_METHODS.has(method))) codes.push('validation_failed', 'payload_too_large', 'unsupported_media_type')
  // auth: no token or a wrong one, a token without the scope, an address locked out for guessing.
  if (config.scope !== undefined) codes.push('unauthorized', 'forbidden', 'rate_limited')
  // @fastify/rate-limit (src/app.ts) counts the requests of everything under /v1/.
  if (url.startsWith('/v1/')) codes.push('rate_limited')
  // capabilities: a backend without the part the operation needs (or not configured for it) answers 501.
  if (config.part !== undefined) codes.push('not_supported')
  return codes
}

/**
 * A validation_failed an operation really answers, for its example: the registry's is about a body
 * field, which an operation without a body cannot get wrong.
 */
function validationExample (schema: NonNullable<RouteOptions['schema']>): ExampleOverrides {
  if (schema.body !== undefined) return {}
  for (const [location, part] of [['params', schema.params], ['querystring', schema.querystring]] as const) {
    const properties = (part as { properties?: Record<string, { pattern?: string, type?: string }> } | undefined)?.properties ?? {}
    const [name, property] = Object.entries(properties)[0] ?? []
    if (name === undefined || property === undefined) continue
    const message = property.pattern !== undefined ? `must match pattern "${property.pattern}"` : `must be ${property.type ?? 'valid'}`
    return { validation_failed: { detail: `${location}/${name} ${message}`, errors: [{ location, path: `/${name}`, message }] } }
  }
  return { validation_failed: { detail: 'the body is not valid JSON (line 1 column 6): Unexpected token \'}\'', errors: [{ location: 'body', path: '', message: 'is not valid JSON (line 1 column 6): Unexpected token \'}\'' }] } }
}

// A path parameter as the examples show it, so that an example's instance reads like a real one.
const EXAMPLE_PARAMS: Record<string, string> = { idOrName: 'web', ref: 'nginx:1.27', id: '0b2f6c8e-1d4a-4f3b-9e7c-5a6d8b9c0e1f', volume: 'data', network: 'backend' }

export default fp(async (app) => {
  // Before any route and before the OpenAPI plugin collects them: each documented operation gets
  // its problems as problem+json, the codes its handler declares joined by those the plugins answer.
  app.addHook('onRoute', (route) => {
    const schema = route.schema
    if (schema?.operationId === undefined) return
    const responses = (schema.response ?? {}) as Record<string, unknown>
    const codes = new Set([...declaredCodes(responses), ...pluginCodes(route)])
    const successes = Object.fromEntries(Object.entries(responses).filter(([status]) => /^[123]/.test(status)))
    for (const [status, response] of Object.entries(responses)) {
      if (!(status in successes) && declaredCodes({ [status]: response }).size === 0) {
        throw new Error(`${route.url}: declare the ${status} response with problems(...codes) (src/schemas/problems.ts)`)
      }
    }
    const instance = route.url.replace(/:(\w+)/g, (_, name: string) => EXAMPLE_PARAMS[name] ?? `{${name}}`)
    route.schema = { ...schema, response: { ...successes, ...problemsAt(instance, codes, validationExample(schema)) } }
  })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    // Nobody is left to answer; the request's own line says so (src/http/request-log.ts).
    if (isClientLeft(error)) {
      request.log.debug({ err: error }, 'the client left before the answer')
      return reply.code(CLIENT_LEFT).send()
    }
    const problem = toBerthError(error)
    const level = logLevelOf(problem)
    if (level === 'info') request.log.info({ code: problem.code }, problem.message)
    else request.log[level]({ err: error, code: problem.code }, problem.message)
    return reply.code(problem.statusCode).headers(problem.headers).type(PROBLEM_JSON)
      .send(problemOf(problem, request.id, pathOf(request)))
  })
  // A path berth has, asked with a method it does not answer there, is 405 with the methods it
  // does (Allow, RFC 9110); a path it does not have at all is 404.
  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request)
    const allow = METHODS.filter(method => app.findRoute({ method, url: path }) !== null)
    const problem = allow.length === 0
      ? new BerthError('not_found', `no route ${request.method} ${path}`)
      : new BerthError('method_not_allowed', `${request.method} is not allowed on ${path}: it answers ${allow.join(', ')}`, { allow }, { headers: { allow: allow.join(', ') } })
    return reply.code(problem.statusCode).headers(problem.headers).type(PROBLEM_JSON).send(problemOf(problem, request.id, path))
  })
}, { name: 'berth-problems' })

/**
 * Error-level lines are for operators' alerts: only faults go there — berth failing (internal_error)
 * and an engine answer berth has no meaning for (engine_error). Something berth relies on being away
 * or refusing (the engine, a registry, a cluster's scheduler) is a warning; an answer the contract
 * documents for the request as asked (a 4xx, 501 not_supported) is information.
 */
export function logLevelOf (problem: BerthError): 'error' | 'warn' | 'info' {
  if (problem.code === 'internal_error' || problem.code === 'engine_error') return 'error'
  if (problem.statusCode >= 500 && problem.code !== 'not_supported') return 'warn'
  return 'info'
}

type Issue = NonNullable<FastifyError['validation']>[number]
/** What ajv's `verbose` adds to an issue of a body (plugins/validation.ts). */
interface Verbose {
  parentSchema?: { properties?: Record<string, unknown>, additionalProperties?: unknown, description?: string }
  data?: unknown
}

/**
 * A required field missing beside unknown ones is most often one of them misspelt ({"Image": …}),
 * but ajv stops at the first error, the missing one: name the unknown fields before it.
 */
function withUnknownFields (issues: Issue[]): Issue[] {
  return issues.flatMap(issue => {
    const { parentSchema: schema, data } = issue as Issue & Verbose
    if (issue.keyword !== 'required' || schema?.additionalProperties !== false || data === null || typeof data !== 'object' || Array.isArray(data)) return [issue]
    const unknown = Object.keys(data).filter(key => !Object.hasOwn(schema.properties ?? {}, key))
    return [...unknown.map(key => ({ ...issue, keyword: 'additionalProperties', params: { additionalProperty: key } })), issue]
  })
}

/** "is not a known field", with the known one it differs from only in case when there is one. */
function unknownField (issue: Issue, key: string): string {
  const known = Object.keys((issue as Issue & Verbose).parentSchema?.properties ?? {})
  const meant = known.find(name => name.toLowerCase() === key.toLowerCase())
  return meant === undefined ? 'is not a known field' : `is not a known field (did you mean "${meant}"?)`
}

/**
 * A value that matches no member of a union (a port as an object or a string, GPUs as a count,
 * "all" or ids) fails every member: ajv reports each member's failure, then the union's. Only the
 * member the value was meant for says something useful — the one that failed on more than the
 * value's type — so that one stands for the union; when every member failed on the type alone, the
 * union's own entry says which types would do.
 */
function withoutUnionBranches (issues: Issue[]): Issue[] {
  const union = issues.find(issue => issue.keyword === 'anyOf')
  if (union === undefined) return issues
  const at = union.instancePath
  const branches = issues.filter(issue => issue !== union && (issue.instancePath === at || issue.instancePath.startsWith(at + '/')))
  const others = issues.filter(issue => issue !== union && !branches.includes(issue))
  // The member the value was meant for failed on more than its type, or inside it (a field of an object).
  const meant = branches.find(issue => (issue.keyword !== 'type' && issue.keyword !== 'const') || issue.instancePath !== at)
  if (meant !== undefined) return [meant, ...others]
  // One alternative per member: its constant when it has one (a string member that must be "all" is "all"), else its type.
  const members = new Map<string, string>()
  for (const issue of branches) {
    const member = issue.schemaPath.slice(0, issue.schemaPath.lastIndexOf('/'))
    if (issue.keyword === 'const') members.set(member, JSON.stringify((issue.params as { allowedValue?: unknown }).allowedValue))
    else if (!members.has(member)) members.set(member, String((issue.params as { type?: unknown }).type))
  }
  // A union that describes itself (ports, volumes: both shapes, with examples) says what it takes.
  const described = (union as Issue & Verbose).parentSchema?.description
  return [{ ...union, message: `must be ${[...new Set(members.values())].join(' or ')}${described === undefined ? '' : `: ${described}`}` }, ...others]
}

// Everything thrown becomes one of berth's codes; an error berth did not expect is a 500 whose
// message stays in the log, not in the reply.
function toBerthError (error: FastifyError): BerthError {
  if (error instanceof BerthError) return error
  if (error.validation) {
    const location = error.validationContext ?? 'request'
    const errors = withUnknownFields(withoutUnionBranches(error.validation)).map(issue => {
      // "must NOT have additional properties" says nothing useful until it names the field.
      const params = issue.params as { additionalProperty?: string } | undefined
      // ajv names a key that fails propertyNames on the error itself, not in its params.
      const key = (issue as { propertyName?: string }).propertyName
      if (params?.additionalProperty !== undefined) return { location, path: `${issue.instancePath}/${params.additionalProperty}`, message: unknownField(issue, params.additionalProperty) }
      if (key !== undefined) return { location, path: `${issue.instancePath}/${key}`, message: 'is not a valid name here' }
      return { location, path: issue.instancePath, message: issue.message ?? 'is invalid' }
    })
    const first = errors[0]
    const detail = first === undefined ? error.message : `${first.location}${first.path} ${first.message}`
    return new BerthError('validation_failed', detail, { errors })
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return new BerthError('payload_too_large', 'the request body is larger than the limit')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new BerthError('unsupported_media_type', 'send the body as application/json')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return new BerthError('validation_failed', 'the JSON body is empty')
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return new BerthError('validation_failed', 'the Content-Length does not match the body')
  }
  if (error.statusCode === 400) return new BerthError('validation_failed', error.message)
  if (error.statusCode === 404) return new BerthError('not_found', error.message)
  if (error.statusCode === 413) return new BerthError('payload_too_large', error.message)
  if (error.statusCode === 415) return new BerthError('unsupported_media_type', error.message)
  return new BerthError('internal_error', 'berth failed unexpectedly; the request id leads to the cause in its log', {}, { cause: error })
}
