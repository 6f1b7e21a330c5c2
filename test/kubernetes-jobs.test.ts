// Runs that finish on a real Kubernetes cluster (BERTH_TEST_KUBECONFIG; skipped without one): a run
// with restart no (the default) or on-failure is a Job. ps -a says how it ended, wait answers its
// exit code (also OOMKilled), its logs stay readable, start runs it again, autoRemove goes once its
// exit was collected; and a run that cannot run leaves nothing behind the moment berth answers —
// also several at once, which a Deployment deleted in the background did not.
import t from 'tap'
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node'
import { RUN, auth, runBody, waitFor } from './helpers.ts'
import { KUBE_SKIP, admin, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'

if (kubeEnv === null) {
  t.test('kubernetes runs that finish', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const { batch, core } = admin as NonNullable<typeof admin>
  const job = (suffix: string, script: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-${suffix}`, command: ['sh', '-c', script], stopTimeout: 1, ...extra })

  t.test('a run that finishes: a Job; ps -a says how it ended, wait its exit code, logs after the end, start runs it again', async t => {
    const namespace = await namespaceFor(t, 'jobs')
    const app = await buildKube(t, { namespace })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('batch', 'echo "run $RANDOM$RANDOM"; sleep 1; exit 3') })
    t.equal(run.statusCode, 201, run.body)
    const { id, name } = run.json()
    t.match(run.json(), { restart: { policy: 'no', maxRetries: 0 }, autoRemove: false })
    t.equal((await batch.listNamespacedJob({ namespace })).items.length, 1, 'it is a Job')

    const wait = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
    t.equal(wait.statusCode, 200, wait.body)
    t.same(wait.json(), { stopped: true, exitCode: 3, oomKilled: false, error: null, removed: false })
    const ps = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })
    t.match(ps.json(), [{ id, state: 'exited', status: /^Exited \(3\) (Less than a second|\d+ seconds?) ago$/ }], 'ps -a: Exited (3) … ago')
    t.same((await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })).json(), [], 'ps: not running')
    t.match((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(), { state: 'exited', running: false, exitCode: 3, finishedAt: /^\d{4}-/ })
    const logs = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
    t.match(logs.body, /^run \d+\n$/, 'its logs are readable after the end')
    const first = logs.body

    const again = await app.inject({ method: 'POST', url: `/v1/containers/${name}/start`, headers: auth('alice') })
    t.equal(again.statusCode, 200, again.body)
    t.match(again.json(), { changed: true, container: { id, name } })
    const second = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
    t.same(second.json(), { stopped: true, exitCode: 3, oomKilled: false, error: null, removed: false }, 'it ran again, and ended again')
    const logsAgain = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
    t.match(logsAgain.body, /^run \d+\n$/)
    t.not(logsAgain.body, first, 'the logs are the new run\'s')
    const startDone = await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })
    t.equal(startDone.statusCode, 200)

    const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })
    t.equal(rm.statusCode, 204, rm.body)
    t.same(await leftoversIn(namespace), [], 'nothing left when rm answered')
  })

  t.test('on-failure with retries: each attempt a pod of its own, their logs all readable; wait answers the last exit', async t => {
    const namespace = await namespaceFor(t, 'retries')
    const app = await buildKube(t, { namespace })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('retried', 'echo attempt; exit 1', { restart: { policy: 'on-failure', maxRetries: 2 } }) })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    t.match(run.json(), { restart: { policy: 'on-failure', maxRetries: 2 } })
    const wait = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
    t.same(wait.json(), { stopped: true, exitCode: 1, oomKilled: false, error: null, removed: false })
    const inspect = (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json()
    t.equal(inspect.tasks.length, 3, 'the first attempt and two retries')
    t.ok(inspect.tasks.every((task: { state: string, exitCode: number }) => task.state === 'failed' && task.exitCode === 1), 'each failed with 1')
    const logs = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
    t.equal(logs.body, 'attempt\nattempt\nattempt\n', 'every attempt\'s output, in order')
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, 204, 'it does not run: rm needs no force')
  })

  t.test('wait says OOMKilled when the memory limit killed it, and stopped: false when the timeout passed first', async t => {
    const namespace = await namespaceFor(t, 'oom')
    const app = await buildKube(t, { namespace })
    // dd's 64 MiB block is one allocation: past a 16 MiB limit the kernel kills it.
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('hungry', 'dd if=/dev/zero of=/dev/null bs=64M count=4', { resources: { memory: 16 * 1024 * 1024 } }) })
    t.equal(run.statusCode, 201, run.body)
    const wait = await app.inject({ method: 'POST', url: `/v1/containers/${run.json().id}/wait`, headers: auth('alice') })
    t.same(wait.json(), { stopped: true, exitCode: 137, oomKilled: true, error: null, removed: false })

    const long = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('long', 'sleep 300') })
    t.equal(long.statusCode, 201, long.body)
    const timedOut = await app.inject({ method: 'POST', url: `/v1/containers/${long.json().id}/wait?timeout=1`, headers: auth('alice') })
    t.same(timedOut.json(), { stopped: false, exitCode: null, oomKilled: false, error: null, removed: false })
    const stop = await app.inject({ method: 'POST', url: `/v1/containers/${long.json().id}/stop`, headers: auth('alice') })
    t.equal(stop.statusCode, 200, stop.body)
    t.match(stop.json(), { changed: true, container: { state: 'exited', running: false, exitCode: 137 } }, 'sleep ignores SIGTERM as PID 1: killed after its grace period')
    t.same((await core.listNamespacedPod({ namespace, labelSelector: `io.berth/id=${long.json().id}` })).items.filter(pod => pod.status?.phase === 'Running'), [], 'no pod of it runs')
    t.match((await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).json(), [{ id: long.json().id, status: /^Exited \(137\)/ }, { status: /^Exited \(137\)/ }])
    const waited = await app.inject({ method: 'POST', url: `/v1/containers/${long.json().id}/wait`, headers: auth('alice') })
    t.match(waited.json(), { stopped: true, exitCode: 137 }, 'a stopped one answers at once')
    const started = await app.inject({ method: 'POST', url: `/v1/containers/${long.json().id}/start`, headers: auth('alice') })
    t.match(started.json(), { changed: true, container: { state: 'running' } }, 'a stopped run starts again')
    for (const id of [run.json().id, long.json().id]) t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
    t.same(await leftoversIn(namespace), [])
  })

  t.test('autoRemove: kept with its logs until a wait collects its exit, then gone', async t => {
    const namespace = await namespaceFor(t, 'autoremove')
    const app = await buildKube(t, { namespace })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('once', 'echo finished; exit 2', { autoRemove: true }) })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    t.equal(run.json().autoRemove, true)
    const wait = await app.inject({ method: 'POST', url: `/v1/containers/${id}/wait`, headers: auth('alice') })
    t.same(wait.json(), { stopped: true, exitCode: 2, oomKilled: false, error: null, removed: true })
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, 404)
    t.same(await leftoversIn(namespace), [], 'its Job and pod are gone')
  })

  t.test('runs refused at once, several side by side: nothing is left when berth answers', async t => {
    const namespace = await namespaceFor(t, 'refused')
    const app = await buildKube(t, { namespace })
    const missing = cluster.image.replace(/:[^:/]+$/, ':no-such-tag')
    const answers = await Promise.all(Array.from({ length: 6 }, async (_, index) => {
      const body = job(`refused-${index}`, 'sleep 300', { image: missing, ...(index % 2 === 0 ? { restart: { policy: 'always' } } : {}) })
      const answer = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body })
      // Looked at the moment it answered: a leftover found later would be too late.
      return { answer, left: await leftoversIn(namespace).then(left => left.filter(item => item.includes(`refused-${index}`))) }
    }))
    for (const [index, { answer, left }] of answers.entries()) {
      t.equal(answer.statusCode, 404, `run ${index}: ${answer.body}`)
      t.equal(answer.json().code, 'image_not_found')
      t.same(left, [], `run ${index} (${index % 2 === 0 ? 'a Deployment' : 'a Job'}) left nothing`)
    }
    t.same(await leftoversIn(namespace), [])
  })

  t.test('a pod that cannot go yet (held by a finalizer, as a pod on a lost node is held): rm -f answers 503 saying so, not 204', async t => {
    const namespace = await namespaceFor(t, 'held')
    const app = await buildKube(t, { namespace, config: { engine: { timeoutMs: 2000 } } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: job('held', 'sleep 300', { restart: { policy: 'always' } }) })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    const [pod] = (await core.listNamespacedPod({ namespace, labelSelector: `io.berth/id=${id}` })).items
    const podName = pod?.metadata?.name as string
    const hold = async (finalizers: string[] | null) => await core.patchNamespacedPod({ namespace, name: podName, body: { metadata: { finalizers } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
    await hold(['berth.test/hold'])
    t.teardown(async () => { await hold(null).catch(() => {}) })
    const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })
    t.equal(rm.statusCode, 503, rm.body)
    t.match(rm.json(), { code: 'engine_unavailable', detail: new RegExp(`not gone yet.*pod ${podName}`) })
    t.equal(rm.headers['retry-after'], '5')
    t.match((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(), { state: 'removing' }, 'it is still there, being removed')
    t.match((await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).json(), [{ id, state: 'removing', status: 'Removal In Progress' }])
    await hold(null)
    const again = await waitFor('rm -f to be done once the pod may go', async () => await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') }),
      answer => answer.statusCode !== 503, 60_000)
    t.ok(again.statusCode === 204 || again.statusCode === 404, `then done: ${again.statusCode}`)
    t.same(await leftoversIn(namespace), [], 'and nothing left')
  })
}
