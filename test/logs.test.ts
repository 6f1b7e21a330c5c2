// docker logs through berth on the real engine: stdout and stderr told apart (framed, and TTY without
// frames), tail, since/until to the nanosecond, timestamps, follow, and ownership.
import t from 'tap'
import { RUN, assertProblem, auth, build, cleanupAfter, docker, name, runContainer, type App, type TokenName } from './helpers.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

interface Entry { stream: string, line: string, time?: string }

/** Runs `script` in a container named after `suffix`, as `who`; answers its id. */
async function run (app: App, suffix: string, script: string, extra: Record<string, unknown> = {}, who: TokenName = 'admin'): Promise<string> {
  const response = await runContainer(app, who, { name: name(suffix), command: ['sh', '-c', script], ...extra })
  if (response.statusCode !== 201) throw new Error(`run answered ${response.statusCode}: ${response.body}`)
  return response.json().id
}

/** Waits until the container has stopped, as docker wait does: on the engine's word, not by polling. */
async function exited (id: string): Promise<void> {
  await docker.getContainer(id).wait({ condition: 'not-running' })
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

  // Not of the form of a time is refused by the schema; of the form but no real time, by berth's parser.
  const unlike = { detail: /^querystring\/since must match pattern "/, message: /^must match pattern "/ }
  const unreal = { detail: 'since must be an RFC 3339 time, Unix seconds or a duration such as 10m', message: 'is not a time' }
  for (const [bad, { detail, message }] of [['yesterday', unlike], ['2024-13-45T99:00:00Z', unreal], ['10x', unlike]] as const) {
    const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?since=${bad}`, headers: auth() })
    assertProblem(t, response, 400, { code: 'validation_failed', detail, errors: [{ location: 'querystring', path: '/since', message }] }, bad)
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
    assertProblem(t, bob, 404, { code: 'not_found', detail: `container ${target} was not found`, instance: `/v1/containers/${target}/logs` }, `bob reads ${target}'s log`)
  }
  const missing = await app.inject({ method: 'GET', url: `/v1/containers/${RUN}-never-was/logs`, headers: auth() })
  assertProblem(t, missing, 404, { code: 'not_found', detail: `container ${RUN}-never-was was not found` }, 'an unknown container')
  const json = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: { ...auth('alice'), accept: 'application/json' } })
  assertProblem(t, json, 406, { code: 'not_acceptable', detail: 'this answers in text/plain or application/x-ndjson; the Accept header allows none of them', accepts: ['text/plain', 'application/x-ndjson'] }, 'JSON is not a log format')
  const badTail = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?tail=-1`, headers: auth('alice') })
  assertProblem(t, badTail, 400, {
    code: 'validation_failed',
    detail: 'querystring/tail must match pattern "^(all|[0-9]{1,9})$"',
    errors: [{ location: 'querystring', path: '/tail', message: 'must match pattern "^(all|[0-9]{1,9})$"' }]
  }, 'a negative tail')
})
