// docker run -d / ps / inspect / stop / start / restart / rm through berth, on the real engine.
import { createServer } from 'node:net'
import t from 'tap'
import {
  HTTPD, LogCapture, RUN_LABEL, RUN, assertProblem, auth, build, cleanupAfter, containersOfRun, docker, env, fetchFromContainer,
  freePort, imageExists, name, pushImage, runContainer
} from './helpers.ts'
import { engineRequests } from './engine-spies.ts'

cleanupAfter(t)

t.test('run → reach → ps → stop → ps -a → start → reach → rm: the seed workflow', async t => {
  const app = await build(t)
  const port = await freePort()
  const { reference, digest } = await pushImage('workflow')
  t.notOk(await imageExists(reference), 'the image is only in the registry before the run')

  const run = await runContainer(app, 'admin', { image: reference, name: name('web'), command: HTTPD, ports: [{ container: 80, host: port }] })
  t.equal(run.statusCode, 201, run.body)
  const container = run.json()
  t.equal(run.headers.location, `/v1/containers/${container.id}`)
  t.equal(container.name, name('web'))
  t.equal(container.state, 'running')
  t.equal(container.running, true)
  t.equal(container.image, reference)
  t.equal(container.imageDigest, digest, 'the reply names the digest of the image it runs')
  t.same(container.ports, [{ container: 80, host: port, protocol: 'tcp', hostIp: '0.0.0.0' }], 'published once, not once per IP family')
  t.equal(container.labels['io.berth.owner'], 'admin')
  t.equal(container.labels['io.berth.managed'], 'true')
  t.ok(await imageExists(reference), 'the first run pulled the image, as the CLI does')
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n')

  const running = await app.inject({ method: 'GET', url: `/v1/containers?name=${name('web')}`, headers: auth() })
  t.equal(running.statusCode, 200)
  t.same(running.json().map((c: { id: string, state: string }) => [c.id, c.state]), [[container.id, 'running']])
  t.match(running.json()[0], { name: name('web'), image: reference, ports: [{ container: 80, host: port, protocol: 'tcp' }] })

  const stop = await app.inject({ method: 'POST', url: `/v1/containers/${name('web')}/stop?timeout=1`, headers: auth() })
  t.equal(stop.statusCode, 200, stop.body)
  t.equal(stop.json().changed, true)
  t.equal(stop.json().container.state, 'exited')
  // One shape in ps and inspect: the bindings in effect, so none for a stopped container (as docker
  // ps shows none); the ports it asks for are in its spec.
  t.same(stop.json().container.ports, [], 'a stopped container binds no port')

  const psAfterStop = await app.inject({ method: 'GET', url: `/v1/containers?name=${name('web')}`, headers: auth() })
  t.same(psAfterStop.json(), [], 'docker ps lists running containers only')
  const psAll = await app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${name('web')}`, headers: auth() })
  t.same(psAll.json().map((c: { id: string, state: string }) => [c.id, c.state]), [[container.id, 'exited']], 'docker ps -a lists it, exited')
  t.same(psAll.json()[0].ports, [], 'ps -a agrees: no port')
  t.same(psAll.json()[0].command, HTTPD, 'ps gives the command as inspect does, an array')
  t.same(stop.json().container.command, HTTPD)
  const spec = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}/spec`, headers: auth() })
  t.match(spec.json().run.ports, [{ container: 80, host: port }], 'the spec still says which port it asks for')

  const start = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/start`, headers: auth() })
  t.equal(start.statusCode, 200, start.body)
  t.equal(start.json().changed, true)
  t.equal(start.json().container.state, 'running')
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n', 'reachable again through the same host port')

  const remove = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}?force=true`, headers: auth() })
  t.equal(remove.statusCode, 204)
  const gone = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: auth() })
  assertProblem(t, gone, 404, { code: 'not_found', detail: `container ${container.id} was not found` }, 'rm removed it')
})

t.test('start and stop are idempotent: already in that state is a success that changed nothing', async t => {
  const app = await build(t)
  const run = await runContainer(app, 'admin', { name: name('idem') })
  t.equal(run.statusCode, 201, run.body)
  const again = await app.inject({ method: 'POST', url: `/v1/containers/${name('idem')}/start`, headers: auth() })
  t.equal(again.statusCode, 200)
  t.equal(again.json().changed, false)
  t.equal(again.json().container.state, 'running')
  const stop = await app.inject({ method: 'POST', url: `/v1/containers/${name('idem')}/stop?timeout=0`, headers: auth() })
  t.equal(stop.json().changed, true)
  const stopAgain = await app.inject({ method: 'POST', url: `/v1/containers/${name('idem')}/stop`, headers: auth() })
  t.equal(stopAgain.statusCode, 200)
  t.equal(stopAgain.json().changed, false)
  t.equal(stopAgain.json().container.state, 'exited')
  t.equal(stopAgain.json().container.exitCode, 137, 'sleep ignores SIGTERM as PID 1, so timeout=0 killed it')
  const restart = await app.inject({ method: 'POST', url: `/v1/containers/${name('idem')}/restart?timeout=0`, headers: auth() })
  t.equal(restart.statusCode, 200)
  t.equal(restart.json().changed, true)
  t.equal(restart.json().container.state, 'running')
})

t.test('engine-assigned host ports, UDP and a host IP: the reply carries the ports actually bound', async t => {
  const app = await build(t)
  const run = await runContainer(app, 'admin', { name: name('ports'), command: HTTPD, ports: [{ container: 80 }, { container: 5353, protocol: 'udp', hostIp: '127.0.0.1' }] })
  t.equal(run.statusCode, 201, run.body)
  const ports = run.json().ports as Array<{ container: number, host: number, protocol: string, hostIp: string }>
  // The engine picks a free port for IPv4 and for IPv6 separately: usually the same one (listed once),
  // but a different one when the next port is taken in one family only (then both are listed).
  const tcp = ports.filter(p => p.protocol === 'tcp')
  const udp = ports.filter(p => p.protocol === 'udp')
  t.ok(tcp.length === 1 || (tcp.length === 2 && tcp.some(p => p.hostIp === '::')), `one tcp binding, or one per IP family: ${JSON.stringify(tcp)}`)
  t.ok(tcp.every(p => p.host > 0 && p.container === 80), 'the engine chose the tcp host port(s)')
  t.same(udp.map(p => [p.container, p.hostIp, p.host > 0]), [[5353, '127.0.0.1', true]], 'udp bound on the host IP asked for')
  const ipv4 = tcp.find(p => p.hostIp === '0.0.0.0')
  t.ok(ipv4, 'bound on every IPv4 interface')
  t.equal(await fetchFromContainer(ipv4!.host), 'hello from berth-test\n', 'the engine-assigned port really reaches the container')
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${name('ports')}`, headers: auth() })
  t.same(inspect.json().ports, ports, 'inspect agrees with the run reply')
})

t.test('everything docker run takes reaches the engine', async t => {
  const app = await build(t)
  const run = await runContainer(app, 'admin', {
    name: name('full'),
    entrypoint: ['/bin/sh', '-c'],
    command: ['echo "$GREETING" > /tmp/out; sleep 300'],
    env: { GREETING: 'hi there' },
    workingDir: '/tmp',
    user: '1000:1000',
    labels: { team: 'ml', 'example.com/purpose': 'notebook' },
    volumes: [{ source: name('vol'), target: '/data' }],
    restart: { policy: 'on-failure', maxRetries: 3 },
    resources: { memory: 64 * 1024 * 1024, cpus: 0.5 },
    pull: 'never'
  })
  t.equal(run.statusCode, 201, run.body)
  const body = run.json()
  t.same(body.command, ['/bin/sh', '-c', 'echo "$GREETING" > /tmp/out; sleep 300'])
  const listed = await app.inject({ method: 'GET', url: `/v1/containers?name=${body.name}`, headers: auth() })
  t.same(listed.json()[0].command, body.command, 'ps splits the engine\'s one-string command back into the same arguments, the quoted one with spaces whole')
  t.same(body.restart, { policy: 'on-failure', maxRetries: 3 })
  t.same(body.resources, { memory: 64 * 1024 * 1024, cpus: 0.5 })
  t.equal(body.labels.team, 'ml')
  t.equal(body.imageDigest, null, 'an image never pulled from a registry has no digest')
  const info = await docker.getContainer(body.id).inspect()
  t.equal(info.Config.WorkingDir, '/tmp')
  t.equal(info.Config.User, '1000:1000')
  t.ok(info.Config.Env.includes('GREETING=hi there'))
  t.same(info.Mounts.map(m => [m.Type, m.Name, m.Destination]), [['volume', name('vol'), '/data']])
  t.equal(body.autoRemove, false)
})

t.test('a host port held by another container: 409 port_conflict naming it, and nothing left behind', async t => {
  const app = await build(t)
  const port = await freePort()
  const first = await runContainer(app, 'admin', { name: name('holder'), command: HTTPD, ports: [{ container: 80, host: port }] })
  t.equal(first.statusCode, 201, first.body)
  const before = (await containersOfRun()).length
  const second = await runContainer(app, 'admin', { name: name('clash'), ports: [{ container: 8080, host: port }] })
  assertProblem(t, second, 409, {
    code: 'port_conflict',
    detail: `host port ${port} is already allocated by container ${name('holder')}`,
    port,
    holder: { id: first.json().id, name: name('holder') }
  }, 'the port of a container admin may see')
  t.equal((await containersOfRun()).length, before, 'no created-but-not-started container is left')
  const leftover = await docker.listContainers({ all: true, filters: { name: [name('clash')] } })
  t.same(leftover, [])
})

t.test('a host port held by a plain process: 409 port_conflict, and nothing left behind', async t => {
  const app = await build(t)
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '0.0.0.0', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const run = await runContainer(app, 'admin', { name: name('proc-clash'), ports: [{ container: 80, host: port }] })
  assertProblem(t, run, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated`, port }, 'no container holds it, so none is named')
  t.same(await docker.listContainers({ all: true, filters: { name: [name('proc-clash')] } }), [])
})

t.test('a name already in use: 409 name_conflict, and the existing container is untouched', async t => {
  const app = await build(t)
  const first = await runContainer(app, 'admin', { name: name('taken') })
  t.equal(first.statusCode, 201)
  const second = await runContainer(app, 'admin', { name: name('taken') })
  assertProblem(t, second, 409, { code: 'name_conflict', detail: `the container name ${name('taken')} is already in use`, name: name('taken') })
  const still = await docker.getContainer(first.json().id).inspect()
  t.equal(still.State.Running, true)
})

t.test('pull policies: never with a missing image is 404 image_not_found; always pulls again', async t => {
  const app = await build(t)
  const { reference } = await pushImage('policies')
  const never = await runContainer(app, 'admin', { image: reference, pull: 'never' })
  assertProblem(t, never, 404, { code: 'image_not_found', detail: `image ${reference} is not on the engine and pull is "never"`, image: reference }, 'pull never')
  t.notOk(await imageExists(reference), 'never means never')
  t.same(await containersOfRun().then(list => list.filter(c => c.Image === reference)), [])

  const always = await runContainer(app, 'admin', { image: reference, pull: 'always', name: name('always') })
  t.equal(always.statusCode, 201, always.body)
  t.ok(await imageExists(reference))
  const missingImage = await runContainer(app, 'admin', { image: `${env.registry}/${RUN}-absent/web:1` })
  assertProblem(t, missingImage, 404, { code: 'image_not_found', detail: `image ${env.registry}/${RUN}-absent/web:1 was not found`, image: `${env.registry}/${RUN}-absent/web:1` }, 'an image in no registry')
})

t.test('running by digest pins the exact image', async t => {
  const app = await build(t)
  const { reference, digest } = await pushImage('bydigest')
  const repository = reference.slice(0, reference.lastIndexOf(':'))
  const run = await runContainer(app, 'admin', { image: `${repository}@${digest}`, name: name('digest') })
  t.equal(run.statusCode, 201, run.body)
  t.equal(run.json().imageDigest, digest)
  t.equal(run.json().image, `${repository}@${digest}`)
})

t.test('remove: 409 container_running unless force; unknown container 404', async t => {
  const app = await build(t)
  const run = await runContainer(app, 'admin', { name: name('rm') })
  t.equal(run.statusCode, 201)
  const refused = await app.inject({ method: 'DELETE', url: `/v1/containers/${name('rm')}`, headers: auth() })
  assertProblem(t, refused, 409, { code: 'container_running', detail: `container ${run.json().id} is running; stop it first or remove it with force=true` }, 'rm without force')
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${name('rm')}/stop?timeout=0`, headers: auth() })).statusCode, 200)
  const removed = await app.inject({ method: 'DELETE', url: `/v1/containers/${name('rm')}`, headers: auth() })
  t.equal(removed.statusCode, 204)
  t.equal(removed.body, '')
  t.same(await docker.listContainers({ all: true, filters: { name: [name('rm')] } }), [], 'gone from the engine')
  for (const [method, url] of [['GET', ''], ['POST', '/start'], ['POST', '/stop'], ['POST', '/restart'], ['DELETE', '']] as const) {
    const missing = await app.inject({ method, url: `/v1/containers/${name('never-was')}${url}`, headers: auth() })
    assertProblem(t, missing, 404, { code: 'not_found', detail: `container ${name('never-was')} was not found` }, `${method} ${url}`)
  }
})

t.test('list filters: status, label and exact name', async t => {
  const app = await build(t)
  const a = await runContainer(app, 'admin', { name: name('flt-a'), labels: { tier: 'gold' } })
  const ab = await runContainer(app, 'admin', { name: name('flt-ab'), labels: { tier: 'silver' } })
  t.equal(a.statusCode, 201)
  t.equal(ab.statusCode, 201)
  await app.inject({ method: 'POST', url: `/v1/containers/${name('flt-ab')}/stop?timeout=0`, headers: auth() })
  const names = async (query: string) => (await app.inject({ method: 'GET', url: `/v1/containers?${query}`, headers: auth() })).json().map((c: { name: string }) => c.name).sort()
  t.same(await names(`all=true&name=${name('flt-a')}`), [name('flt-a')], 'name is an exact match, not a substring')
  t.same(await names(`all=true&label=${RUN_LABEL}=${RUN}&label=tier=silver`), [name('flt-ab')])
  t.same(await names(`all=true&label=${RUN_LABEL}=${RUN}&status=exited`), [name('flt-ab')])
  t.same(await names(`label=${RUN_LABEL}=${RUN}&label=tier`), [name('flt-a')], 'running only by default')
  t.same(await names(`all=true&label=${RUN_LABEL}=${RUN}&label=tier&status=exited&status=running`), [name('flt-a'), name('flt-ab')])
})

t.test('env values and registry passwords appear neither in logs nor in the URLs sent to the engine', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const secret = `s3cret-${RUN}`
  const { reference } = await pushImage('secret', { registry: env.authRegistry })
  const urls = engineRequests(t)
  const run = await runContainer(app, 'admin', { image: reference, name: name('secret'), env: { API_KEY: secret }, auth: { username: env.authUser, password: env.authPassword } })
  t.equal(run.statusCode, 201, run.body)
  t.ok(urls.some(url => url.includes('/containers/create')), 'the create call was observed')
  t.notOk(urls.some(url => url.includes(secret) || url.includes('API_KEY')), 'no env value in any engine URL')
  t.notOk(urls.some(url => url.includes(env.authPassword)), 'no registry password in any engine URL')
  t.notOk(logs.text.includes(secret), 'no env value in the logs')
  t.notOk(logs.text.includes(env.authPassword), 'no registry password in the logs')
  t.ok(logs.lines.every(line => typeof line.requestId === 'string' || line.msg === 'Server listening at'), 'every request log line carries the request id')
  t.ok(logs.lines.some(line => (line.audit as { action?: string } | undefined)?.action === 'POST /v1/containers'), 'the run is audited')
  const create = await docker.getContainer(run.json().id).inspect()
  t.ok(create.Config.Env.includes(`API_KEY=${secret}`), 'the env value did reach the container, in the body')
})
