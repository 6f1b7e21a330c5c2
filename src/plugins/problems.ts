// Every error berth answers with is problem+json with one of its codes: one error handler, one
// not-found handler, and the mapping of what fastify and its parsers throw to berth's codes.
import fp from 'fastify-plugin'
import type { FastifyError } from 'fastify'
import { BerthError, problemOf } from '../errors.ts'
import { pathOf } from '../http/request-log.ts'

export default fp(async (app) => {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toBerthError(error)
    if (problem.statusCode >= 500) request.log.error({ err: error, code: problem.code }, problem.message)
    else request.log.info({ code: problem.code }, problem.message)
    return reply.code(problem.statusCode).headers(problem.headers).type('application/problem+json')
      .send(problemOf(problem, request.id, pathOf(request)))
  })
  app.setNotFoundHandler((request, reply) => {
    const problem = new BerthError('not_found', `no route ${request.method} ${pathOf(request)}`)
    return reply.code(404).type('application/problem+json').send(problemOf(problem, request.id, pathOf(request)))
  })
}, { name: 'berth-problems' })

type Issue = NonNullable<FastifyError['validation']>[number]

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
  const meant = branches.find(issue => issue.keyword !== 'type' && issue.keyword !== 'const')
  if (meant !== undefined) return [meant, ...others]
  // One alternative per member: its constant when it has one (a string member that must be "all" is "all"), else its type.
  const members = new Map<string, string>()
  for (const issue of branches) {
    const member = issue.schemaPath.slice(0, issue.schemaPath.lastIndexOf('/'))
    if (issue.keyword === 'const') members.set(member, JSON.stringify((issue.params as { allowedValue?: unknown }).allowedValue))
    else if (!members.has(member)) members.set(member, String((issue.params as { type?: unknown }).type))
  }
  return [{ ...union, message: `must be ${[...new Set(members.values())].join(' or ')}` }, ...others]
}

// Everything thrown becomes one of berth's codes; an error berth did not expect is a 500 whose
// message stays in the log, not in the reply.
function toBerthError (error: FastifyError): BerthError {
  if (error instanceof BerthError) return error
  if (error.validation) {
    const location = error.validationContext ?? 'request'
    const errors = withoutUnionBranches(error.validation).map(issue => {
      // "must NOT have additional properties" says nothing useful until it names the field.
      const params = issue.params as { additionalProperty?: string } | undefined
      // ajv names a key that fails propertyNames on the error itself, not in its params.
      const key = (issue as { propertyName?: string }).propertyName
      if (params?.additionalProperty !== undefined) return { location, path: `${issue.instancePath}/${params.additionalProperty}`, message: 'is not a known field' }
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
  if (error.statusCode === 400) return new BerthError('validation_failed', error instanceof SyntaxError ? 'the body is not valid JSON' : error.message)
  if (error.statusCode === 404) return new BerthError('not_found', error.message)
  if (error.statusCode === 413) return new BerthError('payload_too_large', error.message)
  if (error.statusCode === 415) return new BerthError('unsupported_media_type', error.message)
  return new BerthError('internal_error', 'berth failed unexpectedly; the request id leads to the cause in its log', {}, { cause: error })
}
