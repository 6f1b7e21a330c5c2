// berth answers ps, inspect, images and volumes from a watch-fed copy of its engine: proof that it is
// never wrong. Containers, volumes and images are changed behind berth's back — with the docker CLI
// and by another berth — and every read is compared with the engine's own answer once the copy has
// caught up (test/copy-compare.ts). berth's own writes are read back at once, even while the engine's
// events are held back. test/copy-gaps.test.ts cuts the copy off from its engine.
import t from 'tap'
import { caughtUp, cli, compareWithEngine, openDocker, owned, timeless } from './copy-compare.ts'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, docker, env, name, runContainer, waitFor } from './helpers.ts'
import { SocketProxy } from './socket-proxy.ts'

cleanupAfter(t)

function scopeOf (trial: string): string[] {
  return [`berth.test.copy=${trial}`, `${RUN_LABEL}=${RUN}`]
}

t.test('changes made with the docker CLI behind berth\'s back: every read matches the engine', async t => {
  const { copy, backend } = await openDocker(t, env.socket)
  const truth = (await openDocker(t, env.socket, { copy: false })).backend
  const app = await build(t, { engine: backend })
  const scope = { labels: scopeOf('cli'), images: (image: string) => image.includes(RUN), app }
  const check = async (what: string): Promise<void> => {
    await caughtUp(copy, docker)
    await compareWithEngine(t, backend, truth, scope, what)
  }
  const web = name('cli-web')
  const image = `${RUN}-cli/img:1`

  await cli('volume', 'create', ...owned('cli'), name('cli-data'))
  await cli('create', '--name', web, ...owned('cli'), '-p', '80', '-v', `${name('cli-data')}:/data`, env.image, 'httpd', '-f', '-p', '80', '-h', '/www')
  await check('created')
  await cli('start', web)
  await check('started: a port bound')
  await cli('pause', web)
  await check('paused')
  await cli('unpause', web)
  await cli('rename', web, name('cli-web2'))
  await check('renamed')
  for (const from of [backend, truth]) await t.rejects(from.containers.inspect(web), { code: 'not_found' }, 'the old name is gone')
  await cli('update', '--cpus', '0.5', name('cli-web2'))
  await check('updated: a CPU limit')
  await cli('network', 'create', '--label', `${RUN_LABEL}=${RUN}`, name('cli-net'))
  await cli('network', 'connect', '--alias', 'extra', name('cli-net'), name('cli-web2'))
  await check('connected to a network')

  // The list names an image by the reference it was run with only while that still names the image it runs.
  await cli('tag', env.image, image)
  await cli('create', '--name', name('cli-tagged'), ...owned('cli'), image, 'sleep', '300')
  await check('created from a tag of its own')
  await cli('commit', name('cli-web2'), image)
  await check('its tag moved to another image')
  t.equal((await backend.containers.list({ all: true, name: name('cli-tagged') }))[0]?.image, (await backend.containers.inspect(name('cli-tagged'))).imageId, 'ps names the image by id')
  await cli('rmi', image)
  await check('the other image removed')

  await cli('run', '-d', '--name', name('cli-exits'), ...owned('cli'), env.image, 'sh', '-c', 'exit 3')
  await cli('run', '-d', '--name', name('cli-health'), ...owned('cli'), '--health-cmd', 'true', '--health-interval', '1s', env.image, 'sleep', '300')
  await waitFor('the first to exit and the second to be healthy', async () => await truth.containers.list({ all: true, labels: scope.labels }),
    list => list.some(container => container.status.startsWith('Exited (3)')) && list.some(container => container.status.endsWith('(healthy)')), 60_000)
  await check('an exit code and a health status')
  await cli('start', name('cli-tagged'))
  await cli('kill', name('cli-tagged'))
  await cli('stop', '-t', '0', name('cli-web2'))
  await check('killed and stopped')
  // Another deployment's container is not in this berth's copy, and no read of it differs for that.
  await cli('create', '--name', name('cli-theirs'), '--label', `${RUN_LABEL}=${RUN}`, '--label', 'io.berth.deployment=elsewhere', env.image, 'sleep', '300')
  await check('another deployment\'s container beside them')
  await t.rejects(backend.containers.inspect(name('cli-theirs')), { code: 'not_found' }, 'not in the copy')
  t.equal((await truth.containers.inspect(name('cli-theirs'))).name, name('cli-theirs'), 'though on the engine')
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${name('cli-theirs')}`, headers: auth() })).statusCode, 404, 'and not found through berth, as ever')
  // A question about everybody's containers (who holds a port, who uses a volume) is the engine's to answer.
  t.ok((await backend.containers.list({ all: true, labels: [`${RUN_LABEL}=${RUN}`] })).some(container => container.name === name('cli-theirs')), 'everybody\'s containers are listed by the engine')
  await cli('rm', '-f', name('cli-web2'), name('cli-tagged'), name('cli-exits'), name('cli-health'), name('cli-theirs'))
  await cli('volume', 'rm', name('cli-data'))
  await cli('network', 'rm', name('cli-net'))
  await check('removed')
})

t.test('another berth on the same engine: what it does is read back here as the engine has it', async t => {
  const { copy, backend } = await openDocker(t, env.socket)
  const truth = (await openDocker(t, env.socket, { copy: false })).backend
  const app = await build(t, { engine: backend })
  const other = await build(t)
  const labels = { 'berth.test.copy': 'other' }
  const scope = { labels: scopeOf('other'), images: (image: string) => image.includes(RUN), app }
  const check = async (what: string): Promise<void> => {
    await caughtUp(copy, docker)
    await compareWithEngine(t, backend, truth, scope, what)
  }

  const made = await runContainer(other, 'alice', { name: name('other-a'), labels, volumes: [`${name('other-vol')}:/data`], ports: [{ container: 80 }], command: ['httpd', '-f', '-p', '80', '-h', '/www'] })
  t.equal(made.statusCode, 201, made.body)
  await check('run by the other berth')
  // Ownership is judged on the copy: alice sees her container here, bob does not.
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${name('other-a')}`, headers: auth('alice') })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${name('other-a')}`, headers: auth('bob') })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${name('other-vol')}`, headers: auth('alice') })).statusCode, 200)
  t.equal((await other.inject({ method: 'POST', url: `/v1/containers/${name('other-a')}/stop?timeout=0`, headers: auth('alice') })).statusCode, 200)
  await check('stopped by the other berth')
  t.equal((await other.inject({ method: 'POST', url: `/v1/containers/${name('other-a')}/start`, headers: auth('alice') })).statusCode, 200)
  await check('started again by the other berth')
  t.equal((await other.inject({ method: 'DELETE', url: `/v1/containers/${name('other-a')}?force=true`, headers: auth('alice') })).statusCode, 204)
  t.equal((await other.inject({ method: 'DELETE', url: `/v1/volumes/${name('other-vol')}`, headers: auth('alice') })).statusCode, 204)
  await check('removed by the other berth')
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${name('other-a')}`, headers: auth('alice') })).statusCode, 404)
})

t.test('berth\'s own writes are read back at once, even while the engine\'s events are held back', async t => {
  const proxy = new SocketProxy(env.socket)
  await proxy.start()
  t.teardown(() => proxy.close())
  const { copy, backend } = await openDocker(t, proxy.socketPath)
  const truth = (await openDocker(t, env.socket, { copy: false })).backend
  const app = await build(t, { engine: backend })
  await copy.ready(60_000)
  let events = 0
  const stop = copy.observe(() => { events++ })
  t.teardown(stop)
  proxy.hold()
  const labels = { 'berth.test.copy': 'own' }
  const list = async (): Promise<unknown> => (await app.inject({ method: 'GET', url: `/v1/containers?all=true&label=berth.test.copy%3Down&label=${RUN_LABEL}%3D${RUN}`, headers: auth() })).json()
  const engineList = async (): Promise<unknown> => (await truth.containers.list({ all: true, labels: scopeOf('own') })).map(timeless)
  const seen = events

  const made = await runContainer(app, 'admin', { name: name('own-a'), labels, stopTimeout: 1 })
  t.equal(made.statusCode, 201, made.body)
  t.same((made.json() as { state: string }).state, 'running')
  t.same((await list() as Array<{ status: string }>).map(timeless), await engineList(), 'listed at once')
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${name('own-a')}/stop?timeout=0`, headers: auth() })).json().container.state, 'exited')
  t.same((await list() as Array<{ status: string }>).map(timeless), await engineList(), 'stopped at once')
  const volume = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth(), payload: { name: name('own-vol'), labels: { [RUN_LABEL]: RUN } } })
  t.equal(volume.statusCode, 201, volume.body)
  t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${name('own-vol')}`, headers: auth() })).statusCode, 200, 'a volume made is there at once')
  const tagged = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: auth(), payload: { source: env.image, tag: `${RUN}-own/img:1` } })
  t.equal(tagged.statusCode, 201, tagged.body)
  t.ok(((await app.inject({ method: 'GET', url: '/v1/images', headers: auth() })).json() as Array<{ tags: string[] }>).some(image => image.tags.includes(`${RUN}-own/img:1`)), 'a tag made is listed at once')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${name('own-a')}`, headers: auth() })).statusCode, 204)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${name('own-a')}`, headers: auth() })).statusCode, 404, 'removed at once')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/volumes/${name('own-vol')}`, headers: auth() })).statusCode, 204)
  t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${name('own-vol')}`, headers: auth() })).statusCode, 404, 'a volume removed is gone at once')
  t.equal(events, seen, 'no event reached the copy meanwhile: each read came from berth\'s own writes')
  t.ok(copy.current, 'the copy stayed current')
  proxy.release()
  await caughtUp(copy, docker)
  await cli('rmi', `${RUN}-own/img:1`)
  t.ok(events > seen, 'the held events arrive once released')
})
