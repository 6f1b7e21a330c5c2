// Expiry on the real engine: a time to live or an idle timeout, after which berth stops or removes
// the container by itself; the owner moves the end; and all of it outlives berth, because it is kept
// in the engine's labels (and, for a moved end, in a labelled volume), never in berth's memory. Time
// is the app's clock, moved by the tests: the sweeper is driven by sweep(), never by waiting.
import t from 'tap'
import type { Backend } from '../src/engine/parts.ts'
import { LogCapture, RUN, TestClock, assertNoFaults, auth, build, cleanupAfter, docker, dockerEngine, gate, name, runBody, waitFor, withParts } from './helpers.ts'

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

/** An app of its own deployment on `clock`, so that its sweeper acts on this test's containers only; it sweeps when told. */
async function sweeping (t: Parameters<typeof build>[0], deployment: string, clock: TestClock, options: { logs?: LogCapture, engine?: Backend } = {}) {
  return await build(t, { ...options, now: clock.now, config: { deployment: `${RUN}-${deployment}`, lifecycle: { sweepIntervalMs: 0 } } })
}

const nothing = { removed: [], expired: [] }

t.test('a time to live: stopped, or removed, as asked; said in the log', async t => {
  const logs = new LogCapture()
  const clock = new TestClock()
  const app = await sweeping(t, 'ttl', clock, { logs })
  const stopped = await run(app, { name: name('ttl-stop'), expiry: { ttl: 60 } })
  t.equal(stopped.statusCode, 201, stopped.body)
  t.same(stopped.json().expiry, { expiresAt: new Date(clock.at + 60_000).toISOString(), idleTimeout: null, action: 'stop' }, 'a minute from the run')
  const removed = await run(app, { name: name('ttl-remove'), expiry: { ttl: 30, action: 'remove' } })
  t.equal(removed.statusCode, 201, removed.body)
  const [stopId, removeId] = [stopped.json().id, removed.json().id]

  clock.advance(29_999)
  t.same(await app.lifecycle.sweep(), nothing, 'not before its time')
  clock.advance(1)
  t.same(await app.lifecycle.sweep(), { removed: [], expired: [{ id: removeId, action: 'remove', reason: 'ttl' }] })
  t.equal(await state(removeId), 'gone')
  t.equal(await state(stopId), 'running')
  clock.advance(30_000)
  t.same(await app.lifecycle.sweep(), { removed: [], expired: [{ id: stopId, action: 'stop', reason: 'ttl' }] })
  t.equal(await state(stopId), 'exited', 'stopped stays stopped, its data and logs there')
  t.same(await app.lifecycle.sweep(), nothing, 'a stopped one is not stopped again')
  t.match(logs.lines.filter(line => line.lifecycle !== undefined).map(line => [line.msg, line.lifecycle]), [
    ['a container\'s time to live is over', { action: 'remove', reason: 'ttl', container: { id: removeId, name: name('ttl-remove') }, owner: 'alice' }],
    ['a container\'s time to live is over', { action: 'stop', reason: 'ttl', container: { id: stopId, name: name('ttl-stop') }, owner: 'alice' }]
  ])
})

t.test('the owner moves the end: extended, it lives on; shortened, it goes', async t => {
  const logs = new LogCapture()
  const clock = new TestClock()
  const app = await sweeping(t, 'extend', clock, { logs })
  const response = await run(app, { name: name('extended'), expiry: { ttl: 3, idleTimeout: 3600, action: 'stop' } })
  t.equal(response.statusCode, 201, response.body)
  const id = response.json().id
  const extend = await app.inject({ method: 'PUT', url: `/v1/containers/${name('extended')}/expiry`, headers: { ...auth('alice'), 'x-request-id': 'extend' }, payload: { ttl: 3600 } })
  t.equal(extend.statusCode, 200, extend.body)
  const moved = new Date(clock.at + 3600_000).toISOString()
  t.same(extend.json().expiry, { expiresAt: moved, idleTimeout: 3600, action: 'stop' }, 'an hour from now; the idle timeout and action stay')
  t.match(logs.lines.find(line => line.requestId === 'extend' && line.msg === 'audit')?.audit, { actor: 'alice', action: 'PUT /v1/containers/:idOrName/expiry', target: { container: { id, name: name('extended') }, expiresAt: moved }, status: 200 })
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(inspect.json().expiry.expiresAt, moved, 'inspect says the moved end')
  clock.advance(4000)
  t.same(await app.lifecycle.sweep(), nothing)
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
  t.equal((await leases(id)).length, 1, 'one moved end at a time')
  clock.advance(1000)
  t.same(await app.lifecycle.sweep(), { removed: [], expired: [{ id, action: 'stop', reason: 'ttl' }] })
  const remove = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.equal(remove.statusCode, 204)
  t.same(await app.lifecycle.sweep(), nothing)
  t.same(await leases(id), [], 'its moved end is forgotten at the next look')
})

t.test('berth restarts: a later berth keeps to what the first one was told', async t => {
  const clock = new TestClock()
  const deployment = 'restart'
  const first = await sweeping(t, deployment, clock)
  const plain = await run(first, { name: name('survives'), expiry: { ttl: 2 } })
  const moved = await run(first, { name: name('moved'), expiry: { ttl: 1 } })
  t.equal(plain.statusCode, 201, plain.body)
  t.equal(moved.statusCode, 201, moved.body)
  t.equal((await first.inject({ method: 'PUT', url: `/v1/containers/${name('moved')}/expiry`, headers: auth('alice'), payload: { ttl: 6 } })).statusCode, 200)
  await first.close()
  clock.advance(2500)
  t.equal(await state(plain.json().id), 'running', 'nothing stops it while no berth runs')

  const second = await sweeping(t, deployment, clock)
  t.same(await second.lifecycle.sweep(), { removed: [], expired: [{ id: plain.json().id, action: 'stop', reason: 'ttl' }] }, 'the later berth stops the expired one')
  t.equal(await state(moved.json().id), 'running', 'the moved end is kept to as well: not yet')
  clock.advance(3500)
  t.same(await second.lifecycle.sweep(), { removed: [], expired: [{ id: moved.json().id, action: 'stop', reason: 'ttl' }] }, 'the moved one at its new end')
})

t.test('an idle timeout: what sits idle is stopped, what works is not', async t => {
  const clock = new TestClock()
  const app = await sweeping(t, 'idle', clock)
  const idle = await run(app, { name: name('idle'), expiry: { idleTimeout: 2 } })
  const busy = await run(app, { name: name('busy'), expiry: { idleTimeout: 2 }, resources: { cpus: 0.2 }, command: ['sh', '-c', 'while :; do :; done'] })
  t.equal(idle.statusCode, 201, idle.body)
  t.equal(busy.statusCode, 201, busy.body)
  t.match(idle.json().expiry, { expiresAt: null, idleTimeout: 2, action: 'stop' })
  const cpu = async (id: string) => (await docker.getContainer(id).stats({ stream: false, 'one-shot': true } as { stream: false })).cpu_stats.cpu_usage.total_usage / 1e9
  t.same(await app.lifecycle.sweep(), nothing, 'a first look only starts watching')
  // Two seconds pass on berth's clock; the busy one uses more than 1 % of a core of them meanwhile.
  const before = await cpu(busy.json().id)
  clock.advance(2000)
  await waitFor('the busy one to work', () => cpu(busy.json().id), used => used - before > 0.1)
  t.same(await app.lifecycle.sweep(), { removed: [], expired: [{ id: idle.json().id, action: 'stop', reason: 'idle' }] })
  t.equal(await state(idle.json().id), 'exited')
  t.equal(await state(busy.json().id), 'running', 'a busy one runs on')
})

t.test('an answered expiry holds: a sweep that read the old end keeps to the new one', async t => {
  const clock = new TestClock()
  const real = await dockerEngine()
  const listed = gate()
  const proceed = gate()
  let holding = false
  // The sweep reads the ends, then is held there while the owner moves one.
  const engine = withParts(real, {
    expiry: {
      list: async labels => {
        const found = await real.part('expiry').list(labels)
        if (holding) {
          listed.open()
          await proceed.opened
        }
        return found
      }
    }
  })
  const logs = new LogCapture()
  const app = await sweeping(t, 'answered', clock, { engine, logs })
  const response = await run(app, { name: name('answered'), expiry: { ttl: 60 } })
  t.equal(response.statusCode, 201, response.body)
  clock.advance(61_000)
  holding = true
  const sweep = app.lifecycle.sweep()
  await listed.opened
  const moved = await app.inject({ method: 'PUT', url: `/v1/containers/${name('answered')}/expiry`, headers: auth('alice'), payload: { ttl: 60 } })
  t.equal(moved.statusCode, 200, moved.body)
  t.equal(moved.json().expiry.expiresAt, new Date(clock.at + 60_000).toISOString())
  holding = false
  proceed.open()
  t.same(await sweep, nothing, 'the sweep that read the old end does not act on it')
  t.equal(await state(response.json().id), 'running')
  clock.advance(60_000)
  t.same(await app.lifecycle.sweep(), { removed: [], expired: [{ id: response.json().id, action: 'stop', reason: 'ttl' }] }, 'the new end is kept to')
  assertNoFaults(t, logs)
})

t.test('an answered expiry holds: moved while the container is being stopped, it answers once the stop is done', async t => {
  const clock = new TestClock()
  const real = await dockerEngine()
  const calls: string[] = []
  const stopping = gate()
  const finish = gate()
  let target = ''
  const engine = withParts(real, {
    containers: {
      stop: async (id, options) => {
        if (id !== target) return await real.containers.stop(id, options)
        calls.push('stop')
        stopping.open()
        await finish.opened
        const changed = await real.containers.stop(id, options)
        calls.push('stopped')
        return changed
      },
      inspect: async idOrName => {
        if (idOrName === name('held')) calls.push('found by the PUT')
        return await real.containers.inspect(idOrName)
      }
    },
    expiry: {
      set: async (id, expiresAt) => {
        calls.push('setExpiry')
        await real.part('expiry').set(id, expiresAt)
      }
    }
  })
  const logs = new LogCapture()
  const app = await sweeping(t, 'held', clock, { engine, logs })
  const response = await run(app, { name: name('held'), expiry: { ttl: 60 }, init: true })
  t.equal(response.statusCode, 201, response.body)
  target = response.json().id
  calls.length = 0
  clock.advance(61_000)
  const sweep = app.lifecycle.sweep()
  await stopping.opened
  const put = app.inject({ method: 'PUT', url: `/v1/containers/${name('held')}/expiry`, headers: auth('alice'), payload: { ttl: 60 } })
  await waitFor('the PUT to find its container', () => calls.includes('found by the PUT'))
  finish.open()
  const moved = await put
  t.equal(moved.statusCode, 200, moved.body)
  t.same(calls, ['stop', 'found by the PUT', 'stopped', 'setExpiry'], 'the end is moved after the stop under way, never beside it')
  t.match(moved.json(), { state: 'exited', expiry: { expiresAt: new Date(clock.at + 60_000).toISOString() } }, 'the answer says what happened: stopped, with the new end')
  t.same(await sweep, { removed: [], expired: [{ id: target, action: 'stop', reason: 'ttl' }] })
  // Started again, it lives to its new end.
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${target}/start`, headers: auth('alice') })).statusCode, 200)
  t.same(await app.lifecycle.sweep(), nothing)
  t.equal(await state(target), 'running')
  assertNoFaults(t, logs)
})

t.test('one slow stop holds up nobody else: sweep work runs side by side', async t => {
  const clock = new TestClock()
  const real = await dockerEngine()
  const begun = new Set<string>()
  const ended = new Set<string>()
  const engine = withParts(real, {
    containers: {
      stop: async (id, options) => {
        begun.add(id)
        try {
          return await real.containers.stop(id, options)
        } finally {
          ended.add(id)
        }
      }
    }
  })
  const logs = new LogCapture()
  const app = await sweeping(t, 'slow', clock, { engine, logs })
  // PID 1 (sleep) ignores SIGTERM, and the stop waits an hour before it kills.
  const slow = await run(app, { name: name('slow'), expiry: { ttl: 10 }, stopTimeout: 3600 })
  const quick = await run(app, { name: name('quick'), expiry: { ttl: 20, action: 'remove' } })
  t.equal(slow.statusCode, 201, slow.body)
  t.equal(quick.statusCode, 201, quick.body)
  const slowId = slow.json().id
  clock.advance(10_000)
  const first = app.lifecycle.sweep()
  await waitFor('the slow stop to be under way', () => begun.has(slowId))
  clock.advance(10_000)
  const second = await Promise.race([
    app.lifecycle.sweep(),
    new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the next sweep waited for the slow stop')), 60_000).unref())
  ])
  t.same(second, { removed: [], expired: [{ id: quick.json().id, action: 'remove', reason: 'ttl' }] }, 'the next look removes the other at its end')
  t.equal(await state(quick.json().id), 'gone')
  t.notOk(ended.has(slowId), 'while the slow stop is still under way')
  t.equal(await state(slowId), 'running')
  t.same(await app.lifecycle.sweep(), nothing, 'a container already being worked on is not worked on twice')
  // Removing it ends the stop that waits for it (which the engine may answer either way).
  await docker.getContainer(slowId).remove({ force: true })
  await first
  assertNoFaults(t, logs)
})

t.test('ownership and bad input', async t => {
  const app = await sweeping(t, 'refusals', new TestClock())
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
