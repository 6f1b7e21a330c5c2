// Async pull jobs and shared pulls (src/pulls/jobs.ts and the routes on it): first on an engine whose
// pulls end when the test says, then on the real engine: 202 and a job, its events replayed then
// live, identical pulls sharing one engine pull, cancel stopping the engine, ownership, retention.
import t, { type Test } from 'tap'
import type { PulledImage, PullOptions } from '../src/engine/types.ts'
import type { Backend } from '../src/engine/parts.ts'
import type { ImageRef } from '../src/engine/image-ref.ts'
import { BerthError } from '../src/errors.ts'
import { Limiter } from '../src/http/limiter.ts'
import { PullJobs } from '../src/pulls/jobs.ts'
import type { PullEntry } from '../src/pulls/shared-pull.ts'
import { assertProblem, auth, build, cleanupAfter, docker, env, imageExists, imageRef, waitFor, type App, type TokenName } from './helpers.ts'
import { engineRequests } from './engine-spies.ts'
import { RegistryProxy, pushLayeredImage } from './pull-fixtures.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

const MB = 1_000_000
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

interface Job { id: string, state: string, createdAt: string, image: string, owner: string, result: unknown, error: Record<string, unknown> | null, finishedAt: string | null, progress: { fraction: number, layers: unknown[] }, links: { self: string, events: string } }

/** The pulls berth starts at the engine from now on. */
const enginePulls = (t: Test) => engineRequests(t, path => path.includes('/images/create'))

async function slowImage (t: Test, suffix: string, layers: number[], bytesPerSecond: number) {
  const image = await pushLayeredImage(suffix, layers)
  const proxy = new RegistryProxy(bytesPerSecond)
  t.teardown(() => proxy.close())
  return { image, proxy, reference: image.reference.replace(env.registry, await proxy.listen()) }
}

async function startJob (app: App, image: string, who: TokenName = 'admin', extra: Record<string, unknown> = {}): Promise<Job> {
  const response = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth(who), payload: { image, ...extra } })
  if (response.statusCode !== 202) throw new Error(`async pull answered ${response.statusCode}: ${response.body}`)
  return response.json()
}

async function getJob (app: App, id: string, who: TokenName = 'admin'): Promise<Job> {
  return (await app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: auth(who) })).json()
}

/**
 * The engine really stopped pulling: it hung up on the registry in the middle of a layer (not between
 * two requests), closed every connection, and had not got all the layers.
 */
async function engineStopped (t: Test, proxy: RegistryProxy, layers: Array<{ size: number }>): Promise<void> {
  await waitFor('the engine closes its registry connections', () => proxy.open, open => open === 0)
  t.ok(proxy.cutOff > 0, `the engine hung up on the registry mid-layer (${proxy.cutOff} of ${proxy.connections} connections)`)
  const whole = layers.reduce((sum, layer) => sum + layer.size, 0)
  t.ok(proxy.bytes < whole, `the engine stopped after ${proxy.bytes} of ${whole} bytes`)
}

/** An engine whose pulls run until the test says how they end. */
class FakeEngine {
  readonly pulls: Array<{ ref: ImageRef, options: PullOptions, finish: (image: PulledImage) => void, fail: (error: unknown) => void }> = []

  /** The one part a pull job asks of its backend: images, whose pull is this engine's. */
  part (name: string): { pull: FakeEngine['pull'] } {
    if (name !== 'images') throw new Error(`a pull job asked for the ${name} part`)
    return { pull: (ref, options) => this.pull(ref, options) }
  }

  pull (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
    return new Promise((resolve, reject) => {
      options.signal?.addEventListener('abort', () => reject(options.signal?.reason))
      this.pulls.push({ ref, options, finish: resolve, fail: reject })
      options.onProgress?.({ kind: 'started' })
    })
  }
}

const pulled = (reference: string): PulledImage => ({ id: 'sha256:' + 'a'.repeat(64), reference, digest: null, tags: [reference] })

t.test('pull jobs: one pull per normalised reference, platform and credentials; queue, refusal and cancel', async t => {
  const engine = new FakeEngine()
  const limiter = new Limiter('pulls', 1, 1)
  const jobs = new PullJobs(engine as unknown as Backend, limiter, { retentionMs: 60_000, maxJobs: 10 })

  const a = jobs.follow({ ref: imageRef('busybox') })
  const b = jobs.follow({ ref: imageRef('docker.io/library/busybox:latest') })
  t.equal(a.pull, b.pull, 'busybox and docker.io/library/busybox:latest are the same pull')
  t.equal(engine.pulls.length, 1)

  // The one slot is taken: the next different pull waits, and says so; the one after that is refused.
  const queued = jobs.follow({ ref: imageRef('busybox'), platform: 'linux/arm64' })
  t.not(queued.pull, a.pull, 'another platform is another pull')
  t.equal(engine.pulls.length, 1, 'it waits for a slot')
  t.same(await queued.pull.first(), { type: 'queued', image: 'busybox:latest' })
  t.throws(() => jobs.follow({ ref: imageRef('busybox'), auth: { username: 'u', password: 'p' } }), { code: 'rate_limited' })

  // Cancelled while queued: it ends at once, and never reaches the engine.
  t.equal(queued.release(), true, 'the last holder let go')
  t.equal(queued.release(), false, 'releasing twice is harmless')
  await queued.pull.settled
  t.equal(queued.pull.state, 'cancelled')

  t.equal(a.release(), false, 'b still holds the pull')
  const entries: PullEntry[] = []
  b.pull.subscribe(0, Infinity, entry => entries.push(entry))
  engine.pulls[0]?.finish(pulled('busybox:latest'))
  t.same(await b.pull.outcome(), pulled('busybox:latest'))
  t.same(entries.map(entry => entry.event.type), ['started', 'pulled'])
  await b.pull.settled
  t.equal(engine.pulls.length, 1, 'the cancelled queued pull never started')

  const job = jobs.start({ ref: imageRef('alpine') }, 'alice')
  t.throws(() => jobs.get(job.id, { name: 'bob', scopes: ['write'], admin: false }), { code: 'not_found' })
  t.equal(jobs.get(job.id, { name: 'root', scopes: ['admin'], admin: true }), job)
  engine.pulls[1]?.fail(new BerthError('pull_failed', 'registry on fire'))
  await job.pull.settled
  t.equal(job.state, 'failed')
  t.equal(job.error?.code, 'pull_failed')
  t.ok(job.finishedAt)

  const odd = jobs.start({ ref: imageRef('odd') }, 'alice')
  engine.pulls[2]?.fail(new TypeError('a bug'))
  await odd.pull.settled
  t.equal(odd.error?.code, 'internal_error', 'an unexpected failure is berth\'s bug, said so')
})

const finished = (job: Job) => ['succeeded', 'failed', 'cancelled'].includes(job.state)
const downloading = (job: Job) => job.progress.layers.some(layer => (layer as { phase: string }).phase === 'downloading')

/** The job once `state` holds for it; the pulls here are throttled, so this may take a while. */
async function jobWhen (app: App, id: string, who: TokenName, state: (job: Job) => boolean): Promise<Job> {
  return await waitFor(`job ${id} to be ${state.name}`, () => getJob(app, id, who), state, 30_000)
}

t.test('async: 202 with the job and its URLs; the job runs to succeeded with the pulled image', async t => {
  const app = await build(t)
  const { image, reference } = await slowImage(t, 'async', [MB, MB], 4 * MB)
  const response = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('alice'), payload: { image: reference } })
  t.equal(response.statusCode, 202, response.body)
  const job = response.json() as Job
  t.match(job.id, JOB_ID)
  t.equal(response.headers.location, `/v1/jobs/${job.id}`)
  t.notOk(response.headers['preference-applied'], 'no Prefer was sent')
  t.match(job, { kind: 'pull', image: reference, platform: null, owner: 'alice', finishedAt: null, result: null, error: null, links: { self: `/v1/jobs/${job.id}`, events: `/v1/jobs/${job.id}/events` } })
  t.ok(['queued', 'pulling'].includes(job.state), job.state)

  const done = await jobWhen(app, job.id, 'alice', finished)
  const engineImage = await docker.getImage(reference).inspect()
  t.equal(done.state, 'succeeded')
  t.same(done.result, { id: engineImage.Id, reference, digest: image.digest, tags: [reference] })
  t.equal(done.error, null)
  t.equal(done.progress.fraction, 1)
  t.equal(done.progress.layers.length, 2)
  t.ok(done.progress.layers.every(layer => (layer as { phase: string }).phase === 'complete'))
  t.ok(Date.parse(done.finishedAt as string) >= Date.parse(done.createdAt))

  const preferred = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('alice'), prefer: 'respond-async, wait=5' }, payload: { image: reference } })
  t.equal(preferred.statusCode, 202, 'Prefer: respond-async asks for the same')
  t.equal(preferred.headers['preference-applied'], 'respond-async')
  await jobWhen(app, preferred.json().id, 'alice', finished)
})

t.test('identical pulls under way share one engine pull: two tokens\' jobs and a streaming client', async t => {
  const app = await build(t)
  const pulls = enginePulls(t)
  const { image, reference } = await slowImage(t, 'shared', [1_500_000, 1_500_000], MB)
  const base = await listen(app)

  const alice = await startJob(app, reference, 'alice')
  const bob = await startJob(app, reference, 'bob')
  const stream = await StreamClient.open(`${base}/v1/images/pull`, {
    method: 'POST', headers: { ...auth(), 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify({ image: reference })
  })
  t.not(alice.id, bob.id, 'each token has its own job')
  const events = await stream.allJson<{ type: string, image?: { digest: string } }>()
  t.same(events[0], { type: 'started', image: reference }, 'a client joining late gets what happened so far first')
  t.equal(events.at(-1)?.type, 'pulled')
  t.equal(events.at(-1)?.image?.digest, image.digest)

  const [doneAlice, doneBob] = await Promise.all([
    jobWhen(app, alice.id, 'alice', finished),
    jobWhen(app, bob.id, 'bob', finished)
  ])
  t.equal(doneAlice.state, 'succeeded')
  t.equal(doneBob.state, 'succeeded')
  t.same(doneAlice.result, doneBob.result)
  t.equal(pulls.length, 1, `one engine pull served all three: ${pulls.join(' ')}`)

  // Once that pull is over, the same pull again is a new engine pull.
  const again = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  t.equal(again.statusCode, 200)
  t.equal(pulls.length, 2)
})

t.test('pulls with different registry credentials never share an engine pull', async t => {
  const app = await build(t)
  const pulls = enginePulls(t)
  const { reference } = await slowImage(t, 'creds', [1_500_000], MB)
  const withCreds = { auth: { username: 'someone', password: 'one-password' } }
  const jobs = [
    await startJob(app, reference, 'alice', withCreds),
    await startJob(app, reference, 'alice'),
    await startJob(app, reference, 'alice', { auth: { username: 'someone', password: 'another-password' } }),
    await startJob(app, reference, 'bob', withCreds)
  ]
  for (const job of jobs) t.equal((await jobWhen(app, job.id, job.owner as TokenName, finished)).state, 'succeeded')
  t.equal(pulls.length, 3, 'the same credentials shared a pull; different ones (or none) did not')
})

t.test('DELETE cancels: the engine stops downloading and no image is left', async t => {
  const app = await build(t)
  const pulls = enginePulls(t)
  const { image, proxy, reference } = await slowImage(t, 'cancel', [3 * MB, 3 * MB, 3 * MB], MB)
  const base = await listen(app)
  const job = await startJob(app, reference, 'alice')
  const follower = await StreamClient.open(`${base}${job.links.events}`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
  t.equal(follower.status, 200)
  await jobWhen(app, job.id, 'alice', downloading)
  t.ok(proxy.open > 0, `the engine is downloading from the registry (${proxy.open} connections)`)

  const others = await app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: auth('bob') })
  assertProblem(t, others, 404, { code: 'not_found', detail: `job ${job.id} was not found` }, 'another token cannot cancel it')
  const cancel = await app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: auth('alice') })
  t.equal(cancel.statusCode, 200, cancel.body)
  const body = cancel.json() as Job
  t.equal(body.state, 'cancelled')
  t.match(body.error, {
    type: 'https://berth.dev/problems/pull_cancelled',
    status: 409,
    code: 'pull_cancelled',
    detail: `the pull of ${reference} was cancelled: the job was cancelled`,
    image: reference,
    instance: `/v1/jobs/${job.id}`
  })
  t.ok(body.finishedAt)
  t.notOk(await imageExists(reference), 'no image, not even half of one')

  await engineStopped(t, proxy, image.layers)
  t.notOk(await imageExists(reference))
  t.equal(pulls.length, 1)

  const events = await follower.allJson<{ type: string, problem?: { code: string } }>()
  t.equal(events[0]?.type, 'started')
  t.match(events.at(-1), { type: 'error', problem: { code: 'pull_cancelled', status: 409 } }, 'its follower saw it end cancelled')
  t.notOk(events.some(event => event.type === 'pulled'))

  // Followed after the cancel: the story up to it, then its end.
  const replay = await StreamClient.open(`${base}${job.links.events}`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
  const replayed = await replay.allJson<{ type: string, problem?: { code: string } }>()
  t.same(replayed[0], { type: 'started', image: reference })
  t.match(replayed.at(-1), { type: 'error', problem: { code: 'pull_cancelled', instance: job.links.events } })

  const again = await app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: auth('alice') })
  t.equal(again.statusCode, 200, 'cancelling a job that has ended answers it as it is')
  t.equal(again.json().state, 'cancelled')
})

t.test('cancelling one of two jobs that share a pull leaves the other running to the end', async t => {
  const app = await build(t)
  const pulls = enginePulls(t)
  const { reference } = await slowImage(t, 'cancel-shared', [2 * MB], MB)
  const alice = await startJob(app, reference, 'alice')
  const bob = await startJob(app, reference, 'bob')
  await jobWhen(app, alice.id, 'alice', downloading)
  const cancel = await app.inject({ method: 'DELETE', url: `/v1/jobs/${alice.id}`, headers: auth('alice') })
  t.equal(cancel.json().state, 'cancelled')
  const done = await jobWhen(app, bob.id, 'bob', finished)
  t.equal(done.state, 'succeeded', 'bob\'s pull went on')
  t.equal((await getJob(app, alice.id, 'alice')).state, 'cancelled', 'alice\'s job stays cancelled')
  t.ok(await imageExists(reference))
  t.equal(pulls.length, 1)
})

t.test('a streaming client that leaves stops only its own stream; the last one to leave stops the pull', async t => {
  const app = await build(t)
  const pulls = enginePulls(t)
  const base = await listen(app)
  const open = (reference: string) => StreamClient.open(`${base}/v1/images/pull`, {
    method: 'POST', headers: { ...auth(), 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify({ image: reference })
  })

  const shared = await slowImage(t, 'leave-shared', [2 * MB], MB)
  const job = await startJob(app, shared.reference, 'alice')
  const first = await open(shared.reference)
  const second = await open(shared.reference)
  t.same(await first.json(), { type: 'started', image: shared.reference })
  first.close()
  t.equal((await jobWhen(app, job.id, 'alice', finished)).state, 'succeeded', 'the job\'s pull went on')
  const events = await second.allJson<{ type: string }>()
  t.equal(events.at(-1)?.type, 'pulled', 'so did the other client\'s stream')
  t.equal(pulls.length, 1)

  const alone = await slowImage(t, 'leave-alone', [3 * MB, 3 * MB], MB)
  const lone = await open(alone.reference)
  for (let event = await lone.json<{ type: string, layer?: { phase: string } }>(); event?.layer?.phase !== 'downloading'; event = await lone.json()) {
    if (event === null) throw new Error('the stream ended before a layer was downloading')
  }
  lone.close()
  await engineStopped(t, alone.proxy, alone.image.layers)
  t.notOk(await imageExists(alone.reference), 'nobody followed it any more: the engine pull was stopped')
  t.equal(pulls.length, 2)
})

t.test('a job\'s events: replayed then live, as SSE or NDJSON, resumable with Last-Event-ID', async t => {
  const app = await build(t)
  const { image, reference } = await slowImage(t, 'events', [MB, MB], 2 * MB)
  const base = await listen(app)
  const job = await startJob(app, reference, 'alice')
  const sse = await StreamClient.open(`${base}/v1/jobs/${job.id}/events`, { headers: auth('alice') })
  t.equal(sse.status, 200)
  t.equal(sse.header('content-type'), 'text/event-stream', 'server-sent events by default')
  const live = []
  for (let message = await sse.sseData(); message !== null; message = await sse.sseData()) live.push(message)
  t.same(live[0]?.data, { type: 'started', image: reference })
  t.match(live.at(-1)?.data, { type: 'pulled', image: { reference, digest: image.digest } })
  const ids = live.map(message => Number(message.id))
  t.ok(ids.every((id, i) => i === 0 || id > (ids[i - 1] as number)), 'ids only grow')

  // After the end: the replay holds each layer's latest state within a phase, in order, ending the same way.
  const replay = await StreamClient.open(`${base}/v1/jobs/${job.id}/events`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
  const replayed = await replay.allJson<{ type: string }>()
  t.same(replayed[0], live[0]?.data)
  t.same(replayed.at(-1), live.at(-1)?.data)
  t.ok(replayed.length <= live.length)

  const middle = live[Math.floor(live.length / 2)] as { id: string }
  const resumed = await StreamClient.open(`${base}/v1/jobs/${job.id}/events`, { headers: { ...auth('alice'), 'last-event-id': middle.id } })
  const rest = []
  for (let message = await resumed.sseData(); message !== null; message = await resumed.sseData()) rest.push(message)
  t.ok(rest.length > 0 && rest.every(message => Number(message.id) > Number(middle.id)), 'only what came after Last-Event-ID')
  t.same(rest.at(-1)?.data, live.at(-1)?.data)

  const past = await StreamClient.open(`${base}/v1/jobs/${job.id}/events`, { headers: { ...auth('alice'), 'last-event-id': live.at(-1)?.id as string } })
  t.equal(await past.sseData(), null, 'after the last event there is nothing more, and the stream ends')

  const bad = await fetch(`${base}/v1/jobs/${job.id}/events`, { headers: { ...auth('alice'), 'last-event-id': 'abc' } })
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'validation_failed', errors: [{ location: 'headers', path: '/last-event-id' }] })
  const json = await fetch(`${base}/v1/jobs/${job.id}/events`, { headers: { ...auth('alice'), accept: 'application/json' } })
  t.equal(json.status, 406)
  t.match(await json.json(), { code: 'not_acceptable', accepts: ['text/event-stream', 'application/x-ndjson'] })
})

t.test('jobs belong to their token: others get 404, admins see all', async t => {
  const app = await build(t)
  const { reference } = await slowImage(t, 'owner', [200_000], 4 * MB)
  const job = await startJob(app, reference, 'alice')
  for (const [method, url] of [['GET', `/v1/jobs/${job.id}`], ['GET', `/v1/jobs/${job.id}/events`], ['DELETE', `/v1/jobs/${job.id}`]] as const) {
    const response = await app.inject({ method, url, headers: auth('bob') })
    assertProblem(t, response, 404, { code: 'not_found', detail: `job ${job.id} was not found` }, `bob ${method} ${url}`)
  }
  const asAdmin = await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: auth('admin') })
  t.equal(asAdmin.statusCode, 200)
  t.equal(asAdmin.json().owner, 'alice')
  const readerStart = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('reader'), payload: { image: reference } })
  assertProblem(t, readerStart, 403, { code: 'forbidden', detail: 'this needs the "write" scope; token "reader" has read', scope: 'write' }, 'starting a pull needs write')
  const unknownId = '00000000-0000-0000-0000-000000000000'
  const unknown = await app.inject({ method: 'GET', url: `/v1/jobs/${unknownId}`, headers: auth('admin') })
  assertProblem(t, unknown, 404, { code: 'not_found', detail: `job ${unknownId} was not found` }, 'a job that never was')
  const malformed = await app.inject({ method: 'GET', url: '/v1/jobs/nope', headers: auth('admin') })
  assertProblem(t, malformed, 400, {
    code: 'validation_failed',
    detail: 'params/id must match pattern "^[0-9a-f-]{36}$"',
    errors: [{ location: 'params', path: '/id', message: 'must match pattern "^[0-9a-f-]{36}$"' }]
  }, 'a job id that is not one')
  await jobWhen(app, job.id, 'alice', finished)
})

t.test('finished jobs are kept for the retention time, on the app\'s clock, and at most maxJobs of them', async t => {
  // The clock stands still unless the test moves it: every job finishes at the same instant.
  let now = Date.parse('2030-01-01T00:00:00Z')
  const retentionMs = 60_000
  const app = await build(t, { config: { jobs: { retentionMs, maxJobs: 2 } }, now: () => now })
  const { proxy, reference } = await slowImage(t, 'retention', [2 * MB], MB)
  const first = await startJob(app, reference, 'alice')
  await jobWhen(app, first.id, 'alice', downloading)
  proxy.hold()
  const second = await startJob(app, reference, 'bob')
  const full = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('alice'), payload: { image: reference } })
  assertProblem(t, full, 429, { code: 'rate_limited', detail: '2 pull jobs are under way; wait for one to finish' }, 'two jobs under way fill maxJobs=2')
  t.equal(full.headers['retry-after'], '10')
  proxy.release()
  await jobWhen(app, first.id, 'alice', finished)
  await jobWhen(app, second.id, 'bob', finished)

  const third = await startJob(app, reference, 'alice')
  const madeRoom = await app.inject({ method: 'GET', url: `/v1/jobs/${first.id}`, headers: auth('alice') })
  assertProblem(t, madeRoom, 404, { code: 'not_found', detail: `job ${first.id} was not found` }, 'the oldest finished job made room')
  t.equal((await getJob(app, second.id, 'bob')).state, 'succeeded', 'the other finished job is still kept')
  const thirdDone = await jobWhen(app, third.id, 'alice', finished)
  t.equal(thirdDone.state, 'succeeded')
  t.equal(thirdDone.finishedAt, new Date(now).toISOString(), 'finished on the app\'s clock')

  now += retentionMs - 1
  t.equal((await getJob(app, third.id, 'alice')).state, 'succeeded', 'kept until the retention time is up')
  t.equal((await getJob(app, second.id, 'bob')).state, 'succeeded')
  now += 1
  for (const [job, who] of [[third, 'alice'], [second, 'bob']] as const) {
    const gone = await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: auth(who) })
    assertProblem(t, gone, 404, { code: 'not_found', detail: `job ${job.id} was not found` }, `${who}'s job is gone once the retention time is up`)
  }
})
