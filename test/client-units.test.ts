// The client's parts that need no berth: the SSE and NDJSON readers at awkward chunk boundaries, the
// docker-style formatting of the berth command, the pull renderers fed known events, and the
// reconnect rules of the streams, against scripted answers (test/client.test.ts drops real ones).
import { PassThrough } from 'node:stream'
import t from 'tap'
import { ago, commandText, humanDuration, humanSize, imagesTable, portsText, psTable, splitTag } from '../clients/typescript/src/format.ts'
import { BerthProblem, createBerthClient, type Problem, type ProblemCode, type ProblemOf, type PullEvent, type Schemas } from '../clients/typescript/src/index.ts'
import type { ErrorCode } from '../src/errors.ts'
import { barRenderer, lineRenderer } from '../clients/typescript/src/progress.ts'
import { ndjson, sse } from '../clients/typescript/src/streams.ts'
import { readAll } from './helpers.ts'

/** A body that arrives in exactly these pieces. */
function body (...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream({
    start (controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk))
      controller.close()
    }
  })
}

t.test('server-sent events as the spec parses them', async t => {
  const events = await readAll(sse(body(
    ': a heartbeat\n\n',
    'id: 1\ndata: {"a":1}\n\n',
    // An event split across chunks, in the middle of a CRLF, with two data lines.
    'id: 2\r\ndata: first\r', '\ndata: second\r\n\r\n',
    'event: custom\ndata\n\n',
    'retry: 250\ndata: no id of its own\n\n',
    'id: with\0nul\ndata: keeps the last good id\n\n',
    'data: no blank line at the end'
  ), 'before'))
  t.same(events, [
    { id: '1', event: 'message', data: '{"a":1}' },
    { id: '2', event: 'message', data: 'first\nsecond' },
    { id: '2', event: 'custom', data: '' },
    { id: '2', event: 'message', data: 'no id of its own', retry: 250 },
    { id: '2', event: 'message', data: 'keeps the last good id' }
  ], 'an unfinished event at the end is not dispatched')
  t.same(await readAll(sse(body('data: x\n\n'), 'resumed-from')), [{ id: 'resumed-from', event: 'message', data: 'x' }], 'the id resumed from until one comes')
})

t.test('NDJSON lines, split anywhere; blank lines skipped; the last without its newline', async t => {
  t.same(await readAll(ndjson(body('{"a":', '1}\n\n{"b":2}\r\n', '{"c":3}'))), [{ a: 1 }, { b: 2 }, { c: 3 }])
  await t.rejects(readAll(ndjson(body('{"a":1}\nnot json\n'))), SyntaxError, 'a line that is not JSON is an error')
})

t.test('leaving a stream early cancels its body', async t => {
  let cancelled = false
  const stream = new ReadableStream<Uint8Array>({
    pull (controller) { controller.enqueue(new TextEncoder().encode('{"n":1}\n')) },
    cancel () { cancelled = true }
  })
  const lines = ndjson(stream)
  t.same((await lines.next()).value, { n: 1 })
  await lines.return(undefined)
  t.ok(cancelled, 'as a for-await loop that breaks does')
})

t.test('docker\'s words for durations and sizes', async t => {
  const cases: Array<[number, string]> = [
    [500, 'Less than a second'], [1000, '1 second'], [59_000, '59 seconds'], [60_000, 'About a minute'],
    [119_000, 'About a minute'], [120_000, '2 minutes'], [59 * 60_000, '59 minutes'], [60 * 60_000, 'About an hour'],
    [89 * 60_000, 'About an hour'], [90 * 60_000, '2 hours'], [47 * 3_600_000, '47 hours'], [48 * 3_600_000, '2 days'],
    [14 * 86_400_000, '2 weeks'], [60 * 86_400_000, '2 months'], [730 * 86_400_000, '2 years']
  ]
  for (const [ms, words] of cases) t.equal(humanDuration(ms), words, `${ms} ms`)
  t.equal(ago('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:00:05Z')), '5 seconds ago')
  t.equal(ago('2026-01-01T00:00:10Z', Date.parse('2026-01-01T00:00:05Z')), 'Less than a second ago', 'a clock a little behind is not negative')
  const sizes: Array<[number, string]> = [[0, '0B'], [999, '999B'], [1000, '1kB'], [1_981_234, '1.98MB'], [146_400_000, '146MB'], [7.5e15, '7.5PB'], [2e18, '2000PB']]
  for (const [bytes, text] of sizes) t.equal(humanSize(bytes), text, `${bytes} bytes`)
})

t.test('ports, commands and tags as docker shows them', async t => {
  t.equal(portsText([
    { container: 80, host: 8080, protocol: 'tcp', hostIp: '0.0.0.0' },
    { container: 80, host: 8080, protocol: 'tcp', hostIp: '0.0.0.0' },
    { container: 53, host: 5353, protocol: 'udp', hostIp: '' },
    { container: 443, host: null, protocol: 'tcp', hostIp: '' },
    { container: 8888, host: 18888, protocol: 'tcp', hostIp: '::1' }
  ]), '0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp, 443/tcp, ::1:18888->8888/tcp')
  t.equal(commandText('sleep 300'), '"sleep 300"')
  t.equal(commandText(['httpd', '-f', '-p', '80', '-h', '/www']), '"httpd -f -p 80 -h /…"', 'an array (as inspect gives it) joined, cut at 20')
  t.equal(commandText(null), '""')
  t.same(splitTag('127.0.0.1:5000/demo/web:1'), ['127.0.0.1:5000/demo/web', '1'])
  t.same(splitTag('127.0.0.1:5000/demo/web'), ['127.0.0.1:5000/demo/web', '<none>'])
})

t.test('ps and images tables line up like docker\'s', async t => {
  const now = Date.parse('2026-01-01T01:00:00Z')
  const container = (id: string, name: string, ports: Schemas['PortBinding'][], status: string): Schemas['ContainerSummary'] => ({
    id, name, ports, status, image: 'web:1', imageId: 'sha256:1', command: ['httpd', '-f', '-p', '80', '-h', '/www'], state: 'running', createdAt: '2026-01-01T00:58:00Z', labels: {}
  })
  t.equal(psTable([
    container('4c73aa0b1d2e3f40', 'demo', [{ container: 80, host: 18888, protocol: 'tcp', hostIp: '0.0.0.0' }], 'Up 2 minutes'),
    container('9f00aa0b1d2e3f40', '/old', [], 'Exited (0) 1 minute ago')
  ], now),
  'CONTAINER ID   IMAGE   COMMAND                  CREATED         STATUS                    PORTS                   NAMES\n' +
  '4c73aa0b1d2e   web:1   "httpd -f -p 80 -h /…"   2 minutes ago   Up 2 minutes              0.0.0.0:18888->80/tcp   demo\n' +
  '9f00aa0b1d2e   web:1   "httpd -f -p 80 -h /…"   2 minutes ago   Exited (0) 1 minute ago                           old\n')
  t.equal(imagesTable([
    { id: 'sha256:190c5d1d7e280325', tags: ['127.0.0.1:5000/demo/web:1', 'web:latest'], digests: [], createdAt: '2025-12-31T01:00:00Z', size: 1_981_234, labels: {} },
    { id: 'sha256:aa00bb11cc22dd33', tags: [], digests: [], createdAt: '2026-01-01T00:59:59Z', size: 512, labels: {} }
  ], now),
  'REPOSITORY                TAG      IMAGE ID       CREATED        SIZE\n' +
  '127.0.0.1:5000/demo/web   1        190c5d1d7e28   24 hours ago   1.98MB\n' +
  'web                       latest   190c5d1d7e28   24 hours ago   1.98MB\n' +
  '<none>                    <none>   aa00bb11cc22   1 second ago   512B\n')
  t.equal(psTable([]), 'CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES\n', 'no containers: the header alone')
})

const progress = (id: string, phase: Extract<PullEvent, { type: 'progress' }>['layer']['phase'], current: number, total: number | null, fraction: number, done: number): PullEvent =>
  ({ type: 'progress', layer: { id, phase, current, total }, fraction, layers: { total: 2, done } })
const pull: PullEvent[] = [
  { type: 'queued', image: '127.0.0.1:5000/demo/web:1' },
  { type: 'started', image: '127.0.0.1:5000/demo/web:1' },
  progress('aaaaaaaaaaaa', 'exists', 0, 1000, 0.25, 1),
  progress('bbbbbbbbbbbb', 'downloading', 500_000, 3_000_000, 0.4, 1),
  progress('bbbbbbbbbbbb', 'downloading', 1_500_000, 3_000_000, 0.6, 1),
  progress('bbbbbbbbbbbb', 'extracting', 32_768, 3_000_000, 0.8, 1),
  progress('bbbbbbbbbbbb', 'complete', 3_000_000, 3_000_000, 1, 2),
  { type: 'pulled', image: { id: 'sha256:1', reference: '127.0.0.1:5000/demo/web:1', digest: 'sha256:2', tags: [] } }
]

t.test('in a pipe: docker\'s lines, one per layer state', async t => {
  let text = ''
  const renderer = lineRenderer(line => { text += line })
  for (const event of pull) renderer.event(event)
  renderer.stop()
  t.equal(text, '127.0.0.1:5000/demo/web:1: Waiting for a pull slot\n1: Pulling from demo/web\naaaaaaaaaaaa: Already exists\nbbbbbbbbbbbb: Downloading\nbbbbbbbbbbbb: Extracting\nbbbbbbbbbbbb: Pull complete\n')
  let byDigest = ''
  const digest = lineRenderer(line => { byDigest += line })
  for (const image of ['localhost/app@sha256:abc', 'library/busybox', 'registry.example.com/team/app:2']) digest.event({ type: 'started', image })
  t.equal(byDigest, 'sha256:abc: Pulling from app\nlatest: Pulling from library/busybox\n2: Pulling from team/app\n')
})

t.test('at a terminal: bars whose last frame shows every layer done', async t => {
  const screen = Object.assign(new PassThrough(), { isTTY: true, columns: 100 }) as unknown as NodeJS.WriteStream & PassThrough
  let text = ''
  screen.on('data', (chunk: Buffer) => { text += chunk })
  const renderer = barRenderer(screen)
  for (const event of pull) renderer.event(event)
  renderer.stop()
  t.match(text, /^127\.0\.0\.1:5000\/demo\/web:1: Waiting for a pull slot\n1: Pulling from demo\/web\n/)
  t.match(text, /total {8}█{30} 100% 2\/2 layers/)
  t.match(text, /aaaaaaaaaaaa █{30} Already exists/)
  t.match(text, /bbbbbbbbbbbb █{30} Pull complete/)
})

/** A fetch that answers each request with the next of `answers` (an Error is a failed connection), keeping the requests. */
function scripted (answers: Array<Response | Error>) {
  const requests: Request[] = []
  const fetch = async (request: Request): Promise<Response> => {
    requests.push(request)
    const answer = answers.shift()
    if (!answer) throw new Error(`no answer scripted for ${request.method} ${request.url}`)
    if (answer instanceof Error) throw answer
    return answer
  }
  return { requests, fetch }
}
const unavailable = () => new Response(JSON.stringify({ type: 'https://berth.dev/problems/engine_unavailable', title: 'The engine is unavailable', status: 503, detail: 'cannot reach the container engine', code: 'engine_unavailable', requestId: 'r1' }), { status: 503, headers: { 'content-type': 'application/problem+json' } })
const answer = (type: string, text: string) => new Response(text, { status: 200, headers: { 'content-type': type } })

t.test('events reconnect after a failed connection, a 503 and an ended stream, resuming with Last-Event-ID', async t => {
  const { requests, fetch } = scripted([
    new TypeError('fetch failed'),
    unavailable(),
    answer('text/event-stream', 'retry: 5\nid: 1\ndata: {"action":"create"}\n\nid: 2\ndata: {"action":"start"}\n\n'),
    answer('text/event-stream', 'id: 3\ndata: {"action":"die"}\n\n')
  ])
  const berth = createBerthClient({ url: 'http://berth.test/', token: 'secret', fetch })
  const got: string[] = []
  for await (const message of berth.events({ retryMs: 1 })) {
    got.push(`${message.id} ${message.event.action}`)
    if (got.length === 3) break
  }
  t.same(got, ['1 create', '2 start', '3 die'])
  t.same(requests.map(request => [request.url, request.headers.get('last-event-id'), request.headers.get('authorization')]), [
    ['http://berth.test/v1/events', null, 'Bearer secret'],
    ['http://berth.test/v1/events', null, 'Bearer secret'],
    ['http://berth.test/v1/events', null, 'Bearer secret'],
    ['http://berth.test/v1/events', '2', 'Bearer secret']
  ], 'the reconnect after the stream ended sends the last id')

  const once = scripted([unavailable()])
  const refused = await readAll(createBerthClient({ url: 'http://berth.test', fetch: once.fetch }).events({ reconnect: false })).catch((error: unknown) => error)
  t.ok(refused instanceof BerthProblem && refused.code === 'engine_unavailable', 'without reconnecting, the 503 is thrown')
  const ended = scripted([answer('text/event-stream', 'id: 9\ndata: {"action":"x"}\n\n')])
  t.equal((await readAll(createBerthClient({ url: 'http://berth.test', fetch: ended.fetch }).events({ reconnect: false }))).length, 1, 'and an ended stream ends the iteration')
})

t.test('a followed log resumes from the last line\'s time, skipping the lines of that time it gave', async t => {
  const line = (text: string, time: string) => JSON.stringify({ stream: 'stdout', line: text, time }) + '\n'
  const running = () => new Response(JSON.stringify({ state: 'running' }), { status: 200, headers: { 'content-type': 'application/json' } })
  const exited = () => new Response(JSON.stringify({ state: 'exited' }), { status: 200, headers: { 'content-type': 'application/json' } })
  const { requests, fetch } = scripted([
    unavailable(),
    answer('application/x-ndjson', line('a', 't1') + line('b', 't2') + line('c', 't2')),
    running(),
    // berth's `since` is inclusive: the two lines of t2 come again, then a third of the same time.
    answer('application/x-ndjson', line('b', 't2') + line('c', 't2') + line('d', 't2') + line('e', 't3')),
    // The state check fails: the log is asked for again, and ends; then the state says it stopped.
    new TypeError('fetch failed'),
    answer('application/x-ndjson', line('e', 't3')),
    exited()
  ])
  const berth = createBerthClient({ url: 'http://berth.test', fetch })
  const lines = await readAll(berth.logs('web', { follow: true, tail: '10' }, { retryMs: 1 }))
  t.same(lines, ['a', 'b', 'c', 'd', 'e'].map(text => ({ stream: 'stdout', line: text })))
  t.same(requests.map(request => { const url = new URL(request.url); return `${request.method} ${url.pathname}${url.search}` }), [
    'GET /v1/containers/web/logs?follow=true&tail=10&timestamps=true',
    'GET /v1/containers/web/logs?follow=true&tail=10&timestamps=true',
    'GET /v1/containers/web',
    'GET /v1/containers/web/logs?follow=true&tail=all&timestamps=true&since=t2',
    'GET /v1/containers/web',
    'GET /v1/containers/web/logs?follow=true&tail=all&timestamps=true&since=t3',
    'GET /v1/containers/web'
  ])

  const gone = scripted([answer('application/x-ndjson', line('a', 't1')), new Response(null, { status: 404 })])
  t.same((await readAll(createBerthClient({ url: 'http://berth.test', fetch: gone.fetch }).logs('web', { follow: true }))).map(entry => entry.line), ['a'], 'a removed container ends the log')
})

t.test('a progress stream that stops before its outcome is an error', async t => {
  const { fetch } = scripted([answer('application/x-ndjson', '{"type":"started","image":"web:1"}\n')])
  await t.rejects(readAll(createBerthClient({ url: 'http://berth.test', fetch }).pull({ image: 'web:1' })), { message: 'the pull stream ended before its outcome' })
  const job = scripted([answer('text/event-stream', 'id: 1\ndata: {"type":"error","problem":{"type":"t","title":"t","status":502,"detail":"the registry failed","code":"pull_failed","requestId":"r"}}\n\n')])
  await t.rejects(readAll(createBerthClient({ url: 'http://berth.test', fetch: job.fetch }).jobEvents('00000000-0000-0000-0000-000000000000')), { name: 'BerthProblem', code: 'pull_failed', detail: 'the registry failed' })
})

// ---- Types: checked by `tsc --noEmit` over test/ (npm test); a wrong type, or an @ts-expect-error
// that expects no error, fails the type-check.

/** true when A and B are the same type, not merely assignable one way. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

t.test('Problem is a union by code, from the document: narrowing on code types the members it adds', async t => {
  const sure: Array<true> = [
    true satisfies Equals<ProblemCode, ErrorCode>,
    true satisfies Equals<ProblemOf<'port_conflict'>['port'], number | undefined>,
    true satisfies Equals<ProblemOf<'port_conflict'>['holder'], { id: string, name: string } | undefined>,
    true satisfies Equals<ProblemOf<'quota_exceeded'>['limit'], 'containers' | 'memory' | 'cpus' | 'gpus' | 'storage' | undefined>,
    true satisfies Equals<ProblemOf<'not_supported'>['backend'], 'docker' | 'swarm' | 'kubernetes' | undefined>
  ]
  t.equal(sure.length, 5)

  function said (problem: Problem): string {
    switch (problem.code) {
      case 'port_conflict': return `port ${problem.port ?? '?'} held by ${problem.holder?.name ?? 'someone'}`
      case 'validation_failed': return (problem.errors ?? []).map(error => `${error.location}${error.path}`).join(', ')
      case 'quota_exceeded': return `${problem.limit ?? '?'}: ${problem.used ?? '?'} of ${problem.quota ?? '?'}`
      default: return problem.detail
    }
  }
  const conflict: Problem = { type: 'https://berth.dev/problems/port_conflict', title: 'The host port is already allocated', status: 409, detail: 'host port 8080 is already allocated by container web', code: 'port_conflict', requestId: 'r', port: 8080, holder: { id: 'abc', name: 'web' } }
  t.equal(said(conflict), 'port 8080 held by web')
  t.equal(said({ type: 't', title: 't', status: 404, detail: 'container web was not found', code: 'not_found', requestId: 'r' }), 'container web was not found')
  // @ts-expect-error: a port_conflict's port is a number, not a string
  const wrongPort: ProblemOf<'port_conflict'> = { ...conflict, code: 'port_conflict', port: '8080' }
  t.ok(wrongPort)
  function portOf (problem: Problem): number | undefined {
    // @ts-expect-error: before narrowing, no member a code adds is known
    return problem.port
  }
  t.equal(portOf(conflict), 8080)

  const error = new BerthProblem(conflict)
  if (error.is('port_conflict')) {
    const holder: string | undefined = error.problem.holder?.name
    t.equal(holder, 'web', 'is(code) narrows the problem it carries')
  }
  t.notOk(error.is('not_found'))
  if (error.problem.code === 'port_conflict') t.equal(error.problem.port, 8080, 'and so does narrowing on problem.code')
})

t.test('options take undefined where they are optional (exactOptionalPropertyTypes)', async t => {
  const token: string | undefined = undefined
  const signal: AbortSignal | undefined = undefined
  const { requests, fetch } = scripted([answer('text/event-stream', 'id: 1\ndata: {"action":"create"}\n\n')])
  const berth = createBerthClient({ url: 'http://berth.test', token, fetch })
  const events = await readAll(berth.events({ signal, reconnect: false, retryMs: undefined, lastEventId: undefined }))
  t.equal(events.length, 1)
  t.equal(requests[0]?.headers.get('authorization'), null, 'no token, no Authorization')
})
