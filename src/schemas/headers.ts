// The response headers berth sends that a client acts on, declared in the OpenAPI document where they
// are sent: X-Request-Id on every answer (src/app.ts), WWW-Authenticate on a 401 (plugins/auth.ts),
// Retry-After where a 429 or 503 knows when to come back (auth lockout, rate and slot limits, an
// unreachable engine), Location on the successes that made or started something (`located()` in the
// route), and Allow on the 405 any path answers for a method it has no operation for
// (plugins/problems.ts). Each is a component that the answers having it refer to.
import { PROBLEM_JSON, problemsAt, type ProblemResponse } from './problems.ts'

export const HEADERS = {
  'X-Request-Id': {
    description: 'This request\'s id: the X-Request-Id the client sent when it is safe to echo (1–128 of `A-Za-z0-9._:-`), else one berth made. ' +
      'Every line berth logs about the request, and a problem\'s `requestId`, carry it.',
    required: true,
    schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' }
  },
  Location: {
    description: 'The URL of what the request made or started: the container, volume or network, or the pull job or build to follow.',
    required: true,
    schema: { type: 'string', format: 'uri-reference' }
  },
  'Retry-After': {
    description: 'Seconds to wait before trying again, when berth knows: a rate limit, a full queue of pulls or builds, an address locked out ' +
      'for failed authentications, an engine that cannot be reached.',
    required: false,
    schema: { type: 'integer', minimum: 0 }
  },
  'WWW-Authenticate': {
    description: 'The bearer challenge (RFC 6750): `Bearer realm="berth"`, with `error="invalid_token"` when the token sent is not valid.',
    required: true,
    schema: { type: 'string' }
  },
  Allow: {
    description: 'The methods the path answers (RFC 9110).',
    required: true,
    schema: { type: 'string' }
  }
} as const

export type HeaderName = keyof typeof HEADERS

/**
 * The headers an answer declares: those every answer of its status carries, whatever the operation,
 * and those its route declared beside its schema (Location).
 */
export function declaredHeaders (status: string, response: { headers?: Record<string, unknown> } | undefined): HeaderName[] {
  return [...new Set<HeaderName>([
    'X-Request-Id',
    ...(status === '401' ? ['WWW-Authenticate' as const] : []),
    ...(status === '429' || status === '503' ? ['Retry-After' as const] : []),
    ...Object.keys(response?.headers ?? {}).filter((name): name is HeaderName => name in HEADERS)
  ])]
}

const reference = (name: HeaderName) => ({ $ref: `#/components/headers/${name}` })

/**
 * A success answer that carries a Location header, declared beside its schema (as @fastify/swagger
 * reads response headers); the document refers it to the Location component.
 */
export function located<T extends object> (response: T): T {
  return { ...response, headers: { Location: { type: 'string' } } }
}

/**
 * The 405 every path answers for a method it has no operation for: no operation declares it (an
 * operation's own method is allowed), so it is a component of its own, with its Allow header.
 */
function methodNotAllowed () {
  const { examples } = (problemsAt('/v1/containers', ['method_not_allowed'])['405'] as ProblemResponse).content[PROBLEM_JSON]
  return {
    description: 'method_not_allowed: a path berth has, asked with a method it has no operation for. Allow lists the methods it answers.',
    headers: { Allow: reference('Allow'), 'X-Request-Id': reference('X-Request-Id') },
    // Written as the document has it: a route's schemas get their references made whole by @fastify/swagger, this one does not.
    content: { [PROBLEM_JSON]: { schema: { allOf: [{ $ref: '#/components/schemas/Problem' }, { type: 'object', properties: { code: { type: 'string', enum: ['method_not_allowed'] } } }] }, examples } }
  }
}

interface Document {
  paths?: Record<string, Record<string, { responses?: Record<string, { headers?: Record<string, unknown> }> }>>
  components?: Record<string, unknown>
}

/**
 * The document with its response headers declared: the components, and on each answer a reference
 * to those it carries — by status for every operation, and those its route declared (Location).
 */
export function withResponseHeaders<D extends object> (given: D): D {
  const document = given as Document
  for (const methods of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(methods)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        response.headers = { ...response.headers, ...Object.fromEntries(declaredHeaders(status, response).map(name => [name, reference(name)])) }
      }
    }
  }
  document.components = {
    ...document.components,
    headers: HEADERS,
    responses: { MethodNotAllowed: methodNotAllowed() }
  }
  return given
}
