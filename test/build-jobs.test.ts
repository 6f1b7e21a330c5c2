// Builds as jobs, on a stand-in engine whose builds end when the test says: slots and the queue,
// cancel of a queued build, the time limit, retention on a moved clock, the cap on kept builds, the
// bounded replay of output, and close. The real engine's side is in builds.test.ts.
import { Readable } from 'node:stream'
import t from 'tap'
import { MAX_REPLAYED_OUTPUT } from '../src/builds/build.ts'
import { Builds, type BuildRequest } from '../src/builds/builds.ts'
import type { BuildOptions, BuildSpec, BuiltImage } from '../src/engine/types.ts'
import type { Backend } from '../src/engine/parts.ts'
import { BerthError } from '../src/errors.ts'
import { Limiter } from '../src/http/limiter.ts'

const alice = { name: 'alice', scopes: ['build' as const], admin: false }
const admin = { name: 'root', scopes: ['admin' as const], admin: true }

/** An engine whose builds wait until finish() or their signal. */
function standIn () {
  const running: Array<{ spec: BuildSpec, options: BuildOptions, finish: (image?: BuiltImage, error?: Error) => void }> = []
  const build = async (spec: BuildSpec, options: BuildOptions) => await new Promise<BuiltImage>((resolve, reject) => {
    options.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true })
    running.push({ spec, options, finish: (image, error) => error ? reject(error) : resolve(image ?? { id: 'sha256:x', tags: [] }) })
  })
  const engine = { part: (name: string) => name === 'builds' ? { build } : undefined } as unknown as Backend
  return { engine, running }
}

function request (removed: string[] = []): BuildRequest {
  return {
    spec: { dockerfile: 'Dockerfile', tags: [], buildArgs: {}, labels: {}, pull: false, noCache: false, network: 'none' },
    context: { dockerfile: 'FROM a', dockerfilePath: 'Dockerfile', entries: 1, size: 10, open: () => Readable.from([]), remove: async () => { removed.push('x') } },
    summary: { tags: [], dockerfile: 'Dockerfile', target: null, platform: null, contextSize: 10 }
  }
}

const tick = async () => await new Promise(resolve => setImmediate(resolve))

t.test('one slot: the second build waits (queued), can be cancelled there, and the context goes either way', async t => {
  const { engine, running } = standIn()
  const builds = new Builds(engine, new Limiter('builds', 1, 1), { retentionMs: 60_000, maxBuilds: 10, timeoutMs: 60_000 })
  const removed: string[] = []
  const first = builds.start(request(removed), 'alice')
  const second = builds.start(request(removed), 'alice')
  await tick()
  t.equal(first.state, 'building')
  t.equal(second.state, 'queued')
  t.throws(() => builds.start(request(removed), 'alice'), { code: 'rate_limited' }, 'the queue is full')
  await tick()
  t.equal(removed.length, 1, 'a build refused at the door leaves no context behind')
  await builds.cancel(second, 'not wanted', 1000)
  t.equal(second.state, 'cancelled')
  const events: string[] = []
  second.subscribe(0, entry => events.push(entry.event.type))
  t.same(events, ['queued', 'error'])
  running[0]?.finish({ id: 'sha256:first', tags: ['a:1'] })
  t.same(await first.outcome(), { id: 'sha256:first', tags: ['a:1'] })
  await first.settled
  await second.settled
  t.equal(running.length, 1, 'the cancelled build never reached the engine')
  t.equal(removed.length, 3)
})

t.test('the time limit cancels at the engine as build_failed (timeout)', async t => {
  const { engine } = standIn()
  const builds = new Builds(engine, new Limiter('builds', 2), { retentionMs: 60_000, maxBuilds: 10, timeoutMs: 50 })
  const build = builds.start(request(), 'alice')
  build.progress({ kind: 'step', number: 2, total: 3, instruction: 'RUN sleep 60' })
  await t.rejects(build.outcome(), { code: 'build_failed', extensions: { reason: 'timeout', step: { number: 2 } } })
  t.equal(build.state, 'failed')
})

t.test('an engine failure that is not berth\'s own error is internal_error', async t => {
  const { engine, running } = standIn()
  const builds = new Builds(engine, new Limiter('builds', 2), { retentionMs: 60_000, maxBuilds: 10, timeoutMs: 60_000 })
  const build = builds.start(request(), 'alice')
  await tick()
  running[0]?.finish(undefined, new TypeError('boom'))
  await t.rejects(build.outcome(), { code: 'internal_error' })
  const other = builds.start(request(), 'alice')
  await tick()
  running[1]?.finish(undefined, new BerthError('engine_unavailable', 'gone'))
  await t.rejects(other.outcome(), { code: 'engine_unavailable' })
})

t.test('visibility, retention on the clock, and the cap on kept builds', async t => {
  const { engine, running } = standIn()
  let now = 1_000_000
  const builds = new Builds(engine, new Limiter('builds', 4), { retentionMs: 1000, maxBuilds: 2, timeoutMs: 60_000, now: () => now })
  const mine = builds.start(request(), 'alice')
  const theirs = builds.start(request(), 'bob')
  t.throws(() => builds.get(theirs.id, alice), { code: 'not_found' })
  t.equal(builds.get(theirs.id, admin), theirs)
  t.same(builds.list(alice).map(build => build.id), [mine.id])
  t.same(builds.list(admin).map(build => build.id), [theirs.id, mine.id], 'newest first')
  t.throws(() => builds.start(request(), 'alice'), { code: 'rate_limited', message: /2 builds are kept/ })
  await tick()
  running[0]?.finish()
  await mine.settled
  const third = builds.start(request(), 'alice')
  t.throws(() => builds.get(mine.id, alice), { code: 'not_found' }, 'the oldest finished build made room')
  await tick()
  running[2]?.finish()
  await third.settled
  now += 1000
  t.throws(() => builds.get(third.id, alice), { code: 'not_found' }, 'gone after its retention')
  running[1]?.finish()
  await theirs.settled
  await builds.close(100)
})

t.test('a replay keeps the newest output lines, and every step', async t => {
  const { engine, running } = standIn()
  const builds = new Builds(engine, new Limiter('builds', 1), { retentionMs: 60_000, maxBuilds: 10, timeoutMs: 60_000 })
  const build = builds.start(request(), 'alice')
  await tick()
  build.progress({ kind: 'step', number: 1, total: 1, instruction: 'RUN yes' })
  for (let i = 0; i < MAX_REPLAYED_OUTPUT + 500; i++) build.progress({ kind: 'output', step: 1, stream: 'stdout', line: `line ${i}` })
  build.progress({ kind: 'status', message: 'status' })
  build.progress({ kind: 'layer', step: 1, id: 'abc', cached: false })
  running[0]?.finish()
  await build.outcome()
  const replay: Array<{ type: string, line?: string }> = []
  build.subscribe(0, entry => replay.push(entry.event as { type: string, line?: string }))
  const lines = replay.filter(event => event.type === 'output')
  t.ok(lines.length <= MAX_REPLAYED_OUTPUT + 100 && lines.length >= MAX_REPLAYED_OUTPUT, `${lines.length} output lines kept`)
  t.equal(lines.at(-1)?.line, `line ${MAX_REPLAYED_OUTPUT + 499}`)
  t.same(replay.filter(event => event.type !== 'output').map(event => event.type), ['started', 'step', 'status', 'layer', 'built'])
  build.progress({ kind: 'output', step: 1, stream: 'stdout', line: 'after the end' })
  t.notOk(replay.some(event => event.line === 'after the end'))
})

t.test('close cancels what runs and waits for it', async t => {
  const { engine } = standIn()
  const builds = new Builds(engine, new Limiter('builds', 2), { retentionMs: 60_000, maxBuilds: 10, timeoutMs: 60_000 })
  const build = builds.start(request(), 'alice')
  await tick()
  await builds.close(1000)
  t.equal(build.state, 'cancelled')
  t.match(build.error, { code: 'build_cancelled', message: /berth is shutting down/ })
})
