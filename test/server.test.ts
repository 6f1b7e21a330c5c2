// The berth process itself: it refuses to start without a token, keeps to loopback when auth is
// disabled, and exits cleanly on SIGTERM after finishing what is in flight.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { start } from './berth-process.ts'
import { cleanupAfter, docker, env, freePort, name, runBody } from './helpers.ts'

cleanupAfter(t)

interface EngineEvent { Action: string, Actor: { Attributes: Record<string, string> } }

/** Subscribes to the engine's events that match `filters` (docker events --filter); `next` is the first one. */
async function engineEvents (filters: Record<string, string[]>): Promise<{ next: Promise<EngineEvent> }> {
  const stream = await docker.getEvents({ filters }) as NodeJS.ReadableStream & { destroy: () => void }
  const next = new Promise<EngineEvent>((resolve, reject) => {
    stream.once('data', (chunk: Buffer) => {
      stream.destroy()
      resolve(JSON.parse(chunk.toString().split('\n')[0] as string))
    })
    stream.once('error', reject)
  })
  return { next }
}

t.test('without a token berth refuses to start, and says how to fix it', async t => {
  const run = await start({}).exited
  t.equal(run.code, 78)
  t.match(run.output, /no token is configured: set BERTH_TOKENS or BERTH_TOKENS_FILE, or set BERTH_AUTH_DISABLED=true/)
})

t.test('a configuration mistake stops it with a message saying what is wrong', async t => {
  const run = await start({ BERTH_TOKENS: 'x:read:short' }).exited
  t.equal(run.code, 78)
  // The reason is the first line of the log, and its only one: what `docker compose logs` shows.
  t.same(run.output.trim().split('\n').map(line => JSON.parse(line)).map(({ level, msg }) => ({ level, msg })), [{ level: 60, msg: 'token "x" is shorter than 16 characters' }])
})

// The one-command run (docker compose up on a clone with no .env): berth makes its own admin token.
t.test('with no token but a state directory, berth makes an admin token, shows it once, and finds it again', async t => {
  const state = mkdtempSync(join(tmpdir(), 'berth-state-'))
  t.teardown(() => { rmSync(state, { recursive: true, force: true }) })
  const startIn = async (vars: Record<string, string> = {}) => {
    const port = await freePort()
    // Even at a log level that hides warnings the secret is shown: it is nowhere else.
    const server = start({ BERTH_STATE_DIR: state, BERTH_PORT: String(port), BERTH_LOG_LEVEL: 'error', ...vars })
    t.teardown(() => { server.child.kill('SIGKILL') })
    await server.waitFor(/"msg":"no token/)
    // At level error berth does not say it listens: it does once /healthz answers.
    for (let attempt = 0; !(await fetch(`http://127.0.0.1:${port}/healthz`).then(r => r.ok, () => false)); attempt++) {
      if (attempt === 100) throw new Error(`berth did not listen:\n${server.output}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const stop = async () => { server.child.kill('SIGTERM'); t.equal((await server.exited).code, 0) }
    return { server, port, stop }
  }
  const status = async (port: number, secret: string) => (await fetch(`http://127.0.0.1:${port}/v1/containers`, { headers: { authorization: `Bearer ${secret}` } })).status

  const first = await startIn()
  await first.server.waitFor(/BERTH_TOKEN=[0-9a-f]{64}/)
  const secret = /BERTH_TOKEN=([0-9a-f]{64})/.exec(first.server.output)?.[1] as string
  const line = JSON.parse(first.server.output.split('\n')[0] as string) as { level: number, msg: string }
  t.equal(line.level, 40, 'the first line of the log, a warning')
  t.match(line.msg, `no token was configured, so berth made an admin token and keeps only its hash, in ${state}/tokens.json. Its secret is shown this once: BERTH_TOKEN=${secret}`)
  const file = readFileSync(join(state, 'tokens.json'), 'utf8')
  t.notOk(file.includes(secret), 'the secret is not kept')
  t.match(JSON.parse(file), [{ name: 'admin', scopes: ['admin'], sha256: /^[0-9a-f]{64}$/ }])
  t.equal(statSync(join(state, 'tokens.json')).mode & 0o777, 0o600, 'readable by berth alone')
  t.equal(await status(first.port, secret), 200, 'the secret works')
  t.equal(await status(first.port, 'not-the-token-0123456789'), 401)
  await first.stop()

  const again = await startIn()
  t.notMatch(again.server.output, /BERTH_TOKEN=/, 'a restart shows no secret')
  t.match(again.server.output, /using the admin token berth made at its first start/)
  t.equal(await status(again.port, secret), 200, 'and the same secret still works')
  await again.stop()

  // Configured tokens win: the made one is not used, and none is made.
  const own = 'configured-token-0123456789'
  const configured = start({ BERTH_STATE_DIR: state, BERTH_PORT: String(await freePort()), BERTH_TOKENS: `ops:admin:${own}` })
  t.teardown(() => { configured.child.kill('SIGKILL') })
  await configured.waitFor(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  const port = Number(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(configured.output)?.[1])
  t.notMatch(configured.output, /no token/)
  t.equal(await status(port, own), 200)
  t.equal(await status(port, secret), 401, 'the made token is not in use beside configured ones')
  configured.child.kill('SIGTERM')
  t.equal((await configured.exited).code, 0)
})

// The first run on a new host: the socket's group is the setting people get wrong (DOCKER_GID).
t.test('a Docker socket berth may not open stops it with a message naming DOCKER_GID; a missing engine does not', { skip: process.getuid?.() === 0 ? false : 'needs root, to run berth as another user' }, async t => {
  const { gid: socketGroup, mode } = statSync(env.socket)
  t.equal(mode & 0o007, 0, `the test socket ${env.socket} is closed to others, as Docker makes it`)
  const token = 'server-test-token-0123456789'
  const nobody = { uid: 65534, gid: 65534 }

  const denied = await start({ BERTH_TOKENS: `ops:admin:${token}` }, nobody).exited
  t.equal(denied.code, 78, 'a configuration error')
  const lines = denied.output.trim().split('\n')
  t.equal(lines.length, 1, `one line, no stack: ${denied.output}`)
  const line = JSON.parse(lines[0] as string) as { level: number, msg: string }
  t.equal(line.level, 60, 'fatal')
  t.equal(line.msg, `permission denied on the Docker socket ${env.socket} (EACCES): berth runs as uid 65534 with groups 65534; ` +
    `the socket belongs to group ${socketGroup} (mode ${(mode & 0o777).toString(8)}); set DOCKER_GID in .env to the group of the socket on the host, ` +
    'which `stat -c %g /var/run/docker.sock` prints (docker run: --group-add "$(stat -c %g /var/run/docker.sock)")')
  t.notOk(denied.output.includes(token), 'the token is not in the output')

  // The fix the message names: the same user with the socket's group starts, and reaches the engine.
  const port = await freePort()
  const fixed = start({ BERTH_TOKENS: `ops:admin:${token}`, BERTH_PORT: String(port) }, { uid: 65534, gid: socketGroup })
  t.teardown(() => { fixed.child.kill('SIGKILL') })
  await fixed.waitFor(/engine reachable/)
  t.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200)
  fixed.child.kill('SIGTERM')
  t.equal((await fixed.exited).code, 0)

  // An engine that is not there (yet) is not a configuration error: berth starts and waits for it.
  const waitPort = await freePort()
  const waiting = start({ BERTH_TOKENS: `ops:admin:${token}`, BERTH_PORT: String(waitPort), BERTH_DOCKER_SOCKET: '/nonexistent/docker.sock' }, nobody)
  t.teardown(() => { waiting.child.kill('SIGKILL') })
  await waiting.waitFor(/engine not reachable yet/)
  const ready = await fetch(`http://127.0.0.1:${waitPort}/readyz`)
  t.equal(ready.status, 503)
  t.equal((await ready.json() as { code: string }).code, 'engine_unavailable')
  waiting.child.kill('SIGTERM')
  t.equal((await waiting.exited).code, 0)
})

t.test('with auth disabled it listens on loopback only, whatever BERTH_HOST says, and warns loudly', async t => {
  const port = await freePort()
  const server = start({ BERTH_AUTH_DISABLED: 'true', BERTH_HOST: '0.0.0.0', BERTH_PORT: String(port) })
  t.teardown(() => { server.child.kill('SIGKILL') })
  await server.waitFor(/Server listening at/)
  t.match(server.output, /authentication is disabled, so berth listens on 127\.0\.0\.1 only/)
  t.match(server.output, /AUTHENTICATION IS DISABLED/)
  t.match(server.output, new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`))
  t.notMatch(server.output, /Server listening at http:\/\/0\.0\.0\.0/)
  const response = await fetch(`http://127.0.0.1:${port}/v1/containers?all=true`)
  t.equal(response.status, 200, 'no token needed when auth is disabled')
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
})

t.test('SIGTERM lets an in-flight request finish, then exits 0', async t => {
  const port = await freePort()
  const token = 'server-test-token-0123456789'
  const server = start({ BERTH_TOKENS: `ops:admin:${token}`, BERTH_PORT: String(port) })
  t.teardown(() => { server.child.kill('SIGKILL') })
  await server.waitFor(/engine reachable/)
  t.match(server.output, /"apiVersion":"1\.\d+"/, 'the engine API version was negotiated at start')
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
  const run = await fetch(`http://127.0.0.1:${port}/v1/containers`, { method: 'POST', headers, body: JSON.stringify(runBody({ name: name('graceful'), pull: 'never' })) })
  t.equal(run.status, 201)
  // sleep as PID 1 ignores SIGTERM, so this stop takes its whole 2 s grace period. It is in flight
  // once the engine has sent the container that SIGTERM (its kill event): then berth is told to stop.
  const kills = await engineEvents({ container: [name('graceful')], event: ['kill'] })
  const stopping = fetch(`http://127.0.0.1:${port}/v1/containers/${name('graceful')}/stop?timeout=2`, { method: 'POST', headers: { authorization: headers.authorization } })
  t.equal((await kills.next).Actor.Attributes.signal, '15', 'the engine sent SIGTERM: the stop is under way')
  server.child.kill('SIGTERM')
  const stopped = await stopping
  t.equal(stopped.status, 200, 'the in-flight request was answered')
  t.match(await stopped.json(), { changed: true, container: { state: 'exited' } })
  const exit = await server.exited
  t.equal(exit.code, 0, exit.output.slice(-1500))
  t.match(exit.output, /closing berth: finishing requests in flight/)
  t.ok(exit.output.indexOf('closing berth') < exit.output.lastIndexOf('"statusCode":200'), 'the stop was answered after the signal arrived')
  t.notMatch(exit.output, new RegExp(token), 'the token never appears in the log')
})
