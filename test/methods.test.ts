// A wrong method on a path berth has is 405 with Allow; a path berth does not have is 404.
import t from 'tap'
import { assertProblem, auth, build } from './helpers.ts'

t.test('a path berth has, asked with a method it does not answer there, is 405 naming the methods it does', async t => {
  const app = await build(t)
  const cases: Array<[string, string, string[]]> = [
    ['DELETE', '/v1/containers', ['GET', 'HEAD', 'POST']],
    ['PUT', '/healthz', ['GET', 'HEAD']],
    ['POST', '/v1/containers/web', ['GET', 'HEAD', 'DELETE']],
    ['GET', '/v1/containers/web/start', ['POST']],
    ['PATCH', '/v1/containers/web/archive', ['GET', 'HEAD', 'PUT']],
    // pull is also a :ref of GET and DELETE /v1/images/:ref: the router answers for those too.
    ['PUT', '/v1/images/pull?async=true', ['GET', 'HEAD', 'POST', 'DELETE']]
  ]
  for (const [method, url, allow] of cases) {
    // With a token or without: the methods a path has are in the public document anyway.
    for (const headers of [auth('reader'), {}]) {
      const response = await app.inject({ method: method as 'GET', url, headers })
      const path = url.split('?')[0] as string
      assertProblem(t, response, 405, { code: 'method_not_allowed', detail: `${method} is not allowed on ${path}: it answers ${allow.join(', ')}`, allow, instance: path }, `${method} ${url}`)
      t.equal(response.headers.allow, allow.join(', '), `${method} ${url}: Allow`)
    }
  }
})

t.test('a path berth does not have is 404, whatever the method', async t => {
  const app = await build(t)
  for (const [method, url] of [['GET', '/v1/nope'], ['DELETE', '/v1/containers/web/nope'], ['POST', '/v2/containers']]) {
    const response = await app.inject({ method: method as 'GET', url, headers: auth() })
    assertProblem(t, response, 404, { code: 'not_found', detail: `no route ${method} ${url}` }, `${method} ${url}`)
    t.equal(response.headers.allow, undefined, `${method} ${url}: no Allow`)
  }
})
