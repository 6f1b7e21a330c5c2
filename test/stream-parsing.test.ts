// The pieces under the streams, with inputs the real engine cannot be made to produce on demand:
// frames split at every byte, two events in one nanosecond, a client too slow for its progress.
import { Readable } from 'node:stream'
import t from 'tap'
import { engineTime, isoFromNanos, layerProgress, readEventStream, readLogStream } from '../src/engine/docker/streams.ts'
import type { Engine, EngineEvent, EventsOptions, PulledImage, PullOptions } from '../src/engine/types.ts'
import { BerthError } from '../src/errors.ts'
import { EventStream, NDJSON, SSE, lastEventSeq, negotiate } from '../src/http/event-stream.ts'
import { followEvents } from '../src/events/feed.ts'
import { parseImage, type ImageRef } from '../src/engine/image-ref.ts'
import { Limiter } from '../src/http/limiter.ts'
import { PullJobs } from '../src/pulls/jobs.ts'
import { SharedPull, type PullEntry } from '../src/pulls/shared-pull.ts'
import { PullTracker } from '../src/pulls/progress.ts'
import { parseTime } from '../src/http/times.ts'

function frame (type: number, text: string | Buffer): Buffer {
  const payload = typeof text === 'string' ? Buffer.from(text) : text
  const header = Buffer.alloc(8)
  header[0] = type
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

async function all<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

function ref (text: string): ImageRef {
  const parsed = parseImage(text)
  if (typeof parsed === 'string' || parsed.kind !== 'ref') throw new Error(`bad reference ${text}`)
  return parsed.ref
}

t.test('negotiate: q-values, wildcards and the most specific match', async t => {
  const offers = ['application/json', NDJSON, SSE]
  t.equal(negotiate(undefined, offers), 'application/json')
  t.equal(negotiate('', offers), 'application/json')
  t.equal(negotiate('*/*', offers), 'application/json')
  t.equal(negotiate('application/x-ndjson', offers), NDJSON)
  t.equal(negotiate('text/*', offers), SSE)
  t.equal(negotiate('application/json;q=0.2, text/event-stream', offers), SSE)
  t.equal(negotiate('*/*;q=0.1, application/x-ndjson;q=0.5', offers), NDJSON)
  t.equal(negotiate('application/*, application/json;q=0', offers), NDJSON, 'an explicit q=0 beats the wildcard')
  t.equal(negotiate('TEXT/EVENT-STREAM', offers), SSE, 'media types are case-insensitive')
  t.equal(negotiate('text/html, image/png', offers), null)
  t.equal(negotiate('garbage, ;;, application/x-ndjson;q=abc', offers), null, 'unparseable ranges and q-values count for nothing')
})

t.test('Last-Event-ID for job events is a sequence number', async t => {
  t.equal(lastEventSeq(undefined), 0)
  t.equal(lastEventSeq('17'), 17)
  t.equal(lastEventSeq(['4', '5']), 4)
  t.throws(() => lastEventSeq('1.5'), { code: 'validation_failed' })
  t.throws(() => lastEventSeq('9'.repeat(16)), { code: 'validation_failed' })
})

t.test('times: RFC 3339 to the nanosecond, Unix seconds, durations back from now', async t => {
  t.equal(parseTime('2024-01-02T03:04:05Z', 'since'), 1704164645000000000n)
  t.equal(parseTime('2024-01-02T03:04:05.123456789Z', 'since'), 1704164645123456789n)
  t.equal(parseTime('2024-01-02T03:04:05.5+01:00', 'since'), 1704161045500000000n)
  t.equal(parseTime('2024-01-02t03:04:05z', 'since'), 1704164645000000000n)
  t.equal(parseTime('1700000000', 'since'), 1700000000000000000n)
  t.equal(parseTime('1700000000.000000001', 'since'), 1700000000000000001n)
  t.equal(parseTime('10m', 'since', 1_000_000), 1_000_000n * 1_000_000n - 600_000_000_000n)
  t.equal(parseTime('1h30m5s250ms', 'since', 10_000_000), 10_000_000n * 1_000_000n - 5_405_250_000_000n)
  t.throws(() => parseTime('2024-02-30T99:00:00Z', 'until'), { code: 'validation_failed', message: 'until must be an RFC 3339 time, Unix seconds or a duration such as 10m' })
  t.equal(engineTime(1700000000000000001n), '1700000000.000000001')
  t.equal(isoFromNanos(1795448123085250312n), '2026-11-23T15:35:23.085250312Z')
})

t.test('log frames: split anywhere, multi-line, multibyte across frames, stdin as stdout, a line without end', async t => {
  const bytes = Buffer.concat([
    frame(1, 'one\ntwo\nthr'),
    frame(2, 'err '),
    frame(2, Buffer.from([0xe2, 0x9c])),
    frame(2, Buffer.from([0x93, 0x0a])),
    frame(1, 'ee\n'),
    frame(0, 'typed\n'),
    frame(1, 'last')
  ])
  // Every split point, including inside a header: the stream carries no line or frame boundaries.
  for (const size of [1, 3, 7, 8, 9, 64]) {
    const chunks: Buffer[] = []
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size))
    const entries = await all(readLogStream(Readable.from(chunks), { tty: false, timestamps: false }))
    t.same(entries, [
      { stream: 'stdout', line: 'one' },
      { stream: 'stdout', line: 'two' },
      { stream: 'stderr', line: 'err ✓' },
      { stream: 'stdout', line: 'three' },
      { stream: 'stdout', line: 'typed' },
      { stream: 'stdout', line: 'last' }
    ], `chunks of ${size} bytes`)
  }
})

t.test('log stream: TTY output, timestamps, an overlong line, abort and breakage', async t => {
  const tty = await all(readLogStream(Readable.from([Buffer.from('a\r\nb'), Buffer.from('c\r\n')]), { tty: true, timestamps: false }))
  t.same(tty, [{ stream: 'stdout', line: 'a' }, { stream: 'stdout', line: 'bc' }])
  const stamped = await all(readLogStream(Readable.from([frame(1, '2024-01-02T03:04:05.123456789Z hello world\n2024-01-02T03:04:06Z\n')]), { tty: false, timestamps: true }))
  t.same(stamped, [
    { stream: 'stdout', line: 'hello world', time: '2024-01-02T03:04:05.123456789Z' },
    { stream: 'stdout', line: '', time: '2024-01-02T03:04:06Z' }
  ])
  const long = await all(readLogStream(Readable.from([frame(1, 'x'.repeat(70_000) + '\n')]), { tty: false, timestamps: false }))
  t.same(long.map(entry => entry.line.length), [65_536, 70_000 - 65_536], 'a line without a break is cut rather than held in memory without bound')

  const controller = new AbortController()
  const endless = new Readable({ read () {} })
  endless.push(frame(1, 'first\n'))
  const reader = readLogStream(endless, { tty: false, timestamps: false, signal: controller.signal })
  t.same((await reader.next()).value, { stream: 'stdout', line: 'first' })
  const pending = reader.next()
  controller.abort()
  t.same(await pending, { value: undefined, done: true }, 'an abort ends the stream quietly')
  t.ok(endless.destroyed, 'and destroys the engine stream')

  const broken = new Readable({ read () { this.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })) } })
  await t.rejects(all(readLogStream(broken, { tty: false, timestamps: false })), { code: 'engine_unavailable', message: 'the engine connection broke: socket hang up' })
})

t.test('events: timeNano kept exact, cursors that tell apart events of the same nanosecond', async t => {
  const line = (nanos: string, action: string, extra = '') =>
    `{"Type":"container","Action":"${action}","Actor":{"ID":"c1","Attributes":{"name":"web","image":"busybox","io.berth.owner":"alice","note":"{\\"timeNano\\":1}"${extra}}},"time":${nanos.slice(0, 10)},"timeNano":${nanos}}\n`
  const text = [
    line('1795448123085250312', 'create'),
    line('1795448123085250312', 'start'),
    'not json\n',
    '{"Type":"network","Action":"connect","Actor":{"ID":"n"},"time":1795448123,"timeNano":1795448123085250313}\n',
    line('1795448123085250313', 'exec_start: sh -c \\"echo s3cret\\"'),
    line('1795448123085250314', 'die', ',"exitCode":"137"'),
    '{"Type":"image","Action":"pull","Actor":{"ID":"busybox:latest","Attributes":{"name":"busybox"}},"time":1795448124,"timeNano":1795448124000000001}'
  ].join('')
  const events = await all(readEventStream(Readable.from([Buffer.from(text)]), null))
  t.same(events.map(event => [event.cursor, event.action]), [
    ['1795448123085250312-0', 'create'],
    ['1795448123085250312-1', 'start'],
    ['1795448123085250313-1', 'exec_start'],
    ['1795448123085250314-0', 'die'],
    ['1795448124000000001-0', 'pull']
  ], 'two events in one nanosecond get two cursors; the network event counts for its instant but is not shown; the command of an exec is not')
  t.same(events[0], {
    cursor: '1795448123085250312-0',
    type: 'container',
    action: 'create',
    id: 'c1',
    name: 'web',
    image: 'busybox',
    time: '2026-11-23T15:35:23.085250312Z',
    labels: { 'io.berth.owner': 'alice', note: '{"timeNano":1}' }
  })
  t.equal(events[3]?.exitCode, 137)
  t.same(events[4], { cursor: '1795448124000000001-0', type: 'image', action: 'pull', id: 'busybox:latest', name: 'busybox', image: 'busybox:latest', time: '2026-11-23T15:35:24.000000001Z', labels: {} })

  // The engine's `since` includes the instant itself: resuming skips exactly what was already seen there.
  const resumed = await all(readEventStream(Readable.from([Buffer.from(text)]), { nanos: 1795448123085250312n, index: 0 }))
  t.same(resumed.map(event => event.action), ['start', 'exec_start', 'die', 'pull'])
})

t.test('docker pull lines become layer progress; lines about the whole pull do not', async t => {
  t.same(layerProgress({ status: 'Downloading', id: 'abc', progressDetail: { current: 10, total: 100 } }), { id: 'abc', phase: 'downloading', current: 10, total: 100 })
  t.same(layerProgress({ status: 'Retrying in 5 seconds', id: 'abc' }), { id: 'abc', phase: 'retrying', current: 0, total: null })
  t.same(layerProgress({ status: 'Already exists', id: 'abc', progressDetail: {} }), { id: 'abc', phase: 'exists', current: 0, total: null })
  t.equal(layerProgress({ status: 'Pulling from library/busybox', id: 'latest' }), null)
  t.equal(layerProgress({ status: 'Digest: sha256:abc' }), null)
})

t.test('the overall fraction: by size, without layers already there, never going back', async t => {
  const tracker = new PullTracker()
  tracker.update({ id: 'have', phase: 'exists', current: 0, total: null })
  t.equal(tracker.fraction, 0)
  tracker.update({ id: 'a', phase: 'waiting', current: 0, total: null })
  tracker.update({ id: 'b', phase: 'downloading', current: 50, total: 100 })
  // a's size is unknown: it counts as the average known size (100); b is a quarter done (half of the download half).
  t.equal(tracker.fraction, 0.125)
  tracker.update({ id: 'a', phase: 'downloading', current: 0, total: 900 })
  t.equal(tracker.fraction, 0.125, 'a larger layer coming to light does not make the fraction go back')
  t.same(tracker.update({ id: 'b', phase: 'downloaded', current: 0, total: null }), { id: 'b', phase: 'downloaded', current: 100, total: 100 }, 'sizes are remembered across phases')
  tracker.update({ id: 'a', phase: 'complete', current: 0, total: null })
  tracker.update({ id: 'b', phase: 'extracting', current: 50, total: 100 })
  t.equal(tracker.fraction, 0.975)
  t.same(tracker.counts, { total: 3, done: 2 })
  tracker.finish()
  t.same(tracker.snapshot().fraction, 1)
})

/** An engine whose pulls run until the test says how they end. */
class FakeEngine {
  readonly pulls: Array<{ ref: ImageRef, options: PullOptions, finish: (image: PulledImage) => void, fail: (error: unknown) => void }> = []

  pullImage (ref: ImageRef, options: PullOptions): Promise<PulledImage> {
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
  const jobs = new PullJobs(engine as unknown as Engine, limiter, { retentionMs: 60_000, maxJobs: 10 })

  const a = jobs.follow({ ref: ref('busybox') })
  const b = jobs.follow({ ref: ref('docker.io/library/busybox:latest') })
  t.equal(a.pull, b.pull, 'busybox and docker.io/library/busybox:latest are the same pull')
  t.equal(engine.pulls.length, 1)

  // The one slot is taken: the next different pull waits, and says so; the one after that is refused.
  const queued = jobs.follow({ ref: ref('busybox'), platform: 'linux/arm64' })
  t.not(queued.pull, a.pull, 'another platform is another pull')
  t.equal(engine.pulls.length, 1, 'it waits for a slot')
  t.same(await queued.pull.first(), { type: 'queued', image: 'busybox:latest' })
  t.throws(() => jobs.follow({ ref: ref('busybox'), auth: { username: 'u', password: 'p' } }), { code: 'rate_limited' })

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

  const job = jobs.start({ ref: ref('alpine') }, 'alice')
  t.throws(() => jobs.get(job.id, { name: 'bob', scopes: ['write'], admin: false }), { code: 'not_found' })
  t.equal(jobs.get(job.id, { name: 'root', scopes: ['admin'], admin: true }), job)
  engine.pulls[1]?.fail(new BerthError('pull_failed', 'registry on fire'))
  await job.pull.settled
  t.equal(job.state, 'failed')
  t.equal(job.error?.code, 'pull_failed')
  t.ok(job.finishedAt)

  const odd = jobs.start({ ref: ref('odd') }, 'alice')
  engine.pulls[2]?.fail(new TypeError('a bug'))
  await odd.pull.settled
  t.equal(odd.error?.code, 'internal_error', 'an unexpected failure is berth\'s bug, said so')
})

t.test('an event stream sheds progress, never final events, for a client that does not read', async t => {
  const stream = new EventStream(NDJSON, { heartbeatMs: 1000 })
  const big = { type: 'progress', padding: 'x'.repeat(1024) }
  for (let i = 0; i < 200; i++) stream.send(big, { droppable: true })
  t.ok(stream.readableLength < 70 * 1024, `buffered ${stream.readableLength} bytes, not 200 KiB`)
  stream.send({ type: 'pulled' })
  stream.comment('NDJSON has no comments')
  stream.finish()
  stream.send({ type: 'late' })
  const text = (await all(stream as AsyncIterable<Buffer>)).join('')
  t.ok(text.endsWith('{"type":"pulled"}\n'), 'the final event got through')
  t.notOk(text.includes('late'))

  const sse = new EventStream(SSE, { heartbeatMs: 20 })
  await new Promise(resolve => setTimeout(resolve, 70))
  sse.send({ a: 1 }, { id: '7' })
  sse.comment('two\nlines')
  sse.finish()
  const frames = (await all(sse as AsyncIterable<Buffer>)).join('')
  t.match(frames, /^retry: 2000\n\n(: heartbeat\n\n)+id: 7\ndata: \{"a":1\}\n\n: two lines\n\n$/)
})

t.test('a long pull replays in a few lines per layer: updates within a phase replace each other', async t => {
  const pull = new SharedPull(ref('busybox'), null)
  pull.progress({ kind: 'started' })
  for (let i = 1; i <= 300; i++) {
    for (const id of ['a', 'b']) pull.progress({ kind: 'layer', layer: { id, phase: 'downloading', current: i * 10, total: 3000 } })
  }
  pull.progress({ kind: 'layer', layer: { id: 'a', phase: 'downloaded', current: 0, total: null } })
  pull.progress({ kind: 'layer', layer: { id: 'b', phase: 'downloading', current: 3000, total: 3000 } })
  const replay: PullEntry[] = []
  pull.subscribe(0, Infinity, entry => replay.push(entry))
  t.same(replay.map(({ event }) => event.type === 'progress' ? `${event.layer.id}:${event.layer.phase}:${event.layer.current}` : event.type), [
    'started', 'a:downloading:3000', 'a:downloaded:3000', 'b:downloading:3000'
  ])
  t.ok(replay.every((entry, i) => i === 0 || entry.seq > (replay[i - 1] as PullEntry).seq), 'in the order they happened')
  t.equal(pull.seq, 603, 'every report had its own sequence number')
  const later: PullEntry[] = []
  pull.subscribe(600, Infinity, entry => later.push(entry))
  t.same(later.map(entry => entry.seq), [602, 603], 'Last-Event-ID skips what the client has')
})

t.test('the events feed reconnects after the last cursor it saw, or from when the client came', async t => {
  const calls: EventsOptions[] = []
  const event = (cursor: string): EngineEvent => ({ cursor, type: 'image', action: 'tag', id: 'x', name: 'x', image: 'x', time: '', labels: {} })
  const plan: Array<() => AsyncIterable<EngineEvent>> = [
    async function * () { /* the connection drops at once, before any event */ },
    async function * () { yield event('1-0'); yield event('2-0'); throw new Error('connection reset') },
    () => { throw new BerthError('engine_unavailable', 'down') },
    () => { throw new BerthError('engine_unavailable', 'still down') },
    async function * () { yield event('3-0') }
  ]
  const engine = {
    async events (options: EventsOptions) {
      calls.push(options)
      const next = plan.shift()
      if (next === undefined) return await new Promise<never>(() => {})
      return next()
    }
  }
  const controller = new AbortController()
  const states: string[] = []
  const feed = await followEvents(engine as unknown as Engine, { signal: controller.signal, retryMs: { first: 1, max: 4 }, onConnection: state => states.push(state) })
  const seen: string[] = []
  for await (const item of feed) {
    seen.push(item.cursor)
    if (item.cursor === '3-0') break
  }
  t.same(seen, ['1-0', '2-0', '3-0'], 'nothing twice, nothing missed')
  t.same(calls.map(call => call.after ?? (call.since instanceof Date ? 'since' : 'now')), ['now', 'since', '2-0', '2-0', '2-0'])
  t.same(states, ['lost', 'restored', 'lost', 'restored'])

  // Aborted while waiting to reconnect: the feed just ends.
  const quiet = new AbortController()
  const ending = { events: async () => (async function * () {})() }
  const short = await followEvents(ending as unknown as Engine, { signal: quiet.signal, retryMs: { first: 10_000, max: 10_000 } })
  setTimeout(() => quiet.abort(), 20)
  t.same(await all(short), [])
  controller.abort()
})
