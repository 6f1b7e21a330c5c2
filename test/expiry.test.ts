// Expiry on the real engine: a time to live or an idle timeout, after which berth stops or removes
// the container by itself; the owner moves the end; and all of it outlives berth, because it is kept
// in the engine's labels (and, for a moved end, in a labelled volume), never in berth's memory. The
// tests sweep themselves, with the sweeper's clock set where they want it: nothing waits for time.
import t from 'tap'
import type { SweepReport } from '../src/lifecycle/sweeper.ts'
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

/** The sweeper's clock, set by the test: an expiry is reached by moving it there, never by waiting. */
class Clock {
  at = Date.now()
  readonly now = (): number => this.at
}

/**
 * An app of its own deployment, so that its sweeper acts on this test's containers only. It never
 * sweeps by itself: the test sweeps (app.lifecycle.sweep()) when it has set the scene.
 */
async function sweeping (t: Parameters<typeof build>[0], deployment: string, options: { logs?: LogCapture, clock?: Clock } = {}) {
  const app = await build(t, {
    ...(options.logs === undefined ? {} : { logs: options.logs }),
    ...(options.clock === undefined ? {} : { now: options.clock.now }),
    config: { deployment: `${RUN}-${deployment}`, lifecycle: { sweepIntervalMs: 0 } }
  })
  await app.ready()
  return app
}

/** The ids a sweep stopped or removed for expiring, with why. */
const expired = (report: SweepReport) => report.expired.map(({ id, action, reason }) => `${id} ${action} ${reason}`).sort()

t.test('a time to live: stopped, or removed, as asked, once its end is reached; said in the log', async t => {
  const logs = new LogCapture()
  const clock = new Clock()
  const app = await sweeping(t, 'ttl', { logs, clock })
  const began = Date.now()
  // A stop waits out the grace period; sleep as PID 1 ignores SIGTERM, so keep it short.
  const stopped = await run(app, { name: name('ttl-stop'), expiry: { ttl: 2 }, stopTimeout: 1 })
  t.equal(stopped.statusCode, 201, stopped.body)
  const answered = Date.now()
  const expiresAt = Date.parse(stopped.json().expiry.expiresAt)
  t.match(stopped.json().expiry, { idleTimeout: null, action: 'stop' })
  t.ok(expiresAt >= began + 2000 && expiresAt <= answered + 2000, 'two seconds from the run')
  const removed = await run(app, { name: name('ttl-remove'), expiry: { ttl: 1, action: 'remove' } })
  t.equal(removed.statusCode, 201, removed.body)
  const removedAt = Date.parse(removed.json().expiry.expiresAt)

  // Just before the first end: nothing expires. Then at each end (in whichever order they fall), that one goes.
  const ends = [
    { id: stopped.json().id as string, end: expiresAt, action: 'stop', gone: 'exited' },
    { id: removed.json().id as string, end: removedAt, action: 'remove', gone: 'gone' }
  ].sort((a, b) => a.end - b.end)
  clock.at = (ends[0] as { end: number }).end - 1
  t.same(expired(await app.lifecycle.sweep()), [], 'not before its time')
  t.equal(await state(stopped.json().id), 'running')
  t.equal(await state(removed.json().id), 'running')
  for (const { end } of ends) {
    if (clock.at === end) continue
    clock.at = end
    const due = ends.filter(entry => entry.end === end)
    t.same(expired(await app.lifecycle.sweep()), due.map(entry => `${entry.id} ${entry.action} ttl`).sort(), `at its end, ${due.map(entry => entry.action).join(' and ')}`)
    for (const entry of due) await waitFor(`the ${entry.action} to be done`, () => state(entry.id), s => s === entry.gone)
    for (const entry of ends.filter(entry => entry.end > end)) t.equal(await state(entry.id), 'running', 'the other one\'s end is later')
  }
  t.same(expired(await app.lifecycle.sweep()), [], 'a stopped one is not stopped again')

  const lines = logs.lines.filter(line => line.lifecycle !== undefined).map(line => [line.msg, line.lifecycle])
  const byAction = (a: unknown[], b: unknown[]) => String((a[1] as { action: string }).action).localeCompare(String((b[1] as { action: string }).action))
  t.match(lines.sort(byAction), [
    ['a container\'s time to live is over', { action: 'remove', reason: 'ttl', container: { name: name('ttl-remove') }, owner: 'alice' }],
    ['a container\'s time to live is over', { action: 'stop', reason: 'ttl', container: { name: name('ttl-stop') }, owner: 'alice' }]
  ])
  t.equal((await docker.getContainer(stopped.json().id).inspect()).State.Status, 'exited', 'stopped stays stopped, its data and logs there')
})

t.test('the owner moves the end: extended, it lives on; shortened, it goes', async t => {
  const logs = new LogCapture()
  const clock = new Clock()
  const app = await sweeping(t, 'extend', { logs, clock })
  const response = await run(app, { name: name('extended'), expiry: { ttl: 3, idleTimeout: 3600, action: 'stop' }, stopTimeout: 1 })
  t.equal(response.statusCode, 201, response.body)
  const id = response.json().id
  const firstEnd = Date.parse(response.json().expiry.expiresAt)
  const extend = await app.inject({ method: 'PUT', url: `/v1/containers/${name('extended')}/expiry`, headers: { ...auth('alice'), 'x-request-id': 'extend' }, payload: { ttl: 3600 } })
  t.equal(extend.statusCode, 200, extend.body)
  const moved = Date.parse(extend.json().expiry.expiresAt)
  t.ok(moved > Date.now() + 3500 * 1000, 'an hour from now')
  t.same({ ...extend.json().expiry, expiresAt: 'x' }, { expiresAt: 'x', idleTimeout: 3600, action: 'stop' }, 'the idle timeout and action stay')
  t.match(logs.lines.find(line => line.requestId === 'extend' && line.msg === 'audit')?.audit, { actor: 'alice', action: 'PUT /v1/containers/:idOrName/expiry', target: { container: { id, name: name('extended') }, expiresAt: extend.json().expiry.expiresAt }, status: 200 })
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(Date.parse(inspect.json().expiry.expiresAt), moved, 'inspect says the moved end')
  // Past the end it was run with, a look finds nothing to do.
  clock.at = firstEnd + 1000
  t.same(expired(await app.lifecycle.sweep()), [], 'past its first end, nothing expires')
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
  clock.at = Date.parse(shorten.json().expiry.expiresAt)
  t.same(expired(await app.lifecycle.sweep()), [`${id} stop ttl`], 'at the shortened end, stopped')
  await waitFor('it to be stopped', () => state(id), s => s === 'exited')
  const remove = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(remove.statusCode, 204)
  // The next look at the engine forgets the moved end of a container that is gone.
  await app.lifecycle.sweep()
  t.same(await leases(id), [], 'its moved end is forgotten')
})

t.test('berth restarts: a later berth keeps to what the first one was told', async t => {
  const deployment = 'restart'
  const first = await sweeping(t, deployment)
  const plain = await run(first, { name: name('survives'), expiry: { ttl: 2 }, stopTimeout: 1 })
  const moved = await run(first, { name: name('moved'), expiry: { ttl: 1 }, stopTimeout: 1 })
  t.equal(plain.statusCode, 201, plain.body)
  t.equal(moved.statusCode, 201, moved.body)
  const movedTo = await first.inject({ method: 'PUT', url: `/v1/containers/${name('moved')}/expiry`, headers: auth('alice'), payload: { ttl: 6 } })
  t.equal(movedTo.statusCode, 200)
  await first.close()

  // Nothing of that lives in the first berth: the later one reads it all from the engine.
  const clock = new Clock()
  const second = await sweeping(t, deployment, { clock })
  clock.at = Date.parse(plain.json().expiry.expiresAt)
  t.same(expired(await second.lifecycle.sweep()), [`${plain.json().id} stop ttl`], 'the later berth stops the expired one')
  await waitFor('the later berth to stop the expired one', () => state(plain.json().id), s => s === 'exited')
  t.equal(await state(moved.json().id), 'running', 'the moved end is kept to as well: not yet, though its first end is past')
  clock.at = Date.parse(movedTo.json().expiry.expiresAt)
  t.same(expired(await second.lifecycle.sweep()), [`${moved.json().id} stop ttl`], 'at its new end')
  await waitFor('the moved one to be stopped at its new end', () => state(moved.json().id), s => s === 'exited')
})

t.test('an idle timeout: what sits idle is stopped, what works is not', async t => {
  // Idleness is the engine's real CPU and network counters between two looks, so this runs on the
  // real clock: the test looks (sweeps) until the idle one has been idle for its timeout.
  const app = await sweeping(t, 'idle')
  const idle = await run(app, { name: name('idle'), expiry: { idleTimeout: 2 }, stopTimeout: 1 })
  const busy = await run(app, { name: name('busy'), expiry: { idleTimeout: 2 }, resources: { cpus: 0.2 }, command: ['sh', '-c', 'while :; do :; done'] })
  t.equal(idle.statusCode, 201, idle.body)
  t.equal(busy.statusCode, 201, busy.body)
  t.match(idle.json().expiry, { expiresAt: null, idleTimeout: 2, action: 'stop' })
  // Both are looked at in every sweep, from the first: the busy one is watched as long as the idle one.
  const reports: SweepReport[] = []
  await waitFor('a sweep to stop the idle one', async () => {
    const report = await app.lifecycle.sweep()
    reports.push(report)
    return report
  }, report => report.expired.length > 0, 60_000)
  t.same(expired(reports.at(-1) as SweepReport), [`${idle.json().id} stop idle`], 'the idle one, for being idle')
  t.same(reports.flatMap(report => report.expired).filter(entry => entry.id === busy.json().id), [], `the busy one in none of ${reports.length} looks`)
  await waitFor('the idle one to be stopped', () => state(idle.json().id), s => s === 'exited')
  t.same(expired(await app.lifecycle.sweep()), [], 'and not at the next look either')
  t.equal(await state(busy.json().id), 'running', 'a busy one runs on')
})

t.test('ownership and bad input', async t => {
  const app = await sweeping(t, 'refusals')
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
