// One content negotiation on every route that answers in more than one media type (src/http/
// event-stream.ts, negotiate): the client's order decides between types of equal q, a wildcard alone
// gets the route's default — checked on each route, on the real engine and registry.
import t from 'tap'
import type { Test } from 'tap'
import type { InjectOptions } from 'fastify'
import { NDJSON, SSE, negotiate } from '../src/http/event-stream.ts'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, env, name, pushImage, type App } from './helpers.ts'
import { cleanupBuilds, imageName, tarOf } from './build-helpers.ts'

cleanupAfter(t)
cleanupBuilds(t)

const JSON_TYPE = 'application/json'
const TEXT = 'text/plain'

t.test('the rule: q first, then a type named outright, then the client\'s order, then the route\'s', async t => {
  const pull = [JSON_TYPE, NDJSON, SSE]
  const exec = [NDJSON, SSE, JSON_TYPE]
  for (const offers of [pull, exec]) {
    const which = `offers ${offers.join(', ')}`
    t.equal(negotiate('application/json, application/x-ndjson', offers), JSON_TYPE, `${which}: JSON listed first is JSON`)
    t.equal(negotiate('application/x-ndjson, application/json', offers), NDJSON, `${which}: NDJSON listed first is NDJSON`)
    t.equal(negotiate('text/event-stream, application/json', offers), SSE, which)
    t.equal(negotiate('application/json;q=0.5, application/x-ndjson;q=0.9', offers), NDJSON, `${which}: q before order`)
    t.equal(negotiate('*/*, application/json', offers), JSON_TYPE, `${which}: a type named outright before a wildcard of the same q`)
    t.equal(negotiate('application/*, text/event-stream', offers), SSE, `${which}: a partial wildcard is no name`)
    t.equal(negotiate('application/json;q=0.9, */*', offers), offers.find(offer => offer !== JSON_TYPE), `${which}: the wildcard's q 1 beats a named 0.9`)
    t.equal(negotiate('*/*', offers), offers[0], `${which}: a wildcard alone is the route's default`)
  }
})

/** The media type a route answered in: its content type without parameters. */
function media (response: { headers: Record<string, unknown> }): string {
  return String(response.headers['content-type']).split(';')[0] as string
}

/** Asks with `accept` and answers the media type; a stream is left as soon as its headers are in. */
async function answeredIn (app: App, request: { method: 'GET' | 'POST', url: string, headers?: Record<string, string>, payload?: InjectOptions['payload'] }, accept: string): Promise<string> {
  const leave = new AbortController()
  const options: InjectOptions = { ...request, headers: { ...auth('admin'), ...request.headers, accept }, payloadAsStream: true, signal: leave.signal }
  const response = await app.inject(options)
  const type = response.statusCode === 200 ? media(response) : `HTTP ${response.statusCode}`
  leave.abort()
  response.stream().on('error', () => {}).resume()
  return type
}

/** Each Accept and the media type the route is to answer it in. */
async function check (t: Test, app: App, what: string, request: Parameters<typeof answeredIn>[1], cases: Array<[string, string]>): Promise<void> {
  for (const [accept, expected] of cases) t.equal(await answeredIn(app, request, accept), expected, `${what}, Accept: ${accept}`)
}

const THREE: Array<[string, string]> = [
  ['application/json, application/x-ndjson, text/event-stream', JSON_TYPE],
  ['application/x-ndjson, application/json, text/event-stream', NDJSON],
  ['text/event-stream, application/json, application/x-ndjson', SSE]
]

t.test('every streaming route keeps the rule', async t => {
  const app = await build(t)
  const container = name('negotiate')
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('admin'), payload: { image: env.image, name: container, command: ['sh', '-c', 'echo ready; sleep 300'], labels: { [RUN_LABEL]: RUN } } })
  t.equal(run.statusCode, 201, 'run')

  await check(t, app, 'exec', { method: 'POST', url: `/v1/containers/${container}/exec`, payload: { command: ['true'] } }, [...THREE, ['*/*', NDJSON]])
  await check(t, app, 'stats', { method: 'GET', url: `/v1/containers/${container}/stats` }, [...THREE, ['*/*', JSON_TYPE]])
  await check(t, app, 'logs', { method: 'GET', url: `/v1/containers/${container}/logs` }, [
    ['application/x-ndjson, text/plain', NDJSON], ['text/plain, application/x-ndjson', TEXT], ['*/*', TEXT], ['application/json', 'HTTP 406']
  ])

  const { reference } = await pushImage('negotiate')
  await check(t, app, 'pull', { method: 'POST', url: '/v1/images/pull', payload: { image: reference } }, [...THREE, ['*/*', JSON_TYPE]])
  const job = (await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('admin'), payload: { image: reference } })).json() as { id: string }
  await check(t, app, 'pull job events', { method: 'GET', url: `/v1/jobs/${job.id}/events` }, [
    ['application/x-ndjson, text/event-stream', NDJSON], ['text/event-stream, application/x-ndjson', SSE], ['*/*', SSE]
  ])
  await check(t, app, 'push', { method: 'POST', url: '/v1/images/push', payload: { image: reference } }, [...THREE, ['*/*', JSON_TYPE]])

  const context = tarOf({ Dockerfile: `FROM ${env.image}\nLABEL ${RUN_LABEL}=${RUN}\n` })
  const buildRequest = { method: 'POST' as const, url: `/v1/images/build?tag=${encodeURIComponent(imageName('negotiate'))}`, headers: { 'content-type': 'application/x-tar' }, payload: context }
  await check(t, app, 'build', buildRequest, [...THREE, ['*/*', JSON_TYPE]])
  const started = (await app.inject({ ...buildRequest, url: `${buildRequest.url}&async=true`, headers: { ...auth('admin'), ...buildRequest.headers } })).json() as { id: string }
  await check(t, app, 'build events', { method: 'GET', url: `/v1/builds/${started.id}/events` }, [
    ['application/x-ndjson, text/event-stream', NDJSON], ['text/event-stream, application/x-ndjson', SSE], ['*/*', SSE]
  ])

  await check(t, app, 'events', { method: 'GET', url: '/v1/events' }, [['application/json, text/event-stream', SSE], ['*/*', SSE], ['application/json', 'HTTP 406']])
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container}?force=true`, headers: auth('admin') })).statusCode, 204)
})
