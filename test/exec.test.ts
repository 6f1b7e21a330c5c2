// docker exec through berth, on the real engine: output streamed as NDJSON and SSE (stdout and
// stderr apart, exit code last) or answered whole, and an interactive terminal over a real
// WebSocket client (stdin, TTY, resize, EOF). Another token's container has no exec.
import t from 'tap'
import { TokenStore } from '../src/access/token-store.ts'
import { tokensFromEnv } from '../src/config.ts'
import { LogCapture, TOKENS, assertProblem, auth, build, cleanupAfter, docker, name, runBody, waitFor } from './helpers.ts'
import { listen } from './stream-client.ts'
import { terminal } from './terminal.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function exec (app: App, container: string, body: object, accept = 'application/x-ndjson', who: 'alice' | 'bob' | 'reader' = 'alice', requestId?: string) {
  return await app.inject({
    method: 'POST',
    url: `/v1/containers/${container}/exec`,
    headers: { ...auth(who), accept, ...(requestId === undefined ? {} : { 'x-request-id': requestId }) },
    payload: body
  })
}

const lines = (body: string) => body.trim().split('\n').map(line => JSON.parse(line))

t.test('output streamed as NDJSON: stdout and stderr apart, the exit code last, audited without its arguments', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('box') }) })
  t.equal(run.statusCode, 201, run.body)
  const secret = 'tok-' + Math.random().toString(36).slice(2)
  const response = await exec(app, name('box'), { command: ['sh', '-c', `echo out; echo err >&2; echo "${secret}" > /dev/null; printf 'no newline'; exit 5`] }, undefined, 'alice', 'exec-ndjson')
  t.equal(response.statusCode, 200, response.body)
  t.match(response.headers['content-type'], /application\/x-ndjson/)
  // How stdout and stderr interleave is the engine's timing (it copies them apart); each keeps its order.
  const events = lines(response.body) as Array<{ type: string, stream?: string, line?: string }>
  const stream = (name: string) => events.filter(event => event.stream === name).map(event => event.line)
  t.same({ stdout: stream('stdout'), stderr: stream('stderr') }, { stdout: ['out', 'no newline'], stderr: ['err'] })
  t.equal(events.length, 4, 'those lines, and the exit')
  t.same(events.at(-1), { type: 'exit', exitCode: 5 }, 'the exit code, last')
  const audit = logs.lines.find(line => line.requestId === 'exec-ndjson' && line.msg === 'audit')?.audit as { target: { exec: string } }
  t.match(audit, { actor: 'alice', action: 'POST /v1/containers/:idOrName/exec', target: { container: { requested: name('box'), id: run.json().id, name: name('box') }, command: 'sh', exec: /^[0-9a-f]{64}$/ }, status: 200 })
  t.notOk(logs.text.includes(secret), 'the arguments, which may hold secrets, are not logged')
})

t.test('SSE, and a whole answer in JSON with env, working directory, user and a TTY', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('box2') }) })
  t.equal(run.statusCode, 201, run.body)
  const sse = await exec(app, name('box2'), { command: ['sh', '-c', 'echo one; echo two >&2'] }, 'text/event-stream')
  t.equal(sse.statusCode, 200)
  t.match(sse.headers['content-type'], /text\/event-stream/)
  const events = sse.body.split('\n\n').filter(block => block.startsWith('data: ')).map(block => JSON.parse(block.slice(6)))
  t.same(events.sort((a, b) => (a.type + (a.stream ?? '')).localeCompare(b.type + (b.stream ?? ''))), [
    { type: 'exit', exitCode: 0 },
    { type: 'output', stream: 'stderr', line: 'two' },
    { type: 'output', stream: 'stdout', line: 'one' }
  ])
  t.ok(sse.body.startsWith('retry: 2000\n\n'))

  const secret = 'env-' + Math.random().toString(36).slice(2)
  const whole = await exec(app, name('box2'), { command: ['sh', '-c', 'echo "$GREETING"; pwd; id -u; echo oops >&2'], env: { GREETING: secret }, workingDir: '/tmp', user: '1000:1000' }, 'application/json')
  t.equal(whole.statusCode, 200, whole.body)
  t.same(whole.json(), { exitCode: 0, stdout: `${secret}\n/tmp\n1000\n`, stderr: 'oops\n', truncated: false })
  t.notOk(logs.text.includes(secret), 'env values are not logged')

  const big = await exec(app, name('box2'), { command: ['sh', '-c', 'yes | head -c 3000000'] }, 'application/json')
  t.equal(big.json().stdout.length, 1024 * 1024, 'a whole answer keeps 1 MiB of a stream')
  t.equal(big.json().truncated, true)

  const tty = await exec(app, name('box2'), { command: ['sh', '-c', 'echo a; echo b >&2'], tty: true })
  t.same(lines(tty.body), [{ type: 'output', stream: 'stdout', line: 'a' }, { type: 'output', stream: 'stdout', line: 'b' }, { type: 'exit', exitCode: 0 }],
    'a terminal has one stream, without its carriage returns')
})

t.test('not running, not there, not yours, not allowed, not well-formed: clear problems', async t => {
  const app = await build(t)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('stopped'), command: ['true'] }) })
  t.equal(run.statusCode, 201, run.body)
  await waitFor('it to exit', async () => (await docker.getContainer(run.json().id).inspect()).State.Status, status => status === 'exited')
  const stopped = await exec(app, name('stopped'), { command: ['true'] })
  t.equal(stopped.statusCode, 409)
  t.match(stopped.json(), { code: 'container_not_running', detail: `container ${run.json().id} is not running: start it first` })
  t.equal((await exec(app, name('nowhere'), { command: ['true'] })).statusCode, 404)
  const bobs = await exec(app, name('stopped'), { command: ['true'] }, undefined, 'bob')
  t.equal(bobs.statusCode, 404, 'another token\'s container has no exec')
  t.equal(bobs.json().code, 'not_found')
  t.equal((await exec(app, name('stopped'), { command: ['true'] }, undefined, 'reader')).statusCode, 403)
  for (const [what, body] of [['no command', {}], ['an empty command', { command: [] }], ['privileged', { command: ['true'], privileged: true }], ['a relative working directory', { command: ['true'], workingDir: 'tmp' }]] as const) {
    const response = await exec(app, name('stopped'), body)
    t.equal(response.statusCode, 400, what)
    t.equal(response.json().code, 'validation_failed', what)
  }
  const html = await exec(app, name('stopped'), { command: ['true'] }, 'text/html')
  t.equal(html.statusCode, 406)
  t.same(html.json().accepts, ['application/x-ndjson', 'text/event-stream', 'application/json'])
})

/** A WebSocket to berth, with what it received. */
t.test('an interactive terminal over a WebSocket: stdin, TTY, resize, exit code', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const base = await listen(app)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('term') }) })
  t.equal(run.statusCode, 201, run.body)

  const session = await terminal(base, name('term'), 'command=sh&tty=true&cols=80&rows=24')
  t.same(session.opened, { ok: true })
  await waitFor('the session to be counted as an open stream', () => app.streams.open, open => open === 1)
  session.socket.send(Buffer.from('busybox stty size; echo "hello-$((6*7))"\n'))
  await waitFor('the first answer', () => session.stdout(), out => out.includes('hello-42'))
  t.match(session.stdout(), /24 80/, 'the terminal started at the size asked for')
  session.socket.send(JSON.stringify({ type: 'resize', cols: 132, rows: 43 }))
  // The resize reaches the engine on its own path: the shell waits until the terminal has the new
  // size, then prints it. (Written as sums, so the echoed command line does not hold "43 132".)
  session.socket.send(Buffer.from('until [ "$(busybox stty size)" = "$((40+3)) $((130+2))" ]; do sleep 0.05; done; busybox stty size; exit 3\n'))
  const close = await session.closed
  t.same(close, { code: 1000, reason: 'exited' })
  t.match(session.stdout(), /43 132/, 'resized')
  t.same(session.received.text, [{ type: 'exit', exitCode: 3 }], 'the exit code, last')
  t.ok(session.received.output.every(frame => frame[0] === 1), 'a terminal has one stream')
  const audits = logs.lines.filter(line => line.msg === 'audit' && (line.audit as { action?: string }).action === 'GET /v1/containers/:idOrName/exec').map(line => line.audit)
  t.match(audits, [{ actor: 'alice', target: { container: { id: run.json().id, name: name('term') }, command: 'sh', exec: /^[0-9a-f]{64}$/ }, status: 101 }])
  t.equal(audits.length, 1, 'one audit line for the session')
  await waitFor('the session to be released', () => app.streams.open, open => open === 0)

  // Without a terminal: stdout and stderr apart, and EOF on stdin ends a shell.
  const plain = await terminal(base, name('term'), 'command=sh&tty=false')
  t.same(plain.opened, { ok: true })
  plain.socket.send(Buffer.from('echo out; echo err >&2\n'))
  plain.socket.send(JSON.stringify({ type: 'eof' }))
  t.same(await plain.closed, { code: 1000, reason: 'exited' })
  t.equal(plain.stdout(), 'out\n')
  t.equal(plain.stderr(), 'err\n')
  t.same(plain.received.text, [{ type: 'exit', exitCode: 0 }])

  // A text frame that is not a control message is answered, and the session goes on.
  const chatty = await terminal(base, name('term'), 'command=sh&tty=false')
  chatty.socket.send('ls')
  await waitFor('the complaint', () => chatty.received.text.length, count => count === 1)
  t.match(chatty.received.text[0], { type: 'error', problem: { code: 'validation_failed' } })
  chatty.socket.send(Buffer.from('exit 7\n'))
  await chatty.closed
  t.match(chatty.received.text[1], { type: 'exit', exitCode: 7 })
})

t.test('a client that hangs up ends the session: the command gets EOF on stdin, the engine connection is released', async t => {
  const app = await build(t)
  const base = await listen(app)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('hangup') }) })
  t.equal(run.statusCode, 201, run.body)
  // cat ends at EOF; a shell without a terminal does too.
  const session = await terminal(base, name('hangup'), 'command=cat&tty=false')
  t.same(session.opened, { ok: true })
  session.socket.send(Buffer.from('ready\n'))
  await waitFor('the echo', () => session.stdout(), out => out.includes('ready'))
  const running = async () => (await docker.getContainer(run.json().id).inspect()).ExecIDs?.length ?? 0
  t.equal(await running(), 1, 'the command runs while the client is there')
  session.socket.terminate()
  await waitFor('the session to be released', () => app.streams.open, open => open === 0)
  // The engine forgets an exec once its process has exited.
  await waitFor('the command to have exited', running, count => count === 0)
  t.pass('nothing is left running')
})

t.test('a WebSocket refused before the upgrade gets an HTTP problem, and is audited', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const base = await listen(app)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('ws-refused'), command: ['true'] }) })
  t.equal(run.statusCode, 201, run.body)
  const mine = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('ws-mine') }) })
  t.equal(mine.statusCode, 201)
  await waitFor('it to exit', async () => (await docker.getContainer(run.json().id).inspect()).State.Status, status => status === 'exited')
  const cases: Array<[string, string, string, 'alice' | 'bob' | null, number, string]> = [
    ['another token\'s container', name('ws-mine'), 'command=sh', 'bob', 404, 'not_found'],
    ['no token', name('ws-mine'), 'command=sh', null, 401, 'unauthorized'],
    ['a stopped container', name('ws-refused'), 'command=sh', 'alice', 409, 'container_not_running'],
    ['no command', name('ws-mine'), 'tty=true', 'alice', 400, 'validation_failed']
  ]
  for (const [what, container, query, who, status, code] of cases) {
    const session = await terminal(base, container, query, who)
    t.match(session.opened, { ok: false, status }, what)
    if (!session.opened.ok) t.equal(JSON.parse(session.opened.body).code, code, what)
  }
  t.equal(await new Promise(resolve => app.server.getConnections((_error, count) => resolve(count))), 0, 'a refused upgrade leaves no connection open')
  const refusals = logs.lines.filter(line => line.msg === 'audit' && (line.audit as { action?: string }).action === 'GET /v1/containers/:idOrName/exec')
  t.same(refusals.map(line => (line.audit as { status: number }).status), [404, 401, 409, 400], 'each refused attempt is audited')
  const plain = await app.inject({ method: 'GET', url: `/v1/containers/${name('ws-mine')}/exec?command=sh`, headers: auth('alice') })
  assertProblem(t, plain, 426, { code: 'upgrade_required', detail: 'this is a WebSocket endpoint: send the upgrade request (Connection: Upgrade, Upgrade: websocket)' }, 'a plain GET is told to upgrade')
  t.equal(plain.headers.upgrade, 'websocket')
  t.equal(app.streams.open, 0)
})

t.test('a token revoked by a reload ends its terminal at once; another token\'s goes on', async t => {
  const tokens = new TokenStore(tokensFromEnv({ BERTH_TOKENS: `alice:write:${TOKENS.alice.token};bob:write:${TOKENS.bob.token}` }))
  const app = await build(t, { tokens })
  const base = await listen(app)
  for (const who of ['alice', 'bob'] as const) {
    const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody({ name: name(`revoked-${who}`) }) })
    t.equal(response.statusCode, 201, response.body)
  }
  const alices = await terminal(base, name('revoked-alice'), 'command=sh&tty=true')
  const bobs = await terminal(base, name('revoked-bob'), 'command=sh&tty=true', 'bob')
  t.same([alices.opened, bobs.opened], [{ ok: true }, { ok: true }])
  await waitFor('both sessions', () => app.streams.open, open => open === 2)
  tokens.replace(tokensFromEnv({ BERTH_TOKENS: `bob:write:${TOKENS.bob.token}` }))
  t.same(await alices.closed, { code: 1001, reason: 'session ended' }, 'alice\'s session ends')
  bobs.socket.send(Buffer.from('echo still-here\n'))
  await waitFor('bob\'s answer', () => bobs.stdout(), out => out.includes('still-here'))
  bobs.socket.send(Buffer.from('exit\n'))
  t.same(await bobs.closed, { code: 1000, reason: 'exited' })
})
