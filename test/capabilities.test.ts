// What each backend can do, as the API and its document say it: cluster-only fields and operations on
// the docker backend are 501 not_supported (never ignored), the single host is one node, and every
// operation in the OpenAPI document names the backends that have it.
import t from 'tap'
import { BACKENDS, backendsSentence, checkRunCapabilities } from '../src/engine/capabilities.ts'
import { RUN, auth, build, cleanupAfter, containersOfRun, runBody } from './helpers.ts'

cleanupAfter(t)

t.test('docker: cluster fields of a run are 501 not_supported, before anything is made', async t => {
  const app = await build(t)
  for (const [field, extra] of [
    ['replicas', { replicas: 2 }],
    ['placement', { placement: { constraints: ['node.labels.gpu==true'] } }],
    ['resources.reservations', { resources: { reservations: { memory: 64 * 1024 * 1024 } } }]
  ] as const) {
    const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: `${RUN}-cap`, ...extra }) })
    t.equal(response.statusCode, 501, field)
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.match(response.json(), { code: 'not_supported', status: 501, backend: 'docker', detail: new RegExp(`^${field.replace('.', '\\.')} need a cluster`) })
  }
  t.same(await containersOfRun(), [], 'nothing was created')
  const one = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: `${RUN}-one`, replicas: 1 }) })
  t.equal(one.statusCode, 201, 'one replica is what a single host runs')
  t.notOk('replicas' in one.json(), 'a single host reports no replicas')
})

t.test('docker: scale to one changes nothing, to more is 501', async t => {
  const app = await build(t)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: `${RUN}-scale` }) })
  t.equal(run.statusCode, 201)
  const id = run.json().id
  const one = await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('alice'), payload: { replicas: 1 } })
  t.equal(one.statusCode, 200)
  t.match(one.json(), { changed: false, container: { id, state: 'running' } })
  const two = await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('alice'), payload: { replicas: 2 } })
  t.equal(two.statusCode, 501)
  t.match(two.json(), { code: 'not_supported', backend: 'docker', detail: /exactly one replica/ })
  const bobs = await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('bob'), payload: { replicas: 1 } })
  t.equal(bobs.statusCode, 404, 'another token\'s container is not found, whatever the count')
  const invalid = await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('alice'), payload: { replicas: 1, extra: true } })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.json().code, 'validation_failed')
})

t.test('docker: the single host is one standalone node', async t => {
  const app = await build(t)
  const response = await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })
  t.equal(response.statusCode, 200)
  const nodes = response.json()
  t.equal(nodes.length, 1)
  t.match(nodes[0], { role: 'standalone', leader: false, state: 'ready', availability: 'active', address: null, id: /.+/, name: /.+/, engineVersion: /.+/, os: 'linux' })
  t.ok(nodes[0].resources.cpus > 0 && nodes[0].resources.memory > 0)
  const anonymous = await app.inject({ method: 'GET', url: '/v1/nodes' })
  t.equal(anonymous.statusCode, 401)
})

t.test('the OpenAPI document names the backends of every operation', async t => {
  const app = await build(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  const operations = Object.entries(doc.paths as Record<string, Record<string, { 'x-berth-backends'?: string[], description?: string, responses: Record<string, unknown> }>>)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, ...operation })))
  for (const operation of operations) {
    t.ok(Array.isArray(operation['x-berth-backends']) && operation['x-berth-backends'].length > 0, `${operation.method} ${operation.path} names its backends`)
  }
  const dockerOnly = operations.filter(operation => operation['x-berth-backends']?.length === 1).map(operation => `${operation.method} ${operation.path}`).sort()
  const imageStore = [
    'delete /v1/images/{ref}', 'delete /v1/jobs/{id}', 'get /v1/images', 'get /v1/images/{ref}', 'get /v1/jobs/{id}', 'get /v1/jobs/{id}/events', 'post /v1/images/pull',
    'delete /v1/builds/{id}', 'get /v1/builds', 'get /v1/builds/{id}', 'get /v1/builds/{id}/events', 'get /v1/system/df',
    'post /v1/images/build', 'post /v1/images/prune', 'post /v1/images/push', 'post /v1/images/tag', 'post /v1/images/untag'
  ]
  const singleHost = [
    'delete /v1/networks/{network}', 'delete /v1/volumes/{volume}', 'get /v1/networks', 'get /v1/networks/{network}', 'get /v1/volumes', 'get /v1/volumes/{volume}',
    'post /v1/containers/{idOrName}/wait', 'get /v1/containers/{idOrName}/spec', 'post /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/stats', 'post /v1/networks', 'post /v1/networks/{network}/connect', 'post /v1/networks/{network}/disconnect', 'post /v1/volumes',
    'get /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/files', 'put /v1/containers/{idOrName}/expiry'
  ]
  t.same(dockerOnly, [...imageStore, ...singleHost].sort(), 'the image store, builds, pull jobs, volumes, networks, wait, exec, stats and specs are docker-only')
  for (const operation of operations.filter(operation => operation['x-berth-backends']?.length === 1)) {
    const why = imageStore.includes(`${operation.method} ${operation.path}`) ? /a cluster \(Swarm or Kubernetes\) has no single image store/ : /on a cluster/
    t.match(operation.description, /Backends: docker only; on swarm and kubernetes this answers 501 not_supported \(/, `${operation.method} ${operation.path} says so in words`)
    t.match(operation.description, why, `${operation.method} ${operation.path} says why`)
    t.ok(operation.responses['501'], `${operation.method} ${operation.path} documents its 501`)
  }
  t.match(doc.paths['/v1/containers'].get['x-berth-backends'], ['docker', 'swarm', 'kubernetes'])
})

t.test('run capabilities, backend by backend', async t => {
  const base = { image: { kind: 'ref' as const, ref: {} as never }, env: {}, labels: {}, ports: [], mounts: [], restart: { policy: 'no' as const }, autoRemove: false, pull: 'missing' as const }
  t.doesNotThrow(() => checkRunCapabilities('docker', { ...base, replicas: 1 }))
  t.doesNotThrow(() => checkRunCapabilities('swarm', { ...base, replicas: 3, ports: [{ container: 80, protocol: 'tcp', hostIp: '0.0.0.0' }] }))
  t.throws(() => checkRunCapabilities('swarm', { ...base, mounts: [{ type: 'volume', source: 'v', target: '/v', readOnly: false }] }), { code: 'not_supported' })
  t.equal(backendsSentence(['docker'], undefined), 'Backends: docker only; on swarm and kubernetes this answers 501 not_supported.')
  t.equal(backendsSentence(['docker', 'swarm'], 'why'), 'Backends: docker and swarm only; on kubernetes this answers 501 not_supported (why).')
  t.same(BACKENDS, ['docker', 'swarm', 'kubernetes'])
  t.throws(() => checkRunCapabilities('kubernetes', { ...base, restart: { policy: 'on-failure' } }), { code: 'not_supported', message: /Deployment restarts/ })
  t.throws(() => checkRunCapabilities('kubernetes', { ...base, mounts: [{ type: 'bind', source: '/srv', target: '/v', readOnly: false }] }), { code: 'not_supported', message: /hostPath/ })
  t.throws(() => checkRunCapabilities('kubernetes', { ...base, gpus: 'all' }), { code: 'not_supported', message: /by count/ })
  t.doesNotThrow(() => checkRunCapabilities('kubernetes', { ...base, replicas: 2, gpus: 1, ports: [{ container: 80, protocol: 'tcp', hostIp: '127.0.0.1' }] }))
})
