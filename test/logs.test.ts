// docker logs through berth on the real engine: stdout and stderr told apart (framed, and TTY without
// frames), tail, since/until to the nanosecond, timestamps, follow, and ownership.
import t from 'tap'
import { RUN, auth, build, cleanupAfter, docker, name, runBody, type TokenName } from './helpers.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>
interface Entry { stream: string, line: string, time?: string }

async function run (app: App, suffix: string, script: string, extra: Record<string, unknown> = {}, who: TokenName = 'admin'): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody({ name: name(suffix), command: ['sh', '-c', script], ...extra }) })
  if (response.statusCode !== 201) throw new Error(`run answered ${response.statusCode}: ${response.body}`)
  return response.json().id
}

async function exited (id: string): Promise<void> {
  const deadline = Date.now() + 20_000
  while ((await docker.getContainer(id).inspect()).State.Running) {
    if (Date.now() > deadline) throw new Error(`container ${id} still runs`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function ndjson (app: App, id: string, query = '', who: TokenName = 'admin'): Promise<Entry[]> {
  const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs${query}`, headers: { ...auth(who), accept: 'application/x-ndjson' } })
  if (response.statusCode !== 200) throw new Error(`logs answered ${response.statusCode}: ${response.body}`)
  return response.body.split('\n').filter(Boolean).map(line => JSON.parse(line))
}

// Separate writes a little apart: the engine copies stdout and stderr in two goroutines, so only
// writes apart in time keep their order in the log.
const SCRIPT = 'echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; printf "two\\nlines\\n"; sleep 0.1; printf "h\\303\\251llo w\\303\\266rld \\342\\234\\223\\n" >&2; sleep 0.1; printf "no newline"'

t.test('stdout and stderr, demultiplexed from the engine\'s frames, as NDJSON and as plain text', async t => {
  const app = await build(t)
  const id = await run(app, 'logs', SCRIPT)
  await exited(id)
  t.same(await ndjson(app, id), [
    { stream: 'stdout', line: 'out1' },
    { stream: 'stderr', line: 'err1' },
    { stream: 'stdout', line: 'two' },
    { stream: 'stdout', line: 'lines' },
    { stream: 'stderr', line: 'héllo wörld ✓' },
    { stream: 'stdout', line: 'no newline' }
  ])
  const text = await app.inject({ method: 'GET', url: `/v1/containers/${name('logs')}/logs`, headers: auth() })
  t.equal(text.statusCode, 200)
  t.equal(text.headers['content-type'], 'text/plain; charset=utf-8', 'plain text by default')
  t.equal(text.body, 'out1\nerr1\ntwo\nlines\nhéllo wörld ✓\nno newline\n')
  t.ok(text.headers['x-request-id'])

  t.same((await ndjson(app, id, '?tail=2')).map(entry => entry.line), ['héllo wörld ✓', 'no newline'], 'tail: the last lines')
  t.same(await ndjson(app, id, '?tail=0'), [])
})

t.test('timestamps to the nanosecond, and since/until that take them back exactly', async t => {
  const app = await build(t)
  const id = await run(app, 'times', 'for i in 1 2 3 4; do echo line$i; sleep 0.2; done')
  await exited(id)
  const entries = await ndjson(app, id, '?timestamps=true')
  t.same(entries.map(entry => [entry.stream, entry.line]), [['stdout', 'line1'], ['stdout', 'line2'], ['stdout', 'line3'], ['stdout', 'line4']])
  for (const entry of entries) t.match(entry.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/)
  const [, second, third] = entries as [Entry, Entry, Entry, Entry]

  const since = await ndjson(app, id, `?since=${encodeURIComponent(second.time as string)}`)
  t.same(since.map(entry => entry.line), ['line2', 'line3', 'line4'], 'since the exact time of a line includes that line, not the one before')
  const until = await ndjson(app, id, `?until=${encodeURIComponent(third.time as string)}`)
  t.same(until.map(entry => entry.line), ['line1', 'line2', 'line3'], 'until the exact time of a line')
  const between = await ndjson(app, id, `?since=${encodeURIComponent(second.time as string)}&until=${encodeURIComponent(second.time as string)}`)
  t.same(between.map(entry => entry.line), ['line2'])

  const seconds = Math.floor(Date.parse(entries[0]?.time as string) / 1000)
  t.equal((await ndjson(app, id, `?since=${seconds}`)).length, 4, 'Unix seconds')
  t.equal((await ndjson(app, id, '?since=1h')).length, 4, 'a duration back from now')
  t.equal((await ndjson(app, id, `?since=${seconds + 3600}`)).length, 0, 'nothing after the last line')

  const text = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?timestamps=true&tail=1`, headers: auth() })
  t.equal(text.body, `${entries[3]?.time} line4\n`, 'plain text puts the time first, as docker logs -t does')

  for (const bad of ['yesterday', '2024-13-45T99:00:00Z', '10x']) {
    const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?since=${bad}`, headers: auth() })
    t.equal(response.statusCode, 400, bad)
    t.match(response.json(), { code: 'validation_failed' })
  }
})

t.test('follow: lines arrive while the container runs, and the stream ends when it stops', async t => {
  const app = await build(t)
  const base = await listen(app)
  const id = await run(app, 'follow', 'for i in 1 2 3; do echo tick$i; sleep 0.4; done; echo bye >&2')
  const client = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true`, { headers: { ...auth(), accept: 'application/x-ndjson' } })
  t.equal(client.status, 200)
  t.equal(client.header('content-type'), 'application/x-ndjson')
  t.same(await client.json(), { stream: 'stdout', line: 'tick1' })
  t.equal((await docker.getContainer(id).inspect()).State.Running, true, 'the first line came while the container still ran')
  t.same(await client.allJson(), [{ stream: 'stdout', line: 'tick2' }, { stream: 'stdout', line: 'tick3' }, { stream: 'stderr', line: 'bye' }])
  t.equal((await docker.getContainer(id).inspect()).State.Running, false, 'the stream ended with the container')
})

t.test('the engine call deadline bounds a stream\'s setup, not its length', async t => {
  // The container is run with the usual deadline (a start on a busy engine may take a while); only
  // the app that follows its log has the short one.
  const id = await run(await build(t), 'long', 'for i in 1 2 3 4 5 6 7 8; do echo beat$i; sleep 0.75; done')
  const app = await build(t, { config: { engine: { timeoutMs: 2000 } } })
  const base = await listen(app)
  const started = Date.now()
  const client = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true`, { headers: auth() })
  t.equal(client.status, 200)
  const lines = []
  for (let line = await client.line(); line !== null; line = await client.line()) lines.push(line)
  t.same(lines, ['beat1', 'beat2', 'beat3', 'beat4', 'beat5', 'beat6', 'beat7', 'beat8'])
  t.ok(Date.now() - started > 4000, `followed for ${Date.now() - started} ms, twice the 2000 ms deadline`)
})

t.test('a TTY container has no frames and no stderr: its output is stdout, without carriage returns', async t => {
  const app = await build(t)
  const id = await run(app, 'tty', 'echo out; echo err >&2; printf "a\\nb"', { tty: true })
  await exited(id)
  const info = await docker.getContainer(id).inspect()
  t.equal(info.Config.Tty, true, 'the run body\'s tty reached the engine')
  t.same(await ndjson(app, id), [
    { stream: 'stdout', line: 'out' },
    { stream: 'stdout', line: 'err' },
    { stream: 'stdout', line: 'a' },
    { stream: 'stdout', line: 'b' }
  ])
  const text = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth() })
  t.equal(text.body, 'out\nerr\na\nb\n')
})

t.test('logs belong to the container\'s token: another gets 404; unknown containers are 404; Accept is checked', async t => {
  const app = await build(t)
  const id = await run(app, 'owned', 'echo secret-of-alice', {}, 'alice')
  await exited(id)
  t.same(await ndjson(app, id, '', 'alice'), [{ stream: 'stdout', line: 'secret-of-alice' }])
  t.same(await ndjson(app, id, '', 'admin'), [{ stream: 'stdout', line: 'secret-of-alice' }], 'admins see every container')
  for (const target of [id, name('owned')]) {
    const bob = await app.inject({ method: 'GET', url: `/v1/containers/${target}/logs`, headers: auth('bob') })
    t.equal(bob.statusCode, 404)
    t.same(bob.json(), {
      type: 'https://berth.dev/problems/not_found',
      title: 'No such resource',
      status: 404,
      detail: `container ${target} was not found`,
      code: 'not_found',
      instance: `/v1/containers/${target}/logs`,
      requestId: bob.headers['x-request-id']
    })
  }
  const missing = await app.inject({ method: 'GET', url: `/v1/containers/${RUN}-never-was/logs`, headers: auth() })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'not_found')
  const json = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: { ...auth('alice'), accept: 'application/json' } })
  t.equal(json.statusCode, 406)
  t.match(json.json(), { code: 'not_acceptable', accepts: ['text/plain', 'application/x-ndjson'] })
  const badTail = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?tail=-1`, headers: auth('alice') })
  t.equal(badTail.statusCode, 400)
})
