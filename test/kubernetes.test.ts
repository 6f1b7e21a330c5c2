// The Kubernetes backend against a real cluster (BERTH_TEST_KUBECONFIG; skipped without one): what
// the contract suite does not cover. Pod security (restricted: non-root, no escalation, no
// capabilities, no service account token), host ports berth chooses, runs that cannot run and leave
// nothing (an image in no registry, a GPU no node has, a second replica whose host port is taken),
// logs of the pods, events with resume, ps served from the watch-fed copy, and the committed
// manifests: berth's Role is enough for all of it, and berth's own pod passes the restricted profile.
import { readFileSync } from 'node:fs'
import https from 'node:https'
import t from 'tap'
import { PatchStrategy, loadAllYaml, setHeaderOptions, type V1Deployment, type V1Pod } from '@kubernetes/client-node'
import { RUN, auth, freePort, runBody, waitFor } from './helpers.ts'
import { fetchFrom } from './backends.ts'
import { KUBE_SKIP, admin, adminConfig, berthIdentity, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'
import { StreamClient, listen } from './stream-client.ts'

if (kubeEnv === null) {
  t.test('kubernetes backend', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const { apps, core } = admin as NonNullable<typeof admin>
  const web = (suffix: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-${suffix}`, command: cluster.httpd, stopTimeout: 1, ...extra })

  t.test('pod security: the restricted profile, and root refused', async t => {
    const namespace = await namespaceFor(t, 'security')
    const app = await buildKube(t, { namespace })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('secure', { ports: [{ container: cluster.port }] }) })
    t.equal(run.statusCode, 201, run.body)
    const container = run.json()
    const [port] = container.ports
    t.ok(port.host >= 32768 && port.host <= 60999, `berth chose host port ${port.host} from the engine range`)
    t.equal((await fetchFrom(port.hostIp, port.host)).trim(), 'hello from berth-test', 'reached on the port berth chose')
    const pods = await core.listNamespacedPod({ namespace })
    const pod = pods.items[0] as V1Pod
    t.match(pod.spec, {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [{ securityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] } } }]
    }, 'the pod is as the restricted profile asks')
    t.notOk(pod.spec?.containers[0]?.volumeMounts?.some(mount => mount.mountPath.includes('serviceaccount')), 'no service account token is mounted')
    // Where "restricted" is enforced, berth's pod is admitted but for the host port: -p is the one thing it allows that the profile does not.
    const enforcing = await namespaceFor(t, 'restricted')
    await core.patchNamespace({ name: enforcing, body: { metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } } }, mergePatch())
    const copy: V1Pod = { metadata: { name: 'copy' }, spec: structuredClone(pod.spec) as V1Pod['spec'] }
    await t.rejects(core.createNamespacedPod({ namespace: enforcing, body: copy, dryRun: 'All' }), { code: 403 }, 'with its host port, refused there')
    for (const container of copy.spec?.containers ?? []) for (const containerPort of container.ports ?? []) delete containerPort.hostPort
    const admitted = await core.createNamespacedPod({ namespace: enforcing, body: copy, dryRun: 'All' })
    t.equal(admitted.metadata?.name, 'copy', 'without it, admitted under the enforced restricted profile')

    const root = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.rootImage, name: `${RUN}-root`, command: cluster.httpd }) })
    t.equal(root.statusCode, 403, root.body)
    t.match(root.json(), { code: 'policy_denied', detail: /runs as root/ })
    const zero = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('uid0', { user: '0' }) })
    t.equal(zero.statusCode, 403, zero.body)
    t.match(zero.json(), { code: 'policy_denied' })
    const named = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('named', { user: 'nobody' }) })
    t.equal(named.statusCode, 400, named.body)
    t.match(named.json(), { code: 'validation_failed', detail: /numeric uid/ })
    const upper = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.image, name: 'Not_A_DNS_Label' }) })
    t.equal(upper.statusCode, 400, upper.body)
    t.match(upper.json(), { code: 'validation_failed', detail: /DNS label/ })
    for (const [field, value] of [['volumes', [{ source: '/srv', target: '/data' }]], ['init', true]] as const) {
      const refused = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web(`no-${field.toLowerCase()}`, { [field]: value }) })
      t.equal(refused.statusCode, refused.json().code === 'policy_denied' ? 403 : 501, `${field}: ${refused.body}`)
    }
    const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}?force=true`, headers: auth('alice') })
    t.equal(rm.statusCode, 204)
    t.same(await waitFor('nothing left in the namespace', () => leftoversIn(namespace), left => left.length === 0, 30_000), [])
  })

  t.test('runs that cannot run answer why and leave nothing behind', async t => {
    const namespace = await namespaceFor(t, 'failures')
    const app = await buildKube(t, { namespace })
    const missing = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('missing', { image: cluster.image.replace(/:[^:/]+$/, ':no-such-tag') }) })
    t.equal(missing.statusCode, 404, missing.body)
    t.match(missing.json(), { code: 'image_not_found' })
    const gpu = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('gpu', { gpus: 1 }) })
    t.equal(gpu.statusCode, 409, gpu.body)
    t.match(gpu.json(), { code: 'gpu_unavailable', detail: /nvidia\.com\/gpu/ })
    t.same(await leftoversIn(namespace), [], 'neither left a Deployment, a pod or a secret')

    // One node: a second replica cannot have the same host port there.
    const port = await freePort()
    const one = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('scaled', { restart: { policy: 'always' }, ports: [{ container: cluster.port, host: port }] }) })
    t.equal(one.statusCode, 201, one.body)
    const scale = await app.inject({ method: 'POST', url: `/v1/containers/${one.json().id}/scale`, headers: auth('alice'), payload: { replicas: 2 } })
    t.equal(scale.statusCode, 409, scale.body)
    t.match(scale.json(), { code: 'port_conflict', port })
    const after = await waitFor('the added replica to be taken back', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${one.json().id}`, headers: auth('alice') })).json(),
      container => container.replicas.count === 1 && container.tasks.length === 1, 30_000)
    t.match(after, { state: 'running', replicas: { count: 1, running: 1 } }, 'it runs as many replicas as before')
    await app.inject({ method: 'DELETE', url: `/v1/containers/${one.json().id}?force=true`, headers: auth('alice') })
  })

  t.test('logs of the pods: tail, timestamps, since, follow', async t => {
    const namespace = await namespaceFor(t, 'logs')
    const app = await buildKube(t, { namespace })
    const run = await app.inject({
      method: 'POST',
      url: '/v1/containers',
      headers: auth('alice'),
      payload: runBody({ image: cluster.image, name: `${RUN}-talker`, stopTimeout: 1, command: ['sh', '-c', 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done'] })
    })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    const ndjson = async (query: string) => {
      const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs${query}`, headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
      t.equal(response.statusCode, 200, response.body)
      return response.body.trim().split('\n').filter(Boolean).map(line => JSON.parse(line))
    }
    const lines = await waitFor('five lines', () => ndjson('?timestamps=true'), entries => entries.length >= 5, 30_000)
    t.match(lines[0], { stream: 'stdout', line: 'line 0', time: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z$/, task: /^bt/ })
    t.same((await ndjson('?tail=2')).length, 2, 'tail: the last two')
    const third = lines[2] as { time: string, line: string }
    const since = await ndjson(`?since=${encodeURIComponent(third.time)}`)
    t.equal(since[0].line, third.line, 'since: from that line on, to the nanosecond')

    const base = await listen(app)
    const follow = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true&tail=0`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
    t.equal(follow.status, 200)
    const fresh = await follow.json<{ line: string }>()
    t.match(fresh, { line: /^line \d+$/ }, 'follow: new lines as they are written')
    t.ok(Number(fresh?.line.split(' ')[1]) >= 5, 'and only new ones')
    follow.close()
    await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })
  })

  t.test('events: Deployments and pods in docker-events words, resumed without repeats', async t => {
    const namespace = await namespaceFor(t, 'events')
    const app = await buildKube(t, { namespace })
    const base = await listen(app)
    const events = await StreamClient.open(`${base}/v1/events`, { headers: auth('alice') })
    t.equal(events.status, 200)
    t.match(await events.sse(), { retry: 2000 })
    const name = `${RUN}-evented`
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('evented', { restart: { policy: 'always' } }) })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    const stop = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })
    t.equal(stop.statusCode, 200, stop.body)
    const seen: Array<{ id?: string, data: { type: string, action: string, id: string, name: string | null } }> = []
    const containerActions = () => seen.filter(message => message.data.type === 'container').map(message => message.data.action)
    while (!containerActions().includes('stop')) {
      const message = await events.sseData(30_000)
      if (message === null) throw new Error(`the event stream ended after ${JSON.stringify(seen)}`)
      seen.push(message as (typeof seen)[number])
    }
    events.close()
    t.same(containerActions(), ['create', 'stop'], 'the container was created, then stopped')
    t.ok(seen.some(message => message.data.type === 'task' && message.data.action === 'running'), 'its pod was reported running')
    t.ok(seen.every(message => message.data.type !== 'container' || (message.data.id === id && message.data.name === name)), 'container events name berth\'s id and name')

    // Away, while it is started and removed; back with the id of the first event.
    t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })).statusCode, 200)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
    const resumed = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth('alice'), 'last-event-id': seen[0]?.id as string } })
    t.match(await resumed.sse(), { retry: 2000 })
    const again: typeof seen = []
    const firstPod = seen.find(message => message.data.type === 'task' && message.data.action === 'running')?.data.id
    const has = (type: string, action: string, id?: string) => again.some(message => message.data.type === type && message.data.action === action && (id === undefined || message.data.id === id))
    while (!has('container', 'destroy') || !has('task', 'running', firstPod)) {
      const message = await resumed.sseData(30_000)
      if (message === null) throw new Error(`the resumed stream ended after ${JSON.stringify(again)}`)
      again.push(message as (typeof seen)[number])
    }
    resumed.close()
    // The watches of Deployments and of pods are replayed side by side: each in its order, not the two interleaved as before.
    t.same(again.filter(message => message.data.type === 'container').map(message => message.data.action), ['stop', 'start', 'destroy'], 'resumed right after the create: the stop again, then what happened while away')
    t.ok(has('task', 'running', firstPod), 'and the pod that ran before the stop, again')
    t.notOk(has('container', 'create'), 'not the create it resumed from')
    t.equal(new Set(again.map(message => message.id)).size, again.length, 'each once')
  })

  t.test('ps is served from the watch-fed copy: many calls, no reads of the apiserver', async t => {
    const namespace = await namespaceFor(t, 'cache')
    const app = await buildKube(t, { namespace })
    // Deployments made behind berth's back, as berth makes them for alice: with no replicas, nothing to schedule.
    const count = 40
    for (let index = 0; index < count; index++) {
      const body: V1Deployment = {
        metadata: {
          name: `${RUN}-listed-${index}`,
          labels: { 'io.berth/id': `${RUN}${index}`.padEnd(32, '0'), 'app.kubernetes.io/managed-by': 'berth' },
          annotations: { 'io.berth/labels': JSON.stringify({ 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'alice' }), 'io.berth/replicas': '1' }
        },
        spec: {
          replicas: 0,
          selector: { matchLabels: { 'io.berth/id': `${RUN}${index}`.padEnd(32, '0') } },
          template: { metadata: { labels: { 'io.berth/id': `${RUN}${index}`.padEnd(32, '0') } }, spec: { containers: [{ name: 'main', image: cluster.image }] } }
        }
      }
      await apps.createNamespacedDeployment({ namespace, body })
    }
    const all = await waitFor('berth\'s copy to have them all', async () => (await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).json(), list => list.length === count, 30_000)
    t.equal(all.length, count)
    const before = await deploymentReads()
    for (let index = 0; index < 50; index++) {
      const ps = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })
      t.equal(ps.json().length, count)
    }
    const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${RUN}-listed-7`, headers: auth('alice') })
    t.match(inspect.json(), { name: `${RUN}-listed-7`, state: 'exited', replicas: { count: 1, running: 0 } })
    const after = await deploymentReads()
    t.comment(`apiserver reads of deployments during 50 ps and an inspect: ${after - before} (other suites share the apiserver)`)
    t.ok(after - before < 10, `50 ps of ${count} containers cost the apiserver ${after - before} reads of deployments, not one per call`)
  })

  t.test('the committed manifests: berth\'s Role is all it needs, and its own pod passes the restricted profile', async t => {
    const { system, tenants, token } = await berthIdentity(t, 'manifests')
    const app = await buildKube(t, { namespace: tenants, token })

    const port = await freePort()
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: web('rbac', { ports: [{ container: cluster.port, host: port }], auth: { username: 'someone', password: 'secret' } }) })
    t.equal(run.statusCode, 201, run.body)
    const { id } = run.json()
    t.equal((await fetchFrom(run.json().ports[0].hostIp, port)).trim(), 'hello from berth-test', 'run, with an image pull secret made from the credentials')
    const logs = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })
    t.equal(logs.statusCode, 200, logs.body)
    for (const action of ['stop', 'start', 'restart']) {
      const response = await app.inject({ method: 'POST', url: `/v1/containers/${id}/${action}`, headers: auth('alice') })
      t.equal(response.statusCode, 200, `${action}: ${response.body}`)
    }
    const nodes = await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('admin') })
    t.equal(nodes.statusCode, 501, 'nodes are not the Role\'s')
    t.match(nodes.json(), { code: 'not_supported', detail: /ClusterRole/ })
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
    t.same(await waitFor('nothing left, the pull secret included', () => leftoversIn(tenants), left => left.length === 0, 30_000), [])

    // berth's own Deployment: its pod, as the ReplicaSet would create it, admitted under "restricted".
    const [deployment] = loadAllYaml(readFileSync(new URL('../deploy/kubernetes/berth.yaml', import.meta.url), 'utf8').replaceAll('berth-system', system)) as V1Deployment[]
    const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'berth-dry-run', namespace: system }, spec: deployment?.spec?.template.spec as V1Pod['spec'] }
    const admitted = await core.createNamespacedPod({ namespace: system, body: pod, dryRun: 'All' })
    t.equal(admitted.metadata?.name, 'berth-dry-run', 'berth\'s pod is admitted where the restricted profile is enforced')
    const escalating = structuredClone(pod)
    ;(escalating.spec as NonNullable<V1Pod['spec']>).containers[0]!.securityContext = { allowPrivilegeEscalation: true }
    await t.rejects(core.createNamespacedPod({ namespace: system, body: escalating, dryRun: 'All' }), { code: 403 }, 'while one that may escalate is refused there: the check is real')
  })
}

function mergePatch (): ReturnType<typeof setHeaderOptions> {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
}

/** How many LIST and GET requests of deployments the apiserver has served, from its own metrics. */
async function deploymentReads (): Promise<number> {
  const text = await rawMetrics()
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue
    if (!/resource="deployments"/.test(line) || !/verb="(LIST|GET)"/.test(line)) continue
    total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

async function rawMetrics (): Promise<string> {
  const config = adminConfig()
  const url = new URL(`${config.getCurrentCluster()?.server}/metrics`)
  const options: https.RequestOptions = { hostname: url.hostname, port: url.port, path: url.pathname, method: 'GET' }
  await config.applyToHTTPSOptions(options)
  return await new Promise((resolve, reject) => {
    https.get(options, response => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { text += chunk })
      response.on('end', () => resolve(text))
      response.on('error', reject)
    }).on('error', reject)
  })
}
