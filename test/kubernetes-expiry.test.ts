// Expiry and idle culling on a real Kubernetes cluster (BERTH_TEST_KUBECONFIG; skipped without one):
// berth's sweeper stops or removes what outlived its time to live or sat idle, the owner moves the
// end, and a restarted berth keeps to it all — it is kept on the Deployment or Job, never in berth.
import t from 'tap'
import { RUN, auth, runBody, waitFor } from './helpers.ts'
import { KUBE_SKIP, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'

type App = Awaited<ReturnType<typeof buildKube>>

if (kubeEnv === null) {
  t.test('kubernetes expiry and idle culling', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const sweeping = async (t: Parameters<typeof buildKube>[0], namespace: string, sweepIntervalMs = 150) =>
    await buildKube(t, { namespace, config: { deployment: `${RUN}-expiry`, lifecycle: { sweepIntervalMs } } })
  const run = async (app: App, suffix: string, extra: Record<string, unknown>) => {
    const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.image, name: `${RUN}-${suffix}`, command: ['sleep', '300'], stopTimeout: 1, ...extra }) })
    if (response.statusCode !== 201) throw new Error(response.body)
    return response.json() as { id: string, expiry: { expiresAt: string | null, idleTimeout: number | null, action: string } }
  }
  const state = async (app: App, id: string): Promise<string> => {
    const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })
    return response.statusCode === 404 ? 'gone' : response.json().state
  }

  t.test('a time to live: a service and a run that finishes stopped, or removed, as asked', async t => {
    const namespace = await namespaceFor(t, 'ttl')
    const app = await sweeping(t, namespace)
    const began = Date.now()
    // Longer than a run takes to answer here (its pods must run first): a sweeper that acts before
    // the run answered makes it 404 "removed while berth waited" (a run of its own, not this test's).
    const service = await run(app, 'ttl-service', { restart: { policy: 'always' }, expiry: { ttl: 8 } })
    const job = await run(app, 'ttl-job', { expiry: { ttl: 8 } })
    const removed = await run(app, 'ttl-remove', { restart: { policy: 'always' }, expiry: { ttl: 8, action: 'remove' } })
    t.match(service.expiry, { idleTimeout: null, action: 'stop' })
    t.ok(Date.parse(service.expiry.expiresAt as string) >= began + 7500, 'eight seconds from the run')
    await waitFor('the service to be stopped', () => state(app, service.id), s => s === 'exited', 30_000)
    t.ok(Date.now() >= Date.parse(service.expiry.expiresAt as string), 'not before its time')
    await waitFor('the run to be stopped', () => state(app, job.id), s => s === 'exited', 30_000)
    await waitFor('the third to be removed', () => state(app, removed.id), s => s === 'gone', 30_000)
    t.equal(await state(app, service.id), 'exited', 'stopped stays stopped')
    for (const id of [service.id, job.id]) t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, 204)
    t.same(await leftoversIn(namespace), [])
  })

  t.test('the owner moves the end, and a restarted berth keeps to it', async t => {
    const namespace = await namespaceFor(t, 'moved')
    const first = await sweeping(t, namespace, 0)
    const plain = await run(first, 'survives', { restart: { policy: 'always' }, expiry: { ttl: 2 } })
    const moved = await run(first, 'moved', { restart: { policy: 'always' }, expiry: { ttl: 1, idleTimeout: 3600 } })
    const extend = await first.inject({ method: 'PUT', url: `/v1/containers/${moved.id}/expiry`, headers: auth('alice'), payload: { ttl: 15 } })
    t.equal(extend.statusCode, 200, extend.body)
    const end = Date.parse(extend.json().expiry.expiresAt)
    t.same({ ...extend.json().expiry, expiresAt: 'x' }, { expiresAt: 'x', idleTimeout: 3600, action: 'stop' }, 'the idle timeout and action stay')
    await first.close()
    await waitFor('the first end to pass while no berth runs', () => Date.now(), now => now >= Date.parse(plain.expiry.expiresAt as string) + 500, 10_000)

    const second = await sweeping(t, namespace)
    t.equal(Date.parse((await second.inject({ method: 'GET', url: `/v1/containers/${moved.id}`, headers: auth('alice') })).json().expiry.expiresAt), end, 'a later berth reads the moved end')
    await waitFor('the later berth to stop the expired one', () => state(second, plain.id), s => s === 'exited', 30_000)
    t.equal(await state(second, moved.id), 'running', 'the moved end is kept to: not yet')
    await waitFor('the moved one to be stopped at its new end', () => state(second, moved.id), s => s === 'exited', 30_000)
    t.ok(Date.now() >= end, 'not before its new end')
  })

  t.test('an idle timeout: what sits idle is stopped, what works is not (stats from the kubelet)', async t => {
    const namespace = await namespaceFor(t, 'idle')
    const app = await sweeping(t, namespace, 500)
    const idle = await run(app, 'idle', { restart: { policy: 'always' }, expiry: { idleTimeout: 3 } })
    const busy = await run(app, 'busy', { restart: { policy: 'always' }, expiry: { idleTimeout: 3 }, resources: { cpus: 0.2 }, command: ['sh', '-c', 'while :; do :; done'] })
    t.match(idle.expiry, { expiresAt: null, idleTimeout: 3, action: 'stop' })
    await waitFor('the idle one to be stopped', () => state(app, idle.id), s => s === 'exited', 60_000)
    t.equal(await state(app, busy.id), 'running', 'a busy one runs on')
  })
}
