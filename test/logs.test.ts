// docker logs through berth on the real engine: stdout and stderr told apart (framed, and TTY without
// frames), tail, since/until to the nanosecond, timestamps, follow, and ownership.
import t from 'tap'
import { HOLD, RUN, assertProblem, auth, build, cleanupAfter, docker, letGo, name, runContainer, waitFor, type App, type TokenName } from './helpers.ts'
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

// The engine copies stdout and stderr in two goroutines, so how the two interleave in its log is the
// engine's timing, not berth's: the tests check each stream's lines in order, and that every form of
// the log (NDJSON, text, tail) gives the engine's one order.
const SCRIPT = 'echo out1; echo err1 >&2; printf "two\\nlines\\n"; printf "h\\303\\251llo w\\303\\266rld \\342\\234\\223\\n" >&2; printf "no newline"'

/** The lines of each stream, in order. */
function byStream (entries: Entry[]): Record<string, string[]> {
  const streams: Record<string, string[]> = { stdout: [], stderr: [] }
  for (const entry of entries) (streams[entry.stream] ??= []).push(entry.line)
  return streams
}

t.test('stdout and stderr, demultiplexed from the engine\'s frames, as NDJSON and as plain text', async t => {
  const app = await build(t)
  const id = await run(app, 'logs', SCRIPT)
  await exited(id)
  const entries = await ndjson(app, id)
  t.same(byStream(entries), { stdout: ['out1', 'two', 'lines', 'no newline'], stderr: ['err1', 'héllo wörld ✓'] }, 'each line on its stream, in order')
  t.same(entries.filter(entry => Object.keys(entry).sort().join() !== 'line,stream'), [], 'a stream and a line, nothing else unless asked')
  const text = await app.inject({ method: 'GET', url: `/v1/containers/${name('logs')}/logs`, headers: auth() })
  t.equal(text.statusCode, 200)
  t.equal(text.headers['content-type'], 'text/plain; charset=utf-8', 'plain text by default')
  t.equal(text.body, entries.map(entry => `${entry.line}\n`).join(''), 'the same lines in the same order')
  t.ok(text.headers['x-request-id'])

  t.same(await ndjson(app, id, '?tail=2'), entries.slice(-2), 'tail: the last lines')
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
  // The container holds still after its first line until the test lets it go on: what the test
  // checks in between cannot race the container's own timeline.
  const id = await run(app, 'follow', `echo tick1; ${HOLD}; echo tick2; echo tick3; echo bye >&2`)
  const client = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true`, { headers: { ...auth(), accept: 'application/x-ndjson' } })
  t.equal(client.status, 200)
  t.equal(client.header('content-type'), 'application/x-ndjson')
  t.same(await client.json(), { stream: 'stdout', line: 'tick1' })
  t.equal((await docker.getContainer(id).inspect()).State.Running, true, 'the first line came while the container still ran')
  await letGo(id)
  t.same(byStream(await client.allJson()), { stdout: ['tick2', 'tick3'], stderr: ['bye'] }, 'the rest, as it came')
  t.equal((await docker.getContainer(id).inspect()).State.Running, false, 'the stream ended with the container')
})

t.test('the engine call deadline bounds a stream\'s setup, not its length', async t => {
  // The container is run with the usual deadline (a start on a busy engine may take a while); only
  // the app that follows its log has the short one.
  const id = await run(await build(t), 'long', `echo beat1; ${HOLD}; echo beat2`)
  const deadlineMs = 2000
  const app = await build(t, { config: { engine: { timeoutMs: deadlineMs } } })
  const base = await listen(app)
  const opened = performance.now()
  const client = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true`, { headers: auth() })
  t.equal(client.status, 200)
  t.equal(await client.line(), 'beat1')
  // The condition is the deadline itself: the stream has been open for twice it, and a cut would have come.
  await waitFor('twice the deadline to pass with the stream open', () => performance.now() - opened, open => open > 2 * deadlineMs)
  await letGo(id)
  const rest = []
  for (let line = await client.line(); line !== null; line = await client.line()) rest.push(line)
  t.same(rest, ['beat2'], 'the stream outlived its deadline and ended with the container')
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
