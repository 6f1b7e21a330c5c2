// Issue 10, item 6: slow clients over real TCP. Receiving a request — its headers, then its body —
// is bounded, so a client trickling bytes cannot hold a connection; hundreds of them do not starve
// anybody else; and long responses (log follow, event streams) are not cut: the bounds are on
// receiving the request only.
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { TOKENS, auth, build, cleanupAfter, name, runContainer, waitFor } from './helpers.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

interface Outcome {
  /** From the first byte sent to the connection's close. */
  ms: number
  status: number | null
  headers: Record<string, string>
  body: string
}

/** A client that sends `head` at once, then one byte of `drip` every `everyMs` until the server hangs up. */
class SlowClient {
  readonly socket: Socket
  readonly sent: Promise<void>
  readonly closed: Promise<Outcome>
  isClosed = false

  constructor (port: number, head: string, drip: string, everyMs: number) {
    this.socket = connect(port, '127.0.0.1')
    let received = ''
    let timer: NodeJS.Timeout | undefined
    let start = 0
    this.socket.setEncoding('utf8')
    this.socket.on('data', (chunk: string) => { received += chunk })
    this.socket.on('error', () => {})
    this.sent = new Promise(resolve => {
      this.socket.once('connect', () => {
        start = Date.now()
        this.socket.write(head, () => resolve())
        let i = 0
        timer = setInterval(() => { if (this.socket.writable) this.socket.write(drip[i++ % drip.length] as string) }, everyMs)
      })
    })
    this.closed = new Promise(resolve => {
      this.socket.once('close', () => {
        clearInterval(timer)
        this.isClosed = true
        resolve({ ms: Date.now() - start, ...parseResponse(received) })
      })
    })
  }
}

/**
 * Makes slow clients of one test, and hangs all of them up when it ends (teardowns run last-first, so
 * before the app's close, which would otherwise wait on them when a test fails before they are cut).
 */
function slowClients (t: Test, port: number) {
  const clients: SlowClient[] = []
  t.teardown(() => { for (const client of clients) client.socket.destroy() })
  return (head: string, drip: string, everyMs: number): SlowClient => {
    const client = new SlowClient(port, head, drip, everyMs)
    clients.push(client)
    return client
  }
}

function parseResponse (raw: string): Omit<Outcome, 'ms'> {
  const end = raw.indexOf('\r\n\r\n')
  if (end === -1) return { status: null, headers: {}, body: raw }
  const [statusLine = '', ...lines] = raw.slice(0, end).split('\r\n')
  const headers = Object.fromEntries(lines.map(line => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(end + 4) }
}

/** Rejects when `promise` has not settled within `ms`: every wait in this file is bounded. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

const postHead = (headers: string) => `POST /v1/containers HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n${headers}\r\n{`
// Slack for a loaded machine: the check runs every quarter of the bound, but timers can run late.
const SLACK_MS = 2000

t.test('a trickled body is cut at the request bound with 408 problem+json; without a token it is refused at once', async t => {
  const app = await build(t, { config: { limits: { headersTimeoutMs: 500, requestTimeoutMs: 1000 } } })
  const slow = slowClients(t, Number(new URL(await listen(app)).port))

  const withToken = slow(postHead(`Authorization: Bearer ${TOKENS.alice.token}\r\n`), ' ', 100)
  const cut = await within(withToken.closed, 1000 + SLACK_MS + 3000, 'the slow body was never cut')
  t.ok(cut.ms >= 1000, `not cut before the bound (${cut.ms} ms)`)
  t.ok(cut.ms < 1000 + SLACK_MS, `cut within the bound (${cut.ms} ms)`)
  t.equal(cut.status, 408)
  t.equal(cut.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.equal(cut.headers.connection, 'close')
  t.match(JSON.parse(cut.body), { type: 'https://berth.dev/problems/request_timeout', code: 'request_timeout', status: 408, detail: /within 1000 ms/, requestId: String })
  t.equal(cut.headers['x-request-id'], JSON.parse(cut.body).requestId)

  const withoutToken = slow(postHead(''), ' ', 100)
  const refused = await within(withoutToken.closed, 1000 + SLACK_MS, 'the unauthenticated slow body was not ended')
  t.equal(refused.status, 401, 'answered 401 before the body arrived')
  t.equal(refused.headers.connection, 'close', 'and the connection is not kept for the rest of the body')
  t.ok(refused.ms < 1000, `closed at once, not held until the bound (${refused.ms} ms)`)
})

t.test('header slowloris is cut at the headers bound; a silent connection too', async t => {
  const app = await build(t, { config: { limits: { headersTimeoutMs: 500, requestTimeoutMs: 1000 } } })
  const slow = slowClients(t, Number(new URL(await listen(app)).port))
  const slowloris = slow('GET /v1/containers HTTP/1.1\r\nHost: berth\r\nX-Padding: ', 'abcdefgh', 50)
  const silent = slow('', '', 60_000)
  for (const [what, client] of [['slowloris', slowloris], ['silent', silent]] as const) {
    const outcome = await within(client.closed, 500 + SLACK_MS + 3000, `${what} was never cut`)
    t.ok(outcome.ms >= 500 && outcome.ms < 500 + SLACK_MS, `${what}: cut at the headers bound (${outcome.ms} ms)`)
    t.equal(outcome.status, 408, what)
    t.match(JSON.parse(outcome.body), { code: 'request_timeout', status: 408 }, what)
  }
})

t.test('300 slow connections do not starve normal requests, and each is cut within the bound', async t => {
  const requestTimeoutMs = 3000
  const app = await build(t, { config: { limits: { headersTimeoutMs: 1000, requestTimeoutMs } } })
  const base = await listen(app)
  const client = slowClients(t, Number(new URL(base).port))
  const slow = Array.from({ length: 300 }, () => client(postHead(`Authorization: Bearer ${TOKENS.alice.token}\r\n`), ' ', 250))
  await within(Promise.all(slow.map(client => client.sent)), 10_000, 'the slow clients did not connect')
  // Every slow client is on the server before the normal requests start.
  const connections = async () => await new Promise<number>((resolve, reject) => app.server.getConnections((error, count) => error ? reject(error) : resolve(count)))
  await waitFor('all 300 slow connections to reach the server', connections, count => count >= 300, 10_000)

  const statuses: number[] = []
  for (let i = 0; i < 10; i++) statuses.push((await fetch(`${base}/healthz`)).status)
  for (let i = 0; i < 5; i++) statuses.push((await fetch(`${base}/v1/images`, { headers: auth('reader') })).status)
  t.same(statuses, Array(15).fill(200), 'normal requests are answered')
  t.equal(slow.filter(client => client.isClosed).length, 0, 'while all 300 slow connections were still open')

  const outcomes = await within(Promise.all(slow.map(client => client.closed)), requestTimeoutMs + SLACK_MS + 10_000, 'the slow connections were not all cut')
  t.same([...new Set(outcomes.map(outcome => outcome.status))], [408], 'each slow connection got 408')
  const late = outcomes.filter(outcome => outcome.ms < requestTimeoutMs || outcome.ms >= requestTimeoutMs + SLACK_MS)
  t.same(late.map(outcome => outcome.ms), [], 'each was cut within the bound')
})

t.test('long responses outlive the request bound: a followed log and an event stream', async t => {
  const app = await build(t, { config: { limits: { headersTimeoutMs: 200, requestTimeoutMs: 400 }, streams: { heartbeatMs: 100 } } })
  const base = await listen(app)
  const run = await runContainer(app, 'alice', { name: name('ticking'), command: ['sh', '-c', 'while true; do echo tick; sleep 0.1; done'] })
  t.equal(run.statusCode, 201, run.body)
  const follow = await StreamClient.open(`${base}/v1/containers/${name('ticking')}/logs?follow=true`, { headers: auth('alice') })
  const events = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth('alice'), accept: 'text/event-stream' } })
  t.teardown(() => { follow.close(); events.close() })
  t.equal(follow.status, 200)
  t.equal(events.status, 200)
  // A measurement window, not a wait for an event: well past the bound plus its checks, so any cut
  // would have happened within it.
  const opened = Date.now()
  let lines = 0
  let heartbeats = 0
  while (Date.now() - opened < 400 * 5) {
    if (await follow.line(5000) !== 'tick') throw new Error('the followed log ended or changed')
    lines++
  }
  while (Date.now() - opened < 400 * 6) {
    const message = await events.sse(5000)
    if (message === null) throw new Error('the event stream ended')
    if (message.comments.includes('heartbeat')) heartbeats++
  }
  t.ok(lines > 5, `the log kept flowing for ${Date.now() - opened} ms, 6 times the request bound (${lines} lines)`)
  t.ok(heartbeats > 5, `the event stream too (${heartbeats} heartbeats)`)
  t.equal(await follow.line(5000), 'tick', 'and is still open')
})

t.test('what the HTTP parser refuses is problem+json too: oversized headers, bytes that are not HTTP', async t => {
  const app = await build(t)
  const slow = slowClients(t, Number(new URL(await listen(app)).port))
  const oversized = slow(`GET /v1/containers HTTP/1.1\r\nHost: berth\r\nX-Padding: ${'a'.repeat(20 * 1024)}\r\n\r\n`, '', 60_000)
  const garbage = slow('HELLO THERE\r\n\r\n', '', 60_000)
  const tooLarge = await within(oversized.closed, 5000, 'oversized headers were not answered')
  t.equal(tooLarge.status, 431)
  t.equal(tooLarge.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.match(JSON.parse(tooLarge.body), { code: 'headers_too_large', status: 431 })
  const notHttp = await within(garbage.closed, 5000, 'garbage was not answered')
  t.equal(notHttp.status, 400)
  t.match(JSON.parse(notHttp.body), { code: 'validation_failed', status: 400, detail: 'the request is not valid HTTP/1.1' })
})
