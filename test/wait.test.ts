// docker wait through berth, for batch jobs: run, wait, read logs, remove. autoRemove keeps a
// container and its logs until a wait collects its exit, or until its grace period is over — also
// when the berth that ran it has restarted meanwhile (the state is in the engine's labels).
import t from 'tap'
import { LogCapture, RUN, TestClock, auth, build, cleanupAfter, docker, name, runBody, waitFor } from './helpers.ts'
import { listen } from './stream-client.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function run (app: App, body: Record<string, unknown>, who: 'admin' | 'alice' | 'bob' = 'alice') {
  return await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
}

async function state (id: string): Promise<string> {
  return await docker.getContainer(id).inspect().then(info => info.State.Status, () => 'gone')
}

t.test('a batch job: run, wait for its exit code, read its logs, remove it', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const started = await run(app, { name: name('job'), command: ['sh', '-c', 'echo out; echo err >&2; sleep 1; exit 3'] })
  t.equal(started.statusCode, 201, started.body)
  const id = started.json().id
  const wait = await app.inject({ method: 'POST', url: `/v1/containers/${name('job')}/wait`, headers: { ...auth('alice'), 'x-request-id': 'wait-job' } })
  t.equal(wait.statusCode, 200, wait.body)
  t.same(wait.json(), { stopped: true, exitCode: 3, oomKilled: false, error: null, removed: false })
  t.equal(await state(id), 'exited', 'the wait answered once it stopped')
  const audit = logs.lines.find(line => line.requestId === 'wait-job' && line.msg === 'audit')?.audit
  t.same(audit, { actor: 'alice', action: 'POST /v1/containers/:idOrName/wait', target: { container: { requested: name('job'), id, name: name('job') } }, status: 200 })

  const output = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
  t.same(output.body.trim().split('\n').map(line => JSON.parse(line)).sort((a, b) => a.stream.localeCompare(b.stream)),
    [{ stream: 'stderr', line: 'err' }, { stream: 'stdout', line: 'out' }])
  const again = await app.inject({ method: 'POST', url: `/v1/containers/${id.slice(0, 12)}/wait`, headers: auth('alice') })
  t.equal(again.json().exitCode, 3, 'waiting on a stopped container answers at once')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, 204)
})

t.test('autoRemove: the container and its logs stay until the wait collects its exit', async t => {
  const app = await build(t, { config: { lifecycle: { sweepIntervalMs: 0 } } })
  const started = await run(app, { name: name('rm-job'), command: ['sh', '-c', 'echo finished; exit 2'], autoRemove: true })
  t.equal(started.statusCode, 201, started.body)
  const id = started.json().id
  t.equal(started.json().autoRemove, true)
  t.equal((await docker.getContainer(id).inspect()).HostConfig.AutoRemove, false, 'the engine is not told to remove it: berth will')
  await waitFor('the job to exit', () => state(id), s => s === 'exited')
  // A look for what to remove finds it within its grace period: it stays.
  t.same((await app.lifecycle.sweep()).removed, [], 'a sweep leaves it')
  t.equal(await state(id), 'exited', 'still there after it exited')
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
  t.match(inspect.json(), { state: 'exited', exitCode: 2, autoRemove: true })
  const output = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
  t.equal(output.body, 'finished\n', 'its logs are readable')

  const wait = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
  t.equal(wait.statusCode, 200, wait.body)
  t.same(wait.json(), { stopped: true, exitCode: 2, oomKilled: false, error: null, removed: true })
  t.equal(await state(id), 'gone', 'removed once its exit was collected')
  const after = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
  t.equal(after.statusCode, 404)
})

t.test('autoRemove nobody waits for: removed after its grace period, by a berth that started after it exited', async t => {
  const deployment = `${RUN}-sweep`
  // The first berth runs the job and goes away before it ends; it never sweeps.
  const first = await build(t, { config: { deployment, lifecycle: { sweepIntervalMs: 0 } } })
  const job = await run(first, { name: name('orphan'), command: ['sh', '-c', 'sleep 1; exit 4'], autoRemove: true })
  t.equal(job.statusCode, 201, job.body)
  const kept = await run(first, { name: name('kept'), command: ['true'] })
  t.equal(kept.statusCode, 201, kept.body)
  // Another deployment's autoRemove container on the same engine is not this berth's to remove.
  const other = await run(await build(t, { config: { lifecycle: { sweepIntervalMs: 0 } } }), { name: name('other-deployment'), command: ['true'], autoRemove: true })
  t.equal(other.statusCode, 201, other.body)
  await first.close()
  await waitFor('the job to exit', () => state(job.json().id), s => s === 'exited')

  // The second berth's clock stands a moment before the grace period is over, then at its end.
  const finishedAt = Date.parse((await docker.getContainer(job.json().id).inspect()).State.FinishedAt)
  const clock = new TestClock()
  clock.at = finishedAt + 6000 - 1
  const logs = new LogCapture()
  const second = await build(t, { logs, now: clock.now, config: { deployment, lifecycle: { sweepIntervalMs: 0, autoRemoveGraceMs: 6000 } } })
  t.same(await second.lifecycle.sweep(), { removed: [], expired: [] }, 'kept during its grace period')
  t.equal(await state(job.json().id), 'exited')
  clock.advance(1)
  t.same(await second.lifecycle.sweep(), { removed: [job.json().id], expired: [] }, 'removed once it is over')
  t.equal(await state(job.json().id), 'gone')
  const line = logs.lines.find(entry => (entry.lifecycle as { container?: { id?: string } } | undefined)?.container?.id === job.json().id)
  t.match(line, { level: 30, msg: 'removed an exited autoRemove container nobody waited for', lifecycle: { action: 'remove', reason: 'autoRemove', exitCode: 4, container: { name: name('orphan') } } })
  t.equal(await state(kept.json().id), 'exited', 'a container without autoRemove stays')
  t.equal(await state(other.json().id), 'exited', 'another deployment\'s stays')
})

t.test('a timeout answers that it has not stopped, and leaves it running', async t => {
  const app = await build(t)
  const started = await run(app, { name: name('long') })
  t.equal(started.statusCode, 201, started.body)
  const began = performance.now()
  const wait = await app.inject({ method: 'POST', url: `/v1/containers/${name('long')}/wait?timeout=1`, headers: auth('alice') })
  t.equal(wait.statusCode, 200, wait.body)
  t.same(wait.json(), { stopped: false, exitCode: null, oomKilled: false, error: null, removed: false })
  // A lower bound only, on the monotonic clock: a busy machine makes the wait longer, never shorter.
  t.ok(performance.now() - began >= 900, 'it waited the second')
  t.equal(await state(started.json().id), 'running')
})

t.test('a job the kernel killed for memory says so', async t => {
  const app = await build(t)
  const started = await run(app, { name: name('oom'), resources: { memory: 8 * 1024 * 1024 }, command: ['sh', '-c', 'busybox head -c 30000000 /dev/zero > /dev/shm/fill'] })
  t.equal(started.statusCode, 201, started.body)
  const wait = await app.inject({ method: 'POST', url: `/v1/containers/${name('oom')}/wait`, headers: auth('alice') })
  t.equal(wait.statusCode, 200, wait.body)
  t.match(wait.json(), { stopped: true, exitCode: 137, oomKilled: true })
})

t.test('a client that leaves ends the wait at the engine', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const base = await listen(app)
  const started = await run(app, { name: name('abandoned') })
  t.equal(started.statusCode, 201, started.body)
  const controller = new AbortController()
  const pending = fetch(`${base}/v1/containers/${name('abandoned')}/wait`, { method: 'POST', headers: auth('alice'), signal: controller.signal }).catch((error: Error) => error)
  await waitFor('the wait to be open', () => app.streams.open, open => open === 1)
  controller.abort()
  t.match(await pending, { name: 'AbortError' })
  await waitFor('the wait to be released', () => app.streams.open, open => open === 0)
  t.equal(await state(started.json().id), 'running', 'the container is untouched')
  const line = await waitFor('its audit line', () => logs.lines.find(entry => entry.msg === 'audit' && (entry.audit as { action: string }).action === 'POST /v1/containers/:idOrName/wait'))
  t.match(line, { level: 30, res: { statusCode: 499 }, finished: false, audit: { actor: 'alice', target: { container: { name: name('abandoned') } }, status: 499 } }, 'logged as a client that left (499), at info')
  t.same(logs.lines.filter(line => (line.level as number) >= 50), [], 'a client hanging up is no fault: nothing at error level')
})

t.test('ownership and bad input', async t => {
  const app = await build(t)
  const alices = await run(app, { name: name('alices-job') })
  t.equal(alices.statusCode, 201, alices.body)
  const bobs = await app.inject({ method: 'POST', url: `/v1/containers/${name('alices-job')}/wait`, headers: auth('bob') })
  t.equal(bobs.statusCode, 404)
  t.equal(bobs.json().code, 'not_found')
  const reader = await app.inject({ method: 'POST', url: `/v1/containers/${name('alices-job')}/wait`, headers: auth('reader') })
  t.equal(reader.statusCode, 403)
  for (const query of ['timeout=0', 'timeout=x', 'timeout=86401', 'condition=removed']) {
    const bad = await app.inject({ method: 'POST', url: `/v1/containers/${name('alices-job')}/wait?${query}`, headers: auth('alice') })
    t.equal(bad.statusCode, 400, query)
    t.equal(bad.json().code, 'validation_failed', query)
  }
  const missing = await app.inject({ method: 'POST', url: `/v1/containers/${name('never-was')}/wait`, headers: auth('alice') })
  t.equal(missing.statusCode, 404)
  const restarting = await run(app, { name: name('rm-restart'), autoRemove: true, restart: { policy: 'always' } })
  t.equal(restarting.statusCode, 400)
  t.match(restarting.json(), { code: 'validation_failed', detail: 'body/autoRemove cannot be combined with restart policy "always": a container that is removed when it exits is not restarted' })
  t.same(await docker.listContainers({ all: true, filters: { name: [name('rm-restart')] } }), [], 'nothing was created')
})
