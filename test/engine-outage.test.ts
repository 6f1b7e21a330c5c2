// The engine going away while berth runs: fast 503s, an honest /readyz, and recovery without a
// restart of berth. A private dockerd is stopped, frozen and started again; the shared one is untouched.
// berth reads from its copy of the engine until it notices the engine has gone (its event stream
// closes; a frozen engine stops answering the copy's pings): from then on every read asks the engine.
import t from 'tap'
import { assertProblem, auth, build, runContainer, waitFor } from './helpers.ts'
import { PrivateEngine } from './private-engine.ts'

const TIMEOUT_MS = 800

t.test('engine stopped, frozen and back: 503 engine_unavailable quickly, then recovery by itself', async t => {
  const engine = new PrivateEngine()
  t.teardown(() => engine.dispose())
  await engine.start()
  const app = await build(t, { socketPath: engine.socketPath, config: { engine: { timeoutMs: TIMEOUT_MS } } })

  // Ready once the engine answers and berth's copy of it is current.
  const ready = await waitFor('berth to be ready', async () => await app.inject({ method: 'GET', url: '/readyz' }), response => response.statusCode === 200, 30_000)
  t.equal(ready.statusCode, 200, ready.body)
  t.match(ready.json(), { status: 'ready', engine: { apiVersion: /^1\.\d+$/ } })
  const list = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth() })
  t.equal(list.statusCode, 200)
  t.same(list.json(), [])

  await engine.stop()
  // The copy's event stream closed with the engine: reads ask the engine again, which is not there.
  await waitFor('berth to notice the engine stopped', async () => (await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() })).statusCode, status => status === 503)
  for (const [method, url] of [['GET', '/v1/containers'], ['GET', '/v1/images'], ['GET', '/v1/containers/x'], ['POST', '/v1/containers/x/stop']] as const) {
    const started = performance.now()
    const down = await app.inject({ method, url, headers: auth() })
    const elapsed = performance.now() - started
    t.equal(down.statusCode, 503, `${method} ${url}`)
    t.equal(down.headers['content-type'], 'application/problem+json; charset=utf-8')
    // "cannot reach" (not "did not answer within") shows the call failed at connect, without waiting out a deadline.
    t.match(down.json(), { code: 'engine_unavailable', status: 503, detail: /^cannot reach the container engine \((ENOENT|ECONNREFUSED)\)$/ })
    t.equal(down.headers['retry-after'], '5')
    t.comment(`${method} ${url} answered in ${elapsed.toFixed(0)} ms`)
  }
  const notReady = await app.inject({ method: 'GET', url: '/readyz' })
  assertProblem(t, notReady, 503, { code: 'engine_unavailable', detail: /^cannot reach the container engine \((ENOENT|ECONNREFUSED)\)$/ }, 'not ready while the engine is stopped')
  const alive = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(alive.statusCode, 200, 'berth itself is alive')

  await engine.start()
  // Ready again once the copy has listed the engine again.
  const back = await waitFor('berth to be ready again', async () => await app.inject({ method: 'GET', url: '/readyz' }), response => response.statusCode === 200, 30_000)
  t.equal(back.statusCode, 200, 'ready again without restarting berth')
  const listAgain = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() })
  t.equal(listAgain.statusCode, 200)

  // A hung engine keeps its socket but answers nothing: the copy's next ping goes unanswered, and
  // from then on the per-call deadline answers for the engine.
  await engine.freeze()
  t.teardown(() => engine.thaw())
  await waitFor('berth to notice the engine hangs', async () => (await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() })).statusCode, status => status === 503, 60_000)
  const started = performance.now()
  const hung = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() })
  const elapsed = performance.now() - started
  t.equal(hung.statusCode, 503)
  // The detail shows the per-call deadline ended the call: no request hangs on a stuck engine.
  t.match(hung.json(), { code: 'engine_unavailable', detail: `the container engine did not answer within ${TIMEOUT_MS} ms` })
  t.comment(`the call to the frozen engine answered in ${elapsed.toFixed(0)} ms`)
  const hungReady = await app.inject({ method: 'GET', url: '/readyz' })
  assertProblem(t, hungReady, 503, { code: 'engine_unavailable', detail: `the container engine did not answer within ${TIMEOUT_MS} ms` }, 'not ready while the engine is frozen')
  engine.thaw()
  // The engine first answers what was sent to it while it was frozen.
  const thawed = await waitFor('berth to answer again', async () => await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() }), response => response.statusCode === 200, 30_000)
  t.equal(thawed.statusCode, 200, 'recovers once the engine answers again')
  await waitFor('the copy to be current again', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode, status => status === 200, 60_000)
})

t.test('an engine that never was there: berth builds and answers 503, never 500', async t => {
  const app = await build(t, { socketPath: '/nonexistent/docker.sock', config: { engine: { timeoutMs: TIMEOUT_MS } } })
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  assertProblem(t, ready, 503, { code: 'engine_unavailable', detail: 'cannot reach the container engine (ENOENT)' }, 'not ready')
  const run = await runContainer(app, 'admin', { image: 'busybox' })
  assertProblem(t, run, 503, { code: 'engine_unavailable', detail: 'cannot reach the container engine (ENOENT)' }, 'a run with no engine')
})
