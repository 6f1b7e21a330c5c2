// Issue 10, item 12: tokens change without a restart. BERTH_TOKENS_FILE is re-read on SIGHUP and
// when it changes; a removed token stops working at once, on its open streams too; a bad file keeps
// the tokens in use and the log says why, without quoting the file.
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { tokensFromEnv, type Config, type DeepPartial } from '../src/config.ts'
import { TokenStore, watchTokens } from '../src/access/token-store.ts'
import { start } from './berth-process.ts'
import { LogCapture, TOKENS, assertProblem, auth, build, cleanupAfter, env, freePort, name, runContainer, waitFor, type TokenName } from './helpers.ts'
import { RegistryProxy, pushLayeredImage } from './pull-fixtures.ts'
import { StreamClient, listen } from './stream-client.ts'

cleanupAfter(t)

function tokenFile (who: TokenName[], extra: object[] = []): string {
  return JSON.stringify([...who.map(name => ({ name, scopes: TOKENS[name].scopes, token: TOKENS[name].token })), ...extra])
}

/** Replaces the file the way editors do: write another, rename it over. */
function replaceFile (path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

/**
 * berth on a tokens file of alice and bob, with the reloader server.ts would give it: re-reading the
 * file when told to, and also when the file changes if `watch`. Closed and removed after the test.
 */
async function onTokensFile (t: Test, options: { watch?: boolean, config?: DeepPartial<Config> } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'berth-tokens-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'tokens.json')
  writeFileSync(file, tokenFile(['alice', 'bob']))
  const load = () => tokensFromEnv({ BERTH_TOKENS_FILE: file })
  const tokens = new TokenStore(load())
  const logs = new LogCapture()
  const app = await build(t, { tokens, logs, ...(options.config === undefined ? {} : { config: options.config }) })
  const reloader = watchTokens({ store: tokens, load, file: options.watch === true ? file : null, log: app.log })
  t.teardown(() => reloader.close())
  return { file, tokens, logs, app, reloader }
}

const TICKING = ['sh', '-c', 'while true; do echo tick; sleep 0.2; done']
/** How long a read waits for something to arrive before the test calls it a failure (a busy machine is slow). */
const READ_MS = 30_000

t.test('a token removed on reload is refused at once, and its open streams end; other tokens are unaffected', async t => {
  const { file, logs, app, reloader } = await onTokensFile(t, { config: { streams: { heartbeatMs: 100 } } })
  const base = await listen(app)

  for (const who of ['alice', 'bob'] as const) {
    const run = await runContainer(app, who, { name: name(`reload-${who}`), command: TICKING })
    t.equal(run.statusCode, 201, `${who} runs: ${run.body}`)
  }
  const follow = async (who: 'alice' | 'bob') => await StreamClient.open(`${base}/v1/containers/${name(`reload-${who}`)}/logs?follow=true`, { headers: auth(who) })
  const alicesLog = await follow('alice')
  const bobsLog = await follow('bob')
  const alicesEvents = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth('alice'), accept: 'text/event-stream' } })
  t.teardown(() => { alicesLog.close(); bobsLog.close(); alicesEvents.close() })
  t.equal(await alicesLog.line(), 'tick', 'alice follows her log')
  t.equal(await bobsLog.line(), 'tick', 'bob follows his')
  t.not(await alicesEvents.sse(), null, 'alice follows the events')
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('admin') })).statusCode, 401, 'admin is not in the file')

  writeFileSync(file, tokenFile(['bob']))
  t.same(reloader.reload('test'), { added: [], removed: ['alice'], changed: [] })

  const refused = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })
  assertProblem(t, refused, 401, { code: 'unauthorized', detail: 'the bearer token is not valid' }, 'alice\'s next request is refused')
  // What was already on its way may still arrive, the last line cut where the stream was cut; then it ends.
  const arrived: string[] = []
  for (let line = await alicesLog.line(READ_MS); line !== null; line = await alicesLog.line(READ_MS)) arrived.push(line)
  t.same(arrived.filter((line, i) => line !== 'tick' && !(i === arrived.length - 1 && 'tick'.startsWith(line))), [], `alice's log follow ended (${JSON.stringify(arrived.slice(-3))} last)`)
  for (let message = await alicesEvents.sse(READ_MS); message !== null; message = await alicesEvents.sse(READ_MS)) t.ok(message.comments.length > 0)
  t.pass('alice\'s event stream ended')
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('bob') })).statusCode, 200, 'bob is unaffected')
  for (let i = 0; i < 3; i++) t.equal(await bobsLog.line(READ_MS), 'tick', 'bob\'s follow goes on')
  t.match(logs.lines.filter(line => line.msg === 'tokens reloaded'), [{ level: 30, trigger: 'test', removed: ['alice'], added: [], changed: [], tokens: 1 }])
})

t.test('a token whose secret or scopes change: the old secret stops, the new one works, a narrowed scope applies at once', async t => {
  const tokens = new TokenStore(tokensFromEnv({ BERTH_TOKENS: `alice:write:${TOKENS.alice.token};bob:write:${TOKENS.bob.token}` }))
  const app = await build(t, { tokens, config: { streams: { heartbeatMs: 100 } } })
  const base = await listen(app)
  const events = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth('alice'), accept: 'text/event-stream' } })
  t.teardown(() => events.close())
  t.not(await events.sse(), null, 'alice follows the events')
  const rotated = 'alice-rotated-' + TOKENS.admin.token
  t.same(tokens.replace(tokensFromEnv({ BERTH_TOKENS: `alice:write:${rotated};bob:read:${TOKENS.bob.token}` })), { added: [], removed: [], changed: ['alice', 'bob'] })
  for (let message = await events.sse(READ_MS); message !== null; message = await events.sse(READ_MS)) t.ok(message.comments.length > 0)
  t.pass('the stream opened with alice\'s old secret ended')
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })).statusCode, 401, 'the old secret is refused')
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: { authorization: `Bearer ${rotated}` } })).statusCode, 200, 'the new one works')
  const bobRuns = await runContainer(app, 'bob', { name: name('narrowed') })
  assertProblem(t, bobRuns, 403, { code: 'forbidden', detail: 'this needs the "write" scope; token "bob" has read', scope: 'write' }, 'bob, now read-only, may no longer run')
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('bob') })).statusCode, 200, 'but still reads')
})

t.test('a revoked token\'s streamed pull and its job\'s event stream end too', async t => {
  const image = await pushLayeredImage('reload-pull', [2 * 1024 * 1024])
  // 32 KiB/s: the pull lasts about a minute unless something ends it.
  const proxy = new RegistryProxy(32 * 1024)
  t.teardown(() => proxy.close())
  const reference = image.reference.replace(env.registry, await proxy.listen())
  const tokens = new TokenStore(tokensFromEnv({ BERTH_TOKENS: `alice:write:${TOKENS.alice.token};bob:write:${TOKENS.bob.token}` }))
  const app = await build(t, { tokens, config: { streams: { heartbeatMs: 100 } } })
  const base = await listen(app)
  const started = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('alice'), payload: { image: reference } })
  t.equal(started.statusCode, 202, started.body)
  const jobEvents = await StreamClient.open(`${base}/v1/jobs/${started.json().id}/events`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
  const pulling = await StreamClient.open(`${base}/v1/images/pull`, { method: 'POST', headers: { ...auth('alice'), accept: 'application/x-ndjson', 'content-type': 'application/json' }, body: JSON.stringify({ image: reference }) })
  t.teardown(() => { jobEvents.close(); pulling.close() })
  t.equal(jobEvents.status, 200)
  t.equal(pulling.status, 200)
  t.not(await jobEvents.json(), null, 'alice follows her job')
  t.not(await pulling.json(), null, 'and her streamed pull')

  tokens.replace(tokensFromEnv({ BERTH_TOKENS: `bob:write:${TOKENS.bob.token}` }))
  for (const [what, stream] of [['the job\'s event stream', jobEvents], ['the streamed pull', pulling]] as const) {
    let last: Record<string, unknown> | null = null
    for (let event = await stream.json(READ_MS); event !== null; event = await stream.json(READ_MS)) last = event
    t.not(last?.type, 'pulled', `${what} ended before the pull did`)
    t.pass(`${what} ended`)
  }
})

t.test('a bad file keeps the tokens in use, and the log says why without quoting the file', async t => {
  const { file, tokens, logs, app, reloader } = await onTokensFile(t)
  const leaked = 'carol-token-' + TOKENS.admin.token
  const bad: Array<[string, string, RegExp]> = [
    ['truncated JSON', tokenFile(['bob'], [{ name: 'carol', scopes: ['admin'], token: leaked }]).slice(0, -3), /BERTH_TOKENS_FILE: cannot read .*tokens\.json: not valid JSON/],
    ['a syntax error next to a secret', `[{"name":"carol","scopes":["admin"],"token":"${leaked}" x}]`, /not valid JSON/],
    ['not an array', '{}', /must hold a JSON array/],
    ['a short token', JSON.stringify([{ name: 'carol', scopes: ['read'], token: 'short' }]), /token "carol" is shorter than 16 characters/],
    ['an unknown scope', JSON.stringify([{ name: 'carol', scopes: ['root'], token: leaked }]), /unknown scope "root"/],
    ['a name twice', tokenFile(['bob', 'bob']), /token name "bob" is configured twice/]
  ]
  for (const [what, text, reason] of bad) {
    writeFileSync(file, text)
    t.equal(reloader.reload('test'), null, what)
    t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })).statusCode, 200, `${what}: alice still works`)
    t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('bob') })).statusCode, 200, `${what}: bob still works`)
    t.match(logs.lines.at(-3), { level: 40, msg: 'tokens not reloaded: the ones in use stay', trigger: 'test', reason }, what)
  }
  t.notOk(logs.text.includes(leaked), 'no secret of the bad file is in the log')
  t.equal(tokens.size, 2)
})

t.test('the file is watched: replaced as editors do, or written in place, it is re-read by itself', async t => {
  const { file, logs, app } = await onTokensFile(t, { watch: true })
  const status = async (who: TokenName) => (await app.inject({ method: 'GET', url: '/v1/images', headers: auth(who) })).statusCode

  replaceFile(file, tokenFile(['bob']))
  await waitFor('alice to be refused once the file is replaced', async () => await status('alice'), status => status === 401)
  t.equal(await status('bob'), 200)
  writeFileSync(file, tokenFile(['bob', 'reader']))
  await waitFor('the reader to be let in once the file is written in place', async () => await status('reader'), status => status === 200)
  t.match(logs.lines.filter(line => line.msg === 'tokens reloaded'), [{ trigger: 'file changed', removed: ['alice'] }, { trigger: 'file changed', added: ['reader'] }])
  writeFileSync(join(dirname(file), 'unrelated.txt'), 'x')
  replaceFile(file, tokenFile(['bob', 'reader']))
  await waitFor('the unchanged file to be re-read', () => logs.lines.some(line => line.msg === 'tokens re-read: no change'), Boolean)
  t.equal(logs.lines.filter(line => line.msg === 'tokens reloaded').length, 2, 'a file rewritten unchanged changes nothing')
})

t.test('the berth process: SIGHUP re-reads the file and does not stop berth; a replaced file is seen by itself', async t => {
  // BERTH_TOKENS_FILE is a symlink into another directory: a change there is invisible to the watch
  // on the file's own directory, as a change to a single bind-mounted file is in a container. SIGHUP
  // is how it gets read.
  const shown = mkdtempSync(join(tmpdir(), 'berth-tokens-shown-'))
  const hidden = mkdtempSync(join(tmpdir(), 'berth-tokens-hidden-'))
  writeFileSync(join(hidden, 'tokens.json'), tokenFile(['alice', 'bob']))
  const file = join(shown, 'tokens.json')
  symlinkSync(join(hidden, 'tokens.json'), file)
  const port = await freePort()
  const server = start({ BERTH_TOKENS_FILE: file, BERTH_PORT: String(port) })
  t.teardown(() => { server.child.kill('SIGKILL') })
  await server.waitFor(/Server listening at/)
  const status = async (who: TokenName) => (await fetch(`http://127.0.0.1:${port}/v1/images`, { headers: auth(who) })).status
  t.equal(await status('alice'), 200)

  writeFileSync(join(hidden, 'tokens.json'), tokenFile(['bob']))
  let mark = server.output.length
  server.child.kill('SIGHUP')
  await server.waitFor(/"trigger":"SIGHUP".*"msg":"tokens reloaded"/, mark)
  t.equal(await status('alice'), 401, 'after SIGHUP alice is refused')
  t.equal(await status('bob'), 200, 'bob is not')
  t.equal(server.child.exitCode, null, 'SIGHUP did not stop berth')

  replaceFile(file, tokenFile(['bob', 'reader']))
  await waitFor('the reader to be let in once the replaced file is read', async () => await status('reader'), status => status === 200)

  writeFileSync(file, '[{"name": "bob", ')
  mark = server.output.length
  server.child.kill('SIGHUP')
  await server.waitFor(/"msg":"tokens not reloaded: the ones in use stay"/, mark)
  t.ok(/not valid JSON \(line 1 column \d+\)/.test(server.output.slice(mark)), 'the log says why, and where in the file')
  t.equal(await status('reader'), 200, 'a bad file keeps the tokens in use')

  server.child.kill('SIGTERM')
  const exit = await server.exited
  t.equal(exit.code, 0, exit.output.slice(-1500))
  for (const who of ['alice', 'bob', 'reader'] as const) t.notOk(exit.output.includes(TOKENS[who].token), `${who}'s token is not in the log`)
})
