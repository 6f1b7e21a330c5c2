// Bearer-token authentication and scope checks. Tokens are kept as sha256 hashes and compared in
// constant time; every /v1 route declares the scope it needs in its `config.scope`. The tokens are
// read from a TokenStore on every request, so a reload applies to the next one.
import { hash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { AuthFailures } from '../access/auth-failures.ts'
import type { Config, Scope } from '../config.ts'
import type { Principal } from '../access/ownership.ts'
import { BerthError } from '../errors.ts'
import { TokenStore, type StoredToken } from '../access/token-store.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Checks the request's bearer token for a scope, for routes that cannot declare `config.scope` (Swagger UI's). */
    authenticate (request: FastifyRequest, scope: Scope): Promise<void>
    /** The tokens in use. */
    tokens: TokenStore
    /**
     * Whether the token a request was let in with is still in use, unchanged, with the scope its
     * route needs: after a reload, a stream still open for a request that is not is ended.
     */
    stillAuthorised (request: FastifyRequest): boolean
  }
  interface FastifyRequest {
    principal: Principal | null
  }
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one are public. */
    scope?: Scope
  }
}

// admin implies write, write implies read. build is beside them: admin implies it, it implies read.
const RANK: Record<Exclude<Scope, 'build'>, number> = { read: 1, write: 2, admin: 3 }

export const ANONYMOUS: Principal = { name: 'anonymous', scopes: ['admin'], admin: true }

/** Whether a token with these scopes may do what needs `needed`. */
export function grants (scopes: Scope[], needed: Scope): boolean {
  if (scopes.includes('admin')) return true
  if (needed === 'build') return scopes.includes('build')
  const highest = Math.max(0, ...scopes.map(scope => scope === 'build' ? RANK.read : RANK[scope]))
  return highest >= RANK[needed]
}

export interface AuthOptions {
  auth: Config['auth']
  /** The tokens in use; by default the configured ones, never reloaded. */
  tokens?: TokenStore
  /** The clock of the failed-authentication window. */
  now?: () => number
}

export default fp<AuthOptions>(async (app, { auth, tokens = new TokenStore(auth.tokens), now }) => {
  // Which token let each principal in: what a reload is checked against.
  const letInBy = new WeakMap<Principal, StoredToken>()
  const failures = new AuthFailures({ limit: auth.failuresPerMinute, ...(now === undefined ? {} : { now }) })

  // Only a request that presented credentials counts: a client without any is not guessing.
  function failed (request: FastifyRequest): void {
    if (failures.fail(request.ip)) {
      request.log.warn({ address: request.ip, failures: failures.limit, windowMs: failures.windowMs }, 'too many failed authentications: refusing this address for now')
    }
  }

  function identify (request: FastifyRequest): Principal {
    if (auth.disabled) return ANONYMOUS
    // Checked before the token, and for a valid token too: otherwise guessing would go on, each
    // right guess showing itself by its different answer.
    const wait = failures.lockedFor(request.ip)
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000)
      throw new BerthError('rate_limited', `too many failed authentications from this address; retry in ${seconds} s`, {}, { headers: { 'retry-after': String(seconds) } })
    }
    const header = request.headers.authorization
    const match = header === undefined ? null : /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(header)
    if (!match) {
      if (header !== undefined) failed(request)
      throw new BerthError('unauthorized', 'send Authorization: Bearer <token>', {}, { headers: { 'www-authenticate': 'Bearer realm="berth"' } })
    }
    const found = tokens.find(hash('sha256', match[1] as string, 'buffer'))
    if (found === undefined) {
      failed(request)
      throw new BerthError('unauthorized', 'the bearer token is not valid', {}, { headers: { 'www-authenticate': 'Bearer realm="berth", error="invalid_token"' } })
    }
    const principal = { name: found.name, scopes: found.scopes, admin: found.scopes.includes('admin') }
    letInBy.set(principal, found)
    return principal
  }

  function stillAuthorised (request: FastifyRequest): boolean {
    const principal = request.principal
    const needed = request.routeOptions.config.scope
    if (principal === null || principal === ANONYMOUS || needed === undefined) return true
    const token = letInBy.get(principal)
    const now = token === undefined ? undefined : tokens.named(token.name)
    return now !== undefined && now.sha256 === token?.sha256 && grants(now.scopes, needed)
  }

  async function authenticate (request: FastifyRequest, needed: Scope): Promise<void> {
    const principal = identify(request)
    // Known before the scope check, so that a call refused for its scope is audited with who made it.
    request.principal = principal
    if (!grants(principal.scopes, needed)) {
      throw new BerthError('forbidden', `this needs the "${needed}" scope; token "${principal.name}" has ${principal.scopes.join(', ') || 'none'}`, { scope: needed })
    }
  }

  app.decorateRequest('principal', null)
  app.decorate('authenticate', authenticate)
  app.decorate('tokens', tokens)
  app.decorate('stillAuthorised', stillAuthorised)
  app.addHook('onRequest', async (request) => {
    const needed = request.routeOptions.config.scope
    if (needed !== undefined) await authenticate(request, needed)
  })
}, { name: 'berth-auth' })
