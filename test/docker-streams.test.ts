// src/engine/docker/streams.ts: the engine's streams read with inputs the real engine cannot be made
// to produce on demand: log frames split at every byte, two events in one nanosecond, odd pull lines.
import { Readable } from 'node:stream'
import t from 'tap'
import { engineTime, isoFromNanos, layerProgress, readEventStream, readLogStream } from '../src/engine/docker/streams.ts'
import { readAll } from './helpers.ts'

function frame (type: number, text: string | Buffer): Buffer {
  const payload = typeof text === 'string' ? Buffer.from(text) : text
  const header = Buffer.alloc(8)
  header[0] = type
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

t.test('engine times: nanoseconds as the engine takes them, and as RFC 3339', async t => {
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
    const entries = await readAll(readLogStream(Readable.from(chunks), { tty: false, timestamps: false }))
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
  const tty = await readAll(readLogStream(Readable.from([Buffer.from('a\r\nb'), Buffer.from('c\r\n')]), { tty: true, timestamps: false }))
  t.same(tty, [{ stream: 'stdout', line: 'a' }, { stream: 'stdout', line: 'bc' }])
  const stamped = await readAll(readLogStream(Readable.from([frame(1, '2024-01-02T03:04:05.123456789Z hello world\n2024-01-02T03:04:06Z\n')]), { tty: false, timestamps: true }))
  t.same(stamped, [
    { stream: 'stdout', line: 'hello world', time: '2024-01-02T03:04:05.123456789Z' },
    { stream: 'stdout', line: '', time: '2024-01-02T03:04:06Z' }
  ])
  const long = await readAll(readLogStream(Readable.from([frame(1, 'x'.repeat(70_000) + '\n')]), { tty: false, timestamps: false }))
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
  await t.rejects(readAll(readLogStream(broken, { tty: false, timestamps: false })), { code: 'engine_unavailable', message: 'the engine connection broke: socket hang up' })
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
  const events = await readAll(readEventStream(Readable.from([Buffer.from(text)]), null))
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
  const resumed = await readAll(readEventStream(Readable.from([Buffer.from(text)]), { nanos: 1795448123085250312n, index: 0 }))
  t.same(resumed.map(event => event.action), ['start', 'exec_start', 'die', 'pull'])
})

t.test('docker pull lines become layer progress; lines about the whole pull do not', async t => {
  t.same(layerProgress({ status: 'Downloading', id: 'abc', progressDetail: { current: 10, total: 100 } }), { id: 'abc', phase: 'downloading', current: 10, total: 100 })
  t.same(layerProgress({ status: 'Retrying in 5 seconds', id: 'abc' }), { id: 'abc', phase: 'retrying', current: 0, total: null })
  t.same(layerProgress({ status: 'Already exists', id: 'abc', progressDetail: {} }), { id: 'abc', phase: 'exists', current: 0, total: null })
  t.equal(layerProgress({ status: 'Pulling from library/busybox', id: 'latest' }), null)
  t.equal(layerProgress({ status: 'Digest: sha256:abc' }), null)
})
