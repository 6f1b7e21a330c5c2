// The TypeScript client (clients/typescript) against a berth listening for real and the real engine:
// a pull and a build with their progress, a run reached over its port, ps, logs followed across a
// dropped connection, events resumed with Last-Event-ID, stop/start/rm, and problems as BerthProblem.
import t from 'tap'
import { BerthProblem, BerthResponseError, createBerthClient, ok, type BerthEvent, type LogEntry, type Message, type Problem, type ProblemCode, type PullEvent } from '../clients/typescript/src/index.ts'
import { tarOf } from './build-helpers.ts'
import { DropProxy, liveBerth, pushWebImage } from './live-berth.ts'
import { HTTPD, RUN_LABEL, RUN, cleanupAfter, docker, env, fetchFromContainer, freePort, imageExists, name, pushImage, readAll } from './helpers.ts'
import { PrivateEngine } from './private-engine.ts'

cleanupAfter(t)
const live = await liveBerth(t)
const berth = createBerthClient({ url: live.url, token: live.token })
const labels = { [RUN_LABEL]: RUN }

/** The problem `call` is rejected with (failing the test when it is not one). */
async function problemOf (call: Promise<unknown>): Promise<BerthProblem> {
  try {
    await call
  } catch (error) {
    if (error instanceof BerthProblem) return error
    throw error
  }
  throw new Error('expected a BerthProblem, and the call succeeded')
}

t.test('a pull streams per-layer progress and ends with the pulled image', async t => {
  const { reference, digest } = await pushWebImage('pull', 3_000_000)
  const events = await readAll(berth.pull({ image: reference }))
  t.same(events[0], { type: 'started', image: reference }, 'it starts once the registry served the manifest')
  const progress = events.filter((event): event is Extract<PullEvent, { type: 'progress' }> => event.type === 'progress')
  const downloaded = progress.filter(event => event.layer.phase === 'downloading')
  t.ok(downloaded.length > 0, 'the new layer is seen downloading')
  t.ok(downloaded.some(event => (event.layer.total ?? 0) > 2_000_000), 'with its size')
  t.ok(progress.some(event => event.layer.phase === 'complete'), 'and complete')
  const fractions = progress.map(event => event.fraction)
  t.same(fractions, [...fractions].sort((a, b) => a - b), 'the overall fraction never goes back')
  const last = events.at(-1)
  t.equal(last?.type, 'pulled', 'the last event is the pulled image')
  if (last?.type === 'pulled') {
    t.equal(last.image.reference, reference)
    t.equal(last.image.digest, digest, 'the digest the registry stored')
  }
  t.ok(await imageExists(reference), 'the engine has it')
})

t.test('an async pull is a job whose events replay and end with the image', async t => {
  const { reference } = await pushWebImage('job', 500_000)
  const job = await berth.startPull({ image: reference })
  t.equal(job.state === 'queued' || job.state === 'pulling', true, `a job under way (${job.state})`)
  t.equal(job.image, reference)
  const events = await readAll(berth.jobEvents(job.id))
  t.equal(events.at(-1)?.type, 'pulled')
  t.equal((await ok(berth.GET('/v1/jobs/{id}', { params: { path: { id: job.id } } }))).state, 'succeeded')
})

t.test('a pull that cannot start is a BerthProblem before any event', async t => {
  const problem = await problemOf(readAll(berth.pull({ image: `${env.registry}/${RUN}-missing/web:1` })))
  t.equal(problem.status, 404)
  t.equal(problem.code, 'image_not_found')
  t.match(problem.detail, /missing\/web:1/)
})

t.test('a build streams its steps and ends with the built image', async t => {
  const tag = `${env.registry}/${RUN}-built/web:1`
  const context = tarOf({ Dockerfile: `FROM ${env.image}\nCOPY hello /hello\n`, hello: 'hello from a build\n' })
  const events = await readAll(berth.build(context, { tag: [tag], dockerfile: 'Dockerfile', pull: false, noCache: false, network: 'none', async: false }))
  const steps = events.flatMap(event => event.type === 'step' ? [event.instruction] : [])
  t.same(steps.slice(0, 2), [`FROM ${env.image}`, 'COPY hello /hello'])
  t.match(steps[2], /^LABEL io\.berth\.built-by=default\//, 'and the label berth adds')
  t.equal(steps.length, 3)
  const last = events.at(-1)
  t.equal(last?.type, 'built')
  if (last?.type === 'built') t.same(last.image.tags, [tag])
  t.ok(await imageExists(tag))

  const failed = await problemOf(readAll(berth.build(tarOf({ Dockerfile: `FROM ${env.image}\nRUN exit 3\n` }), { dockerfile: 'Dockerfile', pull: false, noCache: false, network: 'none', async: false })))
  t.equal(failed.code, 'build_failed', 'a failing step ends the iteration with its problem')
  t.equal(failed.problem.exitCode, 3, 'with the members its code adds')
})

t.test('run with a port, reach it, ps, stop, start, rm; refusals are typed problems', async t => {
  const port = await freePort()
  const web = name('client-web')
  const container = await ok(berth.POST('/v1/containers', {
    body: { image: env.image, name: web, command: HTTPD, ports: [{ container: 80, host: port }], labels }
  }))
  t.equal(container.name, web)
  t.equal(container.state, 'running')
  t.same(container.ports.map(binding => [binding.container, binding.host, binding.protocol]), [[80, port, 'tcp']])
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n', 'reachable on its host port')

  const running = await ok(berth.GET('/v1/containers'))
  t.same(running.map(summary => summary.name), [web], 'ps: the token sees its one container')

  const taken = await problemOf(ok(berth.POST('/v1/containers', {
    body: { image: env.image, name: name('client-second'), command: HTTPD, ports: [{ container: 80, host: port }], labels }
  })))
  t.equal(taken.status, 409)
  t.equal(taken.code, 'port_conflict')
  t.equal(taken.problem.port, port, 'the member port_conflict adds')
  t.match(taken.detail, new RegExp(`host port ${port} is already allocated`))

  const running409 = await problemOf(ok(berth.DELETE('/v1/containers/{idOrName}', { params: { path: { idOrName: web } } })))
  t.equal(running409.code, 'container_running', 'rm without force refuses a running container')

  const stopped = await ok(berth.POST('/v1/containers/{idOrName}/stop', { params: { path: { idOrName: web }, query: { timeout: 1 } } }))
  t.equal(stopped.changed, true)
  t.equal(stopped.container.state, 'exited')
  t.same(await ok(berth.GET('/v1/containers')), [], 'ps: nothing running')
  t.same((await ok(berth.GET('/v1/containers', { params: { query: { all: true } } }))).map(summary => [summary.name, summary.state]), [[web, 'exited']], 'ps -a: it, exited')

  const started = await ok(berth.POST('/v1/containers/{idOrName}/start', { params: { path: { idOrName: web } } }))
  t.equal(started.changed, true)
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n', 'reachable again')

  t.equal(await ok(berth.DELETE('/v1/containers/{idOrName}', { params: { path: { idOrName: web }, query: { force: true } } })), undefined, 'rm -f: 204')
  const gone = await problemOf(ok(berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: web } } })))
  t.equal(gone.status, 404)
  t.equal(gone.code, 'not_found')
  t.equal(gone.message, gone.detail)
  t.equal(gone.name, 'BerthProblem')
  t.equal(gone.instance, `/v1/containers/${web}`)
  t.match(gone.requestId, /^[0-9a-f-]{36}$/)
})

t.test('without ok() the problem is the typed error of the answer', async t => {
  const { data, error, response } = await berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: name('nobody') } } })
  t.equal(data, undefined)
  t.equal(response.status, 404)
  t.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8')
  // The document's Problem schema types it: `code` is its enum (checked by tsc over this file).
  const code: ProblemCode | undefined = error?.code
  t.equal(code, 'not_found')
  // Each operation's problems carry only the codes it answers: inspect never answers port_conflict.
  // @ts-expect-error — the comparison has no overlap with inspect's codes
  t.not(error?.code === 'port_conflict', true)
  // @ts-expect-error — a code the document does not declare is not a ProblemCode
  const unknown: ProblemCode = 'no_such_code'
  t.equal(typeof unknown, 'string')
  const body: Problem | undefined = error
  t.equal(body?.status, 404)
})

t.test('a token berth does not know is a 401 problem; an answer that is not a problem is a BerthResponseError', async t => {
  const stranger = createBerthClient({ url: live.url, token: 'not-a-token-of-this-berth' })
  const refused = await problemOf(ok(stranger.GET('/v1/containers')))
  t.equal(refused.status, 401)
  t.equal(refused.code, 'unauthorized')

  // A gateway between client and berth may answer with a page of its own.
  const gateway = createBerthClient({ url: live.url, fetch: async () => new Response('<h1>Bad Gateway</h1>', { status: 502, headers: { 'content-type': 'text/html' } }) })
  const error = await ok(gateway.GET('/v1/containers')).catch((caught: unknown) => caught)
  t.ok(error instanceof BerthResponseError)
  if (error instanceof BerthResponseError) {
    t.equal(error.status, 502)
    t.equal(error.body, '<h1>Bad Gateway</h1>')
    t.equal(error.message, 'HTTP 502: <h1>Bad Gateway</h1>')
  }
})

t.test('logs: read, and followed across a dropped connection without losing or repeating a line', async t => {
  const writer = name('client-logs')
  // 60 numbered lines, 20 a second, half of them on stderr, then it exits.
  await ok(berth.POST('/v1/containers', {
    body: { image: env.image, name: writer, labels, command: ['sh', '-c', 'i=0; while [ $i -lt 60 ]; do i=$((i+1)); if [ $((i % 2)) -eq 0 ]; then echo "line $i" >&2; else echo "line $i"; fi; sleep 0.05; done'] }
  }))
  const proxy = new DropProxy(live.port)
  t.teardown(() => proxy.close())
  const viaProxy = createBerthClient({ url: await proxy.listen(), token: live.token })
  const lines: LogEntry[] = []
  let dropped = false
  for await (const entry of viaProxy.logs(writer, { follow: true }, { retryMs: 50 })) {
    lines.push(entry)
    if (lines.length === 10 && !dropped) {
      dropped = true
      // Down for two attempts to reconnect: the container writes on meanwhile.
      proxy.drop(2)
    }
  }
  t.ok(proxy.connections >= 4, 'it reconnected after two refusals')
  // How the two streams interleave is the engine's timing (it copies them apart); each keeps its order.
  const of = (stream: string) => lines.filter(entry => entry.stream === stream).map(entry => entry.line)
  const numbered = (from: number) => Array.from({ length: 30 }, (_, i) => `line ${from + 2 * i}`)
  t.same({ stdout: of('stdout'), stderr: of('stderr') }, { stdout: numbered(1), stderr: numbered(2) }, 'every line once, in order, on its stream')
  t.equal(lines.length, 60, 'and nothing else')
  t.same(lines.filter(entry => 'time' in entry), [], 'no times unless asked for')

  const tail = await readAll(berth.logs(writer, { tail: '2', timestamps: true }))
  const whole = await readAll(berth.logs(writer, {}))
  t.same(tail.map(entry => entry.line), whole.slice(-2).map(entry => entry.line), 'the stopped container\'s last lines')
  t.ok(tail.every(entry => typeof entry.time === 'string'), 'with their times when asked for')
  t.same(await readAll(berth.logs(writer, { since: '2999-01-01T00:00:00Z' })), [], 'no output is no lines')
  const unknown = await problemOf(readAll(berth.logs(name('nobody'), { follow: true })))
  t.equal(unknown.code, 'not_found', 'following a container that is not there is its problem, not a retry')
})

t.test('events: resumed after a dropped connection with Last-Event-ID, none lost or repeated', async t => {
  // On a berth of its own over a private engine: a resume reaches back only through the engine's last
  // 256 events, and the shared engine makes hundreds a minute for other test runs.
  const engine = new PrivateEngine()
  t.teardown(() => engine.dispose())
  await engine.start()
  const { reference } = await pushImage('client-events')
  const own = await liveBerth(t, { BERTH_DOCKER_SOCKET: engine.socketPath })
  const berth = createBerthClient({ url: own.url, token: own.token })
  const proxy = new DropProxy(own.port)
  t.teardown(() => proxy.close())
  // berth answers the stream's headers once it follows the engine's events: the run comes after that.
  let answered = () => {}
  const connected = new Promise<void>(resolve => { answered = resolve })
  const viaProxy = createBerthClient({
    url: await proxy.listen(),
    token: own.token,
    fetch: async request => { const response = await fetch(request); answered(); return response }
  })
  const subject = name('client-events')
  const mine = (message: Message<BerthEvent>) => message.event.name === subject
  const controller = new AbortController()
  const stream = viaProxy.events({ retryMs: 50, signal: controller.signal })
  const first = stream.next()
  await connected
  await ok(berth.POST('/v1/containers', { body: { image: reference, name: subject, command: ['sleep', '300'], labels } }))
  const seen: Array<Message<BerthEvent>> = []
  for (let next = await first; !next.done; next = await stream.next()) {
    if (mine(next.value)) seen.push(next.value)
    if (next.value.event.action === 'start' && mine(next.value)) break
  }
  // Down while the container is stopped: those events happen with nobody connected.
  proxy.drop()
  await ok(berth.POST('/v1/containers/{idOrName}/stop', { params: { path: { idOrName: subject }, query: { timeout: 0 } } }))
  proxy.open()
  for await (const message of stream) {
    if (mine(message)) seen.push(message)
    if (message.event.action === 'stop' && mine(message)) break
  }
  controller.abort()
  const actions = seen.map(message => message.event.action)
  t.same(actions.slice(0, 2), ['create', 'start'])
  t.ok(actions.includes('die'), 'the die that happened while disconnected')
  t.equal(actions.at(-1), 'stop')
  t.equal(new Set(seen.map(message => message.id)).size, seen.length, 'no event twice')

  // A new stream from a saved id gives exactly what followed it.
  const startId = seen[1]?.id
  const resumed: string[] = []
  for await (const message of berth.events({ lastEventId: startId })) {
    if (mine(message)) resumed.push(message.event.action)
    if (message.event.action === 'stop' && mine(message)) break
  }
  t.same(resumed, actions.slice(2), 'from the saved id on')
})

t.test('a stream the caller aborts ends with an AbortError', async t => {
  const controller = new AbortController()
  const stream = berth.events({ signal: controller.signal })
  const next = stream.next()
  controller.abort()
  await t.rejects(next, { name: 'AbortError' })
})

t.test('events from a berth whose engine is away: a 503 problem when not reconnecting', async t => {
  const away = await liveBerth(t, { BERTH_DOCKER_SOCKET: `/tmp/${RUN}-no-engine.sock` })
  const client = createBerthClient({ url: away.url, token: away.token })
  const problem = await problemOf(readAll(client.events({ reconnect: false })))
  t.equal(problem.status, 503)
  t.equal(problem.code, 'engine_unavailable')
})

t.test('what the engine has left agrees with what the client was told', async t => {
  // The refused second run left nothing; rm -f removed the web container; the log writer remains (the
  // events test ran on a private engine).
  const left = await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
  t.same(left.map(info => info.Names[0]?.slice(1)).sort(), [name('client-logs')])
})
