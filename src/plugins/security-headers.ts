// helmet's security headers on every response, with a CSP that Swagger UI works under. helmet is
// asked once, at start, which headers it sets: they depend on nothing in the request (no directive
// here is a function of it), so every reply gets the same set, added to fastify's own headers.
// Running helmet's thirteen middlewares on each request cost more than berth's own hooks
// (measured with bench/); @fastify/helmet builds the middleware anew on every request, costlier still.
import type { IncomingMessage, ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import helmet from 'helmet'

export default fp(async (app) => {
  const securityHeaders = helmet({
    // Swagger UI loads its own scripts and styles from /docs; nothing from elsewhere.
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        // berth serves plain HTTP: helmet's default upgrade-insecure-requests makes a browser that
        // reaches it by a non-loopback name fetch Swagger UI's own assets over https, and the page stays blank.
        upgradeInsecureRequests: null
      }
    }
  })
  const headers = headersOf(securityHeaders)
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
}, { name: 'berth-security-headers' })

type Middleware = (request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void) => void

/** The headers a middleware sets on a response, recorded from one run of it. */
export function headersOf (middleware: Middleware): Record<string, string> {
  const headers: Record<string, string> = {}
  let failure: unknown = null
  const response = {
    setHeader (name: string, value: string | number | readonly string[]) { headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value) },
    removeHeader (name: string) { Reflect.deleteProperty(headers, name.toLowerCase()) }
  }
  let finished = false
  middleware({ method: 'GET', url: '/', headers: {} } as unknown as IncomingMessage, response as unknown as ServerResponse, error => {
    finished = true
    if (error != null) failure = error
  })
  // helmet calls next() before it returns; a middleware that answered later would need the request.
  if (!finished) throw new Error('the security headers middleware did not finish at once: it cannot be recorded')
  if (failure !== null) throw failure
  return headers
}
