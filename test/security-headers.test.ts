// The security headers are helmet's, recorded once at start (src/plugins/security-headers.ts): what
// is recorded must be what helmet sets on a real response, and a middleware that cannot be
// recorded (it answers later, or fails) must stop berth at start, not send replies without them.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import helmet from 'helmet'
import t from 'tap'
import { headersOf } from '../src/plugins/security-headers.ts'

t.test('the recorded headers are the ones helmet sets on a real response, X-Powered-By removed', async t => {
  const middleware = helmet({ contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], frameAncestors: ["'none'"] } } })
  const server = createServer((request, response) => {
    response.setHeader('X-Powered-By', 'something')
    middleware(request, response, () => { response.end() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  const response = await fetch(`http://127.0.0.1:${port}/`)
  const sent = Object.fromEntries([...response.headers].filter(([name]) => !['date', 'connection', 'keep-alive', 'content-length'].includes(name)))
  const recorded = headersOf(middleware)
  t.same(recorded, sent)
  t.match(recorded['content-security-policy'], /frame-ancestors 'none'/)
  t.equal(recorded['x-powered-by'], undefined)
})

t.test('a middleware that does not finish at once, or fails, cannot be recorded', async t => {
  const later = (_request: IncomingMessage, _response: ServerResponse, next: (error?: unknown) => void) => { setImmediate(next) }
  t.throws(() => headersOf(later), /did not finish at once/)
  const failing = (_request: IncomingMessage, _response: ServerResponse, next: (error?: unknown) => void) => { next(new Error('bad directive')) }
  t.throws(() => headersOf(failing), /bad directive/)
})
