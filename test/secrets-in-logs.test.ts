// Issue 10, item 7: a credential sent in a query string (refused as a token, but sent all the same)
// must not reach berth's log — not the request line, the audit line, an error line or a probe's line.
import t from 'tap'
import { LogCapture, RUN, auth, build, cleanupAfter, name } from './helpers.ts'

cleanupAfter(t)

const secret = (n: number) => `s3cret-${RUN}-${n}`

t.test('credential-looking query parameters are redacted from every logged URL', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const calls: Array<[string, string, Record<string, string>, number, string]> = [
    ['GET', `/v1/containers?access_token=${secret(1)}`, {}, 401, 'no token but one in the query'],
    ['GET', `/v1/containers?all=true&Access_Token=${secret(2)}`, auth(), 400, 'mixed case, beside a harmless parameter'],
    ['POST', `/v1/containers/${name('nope')}/stop?token=${secret(3)}`, auth(), 400, 'a mutation: its line is the audit record'],
    ['GET', `/v1/nothing?password=${secret(4)}&X-Amz-Signature=${secret(5)}&api_key=${secret(6)}&client_secret=${secret(7)}`, auth(), 404, 'an unknown route'],
    ['GET', `/v1/images?auth=${secret(8)}&sig=${secret(9)}&refresh_token=${secret(10)}&PASSWD=${secret(11)}`, auth(), 400, 'more spellings'],
    ['GET', `/healthz?token=${secret(12)}`, {}, 200, 'a probe, logged at debug'],
    ['GET', `/v1/containers?access%5Ftoken=${secret(13)}&token=x&token=${secret(14)}`, {}, 401, 'a percent-encoded name, a repeated parameter'],
    ['DELETE', `/v1/containers/${name('nope')}?session=${secret(15)}&credentials=${secret(16)}&jwt=${secret(17)}`, {}, 401, 'a refused mutation'],
    ['GET', `/v1/containers?bad%zz=1&token%zz=${secret(21)}`, {}, 401, 'names with malformed escapes are judged as written']
  ]
  for (const [method, url, headers, status, what] of calls) {
    const response = await app.inject({ method: method as 'GET', url, headers })
    t.equal(response.statusCode, status, what)
  }
  // An error logged with a URL in its message, as an engine or framework error may carry one.
  app.log.error({ err: new Error(`GET /v1/images?token=${secret(18)} failed`) }, `while calling /v1/images?key=${secret(19)}`)
  app.log.warn(`pulling from https://berth:${secret(20)}@registry.example/v2/ failed`)

  for (let n = 1; n <= 21; n++) t.notOk(logs.text.includes(secret(n)), `secret ${n} is nowhere in the log`)
  const urls = logs.lines.filter(line => line.req !== undefined).map(line => (line.req as { url: string }).url)
  t.same(urls, [
    '/v1/containers?access_token=[redacted]',
    '/v1/containers?all=true&Access_Token=[redacted]',
    `/v1/containers/${name('nope')}/stop?token=[redacted]`,
    '/v1/nothing?password=[redacted]&X-Amz-Signature=[redacted]&api_key=[redacted]&client_secret=[redacted]',
    '/v1/images?auth=[redacted]&sig=[redacted]&refresh_token=[redacted]&PASSWD=[redacted]',
    '/healthz?token=[redacted]',
    '/v1/containers?access%5Ftoken=[redacted]&token=[redacted]&token=[redacted]',
    `/v1/containers/${name('nope')}?session=[redacted]&credentials=[redacted]&jwt=[redacted]`,
    '/v1/containers?bad%zz=1&token%zz=[redacted]'
  ], 'each request was logged, with its harmless parameters as sent and only the secrets cut')
  const audit = logs.lines.find(line => line.msg === 'audit' && (line.req as { method: string }).method === 'POST')
  t.match(audit, { req: { url: /token=\[redacted\]$/ }, audit: { action: 'POST /v1/containers/:idOrName/stop', status: 400 } }, 'the audit line is there, redacted')
  const errorLine = logs.lines.find(line => line.level === 50)
  t.match(errorLine, { msg: 'while calling /v1/images?key=[redacted]', err: { message: 'GET /v1/images?token=[redacted] failed' } }, 'error lines are redacted too')
  t.ok(logs.lines.some(line => line.msg === 'pulling from https://berth:[redacted]@registry.example/v2/ failed'), 'a password in a URL is cut, the user kept')
})
