// The engine contract, run against every backend this test run has (docker always; swarm when the
// three-node test cluster is up; kubernetes when BERTH_TEST_KUBECONFIG names a cluster): the seed
// workflow, a port conflict that leaves nothing behind, ownership across tokens, a shell, files,
// stats and wait (or the 501 a backend without them answers), and an engine outage berth answers
// with 503 and recovers from by itself.
import { execFileSync } from 'node:child_process'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { TAR_END, tarHeader } from '../src/access/files.ts'
import { RUN, auth, freePort, runBody, waitFor } from './helpers.ts'
import { backends, fetchFrom, holdCluster, kubeContractNamespace, swarmEnv, swarmNode, type Backend } from './backends.ts'
import { ApiserverRelay, KUBE_SKIP, adminConfig, buildKube, kubeEnv } from './kubernetes-env.ts'
import { PrivateEngine } from './private-engine.ts'

interface Reply { statusCode: number, json: () => any, body: string }

if (kubeEnv === null) t.test('contract on kubernetes', { skip: KUBE_SKIP }, async () => {})

for (const backend of backends) {
  t.test(`contract on ${backend.kind}`, async t => {
    if (backend.kind === 'swarm') await holdCluster(t)
    t.teardown(() => backend.cleanup())
    // A deployment of its own: other suites (and other checkouts' test runs) share the test engine.
    const deployment = { deployment: `contract-${RUN}` }
    const app = await backend.build(t, { config: deployment })
    const web = (suffix: string, extra: Record<string, unknown> = {}) =>
      runBody({ image: backend.image, name: `${RUN}-${backend.kind}-${suffix}`, command: backend.httpd, stopTimeout: 1, ...extra })

    t.test('seed workflow: run -p, reach it, ps, stop, ps -a, start, reach it again, rm', async t => {
      const port = await freePort()
      const started = performance.now()
      const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('seed', { ports: [{ container: backend.httpPort, host: port }] }) })
      t.equal(run.statusCode, 201, run.body)
      t.comment(`${backend.kind}: run answered in ${(performance.now() - started).toFixed(0)} ms`)
      const container = run.json()
      t.match(container, { state: 'running', running: true, name: `${RUN}-${backend.kind}-seed` })
      t.equal(run.headers.location, `/v1/containers/${container.id}`)
      const endpoints = backend.endpoints(container)
      t.equal(endpoints.length, 1, `one endpoint: ${JSON.stringify(container.ports)}`)
      const [address, host] = endpoints[0] as [string, number]
      t.equal(host, port)
      t.equal((await fetchFrom(address, port)).trim(), 'hello from berth-test', `reached on ${address}:${port}`)

      const ps = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })
      t.equal(ps.statusCode, 200)
      t.same(ps.json().map((c: { id: string }) => c.id), [container.id], 'ps lists it')

      const stop = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/stop`, headers: auth('alice') })
      t.equal(stop.statusCode, 200, stop.body)
      t.match(stop.json(), { changed: true, container: { state: 'exited', running: false } })
      const again = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/stop`, headers: auth('alice') })
      t.match(again.json(), { changed: false }, 'stopping a stopped container changes nothing')
      const running = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })
      t.same(running.json(), [], 'ps no longer lists it')
      const all = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })
      t.match(all.json(), [{ id: container.id, state: 'exited' }], 'ps -a shows it stopped')
      await t.rejects(fetch(`http://${address}:${port}/`, { signal: AbortSignal.timeout(2000) }), 'nothing answers on the port once stopped')

      const start = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/start`, headers: auth('alice') })
      t.equal(start.statusCode, 200, start.body)
      t.match(start.json(), { changed: true, container: { state: 'running', running: true } })
      const startAgain = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/start`, headers: auth('alice') })
      t.match(startAgain.json(), { changed: false }, 'starting a running container changes nothing')
      const [address2] = backend.endpoints(start.json().container)[0] as [string, number]
      t.equal((await fetchFrom(address2, port)).trim(), 'hello from berth-test', `reached again on ${address2}:${port}`)

      const busy = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}`, headers: auth('alice') })
      t.equal(busy.statusCode, 409)
      t.equal(busy.json().code, 'container_running')
      const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}?force=true`, headers: auth('alice') })
      t.equal(rm.statusCode, 204)
      const gone = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: auth('alice') })
      t.equal(gone.statusCode, 404)
      t.same(await waitFor('nothing of the run left', () => backend.leftovers(), left => left.length === 0), [])
    })

    t.test('port conflict: 409 naming the holder only to its owner, and nothing left behind', async t => {
      const port = await freePort()
      const holder = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('holder', { ports: [{ container: backend.httpPort, host: port }], ...backend.everywhere }) })
      t.equal(holder.statusCode, 201, holder.body)
      const held = holder.json()
      const before = await backend.leftovers()

      const own = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('second', { ports: [{ container: backend.httpPort, host: port }] }) })
      t.equal(own.statusCode, 409, own.body)
      t.equal(own.headers['content-type'], 'application/problem+json; charset=utf-8')
      t.match(own.json(), { code: 'port_conflict', status: 409, port, holder: { id: held.id, name: held.name } })

      const other = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: web('bobs', { ports: [{ container: backend.httpPort, host: port }] }) })
      t.equal(other.statusCode, 409, other.body)
      t.match(other.json(), { code: 'port_conflict', port })
      t.notOk('holder' in other.json(), 'bob is not told whose container holds the port')
      t.notOk(other.body.includes(held.name) || other.body.includes(held.id), 'nor its name or id anywhere')

      t.same((await backend.leftovers()).sort(), before.sort(), 'the failed runs left nothing behind')
      const bobs = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('bob') })
      t.same(bobs.json(), [])
      await app.inject({ method: 'DELETE', url: `/v1/containers/${held.id}?force=true`, headers: auth('alice') })
    })

    t.test('ownership: another token\'s container does not exist for bob; admin sees it', async t => {
      const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('owned') })
      t.equal(run.statusCode, 201, run.body)
      const { id, name } = run.json()
      for (const [method, url] of [
        ['GET', `/v1/containers/${id}`], ['GET', `/v1/containers/${name}`], ['GET', `/v1/containers/${id.slice(0, 8)}`],
        ['POST', `/v1/containers/${id}/stop`], ['POST', `/v1/containers/${id}/start`], ['POST', `/v1/containers/${id}/restart`],
        ['DELETE', `/v1/containers/${id}?force=true`], ['GET', `/v1/containers/${id}/logs`]
      ] as const) {
        const response = await app.inject({ method, url, headers: auth('bob') })
        t.equal(response.statusCode, 404, `${method} ${url}`)
        t.equal(response.json().code, 'not_found')
      }
      const bobs = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('bob') })
      t.same(bobs.json(), [], 'bob lists none of it')
      const admins = await app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${name}`, headers: auth('admin') })
      t.same(admins.json().map((c: { id: string }) => c.id), [id], 'admin sees it')
      const still = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
      t.match(still.json(), { id, state: 'running' }, 'and it still runs: nothing bob did reached it')
      await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })
    })

    t.test('a shell, files, stats and wait: the same answers wherever the backend has the part, 501 with its reason where not', async t => {
      // /dev/shm is writable on every backend (a tmpfs on docker, an emptyDir on Kubernetes); the test images have no other.
      const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('shell', { shmSize: 16 * 1024 * 1024 }) })
      t.equal(run.statusCode, 201, run.body)
      const { id } = run.json()
      const has = (part: 'exec' | 'files' | 'stats' | 'wait') => app.engine.has(part)
      const refused = (response: Reply, what: string) => {
        t.equal(response.statusCode, 501, `${what}: ${response.body}`)
        t.match(response.json(), { code: 'not_supported', backend: backend.kind }, what)
      }

      const started = performance.now()
      const exec = await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['sh', '-c', 'echo hello; echo oops >&2; exit 3'] } })
      if (has('exec')) {
        t.same(exec.json(), { exitCode: 3, stdout: 'hello\n', stderr: 'oops\n', truncated: false }, 'exec: output and exit code')
        t.comment(`${backend.kind}: an exec answered whole in ${(performance.now() - started).toFixed(0)} ms`)
        t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec`, headers: auth('bob'), payload: { command: ['true'] } })).statusCode, 404, 'another token\'s container has no exec')
      } else refused(exec, 'exec')

      const tar = execFileSync('tar', ['-c', '-C', new URL('.', import.meta.url).pathname, 'contract.test.ts'])
      const put = await app.inject({ method: 'PUT', url: `/v1/containers/${id}/archive?path=/dev/shm`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload: tar })
      const get = await app.inject({ method: 'GET', url: `/v1/containers/${id}/archive?path=/dev/shm/contract.test.ts`, headers: auth('alice') })
      if (has('files')) {
        t.equal(put.statusCode, 204, put.body)
        t.equal(get.statusCode, 200, get.body)
        t.equal(execFileSync('tar', ['-x', '-O'], { input: get.rawPayload, encoding: 'utf8' }), execFileSync('tar', ['-x', '-O'], { input: tar, encoding: 'utf8' }), 'files: what went in comes out')
        const hostile = await app.inject({ method: 'PUT', url: `/v1/containers/${id}/archive?path=/dev/shm`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload: Buffer.concat([tarHeader({ name: '../escaped.txt', size: 0 }), TAR_END]) })
        t.equal(hostile.statusCode, 400, 'an archive that writes outside its directory is refused')
      } else {
        refused(put, 'files in')
        refused(get, 'files out')
      }

      const stats = await app.inject({ method: 'GET', url: `/v1/containers/${id}/stats`, headers: auth('alice') })
      if (has('stats')) {
        t.equal(stats.statusCode, 200, stats.body)
        t.ok(stats.json().memory.used > 0, 'stats: memory in use')
      } else refused(stats, 'stats')

      const finishing = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('finishing', { command: ['sh', '-c', 'exit 4'] }) })
      t.equal(finishing.statusCode, 201, finishing.body)
      const wait = await app.inject({ method: 'POST', url: `/v1/containers/${finishing.json().id}/wait`, headers: auth('alice') })
      if (has('wait')) t.match(wait.json(), { stopped: true, exitCode: 4, oomKilled: false }, 'wait: the exit code')
      else refused(wait, 'wait')
      for (const container of [id, finishing.json().id]) await app.inject({ method: 'DELETE', url: `/v1/containers/${container}?force=true`, headers: auth('alice') })
    })

    t.test('the seed\'s images: pull, list, inspect with its history, rmi where the backend can', async t => {
      if (!app.engine.has('images')) {
        const refused = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })
        t.match(refused.json(), { code: 'not_supported', backend: backend.kind })
        return
      }
      // The Kubernetes test image is in the cluster's registry; the others get one of this run's.
      const reference = backend.kind === 'kubernetes' ? backend.image : (await backend.pushImage('contract-pull')).reference
      const pulled = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: reference } })
      t.equal(pulled.statusCode, 200, pulled.body)
      const image = pulled.json()
      t.match(image, { reference, digest: /^sha256:[0-9a-f]{64}$/ })
      t.ok(image.tags.includes(reference), `its tags name it: ${JSON.stringify(image.tags)}`)
      if (backend.kind !== 'docker') t.ok(image.nodes.length > 0 && image.nodes.every((node: { state: string }) => node.state === 'pulled'), 'every node it was for has it')
      const listed = (await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })).json() as Array<{ id: string, tags: string[] }>
      t.ok(listed.some(entry => entry.id === image.id && entry.tags.includes(reference)), 'docker images lists it')
      const inspected = await app.inject({ method: 'GET', url: `/v1/images/${encodeURIComponent(reference)}`, headers: auth('alice') })
      t.equal(inspected.statusCode, 200, inspected.body)
      t.match(inspected.json(), { id: image.id, os: 'linux', usedBy: [] })
      t.ok(inspected.json().history.length > 0, 'with the steps that made it')
      const removed = await app.inject({ method: 'DELETE', url: `/v1/images/${encodeURIComponent(reference)}`, headers: auth('admin') })
      if (app.engine.has('imageRemoval')) {
        t.equal(removed.statusCode, 200, removed.body)
        t.ok(removed.json().untagged.includes(reference), 'rmi untagged it')
      } else {
        t.equal(removed.statusCode, 501)
        t.match(removed.json(), { code: 'not_supported', backend: backend.kind })
      }
    })

    t.test('engine outage: 503 engine_unavailable meanwhile, recovery by itself', async t => {
      const outage = await outageOf(backend, t, deployment)
      const target = outage.app
      const ready = await target.inject({ method: 'GET', url: '/readyz' })
      t.equal(ready.statusCode, 200, ready.body)
      const started = performance.now()
      await outage.stop()
      t.comment(`${backend.kind}: engine down after ${(performance.now() - started).toFixed(0)} ms`)
      // Reads come from berth's watch-fed copy: it stops answering from it once it has heard that the
      // engine is gone (its event stream closed, or a ping went unanswered), a moment after the engine went.
      await waitFor('berth to notice the engine is gone', async () => (await target.inject({ method: 'GET', url: '/v1/containers', headers: auth() })).statusCode, status => status === 503, 30_000)
      t.comment(`${backend.kind}: berth noticed ${(performance.now() - started).toFixed(0)} ms after the stop began`)
      for (const [method, url] of [['GET', '/v1/containers'], ['GET', '/v1/containers/x'], ['POST', '/v1/containers/x/stop'], ['GET', '/readyz']] as const) {
        const down: Reply = await target.inject({ method, url, headers: auth() })
        t.equal(down.statusCode, 503, `${method} ${url}: ${down.body}`)
        t.match(down.json(), { code: 'engine_unavailable', status: 503 })
      }
      t.equal((await target.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'berth itself stays alive')
      const back = performance.now()
      await outage.start()
      const recovered = await waitFor('berth to answer again', async () => (await target.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth() })).statusCode, status => status === 200, 60_000)
      t.equal(recovered, 200, 'recovered without restarting berth')
      t.comment(`${backend.kind}: berth answered again ${(performance.now() - back).toFixed(0)} ms after the engine was started`)
      t.equal((await target.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
      await outage.after?.(t)
    })
  })
}

interface Outage {
  app: FastifyInstance
  stop: () => Promise<void>
  start: () => Promise<void>
  /** What else the backend shows after it came back. */
  after?: (t: Test) => Promise<void>
}

/**
 * docker: a private dockerd stopped and started (the shared engine keeps serving other suites).
 * swarm: the manager's own dockerd stopped and started; the cluster and the services on its workers
 * survive it (a replica on the manager itself stops with its dockerd, and restart "no" keeps it so).
 * kubernetes: the connection to the apiserver cut (every connection dropped, none accepted) and
 * restored; berth's watches break and must catch up by themselves.
 */
async function outageOf (backend: Backend, t: Test, deployment: { deployment: string }): Promise<Outage> {
  if (backend.kind === 'kubernetes') {
    const relay = new ApiserverRelay(adminConfig().getCurrentCluster()?.server ?? '')
    await relay.start()
    t.teardown(() => relay.stop())
    const app = await buildKube(t, { namespace: await kubeContractNamespace(), relay, config: { ...deployment, engine: { timeoutMs: 2000 } } })
    return {
      app,
      stop: async () => {
        await relay.stop()
        // The cut reaches berth's watches as their connections drop.
        await waitFor('berth to notice the apiserver is gone', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode, status => status === 503)
      },
      start: () => relay.start()
    }
  }
  if (backend.kind === 'docker') {
    const engine = new PrivateEngine()
    t.teardown(() => engine.dispose())
    await engine.start()
    const app = await backend.build(t, { socketPath: engine.socketPath, config: { ...deployment, engine: { timeoutMs: 800 } } })
    return { app, stop: () => engine.stop(), start: () => engine.start() }
  }
  const app = await backend.build(t, { config: { ...deployment, engine: { timeoutMs: 2000 } } })
  const port = await freePort()
  // A service, as people run one on a cluster (restart always): when the restarted manager is slow to
  // hear from a worker (a loaded machine), Swarm shuts that worker's tasks down and places them again —
  // a run with restart "no" would stay down then, by Swarm's rules, not berth's.
  const survivor = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: backend.image, name: `${RUN}-survivor`, command: backend.httpd, stopTimeout: 1, restart: { policy: 'always' }, ports: [{ container: backend.httpPort, host: port }], placement: { constraints: ['node.role==worker'] } }) })
  t.equal(survivor.statusCode, 201, survivor.body)
  const manager = Object.keys((swarmEnv as NonNullable<typeof swarmEnv>).nodes)[0] as string
  t.teardown(() => swarmNode('start-node', manager))
  return {
    app,
    stop: () => swarmNode('stop-node', manager),
    start: () => swarmNode('start-node', manager),
    after: async (t) => {
      const again = await waitFor('the service to run again after the manager restarted', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${survivor.json().id}`, headers: auth('alice') })).json(), c => c.state === 'running' && backend.endpoints(c).length > 0, 120_000)
      const [address, host] = backend.endpoints(again)[0] as [string, number]
      t.equal((await fetchFrom(address, host)).trim(), 'hello from berth-test', 'a service from before the outage still answers')
    }
  }
}
