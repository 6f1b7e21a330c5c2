// helmet's security headers on every response, with a CSP that Swagger UI works under. The
// middleware is built once: @fastify/helmet builds it anew on every request, which cost more than
// all of berth's other hooks together and churned the heap (measured with bench/).
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
  app.addHook('onRequest', (request, reply, done) => { securityHeaders(request.raw, reply.raw, () => done()) })
}, { name: 'berth-security-headers' })
