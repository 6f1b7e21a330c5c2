// The copy cut off from its engine: a gap in its event stream (cut, refused, the engine restarted) is
// answered by a new list before anything is read from the copy again; meanwhile every read asks the
// engine (and fails as it does). Afterwards every read matches the engine (test/copy-compare.ts).
import Docker from 'dockerode'
import t from 'tap'
import { caughtUp, cli, compareWithEngine, copyTestImage, openDocker, owned } from './copy-compare.ts'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, docker, env, name, runContainer, waitFor } from './helpers.ts'
import { PrivateEngine } from './private-engine.ts'
import { SocketProxy } from './socket-proxy.ts'

cleanupAfter(t)

t.test('the event stream cut: nothing is read from the copy until it has listed again, and then it matches the engine', async t => {
  const proxy = new SocketProxy(env.socket)
  await proxy.start()
  t.teardown(() => proxy.close())
  const { copy, backend } = await openDocker(t, proxy.socketPath)
  const truth = (await openDocker(t, env.socket, { copy: false })).backend
  const app = await build(t, { engine: backend })
  const scope = { labels: ['berth.test.copy=cut', `${RUN_LABEL}=${RUN}`], images: (image: string) => image.includes(RUN), app }
  const check = async (what: string): Promise<void> => {
    await caughtUp(copy, docker)
    await compareWithEngine(t, backend, truth, scope, what)
  }
  const made = await runContainer(app, 'admin', { name: name('cut-a'), labels: { 'berth.test.copy': 'cut' }, stopTimeout: 1 })
  t.equal(made.statusCode, 201, made.body)
  await check('before the cut')

  const generation = copy.generation
  proxy.refuse()
  proxy.cut()
  await waitFor('berth to notice the cut', async () => (await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth() })).statusCode, status => status === 503)
  // Changes the copy cannot hear of: it must not answer from what it held.
  await cli('stop', '-t', '0', name('cut-a'))
  await cli('create', '--name', name('cut-b'), ...owned('cut'), env.image, 'sleep', '300')
  await cli('volume', 'create', ...owned('cut'), name('cut-vol'))
  for (const url of [`/v1/containers/${name('cut-a')}`, '/v1/containers?all=true&label=berth.test.copy%3Dcut', '/v1/volumes', '/v1/images', '/readyz']) {
    t.equal((await app.inject({ method: 'GET', url, headers: auth() })).statusCode, 503, `${url} while cut off`)
  }
  t.notOk(copy.current, 'the copy is not current')
  proxy.allow()
  await check('after the cut')
  t.ok(copy.generation > generation, 'it listed again')
  t.equal((await backend.containers.inspect(name('cut-a'))).state, 'exited')

  // Cut again, and let it back in at once: what changes around the cut is not lost.
  const again = copy.generation
  proxy.cut()
  await cli('start', name('cut-a'))
  await cli('rm', '-f', name('cut-b'))
  await check('after a cut it reconnected through at once')
  t.ok(copy.generation > again, 'it listed again')
  t.ok(proxy.cuts > 0)
  await cli('volume', 'rm', name('cut-vol'))
})

t.test('/readyz is ready only when the copy is current, not merely when the engine answers', async t => {
  const proxy = new SocketProxy(env.socket)
  await proxy.start()
  t.teardown(() => proxy.close())
  const { host, copy, backend } = await openDocker(t, proxy.socketPath, { timeoutMs: 2000 })
  const app = await build(t, { engine: backend })
  await waitFor('berth to be ready', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode, status => status === 200, 30_000)

  // The engine answers everything but the container list, which the copy needs to list again after a cut.
  proxy.withhold(/^GET \S*\/containers\/json/)
  proxy.cut()
  await waitFor('the copy to notice the cut', () => copy.current, current => !current)
  const notReady = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(notReady.statusCode, 503, 'not ready while the copy has not listed again')
  t.equal(notReady.json().code, 'engine_unavailable')
  t.match(await host.transport.info(), { apiVersion: /^1\.\d+$/ }, 'though the engine answers')
  t.notOk(copy.current, 'the copy is still behind')

  proxy.answer()
  const ready = await waitFor('berth to be ready again', async () => await app.inject({ method: 'GET', url: '/readyz' }), response => response.statusCode === 200, 60_000)
  t.match(ready.json(), { status: 'ready' }, 'ready once the copy has listed')
  t.ok(copy.current)
})

t.test('the engine restarted: the copy lists again, and matches what the engine brought back', async t => {
  const engine = new PrivateEngine()
  t.teardown(() => engine.dispose())
  await engine.start()
  const privateEngine = new Docker({ socketPath: engine.socketPath })
  await copyTestImage(privateEngine)
  const { copy, backend } = await openDocker(t, engine.socketPath, { timeoutMs: 20_000 })
  const truth = (await openDocker(t, engine.socketPath, { copy: false })).backend
  const app = await build(t, { engine: backend, config: { engine: { timeoutMs: 20_000 } } })
  const scope = { labels: [], images: () => true, app }
  const check = async (what: string): Promise<void> => {
    await caughtUp(copy, privateEngine)
    await compareWithEngine(t, backend, truth, scope, what)
  }
  for (const [suffix, restart] of [['always', 'always'], ['once', 'no']] as const) {
    const made = await runContainer(app, 'admin', { name: name(`restart-${suffix}`), restart: { policy: restart }, stopTimeout: 1, volumes: [`${name('restart-vol')}:/data`] })
    t.equal(made.statusCode, 201, made.body)
  }
  await check('before the restart')
  const generation = copy.generation

  await engine.stop()
  await waitFor('berth to notice the engine stopped', async () => (await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth() })).statusCode, status => status === 503)
  await engine.start()
  await waitFor('the engine to start the container that restarts always', async () => (await truth.containers.inspect(name('restart-always'))).state, state => state === 'running', 60_000)
  await check('after the restart')
  t.ok(copy.generation > generation, 'it listed again')
  const states = (await backend.containers.list({ all: true })).map(container => [container.name, container.state]).sort()
  t.same(states, [[name('restart-always'), 'running'], [name('restart-once'), 'exited']])
})
