// docker pull with its progress visible: NDJSON and server-sent events from the real engine pulling
// from the real registry, including a pull that fails after the engine answered 200.
import t, { type Test } from 'tap'
import { RUN, auth, build, cleanupAfter, docker, env, imageExists } from './helpers.ts'
import { RegistryProxy, breakBlob, pushLayeredImage } from './pull-fixtures.ts'
import { StreamClient, listen, type StreamRequest } from './stream-client.ts'

cleanupAfter(t)

const MB = 1_000_000

interface Layer { id: string, phase: string, current: number, total: number | null }
interface Event { type: string, layer?: Layer, fraction?: number, layers?: { total: number, done: number }, image?: unknown, problem?: Record<string, unknown> }

function pullRequest (image: string, accept: string, who: 'admin' | 'alice' = 'admin'): StreamRequest {
  return { method: 'POST', headers: { ...auth(who), 'content-type': 'application/json', accept }, body: JSON.stringify({ image }) }
}

/** A registry proxy slow enough for progress to show; the reference to pull through it. */
async function throughProxy (t: Test, reference: string, bytesPerSecond: number): Promise<{ proxy: RegistryProxy, reference: string }> {
  const proxy = new RegistryProxy(bytesPerSecond)
  t.teardown(() => proxy.close())
  return { proxy, reference: reference.replace(env.registry, await proxy.listen()) }
}

t.test('NDJSON: every layer from waiting to complete, bytes done of total, an overall fraction, then the pulled image', async t => {
  const app = await build(t)
  const image = await pushLayeredImage('ndjson', [3 * MB, 3 * MB, 3 * MB])
  const { reference } = await throughProxy(t, image.reference, 6 * MB)
  const base = await listen(app)

  const client = await StreamClient.open(`${base}/v1/images/pull`, pullRequest(reference, 'application/x-ndjson'))
  t.equal(client.status, 200)
  t.equal(client.header('content-type'), 'application/x-ndjson')
  t.equal(client.header('cache-control'), 'no-store')
  const events = await client.allJson<Event>()

  t.same(events[0], { type: 'started', image: reference }, 'first: the engine took the pull')
  const engineImage = await docker.getImage(reference).inspect()
  t.same(events.at(-1), { type: 'pulled', image: { id: engineImage.Id, reference, digest: image.digest, tags: [reference] } }, 'last: the pulled image')
  t.equal(events.filter(event => event.type === 'pulled' || event.type === 'error').length, 1, 'exactly one final event')

  const progress = events.filter(event => event.type === 'progress')
  t.equal(progress.length, events.length - 2, 'everything between is progress')
  // Docker names a layer by the first 12 hex digits of its blob digest.
  const expected = image.layers.map(layer => ({ id: layer.digest.slice(7, 19), size: layer.size }))
  t.same([...new Set(progress.map(event => event.layer?.id))].sort(), expected.map(layer => layer.id).sort(), 'every layer of the manifest, and only those')
  for (const { id, size } of expected) {
    const own = progress.filter(event => event.layer?.id === id).map(event => event.layer as Layer)
    t.equal(own[0]?.phase, 'waiting', `${id} starts waiting`)
    t.same(own.at(-1), { id, phase: 'complete', current: size, total: size }, `${id} ends complete, all its bytes done`)
    const downloads = own.filter(layer => layer.phase === 'downloading')
    t.ok(downloads.length >= 2, `${id}: ${downloads.length} download reports`)
    t.ok(downloads.every(layer => layer.total === size), `${id}: the download total is the blob's size`)
    t.ok(downloads.every((layer, i) => i === 0 || layer.current >= (downloads[i - 1] as Layer).current), `${id}: bytes done only grow`)
    t.ok(own.some(layer => layer.phase === 'extracting'), `${id} was extracted`)
  }
  const fractions = progress.map(event => event.fraction as number)
  t.ok(fractions.every((fraction, i) => fraction >= 0 && fraction <= 1 && (i === 0 || fraction >= (fractions[i - 1] as number))), 'the overall fraction never goes back')
  t.ok(fractions.some(fraction => fraction > 0.2 && fraction < 0.8), `the fraction passed through the middle: ${fractions.filter((_, i) => i % 10 === 0).join(' ')}`)
  t.equal(fractions.at(-1), 1)
  t.same(progress.at(-1)?.layers, { total: 3, done: 3 })
  t.ok(await imageExists(reference))
})

t.test('server-sent events: the same events as data, each with an id, after a retry hint', async t => {
  const app = await build(t)
  const image = await pushLayeredImage('sse', [MB])
  const base = await listen(app)
  const client = await StreamClient.open(`${base}/v1/images/pull`, pullRequest(image.reference, 'text/event-stream'))
  t.equal(client.status, 200)
  t.equal(client.header('content-type'), 'text/event-stream')
  t.same(await client.sse(), { comments: [], retry: 2000 })
  const messages = []
  for (let message = await client.sseData(); message !== null; message = await client.sseData()) messages.push(message)
  t.same(messages.map(message => message.id), messages.map((_, i) => String(i + 1)), 'ids count up from 1')
  t.same(messages[0]?.data, { type: 'started', image: image.reference })
  t.match(messages.at(-1)?.data, { type: 'pulled', image: { reference: image.reference, digest: image.digest } })
  t.ok(messages.slice(1, -1).every(message => (message.data as Event).type === 'progress'))
})

t.test('a pull that fails after the engine answered 200 ends with the error event, never success', async t => {
  const app = await build(t)
  const image = await pushLayeredImage('broken', [MB, MB, 200_000])
  // The last layer's data is gone from the registry: the engine starts the pull, then fails inside its stream.
  breakBlob((image.layers[2] as { digest: string }).digest)
  const base = await listen(app)

  const client = await StreamClient.open(`${base}/v1/images/pull`, pullRequest(image.reference, 'application/x-ndjson'))
  t.equal(client.status, 200, 'the stream had begun: the failure can only be an event')
  const events = await client.allJson<Event>()
  t.same(events[0], { type: 'started', image: image.reference })
  t.notOk(events.some(event => event.type === 'pulled'), 'no success event')
  const last = events.at(-1) as Event
  t.same(last, {
    type: 'error',
    problem: {
      image: image.reference,
      type: 'https://berth.dev/problems/pull_failed',
      title: 'The image could not be pulled',
      status: 502,
      detail: `pulling ${image.reference} failed: unknown blob`,
      code: 'pull_failed',
      instance: '/v1/images/pull',
      requestId: client.header('x-request-id')
    }
  })
  t.notOk(await imageExists(image.reference), 'nothing was left tagged')

  // Without streaming the same failure is the error response, with the very same problem body.
  const plain = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: image.reference } })
  t.equal(plain.statusCode, 502)
  t.equal(plain.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(plain.json(), { ...last.problem, requestId: plain.headers['x-request-id'] })
})

t.test('before the engine takes the pull, a failure is a plain problem response with its own status', async t => {
  const app = await build(t)
  const base = await listen(app)
  const missing = `${env.registry}/${RUN}-nothing/web:1`
  for (const accept of ['application/x-ndjson', 'text/event-stream']) {
    const response = await fetch(`${base}/v1/images/pull`, pullRequest(missing, accept))
    t.equal(response.status, 404, accept)
    t.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8')
    t.match(await response.json(), { code: 'image_not_found', status: 404, image: missing, instance: '/v1/images/pull' })
  }
  const invalid = await fetch(`${base}/v1/images/pull`, pullRequest('UPPER/case', 'application/x-ndjson'))
  t.equal(invalid.status, 400)
  t.match(await invalid.json(), { code: 'validation_failed' })
})

t.test('Accept decides: JSON stays the default, an Accept berth cannot answer is 406', async t => {
  const app = await build(t)
  const image = await pushLayeredImage('accept', [100_000])
  for (const accept of ['application/json', '*/*', 'application/json, application/x-ndjson', 'application/x-ndjson;q=0.5, application/json']) {
    const response = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth(), accept }, payload: { image: image.reference } })
    t.equal(response.statusCode, 200, accept)
    t.equal(response.headers['content-type'], 'application/json; charset=utf-8', accept)
    t.match(response.json(), { reference: image.reference, digest: image.digest })
  }
  const refused = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth(), accept: 'text/html' }, payload: { image: image.reference } })
  t.equal(refused.statusCode, 406)
  t.match(refused.json(), {
    code: 'not_acceptable',
    status: 406,
    detail: 'this answers in application/json or application/x-ndjson or text/event-stream; the Accept header allows none of them',
    accepts: ['application/json', 'application/x-ndjson', 'text/event-stream']
  })
})
