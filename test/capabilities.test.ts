// What each backend can do, as the API and its document say it: a backend is the parts it is made
// of; cluster-only fields and operations on the docker backend are 501 not_supported (never
// ignored), the single host is one node, every operation in the OpenAPI document names the backends
// whose parts include what it needs, and src/engine/index.ts shows the same table a newcomer reads.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { LABEL_EXPIRY_ACTION } from '../src/access/ownership.ts'
import { checkRun } from '../src/engine/capabilities.ts'
import { BACKEND_KINDS, BACKENDS, partsTable } from '../src/engine/index.ts'
import { absent, composeBackend, PART_NAMES, type ContainersPart } from '../src/engine/parts.ts'
import type { EngineKind, RunSpec } from '../src/engine/types.ts'
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
  const backendsOf = (operation: { method: string, path: string }) => `${operation.method} ${operation.path}`
  // On a cluster these need a builder engine: every backend has them once it is configured.
  const builder = [
    'delete /v1/builds/{id}', 'get /v1/builds', 'get /v1/builds/{id}', 'get /v1/builds/{id}/events', 'get /v1/system/df',
    'post /v1/images/build', 'post /v1/images/prune', 'post /v1/images/push', 'post /v1/images/tag', 'post /v1/images/untag'
  ]
  for (const operation of operations.filter(operation => builder.includes(backendsOf(operation)))) {
    t.same(operation['x-berth-backends'], ['docker', 'swarm', 'kubernetes'], `${backendsOf(operation)} is on every backend`)
    t.match(operation.description, /Backends: docker, swarm and kubernetes \(on swarm only with a builder engine \(BERTH_BUILDER\); on kubernetes only with a builder engine \(BERTH_BUILDER\); 501 not_supported without\)\./, `${backendsOf(operation)} says a cluster needs a builder`)
  }
  const operation = (key: string) => operations.find(candidate => backendsOf(candidate) === key)
  // On swarm these reach the nodes through berth's agent on each: with it configured, swarm has them.
  const onTheNodes = [
    'delete /v1/images/{ref}', 'delete /v1/jobs/{id}', 'get /v1/images', 'get /v1/images/{ref}', 'get /v1/jobs/{id}', 'get /v1/jobs/{id}/events', 'post /v1/images/pull',
    'delete /v1/volumes/{volume}', 'get /v1/volumes', 'get /v1/volumes/{volume}', 'post /v1/volumes',
    'post /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/stats',
    'get /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/files'
  ]
  for (const key of onTheNodes) {
    t.match(operation(key)?.description, /on swarm only with berth's agent on every node \(deploy\/swarm\/agent\.yml, BERTH_SWARM_AGENT_SECRET_FILE\); 501 not_supported without/, `${key} says swarm needs the agents`)
  }
  // A pod is a container Kubernetes can reach into (the exec subresource) and measure, and a claim is
  // a volume; on swarm the agents reach a task's node, and the manager waits and expires: every backend.
  const everywhere = [
    'delete /v1/volumes/{volume}', 'get /v1/volumes', 'get /v1/volumes/{volume}', 'post /v1/volumes',
    'post /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/exec', 'get /v1/containers/{idOrName}/stats',
    'get /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/archive', 'put /v1/containers/{idOrName}/files',
    'post /v1/containers/{idOrName}/wait', 'put /v1/containers/{idOrName}/expiry'
  ]
  for (const key of everywhere) t.same(operation(key)?.['x-berth-backends'], ['docker', 'swarm', 'kubernetes'], `${key} is on every backend`)
  // Pulls, lists, inspects and pull jobs: the nodes' images on every backend (on Kubernetes through
  // puller pods and what the nodes report). Removing one and bridge/overlay networks: not on Kubernetes.
  const networks = ['delete /v1/networks/{network}', 'get /v1/networks', 'get /v1/networks/{network}', 'post /v1/networks', 'post /v1/networks/{network}/connect', 'post /v1/networks/{network}/disconnect']
  for (const key of onTheNodes.filter(key => /images|jobs/.test(key) && key !== 'delete /v1/images/{ref}')) t.same(operation(key)?.['x-berth-backends'], ['docker', 'swarm', 'kubernetes'], `${key} is on every backend`)
  t.match(operation('delete /v1/images/{ref}')?.description, /on kubernetes: the kubelet removes images from its node by itself/)
  const dockerAndSwarm = operations.filter(candidate => candidate['x-berth-backends']?.join() === 'docker,swarm').map(backendsOf).sort()
  t.same(dockerAndSwarm, ['delete /v1/images/{ref}', ...networks].sort(), 'removing images and networks are on docker and swarm')
  const dockerOnly = operations.filter(candidate => candidate['x-berth-backends']?.length === 1).map(backendsOf).sort()
  t.same(dockerOnly, [], 'nothing is docker-only: a container\'s spec as a run request is on every backend too')
  t.same(operation('get /v1/containers/{idOrName}/spec')?.['x-berth-backends'], ['docker', 'swarm', 'kubernetes'])
  for (const candidate of operations.filter(candidate => candidate['x-berth-backends']?.length !== 3)) {
    t.match(candidate.description, /it answers 501 not_supported on (swarm|kubernetes): ./, `${backendsOf(candidate)} says why, backend by backend`)
    t.ok(candidate.responses['501'], `${backendsOf(candidate)} documents its 501`)
  }
  t.match(doc.paths['/v1/containers'].get['x-berth-backends'], ['docker', 'swarm', 'kubernetes'])
  t.match(doc.paths['/v1/nodes'].get['x-berth-backends'], ['docker', 'swarm', 'kubernetes'])
})

t.test('the table in src/engine/index.ts is the definitions\' own', async t => {
  const source = readFileSync(new URL('../src/engine/index.ts', import.meta.url), 'utf8').split('\n')
  const start = source.findIndex(line => line.trimEnd().endsWith(PART_NAMES.join(' ')))
  t.ok(start > 0, 'the file draws the table')
  t.same(source.slice(start, start + 1 + BACKEND_KINDS.length).map(line => line.replace(/^\/\/ {3}/, '').trimEnd()), partsTable())
  t.same(BACKEND_KINDS, ['docker', 'swarm', 'kubernetes'])
})

t.test('a backend without a part answers 501 with its reason; a run needing it is refused first', async t => {
  const base: RunSpec = { image: { kind: 'ref' as const, ref: {} as never }, env: {}, labels: {}, ports: [], mounts: [], restart: { policy: 'no' as const }, autoRemove: false, pull: 'missing' as const }
  const checked: RunSpec[] = []
  const containers = { check: (spec: RunSpec) => { checked.push(spec) } } as unknown as ContainersPart
  const core = { info: async () => ({ version: '', apiVersion: '', os: '', arch: '' }), events: async () => ({ async * [Symbol.asyncIterator] () {} }) }
  const backend = composeBackend('swarm', core, containers, { volumes: absent('each node has its own'), nodes: { list: async () => [] } })
  t.equal(backend.has('nodes'), true)
  t.equal(backend.has('volumes'), false)
  t.equal(backend.why('volumes'), 'each node has its own')
  t.equal(backend.why('exec'), 'this backend does not have it', 'a part a backend does not mention is absent too')
  t.throws(() => backend.part('volumes'), { code: 'not_supported', message: 'named volumes: not on the swarm backend: each node has its own' })
  t.throws(() => checkRun(backend, { ...base, mounts: [{ type: 'volume', source: 'v', target: '/v', readOnly: false }] }), { code: 'not_supported', message: /named volumes/ })
  t.throws(() => checkRun(backend, { ...base, labels: { [LABEL_EXPIRY_ACTION]: 'stop' } }), { code: 'not_supported', message: /^expiry/ })
  t.throws(() => checkRun(backend, { ...base, network: 'bridge' }), { code: 'not_supported', message: /^networks/ })
  t.same(checked, [], 'the backend\'s containers were not asked')
  checkRun(backend, base)
  t.equal(checked.length, 1, 'what needs no other part goes to the containers part\'s own check')
  for (const kind of BACKEND_KINDS as EngineKind[]) t.ok(BACKENDS[kind].offers('containers'), `${kind} has containers`)
})

t.test('run capabilities, backend by backend', async t => {
  const base: RunSpec = { image: { kind: 'ref' as const, ref: {} as never }, env: {}, labels: {}, ports: [], mounts: [], restart: { policy: 'no' as const }, autoRemove: false, pull: 'missing' as const }
  const { DockerContainers } = await import('../src/engine/docker/containers.ts')
  const { SwarmContainers } = await import('../src/engine/swarm/containers.ts')
  const { KubeContainers } = await import('../src/engine/kubernetes/containers.ts')
  const check = (kind: EngineKind, spec: RunSpec): void => {
    if (kind === 'swarm') {
      // Its check asks the cluster only for the agents' port.
      new SwarmContainers({ agents: { port: 7988 } } as never, null as never, null).check(spec)
      return
    }
    const prototype = { docker: DockerContainers, kubernetes: KubeContainers }[kind].prototype as { check: (spec: RunSpec) => void }
    prototype.check(spec)
  }
  t.doesNotThrow(() => check('docker', { ...base, replicas: 1 }))
  t.doesNotThrow(() => check('swarm', { ...base, replicas: 3, ports: [{ container: 80, protocol: 'tcp', hostIp: '0.0.0.0' }] }))
  t.throws(() => check('swarm', { ...base, ports: [{ container: 80, protocol: 'tcp', hostIp: '127.0.0.1' }] }), { code: 'not_supported', message: /host IP/ })
  t.throws(() => check('swarm', { ...base, gpus: 1 }), { code: 'not_supported', message: /generic resources/ })
  t.throws(() => check('swarm', { ...base, network: 'none' }), { code: 'not_supported', message: /always has a network/ })
  t.throws(() => check('swarm', { ...base, ports: [{ container: 80, host: 7988, protocol: 'tcp' }] }), { code: 'policy_denied', message: /berth's agent listens/ })
  t.doesNotThrow(() => check('kubernetes', { ...base, restart: { policy: 'on-failure', maxRetries: 2 } }), 'a run that finishes is a Job')
  t.doesNotThrow(() => check('kubernetes', { ...base, autoRemove: true }))
  t.throws(() => check('kubernetes', { ...base, mounts: [{ type: 'bind', source: '/srv', target: '/v', readOnly: false }] }), { code: 'not_supported', message: /hostPath/ })
  t.throws(() => check('kubernetes', { ...base, gpus: 'all' }), { code: 'not_supported', message: /by count/ })
  t.doesNotThrow(() => check('kubernetes', { ...base, replicas: 2, gpus: 1, ports: [{ container: 80, protocol: 'tcp', hostIp: '127.0.0.1' }] }))
})
