// Expiry on the real engine: a time to live or an idle timeout, after which berth stops or removes
// the container by itself; the owner moves the end; and all of it outlives berth, because it is kept
// in the engine's labels (and, for a moved end, in a labelled volume), never in berth's memory.
import t from 'tap'
import { LogCapture, RUN, auth, build, cleanupAfter, docker, name, runBody, waitFor } from './helpers.ts'

cleanupAfter(t)
// A moved end is kept in a volume named after the container, not the run: removed here by the ids this file made.
const made = new Set<string>()
t.teardown(async () => {
  for (const id of made) for (const volume of await leases(id)) await docker.getVolume(volume).remove().catch(() => {})
})

type App = Awaited<ReturnType<typeof build>>

async function run (app: App, body: Record<string, unknown>, who: 'alice' | 'bob' = 'alice') {
  const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
  if (response.statusCode === 201) made.add(response.json().id)
  return response
}

async function state (id: string): Promise<string> {
  return await docker.getContainer(id).inspect().then(info => info.State.Status, () => 'gone')
}

async function leases (id: string): Promise<string[]> {
  return ((await docker.listVolumes({ filters: { label: [`io.berth.lease-for=${id}`] } })).Volumes ?? []).map(volume => volume.Name)
}

/** An app of its own deployment, so that its sweeper acts on this test's containers only. */
async function sweeping (t: Parameters<typeof build>[0], deployment: string, logs?: LogCapture, sweepIntervalMs = 150) {
  return await build(t, { ...(logs === undefined ? {} : { logs }), config: { deployment: `${RUN}-${deployment}`, lifecycle: { sweepIntervalMs } } })
}

t.test('a time to live: stopped, or removed, as asked; said in the log', async t => {
  const logs = new LogCapture()
  const app = await sweeping(t, 'ttl', logs)
  const began = Date.now()
  const stopped = await run(app, { name: name('ttl-stop'), expiry: { ttl: 2 } })
  t.equal(stopped.statusCode, 201, stopped.body)
  const expiresAt = Date.parse(stopped.json().expiry.expiresAt)
  t.match(stopped.json().expiry, { idleTimeout: null, action: 'stop' })
  t.ok(expiresAt >= began + 1500 && expiresAt <= Date.now() + 2500, 'two seconds from the run')
  const removed = await run(app, { name: name('ttl-remove'), expiry: { ttl: 1, action: 'remove' } })
  t.equal(removed.statusCode, 201, removed.body)
  t.equal(await state(stopped.json().id), 'running')
  await waitFor('the first to be stopped', () => state(stopped.json().id), s => s === 'exited', 15_000)
  t.ok(Date.now() >= expiresAt, 'not before its time')
  await waitFor('the second to be removed', () => state(removed.json().id), s => s === 'gone', 15_000)
  const lines = logs.lines.filter(line => line.lifecycle !== undefined).map(line => [line.msg, line.lifecycle])
    .sort((a, b) => String((a[1] as { action: string }).action).localeCompare(String((b[1] as { action: string }).action)))
  t.match(lines, [
    ['a container\'s time to live is over', { action: 'remove', reason: 'ttl', container: { name: name('ttl-remove') }, owner: 'alice' }],
    ['a container\'s time to live is over', { action: 'stop', reason: 'ttl', container: { name: name('ttl-stop') }, owner: 'alice' }]
  ].sort((a, b) => String((a[1] as { action: string }).action).localeCompare(String((b[1] as { action: string }).action))))
  t.equal((await docker.getContainer(stopped.json().id).inspect()).State.Status, 'exited', 'stopped stays stopped, its data and logs there')
})

t.test('the owner moves the end: extended, it lives on; shortened, it goes', async t => {
  const logs = new LogCapture()
  const app = await sweeping(t, 'extend', logs)
  const response = await run(app, { name: name('extended'), expiry: { ttl: 3, idleTimeout: 3600, action: 'stop' } })
  t.equal(response.statusCode, 201, response.body)
  const id = response.json().id
  const extend = await app.inject({ method: 'PUT', url: `/v1/containers/${name('extended')}/expiry`, headers: { ...auth('alice'), 'x-request-id': 'extend' }, payload: { ttl: 3600 } })
  t.equal(extend.statusCode, 200, extend.body)
  const moved = Date.parse(extend.json().expiry.expiresAt)
  t.ok(moved > Date.now() + 3500 * 1000, 'an hour from now')
  t.same({ ...extend.json().expiry, expiresAt: 'x' }, { expiresAt: 'x', idleTimeout: 3600, action: 'stop' }, 'the idle timeout and action stay')
  t.match(logs.lines.find(line => line.requestId === 'extend' && line.msg === 'audit')?.audit, { actor: 'alice', action: 'PUT /v1/containers/:idOrName/expiry', target: { container: { id, name: name('extended') }, expiresAt: extend.json().expiry.expiresAt }, status: 200 })
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(Date.parse(inspect.json().expiry.expiresAt), moved, 'inspect says the moved end')
  await new Promise(resolve => setTimeout(resolve, 4000))
  t.equal(await state(id), 'running', 'past its first end, it runs on')
  t.equal((await leases(id)).length, 1, 'the moved end is kept on the engine')
  // The bookkeeping is nobody's volume: not the owner's, not listed to an admin.
  for (const who of ['alice', 'admin'] as const) {
    const volumes = await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth(who) })
    t.notOk(volumes.json().some((volume: { name: string }) => volume.name.startsWith('berth-lease-')), `not in ${who}'s volumes`)
  }
  const lease = (await leases(id))[0] as string
  t.equal((await app.inject({ method: 'GET', url: `/v1/volumes/${lease}`, headers: auth('admin') })).statusCode, 404)

  const shorten = await app.inject({ method: 'PUT', url: `/v1/containers/${id}/expiry`, headers: auth('alice'), payload: { ttl: 1 } })
  t.equal(shorten.statusCode, 200)
  t.same(await leases(id), [(await leases(id))[0]], 'one moved end at a time')
  await waitFor('it to be stopped', () => state(id), s => s === 'exited', 15_000)
  const remove = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(remove.statusCode, 204)
  await waitFor('its moved end to be forgotten', () => leases(id), list => list.length === 0, 15_000)
})

t.test('berth restarts: a later berth keeps to what the first one was told', async t => {
  const deployment = 'restart'
  const first = await sweeping(t, deployment, undefined, 0)
  const plain = await run(first, { name: name('survives'), expiry: { ttl: 2 } })
  const moved = await run(first, { name: name('moved'), expiry: { ttl: 1 } })
  t.equal(plain.statusCode, 201, plain.body)
  t.equal(moved.statusCode, 201, moved.body)
  t.equal((await first.inject({ method: 'PUT', url: `/v1/containers/${name('moved')}/expiry`, headers: auth('alice'), payload: { ttl: 6 } })).statusCode, 200)
  await first.close()
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.equal(await state(plain.json().id), 'running', 'nothing stops it while no berth runs')

  const second = await sweeping(t, deployment)
  await second.ready()
  await waitFor('the later berth to stop the expired one', () => state(plain.json().id), s => s === 'exited', 15_000)
  t.equal(await state(moved.json().id), 'running', 'the moved end is kept to as well: not yet')
  await waitFor('the moved one to be stopped at its new end', () => state(moved.json().id), s => s === 'exited', 15_000)
})

t.test('an idle timeout: what sits idle is stopped, what works is not', async t => {
  const app = await sweeping(t, 'idle', undefined, 300)
  const idle = await run(app, { name: name('idle'), expiry: { idleTimeout: 2 } })
  const busy = await run(app, { name: name('busy'), expiry: { idleTimeout: 2 }, resources: { cpus: 0.2 }, command: ['sh', '-c', 'while :; do :; done'] })
  t.equal(idle.statusCode, 201, idle.body)
  t.equal(busy.statusCode, 201, busy.body)
  t.match(idle.json().expiry, { expiresAt: null, idleTimeout: 2, action: 'stop' })
  await waitFor('the idle one to be stopped', () => state(idle.json().id), s => s === 'exited', 20_000)
  t.equal(await state(busy.json().id), 'running', 'a busy one runs on')
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.equal(await state(busy.json().id), 'running')
})

t.test('ownership and bad input', async t => {
  const app = await sweeping(t, 'refusals', undefined, 0)
  const hers = await run(app, { name: name('hers'), expiry: { ttl: 3600 } })
  t.equal(hers.statusCode, 201, hers.body)
  const plain = await run(app, { name: name('no-expiry') })
  t.equal(plain.statusCode, 201)
  const bobs = await app.inject({ method: 'PUT', url: `/v1/containers/${name('hers')}/expiry`, headers: auth('bob'), payload: { ttl: 1 } })
  t.equal(bobs.statusCode, 404, 'another token\'s container does not exist')
  const reader = await app.inject({ method: 'PUT', url: `/v1/containers/${name('hers')}/expiry`, headers: auth('reader'), payload: { ttl: 1 } })
  t.equal(reader.statusCode, 403)
  const none = await app.inject({ method: 'PUT', url: `/v1/containers/${name('no-expiry')}/expiry`, headers: auth('alice'), payload: { ttl: 60 } })
  t.equal(none.statusCode, 409)
  t.match(none.json(), { code: 'expiry_not_set', detail: `container ${name('no-expiry')} was run without an expiry: there is no end to move` })
  for (const [what, payload] of [['no ttl', {}], ['a zero ttl', { ttl: 0 }], ['a fractional ttl', { ttl: 1.5 }], ['an unknown field', { ttl: 5, action: 'remove' }]] as const) {
    const response = await app.inject({ method: 'PUT', url: `/v1/containers/${name('hers')}/expiry`, headers: auth('alice'), payload })
    t.equal(response.statusCode, 400, what)
  }
  for (const [what, expiry, detail] of [
    ['neither ttl nor idle timeout', { action: 'remove' }, /body\/expiry needs a ttl, an idleTimeout or both/],
    ['an unknown action', { ttl: 5, action: 'explode' }, /body\/expiry\/action/],
    ['a negative ttl', { ttl: -1 }, /body\/expiry\/ttl must be >= 1/]
  ] as const) {
    const response = await run(app, { name: name('bad-expiry'), expiry })
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  t.same(await docker.listContainers({ all: true, filters: { name: [name('bad-expiry')] } }), [], 'nothing was created')
  t.equal(await state(hers.json().id), 'running')
})
