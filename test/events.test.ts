// docker events through berth as server-sent events, on the real engine: berth's shape with exact ids,
// only what a token may see, heartbeats; and, on a private engine where nothing else happens, a
// Last-Event-ID resume and an engine restart survived without a repeated event.
import Docker from 'dockerode'
import t from 'tap'
import { RUN, assertProblem, auth, build, cleanupAfter, docker, env, name, runContainer, type TokenName } from './helpers.ts'
import { PrivateEngine } from './private-engine.ts'
import { pushLayeredImage } from './pull-fixtures.ts'
import { StreamClient, listen, type SseMessage } from './stream-client.ts'

cleanupAfter(t)

interface Event { type: string, action: string, id: string, name: string | null, image: string | null, time: string, exitCode?: number }

async function open (base: string, who: TokenName, headers: Record<string, string> = {}): Promise<StreamClient> {
  const client = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth(who), ...headers } })
  if (client.status !== 200) throw new Error(`events answered ${client.status}`)
  // The retry hint comes first, and with it the headers: from here on the engine stream is open.
  const first = await client.sse()
  if (first?.retry !== 2000) throw new Error(`expected the retry hint first, got ${JSON.stringify(first)}`)
  return client
}

/** Reads data messages until `done` says enough, keeping those `keep` selects (the engine is shared: others make events too). */
async function collect (client: StreamClient, keep: (event: Event) => boolean, done: (kept: SseMessage[]) => boolean): Promise<SseMessage[]> {
  const kept: SseMessage[] = []
  while (!done(kept)) {
    const message = await client.sseData()
    if (message === null) throw new Error(`the stream ended; kept ${JSON.stringify(kept)}`)
    if (keep(message.data as Event)) kept.push(message)
  }
  return kept
}

const ISO_NANOS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/

/**
 * A private engine of this file's own, started once, with a small image in it. The shared engine is
 * busy with every other test run, and remembers only its last 256 events: what a resume finds there
 * depends on what the others did meanwhile. Here nothing happens but what the test does.
 */
let shared: Promise<{ engine: PrivateEngine, docker: Docker, image: string }> | null = null
async function privateEngine () {
  shared ??= (async () => {
    const engine = new PrivateEngine()
    await engine.start()
    const privateDocker = new Docker({ socketPath: engine.socketPath })
    const image = await pushLayeredImage('events', [10_000])
    await new Promise((resolve, reject) => {
      privateDocker.pull(image.reference, (error: Error | null, stream: NodeJS.ReadableStream) => {
        if (error) return reject(error)
        privateDocker.modem.followProgress(stream, (failure: Error | null) => failure ? reject(failure) : resolve(null))
      })
    })
    return { engine, docker: privateDocker, image: image.reference }
  })()
  return await shared
}
t.teardown(async () => { if (shared !== null) await (await shared).engine.dispose() })

t.test('container and image events in berth\'s shape, only those the token may see, with heartbeats', async t => {
  const app = await build(t, { config: { streams: { heartbeatMs: 200 } } })
  const base = await listen(app)
  const alice = await open(base, 'alice')
  const bob = await open(base, 'bob')
  const admin = await open(base, 'admin')
  t.teardown(() => { alice.close(); bob.close(); admin.close() })
  t.equal(alice.header('content-type'), 'text/event-stream')
  t.equal(alice.header('cache-control'), 'no-store')

  const aliceRun = await runContainer(app, 'alice', { name: name('ev-alice'), command: ['true'] })
  t.equal(aliceRun.statusCode, 201, aliceRun.body)
  const bobRun = await runContainer(app, 'bob', { name: name('ev-bob'), command: ['true'] })
  t.equal(bobRun.statusCode, 201, bobRun.body)
  const tag = `berth-test/${RUN}-ev`
  await docker.getImage(env.image).tag({ repo: tag, tag: '1' })
  const aliceId = aliceRun.json().id as string
  const bobId = bobRun.json().id as string

  const ours = (event: Event) => event.id === aliceId || event.id === bobId || event.name === `${tag}:1`
  const seen = (ids: string[]) => (kept: SseMessage[]) => ids.every(id => kept.some(message => {
    const event = message.data as Event
    return (event.id === id && event.action === 'die') || (id === tag && event.type === 'image')
  }))
  const forAlice = await collect(alice, ours, seen([aliceId, tag]))
  const forAdmin = await collect(admin, ours, seen([aliceId, bobId, tag]))
  const forBob = await collect(bob, ours, seen([bobId, tag]))

  const aliceEvents = forAlice.map(message => message.data as Event)
  t.notOk(aliceEvents.some(event => event.id === bobId), 'alice sees nothing of bob\'s container')
  t.notOk(forBob.some(message => (message.data as Event).id === aliceId), 'bob sees nothing of alice\'s container')
  t.ok(forAdmin.some(message => (message.data as Event).id === aliceId) && forAdmin.some(message => (message.data as Event).id === bobId), 'admin sees both')

  const actions = aliceEvents.filter(event => event.id === aliceId).map(event => event.action)
  t.same(actions.filter(action => ['create', 'start', 'die'].includes(action)), ['create', 'start', 'die'], `alice's container: ${actions.join(' ')}`)
  const create = aliceEvents.find(event => event.id === aliceId && event.action === 'create') as Event
  t.same(Object.keys(create).sort(), ['action', 'id', 'image', 'name', 'time', 'type'])
  t.match(create, { type: 'container', action: 'create', id: aliceId, name: name('ev-alice'), image: env.image, time: ISO_NANOS })
  t.match(aliceEvents.find(event => event.id === aliceId && event.action === 'die'), { exitCode: 0 }, 'die carries the exit code')
  t.match(aliceEvents.find(event => event.type === 'image'), { type: 'image', action: 'tag', name: `${tag}:1`, id: /^sha256:/, time: ISO_NANOS }, 'image events are everyone\'s')

  // The id keeps the engine's nanoseconds, which a JavaScript number would round; the time agrees with it.
  for (const message of forAlice) {
    const event = message.data as Event
    const match = /^(\d{19})-(\d+)$/.exec(message.id ?? '')
    t.ok(match, `id ${message.id}`)
    const nanos = BigInt(match?.[1] ?? '0')
    t.equal(event.time.slice(20, 29), (nanos % 1_000_000_000n).toString().padStart(9, '0'), 'the time\'s nine fraction digits are the id\'s')
    t.equal(BigInt(Date.parse(event.time)) * 1_000_000n + nanos % 1_000_000n, nanos, 'time and id name the same nanosecond')
  }

  // Nothing happens on a quiet stream but heartbeats, as SSE comments.
  const quiet = await StreamClient.open(`${base}/v1/events`, { headers: auth('reader') })
  t.same(await quiet.sse(), { comments: [], retry: 2000 })
  let heartbeat: SseMessage | null = null
  for (let message = await quiet.sse(); message !== null && heartbeat === null; message = await quiet.sse()) {
    if (message.comments.includes('heartbeat')) heartbeat = message
  }
  t.same(heartbeat, { comments: ['heartbeat'] })
  quiet.close()
})

t.test('Last-Event-ID resumes right after that event: nothing missed, nothing twice', async t => {
  const { engine, docker: privateDocker, image } = await privateEngine()
  const app = await build(t, { socketPath: engine.socketPath })
  const base = await listen(app)
  const repo = `berth-test/${RUN}-resume`
  const ourTag = (event: Event) => event.type === 'image' && event.action === 'tag' && (event.name ?? '').startsWith(`${repo}:`)
  const first = await open(base, 'bob')
  for (const tag of ['1', '2', '3']) await privateDocker.getImage(image).tag({ repo, tag })
  const seen = await collect(first, ourTag, kept => kept.length === 3)
  t.same(seen.map(message => (message.data as Event).name), [`${repo}:1`, `${repo}:2`, `${repo}:3`])
  first.close()

  // While nobody listens, one more.
  await privateDocker.getImage(image).tag({ repo, tag: '4' })
  const resumed = await open(base, 'bob', { 'last-event-id': seen[0]?.id as string })
  const after = await collect(resumed, ourTag, kept => kept.some(message => (message.data as Event).name === `${repo}:4`))
  t.same(after.map(message => (message.data as Event).name), [`${repo}:2`, `${repo}:3`, `${repo}:4`], 'from right after the first, including what happened while away')
  t.same(after.map(message => message.id), [seen[1]?.id, seen[2]?.id, after[2]?.id], 'the same events keep the same ids')
  resumed.close()

  const bad = await app.inject({ method: 'GET', url: '/v1/events', headers: { ...auth('bob'), 'last-event-id': 'not-an-id' } })
  assertProblem(t, bad, 400, { code: 'validation_failed', detail: 'Last-Event-ID is not an event id berth gave out', errors: [{ location: 'headers', path: '/last-event-id', message: 'is not an event id' }] }, 'a Last-Event-ID berth never gave out')
  const json = await app.inject({ method: 'GET', url: '/v1/events', headers: { ...auth('bob'), accept: 'application/json' } })
  assertProblem(t, json, 406, { code: 'not_acceptable', detail: 'this answers in text/event-stream; the Accept header allows none of them', accepts: ['text/event-stream'] }, 'events as JSON')
  const anonymous = await app.inject({ method: 'GET', url: '/v1/events' })
  assertProblem(t, anonymous, 401, { code: 'unauthorized', detail: 'send Authorization: Bearer <token>' }, 'events without a token')
})

t.test('the engine restarts: berth reconnects by itself and the stream goes on without a repeat', async t => {
  const { engine, docker: privateDocker, image } = await privateEngine()
  const app = await build(t, { socketPath: engine.socketPath, config: { engine: { timeoutMs: 2000 } } })
  const base = await listen(app)
  const repo = `berth-test/${RUN}-restart`
  const ourTag = (event: Event) => event.type === 'image' && event.action === 'tag'

  const client = await open(base, 'admin')
  await privateDocker.getImage(image).tag({ repo, tag: 'before' })
  const before = await collect(client, ourTag, kept => kept.length === 1)
  t.equal((before[0]?.data as Event).name, `${repo}:before`)

  await engine.stop()
  const lost = await client.sse()
  t.same(lost, { comments: ['engine connection lost; reconnecting'] }, 'the client is told, as a comment')
  await engine.start()
  let restored: SseMessage | null = null
  for (let message = await client.sse(20_000); message !== null && restored === null; message = await client.sse(20_000)) {
    if (message.comments.includes('engine connection restored')) restored = message
  }
  t.ok(restored, 'reconnected without the client doing anything')
  await privateDocker.getImage(image).tag({ repo, tag: 'after' })
  const after = await collect(client, ourTag, kept => kept.some(message => (message.data as Event).name === `${repo}:after`))
  t.same(after.map(message => (message.data as Event).name), [`${repo}:after`], 'the event from before the restart did not come again')
  t.ok(BigInt((after[0]?.id ?? '').split('-')[0] ?? 0) > BigInt((before[0]?.id ?? '').split('-')[0] ?? 0))
  client.close()

  // A hung engine: opening a stream is an engine call like any other, bounded by its deadline.
  await engine.freeze()
  t.teardown(() => engine.thaw())
  const started = Date.now()
  const hung = await app.inject({ method: 'GET', url: '/v1/events', headers: auth('admin') })
  // The detail shows the deadline ended it; tests do not assert timings, so the time is only reported.
  assertProblem(t, hung, 503, { code: 'engine_unavailable', detail: 'the container engine did not answer within 2000 ms' }, 'events from a hung engine')
  t.comment(`answered in ${Date.now() - started} ms`)
  engine.thaw()
})
