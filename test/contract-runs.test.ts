// The engine contract for what happens in and to a container over its life, run against every backend
// this test run has (docker always; swarm when its three-node cluster is up): a run that finishes
// (wait, ps -a, its logs after the end, autoRemove), a shell, a terminal, stats and files in one that
// runs — none of it for another token — and expiry kept by a berth that started after the run.
// A part a backend lacks is its 501, said with its reason.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { RUN, auth, runBody, waitFor } from './helpers.ts'
import { backends, holdCluster } from './backends.ts'
import { listen } from './stream-client.ts'
import { terminal } from './terminal.ts'

type App = FastifyInstance

/** A part the backend lacks: its routes answer 501 with the reason, and the rest of the test is skipped. */
async function lacks (t: Test, app: App, part: string, method: 'GET' | 'POST' | 'PUT', url: string, payload: object = {}): Promise<boolean> {
  if (app.engine.has(part as 'exec')) return false
  const response = await app.inject({ method, url, headers: auth('alice'), ...(method === 'GET' ? {} : { payload }) })
  t.equal(response.statusCode, 501, `${part}: ${response.body}`)
  t.equal(response.json().code, 'not_supported')
  return true
}

/** A tar of one file, as the engine hands it out: the content of its first entry. */
function firstFile (tar: Buffer): string {
  const size = parseInt(tar.subarray(124, 136).toString('ascii').replace(/\0.*$/, '').trim(), 8)
  return tar.subarray(512, 512 + size).toString('utf8')
}

for (const backend of backends) {
  t.test(`contract on ${backend.kind}: a container's life`, async t => {
    if (backend.kind === 'swarm') await holdCluster(t)
    t.teardown(() => backend.cleanup())
    const deployment = `life-${RUN}`
    const app = await backend.build(t, { config: { deployment } }) as App
    const named = (suffix: string) => `${RUN}-${backend.kind}-${suffix}`
    const run = async (suffix: string, extra: Record<string, unknown> = {}, who: 'alice' | 'bob' = 'alice') =>
      await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody({ image: backend.image, name: named(suffix), stopTimeout: 1, ...extra }) })

    t.test('a run that finishes: wait answers its exit code, ps -a shows it, its logs stay; autoRemove goes once collected', async t => {
      const job = await run('job', { command: ['sh', '-c', 'echo hello from the job; exit 3'] })
      t.equal(job.statusCode, 201, job.body)
      const id = job.json().id as string
      if (await lacks(t, app, 'wait', 'POST', `/v1/containers/${id}/wait`)) return
      const wait = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
      t.equal(wait.statusCode, 200, wait.body)
      t.match(wait.json(), { stopped: true, exitCode: 3, oomKilled: false, removed: false })
      if (backend.kind === 'swarm') {
        t.match(wait.json().replicas, [{ slot: 1, state: 'failed', exitCode: 3, node: /^node\d$/, error: 'task: non-zero exit (3)' }], 'and each replica\'s')
      }
      const ps = await app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${named('job')}`, headers: auth('alice') })
      t.match(ps.json(), [{ id, state: 'exited', status: /^Exited \(3\)/ }], 'ps -a: Exited (3)')
      const running = await app.inject({ method: 'GET', url: `/v1/containers?name=${named('job')}`, headers: auth('alice') })
      t.same(running.json(), [], 'ps: not running')
      const logs = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
      t.equal(logs.body, 'hello from the job\n', 'its logs, read after the end')
      const bobs = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('bob') })
      t.equal(bobs.statusCode, 404, 'nobody else waits on it')

      const once = await run('once', { command: ['sh', '-c', 'echo bye'], autoRemove: true })
      t.equal(once.statusCode, 201, once.body)
      t.equal(once.json().autoRemove, true)
      const collected = await app.inject({ method: 'POST', url: `/v1/containers/${once.json().id}/wait`, headers: auth('alice') })
      t.match(collected.json(), { stopped: true, exitCode: 0, removed: true })
      t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${once.json().id}`, headers: auth('alice') })).statusCode, 404, 'gone once its exit was collected')
      t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, 204)
    })

    t.test('exec, a terminal, stats and files in a running container; none of it for another token', async t => {
      const box = await run('box')
      t.equal(box.statusCode, 201, box.body)
      const id = box.json().id as string
      if (await lacks(t, app, 'exec', 'POST', `/v1/containers/${id}/exec`)) return
      const exec = await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['sh', '-c', 'echo $((6*7)); echo oops >&2; exit 4'] } })
      t.equal(exec.statusCode, 200, exec.body)
      t.same(exec.json(), { exitCode: 4, stdout: '42\n', stderr: 'oops\n', truncated: false })
      const streamed = await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec`, headers: auth('alice'), payload: { command: ['sh', '-c', 'echo one; echo two'] } })
      t.same(streamed.body.trim().split('\n').map(line => JSON.parse(line)), [
        { type: 'output', stream: 'stdout', line: 'one' }, { type: 'output', stream: 'stdout', line: 'two' }, { type: 'exit', exitCode: 0 }
      ])

      const base = await listen(app)
      const shell = await terminal(base, id, 'command=sh&tty=false')
      t.same(shell.opened, { ok: true })
      shell.socket.send(Buffer.from('echo "in $(pwd)"; echo err >&2\n'))
      shell.socket.send(JSON.stringify({ type: 'eof' }))
      t.same(await shell.closed, { code: 1000, reason: 'exited' })
      t.equal(shell.stdout(), 'in /\n', 'a shell reads its commands from stdin')
      t.equal(shell.stderr(), 'err\n', 'stderr apart')
      t.same(shell.received.text, [{ type: 'exit', exitCode: 0 }], 'EOF on stdin ends the shell, and its exit comes last')
      const cat = await terminal(base, id, 'command=cat&tty=false')
      cat.socket.send(Buffer.from('typed\n'))
      await waitFor('the echo', () => cat.stdout(), out => out === 'typed\n')
      cat.socket.send(JSON.stringify({ type: 'eof' }))
      t.same(await cat.closed, { code: 1000, reason: 'exited' }, 'what comes after the EOF still reaches the client')
      const tty = await terminal(base, id, 'command=sh&tty=true&cols=91&rows=17')
      tty.socket.send(Buffer.from('busybox stty size; exit 6\n'))
      t.same(await tty.closed, { code: 1000, reason: 'exited' })
      t.match(tty.stdout(), /17 91/, 'a terminal of the size asked for')
      t.same(tty.received.text, [{ type: 'exit', exitCode: 6 }])

      const stats = await app.inject({ method: 'GET', url: `/v1/containers/${id}/stats`, headers: auth('alice') })
      t.equal(stats.statusCode, 200, stats.body)
      t.ok(stats.json().memory.used > 0 && stats.json().pids >= 1, `a reading: ${stats.body}`)

      const put = await app.inject({ method: 'PUT', url: `/v1/containers/${id}/files?path=/tmp/note.txt`, headers: { ...auth('alice'), 'content-type': 'application/octet-stream' }, payload: Buffer.from('written through berth\n') })
      t.equal(put.statusCode, 204, put.body)
      const read = await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['cat', '/tmp/note.txt'] } })
      t.equal(read.json().stdout, 'written through berth\n', 'the file is there, for the container')
      const archive = await app.inject({ method: 'GET', url: `/v1/containers/${id}/archive?path=/tmp/note.txt`, headers: auth('alice') })
      t.equal(archive.statusCode, 200, archive.body)
      t.equal(firstFile(archive.rawPayload), 'written through berth\n', 'and comes back out')
      t.match(JSON.parse(archive.headers['x-berth-path-stat'] as string), { name: 'note.txt', size: 22 })

      for (const [method, url] of [['POST', `/v1/containers/${id}/exec`], ['GET', `/v1/containers/${id}/stats`], ['GET', `/v1/containers/${id}/archive?path=/tmp`]] as const) {
        const response = await app.inject({ method, url, headers: auth('bob'), ...(method === 'POST' ? { payload: { command: ['id'] } } : {}) })
        t.equal(response.statusCode, 404, `bob: ${method} ${url}`)
      }
      const refused = await terminal(base, id, 'command=sh', 'bob')
      t.match(refused.opened, { ok: false, status: 404 }, 'nor a terminal')
    })

    t.test('expiry: a time to live kept by a berth started after the run, and an end moved by the owner', async t => {
      if (await lacks(t, app, 'expiry', 'POST', '/v1/containers', runBody({ image: backend.image, expiry: { ttl: 2 } }))) return
      const short = await run('ttl', { expiry: { ttl: 2, action: 'remove' } })
      t.equal(short.statusCode, 201, short.body)
      const long = await run('moved', { expiry: { ttl: 2, action: 'remove' } })
      t.equal(long.statusCode, 201, long.body)
      const moved = await app.inject({ method: 'PUT', url: `/v1/containers/${long.json().id}/expiry`, headers: auth('alice'), payload: { ttl: 3600 } })
      t.equal(moved.statusCode, 200, moved.body)
      t.ok(Date.parse(moved.json().expiry.expiresAt) > Date.now() + 3500_000, 'an hour from now')
      // Another berth, started after the runs (as one restarted would be): it knows them from the engine alone.
      const later = await backend.build(t, { config: { deployment, lifecycle: { sweepIntervalMs: 200 } } }) as App
      await later.ready()
      await waitFor('the expired one to be removed', async () => (await later.inject({ method: 'GET', url: `/v1/containers/${short.json().id}`, headers: auth('alice') })).statusCode, status => status === 404, 30_000)
      const kept = await later.inject({ method: 'GET', url: `/v1/containers/${long.json().id}`, headers: auth('alice') })
      t.equal(kept.statusCode, 200, 'the one whose end was moved stays')
      t.equal(kept.json().expiry.expiresAt, moved.json().expiry.expiresAt, 'with its moved end, read back from the engine')
    })
  })
}
