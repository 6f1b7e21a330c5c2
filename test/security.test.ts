// Issue 4, tested by attacking it: tokens and scopes, ownership, run policy, limits, headers, audit.
import { createServer, type Socket } from 'node:net'
import type { InjectOptions } from 'fastify'
import t from 'tap'
import { LogCapture, RUN, assertProblem, auth, build, cleanupAfter, containersOfRun, docker, dockerEngine, env, freePort, imageExists, name, pushImage, runBody, runContainer, withParts } from './helpers.ts'

cleanupAfter(t)

t.test('authentication: no token, a malformed header or a wrong token is 401 problem+json with a challenge', async t => {
  const app = await build(t)
  const cases: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['basic auth', { authorization: 'Basic YWRtaW46YWRtaW4=' }],
    ['empty bearer', { authorization: 'Bearer ' }],
    ['wrong token', { authorization: 'Bearer not-a-token-of-berth-at-all' }],
    ['token with a space', { authorization: 'Bearer a b' }]
  ]
  for (const [what, headers] of cases) {
    const response = await app.inject({ method: 'GET', url: '/v1/containers', headers })
    t.equal(response.statusCode, 401, what)
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8', what)
    t.match(response.headers['www-authenticate'], /^Bearer realm="berth"/, what)
    t.match(response.json(), { code: 'unauthorized', status: 401, type: 'https://berth.dev/problems/unauthorized', requestId: String }, what)
  }
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz needs no token')
  t.equal((await app.inject({ method: 'GET', url: '/openapi.json' })).statusCode, 200, 'the document is open by default')
})

t.test('scopes: a read token lists but cannot run, stop, pull or remove; write cannot remove images', async t => {
  const app = await build(t)
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('reader') })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('reader') })).statusCode, 200)
  const denied: Array<[string, string, unknown]> = [
    ['POST', '/v1/containers', runBody({ name: name('reader-run') })],
    ['POST', `/v1/containers/${name('whatever')}/stop`, undefined],
    ['POST', '/v1/images/pull', { image: env.image }],
    ['DELETE', `/v1/containers/${name('whatever')}`, undefined]
  ]
  for (const [method, url, payload] of denied) {
    const response = await app.inject({ method: method as 'POST', url, headers: auth('reader'), ...(payload === undefined ? {} : { payload: payload as object }) })
    assertProblem(t, response, 403, { code: 'forbidden', detail: 'this needs the "write" scope; token "reader" has read', scope: 'write' }, `${method} ${url}`)
  }
  const rmi = await app.inject({ method: 'DELETE', url: `/v1/images/${encodeURIComponent(env.image)}`, headers: auth('alice') })
  assertProblem(t, rmi, 403, { code: 'forbidden', detail: 'this needs the "admin" scope; token "alice" has write', scope: 'admin' }, 'rmi with write')
  t.same(await containersOfRun().then(list => list.filter(c => c.Names.includes(`/${name('reader-run')}`))), [], 'nothing was created')
  t.ok(await imageExists(env.image), 'the image is still there')
})

t.test("ownership: another token's container is invisible and untouchable; admin sees everything", async t => {
  const app = await build(t)
  const run = await runContainer(app, 'alice', { name: name('alices') })
  t.equal(run.statusCode, 201, run.body)
  t.equal(run.json().labels['io.berth.owner'], 'alice')
  const id = run.json().id

  const listed = async (who: 'alice' | 'bob' | 'admin') =>
    (await app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${name('alices')}`, headers: auth(who) })).json().map((c: { id: string }) => c.id)
  t.same(await listed('alice'), [id])
  t.same(await listed('bob'), [], 'bob does not see it in lists')
  t.same(await listed('admin'), [id], 'admin sees it')

  for (const ref of [id, id.slice(0, 12), name('alices')]) {
    for (const [method, url] of [['GET', ''], ['POST', '/stop'], ['POST', '/start'], ['POST', '/restart'], ['DELETE', '?force=true']] as const) {
      const response = await app.inject({ method, url: `/v1/containers/${ref}${url}`, headers: auth('bob') })
      // The same answer as for a container that does not exist.
      assertProblem(t, response, 404, { code: 'not_found', detail: `container ${ref} was not found` }, `bob ${method} ${ref}${url}`)
    }
  }
  const still = await docker.getContainer(id).inspect()
  t.equal(still.State.Running, true, "bob's attempts changed nothing")
  t.equal(still.RestartCount, 0)

  const bobsView = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('bob') })
  t.notOk(bobsView.json().some((c: { labels: Record<string, string> }) => c.labels['io.berth.owner'] !== 'bob'), 'a non-admin list holds only its own containers')
  const adminStop = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop?timeout=0`, headers: auth('admin') })
  t.equal(adminStop.statusCode, 200)
})

t.test("a port conflict does not name another token's container", async t => {
  const app = await build(t)
  const port = await freePort()
  const alices = await runContainer(app, 'alice', { name: name('alice-port'), ports: [{ container: 80, host: port }] })
  t.equal(alices.statusCode, 201)
  const bobs = await runContainer(app, 'bob', { name: name('bob-port'), ports: [{ container: 80, host: port }] })
  assertProblem(t, bobs, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated`, port }, 'bob is not told who holds the port')
  const admins = await runContainer(app, 'admin', { name: name('admin-port'), ports: [{ container: 80, host: port }] })
  assertProblem(t, admins, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated by container ${name('alice-port')}`, port, holder: { id: alices.json().id, name: name('alice-port') } }, 'admin is told who holds it')
})

t.test('the run body has no way to ask for privileges: unknown fields are rejected, not ignored', async t => {
  const app = await build(t)
  const attempts: Record<string, unknown> = {
    privileged: true,
    capAdd: ['SYS_ADMIN'],
    devices: ['/dev/kmem'],
    networkMode: 'host',
    pidMode: 'host',
    ipcMode: 'host',
    securityOpt: ['seccomp=unconfined'],
    HostConfig: { Privileged: true, Binds: ['/:/host'] }
  }
  for (const [field, value] of Object.entries(attempts)) {
    const response = await runContainer(app, 'admin', { name: name(`priv-${field.toLowerCase()}`), [field]: value })
    assertProblem(t, response, 400, { code: 'validation_failed', detail: `body/${field} is not a known field`, errors: [{ location: 'body', path: `/${field}`, message: 'is not a known field' }] }, field)
  }
  const ports = await runContainer(app, 'admin', { ports: [{ container: 80, privileged: true }] })
  assertProblem(t, ports, 400, { code: 'validation_failed', detail: 'body/ports/0/privileged is not a known field', errors: [{ location: 'body', path: '/ports/0/privileged', message: 'is not a known field' }] }, 'ports/0/privileged')
  // The Docker API's spelling of a field: the unknown field is named first, and the one meant with
  // it, not only the required field it leaves missing.
  const dockerCase = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('admin'), payload: { Image: env.image } })
  assertProblem(t, dockerCase, 400, {
    code: 'validation_failed',
    detail: 'body/Image is not a known field (did you mean "image"?)',
    errors: [{ location: 'body', path: '/Image', message: 'is not a known field (did you mean "image"?)' }, { location: 'body', path: '', message: 'must have required property \'image\'' }]
  }, '{"Image": …}')
  // tty is a field berth knows (docker run -t), so it is not among the unknown ones above: what it
  // refuses is a value that is not a boolean, and it does not coerce one that looks like it.
  for (const value of ['x', 'true', 1]) {
    const tty = await runContainer(app, 'admin', { name: name('priv-tty'), tty: value })
    assertProblem(t, tty, 400, { code: 'validation_failed', detail: 'body/tty must be boolean', errors: [{ location: 'body', path: '/tty', message: 'must be boolean' }] }, `tty: ${JSON.stringify(value)}`)
  }
  t.same(await containersOfRun().then(list => list.filter(c => c.Names.some(n => n.includes('priv-')))), [], 'nothing was created')
})

t.test('run policy: bind mounts, host ports, host IPs, images, memory and CPUs', async t => {
  const app = await build(t, {
    config: {
      policy: {
        images: ['docker.io/berth-test/*', `${env.registry}/${RUN}-allowed*`],
        hostPortMin: 20000,
        hostPortMax: 60999,
        hostIps: ['127.0.0.1'],
        bindPaths: ['/srv/berth-data'],
        maxMemoryBytes: 128 * 1024 * 1024,
        maxCpus: 1
      }
    }
  })
  const denied: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['bind mount of /', { volumes: [{ source: '/', target: '/host' }] }, 'bindPaths', /host path \/ is not allowed/],
    ['bind mount of the docker socket', { volumes: [{ source: '/var/run/docker.sock', target: '/var/run/docker.sock' }] }, 'bindPaths', /docker\.sock/],
    ['bind mount beside an allowed prefix', { volumes: [{ source: '/srv/berth-data-evil', target: '/x' }] }, 'bindPaths', /not allowed/],
    ['host port below the range', { ports: [{ container: 80, host: 80 }] }, 'hostPorts', /outside the allowed range 20000-60999/],
    ['host port above the range', { ports: [{ container: 80, host: 61000 }] }, 'hostPorts', /outside/],
    ['a host IP not allowed', { ports: [{ container: 80, host: 30000, hostIp: '0.0.0.0' }] }, 'hostIps', /0\.0\.0\.0/],
    ['an image not on the list', { image: `${env.registry}/${RUN}-other/web:1` }, 'images', /not on the allow-list/],
    ['an image id', { image: 'sha256:' + 'a'.repeat(64) }, 'images', /image id/],
    ['too much memory', { resources: { memory: 256 * 1024 * 1024 } }, 'maxMemory', /exceeds/],
    ['too many cpus', { resources: { cpus: 2 } }, 'maxCpus', /exceeds/]
  ]
  for (const [what, body, rule, detail] of denied) {
    const response = await runContainer(app, 'admin', { name: name('policy'), ...body })
    assertProblem(t, response, 403, { code: 'policy_denied', detail, rule }, what)
  }
  const traversal = await runContainer(app, 'admin', { volumes: [{ source: '/srv/berth-data/../../etc', target: '/x' }] })
  assertProblem(t, traversal, 400, {
    code: 'validation_failed',
    detail: 'body/volumes/0/source must not contain ".." or "." segments',
    errors: [{ location: 'body', path: '/volumes/0/source', message: 'must not contain ".." or "." segments' }]
  }, 'a path with .. is refused, not resolved')
  t.same(await containersOfRun().then(list => list.filter(c => c.Names.includes(`/${name('policy')}`))), [], 'no denied run created anything')

  const allowed = await runContainer(app, 'admin', { name: name('policy-ok'), ports: [{ container: 80, host: await freePort().then(p => Math.max(p, 20000) <= 60999 ? Math.max(p, 20000) : 30001), hostIp: '127.0.0.1' }], volumes: [{ source: name('data'), target: '/data' }] })
  t.equal(allowed.statusCode, 201, allowed.body)
  t.same(allowed.json().resources, { memory: 128 * 1024 * 1024, cpus: 1 }, 'the policy maximum applies when the body sets no limit')
})

t.test('a registry not on the allow-list is denied before any connection is made', async t => {
  let connections = 0
  const decoy = createServer((socket: Socket) => { connections++; socket.destroy() })
  await new Promise<void>(resolve => decoy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => decoy.close())
  const decoyRegistry = `127.0.0.1:${(decoy.address() as { port: number }).port}`
  const app = await build(t, { config: { policy: { images: [`${env.registry}/*`] } } })
  const pull = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: `${decoyRegistry}/${RUN}/web:1` } })
  assertProblem(t, pull, 403, { code: 'policy_denied', detail: `image ${decoyRegistry}/${RUN}/web is not on the allow-list (BERTH_ALLOWED_IMAGES)`, rule: 'images' }, 'a pull from a registry not on the list')
  const run = await runContainer(app, 'admin', { image: `${decoyRegistry}/${RUN}/web:1` })
  assertProblem(t, run, 403, { code: 'policy_denied', detail: `image ${decoyRegistry}/${RUN}/web is not on the allow-list (BERTH_ALLOWED_IMAGES)`, rule: 'images' }, 'a run of an image from a registry not on the list')
  t.equal(connections, 0, 'the engine never dialled the registry')
  // The same decoy, allowed, is dialled: the count above could have moved.
  const open = await build(t)
  const dialled = await open.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: `${decoyRegistry}/${RUN}/web:1` } })
  t.equal(dialled.statusCode, 502)
  t.match(dialled.json(), { code: 'pull_failed' })
  t.ok(connections > 0, 'an allowed pull does reach the registry')
})

t.test('registry credentials: from the client or configured on the server; missing ones are pull_failed registry_auth', async t => {
  const { reference } = await pushImage('private', { registry: env.authRegistry })
  const app = await build(t)
  // The rest of the detail is the registry's own words, passed on by the engine.
  const pullFailed = new RegExp(`^pulling ${reference.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed: `)
  const anonymous = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  assertProblem(t, anonymous, 502, { code: 'pull_failed', detail: pullFailed, reason: 'registry_auth', image: reference }, 'no credentials')
  const wrong = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference, auth: { username: env.authUser, password: 'wrong-password' } } })
  assertProblem(t, wrong, 502, { code: 'pull_failed', detail: pullFailed, reason: 'registry_auth', image: reference }, 'wrong credentials')
  t.notOk(wrong.body.includes('wrong-password'))
  const withClientAuth = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference, auth: { username: env.authUser, password: env.authPassword } } })
  t.equal(withClientAuth.statusCode, 200, withClientAuth.body)
  await docker.getImage(reference).remove()
  const configured = await build(t, { config: { registryAuth: { [env.authRegistry]: { username: env.authUser, password: env.authPassword } } } })
  const withServerAuth = await configured.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  t.equal(withServerAuth.statusCode, 200, withServerAuth.body)
  t.equal(withServerAuth.json().reference, reference)
})

t.test('hostile input: sizes, nesting, traversal, control characters, header injection, long strings', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const before = (await containersOfRun()).map(container => container.Id)
  const expect = async (what: string, request: InjectOptions, status: number, code: string) => {
    const response = await app.inject(request)
    t.equal(response.statusCode, status, `${what}: ${response.body.slice(0, 200)}`)
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8', what)
    t.equal(response.json().code, code, what)
    t.notOk(Object.keys(response.headers).some(header => header.toLowerCase() === 'x-injected'), `${what}: no header was injected`)
  }
  const post = (payload: string | object, headers: Record<string, string> = {}): InjectOptions =>
    ({ method: 'POST', url: '/v1/containers', headers: { ...auth(), 'content-type': 'application/json', ...headers }, payload })

  await expect('a body over the limit', post({ image: env.image, command: ['x'.repeat(70 * 1024)] }), 413, 'payload_too_large')
  await expect('deeply nested arrays', post('['.repeat(30000) + ']'.repeat(30000)), 400, 'validation_failed')
  await expect('deeply nested objects', post('{"image":"x","labels":' + '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) + '}'), 400, 'validation_failed')
  await expect('prototype poisoning', post('{"image":"x","__proto__":{"privileged":true}}'), 400, 'validation_failed')
  await expect('constructor poisoning', post('{"image":"x","constructor":{"prototype":{"privileged":true}}}'), 400, 'validation_failed')
  await expect('malformed JSON', post('{"image":'), 400, 'validation_failed')
  // Where JSON is broken, in lines and columns as an editor shows them, also where V8 does not say.
  const broken: Array<[string, string]> = [
    ['{"image":', 'the body is not valid JSON (line 1 column 10): Unexpected end of JSON input'],
    ['{"image": "x",\n "ports": [80,]}', 'the body is not valid JSON (line 2 column 15): Unexpected token \']\''],
    ['{image: "x"}', 'the body is not valid JSON (line 1 column 2): Expected property name or \'}\''],
    ['{"image": "x"} {}', 'the body is not valid JSON (line 1 column 16): Unexpected non-whitespace character after JSON']
  ]
  for (const [text, detail] of broken) {
    assertProblem(t, await app.inject(post(text)), 400, { code: 'validation_failed', detail, errors: [{ location: 'body', path: '', message: detail.replace('the body ', '') }] }, text)
  }
  assertProblem(t, await app.inject(post('{"image":"x","__proto__":{"privileged":true}}')), 400, { code: 'validation_failed', detail: 'the body has a __proto__ or constructor.prototype member, which berth refuses' }, 'the poisoning refusal says why')
  await expect('an empty JSON body', post(''), 400, 'validation_failed')
  await expect('a JSON array body', post([]), 400, 'validation_failed')
  await expect('a text body', post('image=x', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type')
  await expect('a port as a string', post(runBody({ ports: [{ container: '80' }] })), 400, 'validation_failed')
  await expect('port 0', post(runBody({ ports: [{ container: 0 }] })), 400, 'validation_failed')
  await expect('port 65536', post(runBody({ ports: [{ container: 80, host: 65536 }] })), 400, 'validation_failed')
  await expect('a negative port', post(runBody({ ports: [{ container: -1 }] })), 400, 'validation_failed')
  await expect('a fractional port', post(runBody({ ports: [{ container: 80.5 }] })), 400, 'validation_failed')
  await expect('a bad protocol', post(runBody({ ports: [{ container: 80, protocol: 'icmp' }] })), 400, 'validation_failed')
  await expect('a bad host IP', post(runBody({ ports: [{ container: 80, hostIp: '999.1.1.1' }] })), 400, 'validation_failed')
  await expect('a name with a slash', post(runBody({ name: '../etc' })), 400, 'validation_failed')
  await expect('a name with a newline', post(runBody({ name: 'a\nb' })), 400, 'validation_failed')
  await expect('a name of 300 characters', post(runBody({ name: 'a'.repeat(300) })), 400, 'validation_failed')
  await expect('an image of 10000 characters', post(runBody({ image: 'a'.repeat(10000) })), 400, 'validation_failed')
  await expect('an image with control characters', post(runBody({ image: 'busy\u0000box' })), 400, 'validation_failed')
  await expect('an image with CRLF', post(runBody({ image: 'busybox\r\nX-Injected: 1' })), 400, 'validation_failed')
  await expect('an image with uppercase', post(runBody({ image: 'BusyBox' })), 400, 'validation_failed')
  await expect('an image with an empty tag', post(runBody({ image: 'busybox:' })), 400, 'validation_failed')
  await expect('an image with a bad digest', post(runBody({ image: 'busybox@sha256:xyz' })), 400, 'validation_failed')
  await expect('a label value with CRLF', post(runBody({ labels: { a: 'x\r\nX-Injected: 1' } })), 400, 'validation_failed')
  await expect('a label key with a space', post(runBody({ labels: { 'a b': 'x' } })), 400, 'validation_failed')
  await expect('a reserved label', post(runBody({ labels: { 'io.berth.owner': 'admin' } })), 400, 'validation_failed')
  await expect('an env name with =', post(runBody({ env: { 'A=B': 'x' } })), 400, 'validation_failed')
  await expect('an env name with a space', post(runBody({ env: { 'A B': 'x' } })), 400, 'validation_failed')
  const badKey = await app.inject(post(runBody({ labels: { 'a b': 'x' } })))
  t.match(badKey.json(), { detail: 'body/labels/a b is not a valid name here', errors: [{ location: 'body', path: '/labels/a b' }] }, 'the bad key is named')
  await expect('an env value with NUL', post(runBody({ env: { A: 'x\u0000y' } })), 400, 'validation_failed')
  await expect('a relative working dir', post(runBody({ workingDir: 'tmp' })), 400, 'validation_failed')
  await expect('a volume target that is relative', post(runBody({ volumes: [{ source: 'v', target: 'data' }] })), 400, 'validation_failed')
  await expect('a volume name with a space', post(runBody({ volumes: [{ source: 'a b', target: '/data' }] })), 400, 'validation_failed')
  await expect('memory below 6 MiB', post(runBody({ resources: { memory: 1024 } })), 400, 'validation_failed')
  await expect('zero cpus', post(runBody({ resources: { cpus: 0 } })), 400, 'validation_failed')
  await expect('a null body field', post(runBody({ name: null })), 400, 'validation_failed')
  await expect('a path traversal id', { method: 'GET', url: '/v1/containers/..%2F..%2Fetc', headers: auth() }, 400, 'validation_failed')
  await expect('a path traversal image', { method: 'GET', url: '/v1/images/..%2F..%2Fcontainers%2Fjson', headers: auth() }, 400, 'validation_failed')
  await expect('a CRLF in a query', { method: 'GET', url: '/v1/containers?name=a%0d%0aX-Injected:%201', headers: auth() }, 400, 'validation_failed')
  await expect('an unknown query parameter', { method: 'GET', url: '/v1/containers?privileged=true', headers: auth() }, 400, 'validation_failed')
  await expect('a bad stop timeout', { method: 'POST', url: `/v1/containers/${name('x')}/stop?timeout=-1`, headers: auth() }, 400, 'validation_failed')
  await expect('an unknown route', { method: 'GET', url: '/v1/nothing', headers: auth() }, 404, 'not_found')
  await expect('a wrong method', { method: 'PUT', url: '/v1/containers', headers: auth() }, 405, 'method_not_allowed')

  t.same((await containersOfRun()).map(container => container.Id), before, 'none of it created a container')
  t.notOk(logs.lines.some(line => (line.level as number) >= 50), 'no error-level log: none of it is a berth bug')
  // Injected text may be quoted (escaped) inside a JSON log line; it must never start a line of its own.
  const logLines = logs.text.split('\n').filter(Boolean)
  t.ok(logLines.every(line => line.startsWith('{"level":')), 'every log line is one of berth\'s JSON lines: none was forged')
})

t.test('request ids: a safe one is echoed, an unsafe one replaced; the body and the logs carry it', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const safe = await app.inject({ method: 'GET', url: `/v1/containers/${name('nope')}`, headers: { ...auth(), 'x-request-id': 'client-id-123' } })
  t.equal(safe.headers['x-request-id'], 'client-id-123')
  t.equal(safe.json().requestId, 'client-id-123')
  t.ok(logs.lines.some(line => line.requestId === 'client-id-123'))
  const unsafe = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': '<script>alert(1)</script>' } })
  t.match(unsafe.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('security headers on API, error and documentation responses', async t => {
  const app = await build(t)
  for (const url of ['/healthz', '/v1/containers', '/docs/', '/openapi.json']) {
    const response = await app.inject({ method: 'GET', url })
    t.equal(response.headers['x-content-type-options'], 'nosniff', url)
    t.match(response.headers['content-security-policy'], /default-src 'self'/, url)
    t.match(response.headers['content-security-policy'], /frame-ancestors 'none'/, url)
    t.ok(response.headers['strict-transport-security'], url)
    t.equal(response.headers['x-powered-by'], undefined, url)
  }
})

t.test('the document and Swagger UI can be closed: BERTH_DOCS_PUBLIC=false', async t => {
  const app = await build(t, { config: { auth: { docsPublic: false } } })
  assertProblem(t, await app.inject({ method: 'GET', url: '/openapi.json' }), 401, { code: 'unauthorized', detail: 'send Authorization: Bearer <token>' }, 'the document, without a token')
  assertProblem(t, await app.inject({ method: 'GET', url: '/docs/' }), 401, { code: 'unauthorized', detail: 'send Authorization: Bearer <token>' }, 'Swagger UI, without a token')
  t.equal((await app.inject({ method: 'GET', url: '/docs/', headers: auth('reader') })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/openapi.json', headers: auth('reader') })).statusCode, 200)
})

t.test('rate limit per token: 429 rate_limited with Retry-After, other tokens unaffected', async t => {
  const app = await build(t, { config: { limits: { rateLimitPerMinute: 3 } } })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })).statusCode, 200)
  const limited = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })
  assertProblem(t, limited, 429, { code: 'rate_limited', detail: /^rate limit of 3 requests a minute reached; retry in \d+ (second|minute)s?$/ }, 'the fourth request of alice')
  t.match(limited.headers['retry-after'], /^\d+$/)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('bob') })).statusCode, 200, 'bob has his own budget')
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'health checks are not limited')
})

t.test('audit: one structured line per mutating call, with token name, action, target and result; no secrets', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  await runContainer(app, 'alice', { name: name('audited'), env: { PASSWORD: 'p4ss-' + RUN } })
  await app.inject({ method: 'POST', url: `/v1/containers/${name('audited')}/stop?timeout=0`, headers: auth('alice') })
  await app.inject({ method: 'POST', url: `/v1/containers/${name('audited')}/stop`, headers: auth('bob') })
  await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })
  const audits = logs.lines.filter(line => line.msg === 'audit').map(line => line.audit)
  t.equal(audits.length, 3)
  t.match(audits, [
    { actor: 'alice', action: 'POST /v1/containers', target: { container: { id: /^[0-9a-f]{64}$/, name: name('audited') }, image: env.image }, status: 201 },
    { actor: 'alice', action: 'POST /v1/containers/:idOrName/stop', target: { container: { requested: name('audited'), id: /^[0-9a-f]{64}$/, name: name('audited') } }, status: 200 }
  ])
  t.same(audits[2], { actor: 'bob', action: 'POST /v1/containers/:idOrName/stop', target: { container: { requested: name('audited') } }, status: 404 },
    'bob\'s refused attempt names what he asked for, and nothing of the container he may not see')
  t.notOk(logs.text.includes('p4ss-'), 'env values are not logged')
  t.notOk(logs.text.includes(TOKEN_PREFIXES[0]!) || logs.text.includes(TOKEN_PREFIXES[1]!), 'tokens are not logged')
})

t.test('request log: one line per request with method, path, status and time; probes at debug; a mutation\'s line is its audit', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: { ...auth('alice'), 'x-request-id': 'req-list-1' } })
  await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'req-probe-1' } })
  await app.inject({ method: 'DELETE', url: `/v1/containers/${name('never-made')}`, headers: { ...auth('alice'), 'x-request-id': 'req-rm-1' } })
  const of = (id: string) => logs.lines.filter(line => line.requestId === id)
  const list = of('req-list-1')
  t.equal(list.length, 1, 'a read writes one line')
  t.match(list[0], { level: 30, msg: 'request completed', req: { method: 'GET', url: '/v1/containers?all=true' }, res: { statusCode: 200 }, responseTime: Number })
  t.match(of('req-probe-1'), [{ level: 20, msg: 'request completed', res: { statusCode: 200 } }], 'a probe writes one line, at debug')
  // A refused call also has the line saying why (its problem code); the request line is the other one.
  t.match(of('req-rm-1').filter(line => line.code !== undefined), [{ code: 'not_found' }])
  t.match(of('req-rm-1').filter(line => line.code === undefined), [{ level: 30, msg: 'audit', req: { method: 'DELETE' }, res: { statusCode: 404 }, audit: { actor: 'alice', action: 'DELETE /v1/containers/:idOrName', status: 404 } }],
    'a mutation writes one request line, which is its audit record')
  t.notOk(logs.lines.some(line => line.msg === 'incoming request'), 'no separate line when a request arrives')
})

t.test('error level is for faults only: documented answers and an engine away are not errors', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  await runContainer(app, 'alice', { name: name('levels') })
  // 501: the docker backend runs one replica, as the contract says.
  const scale = await app.inject({ method: 'POST', url: `/v1/containers/${name('levels')}/scale`, headers: { ...auth('alice'), 'x-request-id': 'lvl-501' }, payload: { replicas: 2 } })
  t.equal(scale.statusCode, 501, scale.body)
  // 503: the engine is not there (a socket nobody listens on).
  const awayLogs = new LogCapture()
  const away = await build(t, { logs: awayLogs, socketPath: `/tmp/${RUN}-no-engine.sock` })
  const down = await away.inject({ method: 'GET', url: '/v1/containers', headers: { ...auth('alice'), 'x-request-id': 'lvl-503' } })
  t.equal(down.statusCode, 503, down.body)
  // 500: berth failing is a fault, and the one thing here that is logged at error.
  const faultLogs = new LogCapture()
  const engine = withParts(await dockerEngine(), { containers: { list: async () => { throw new TypeError('a bug in berth') } } })
  const faulty = await build(t, { logs: faultLogs, engine })
  const failed = await faulty.inject({ method: 'GET', url: '/v1/containers', headers: { ...auth('alice'), 'x-request-id': 'lvl-500' } })
  t.equal(failed.statusCode, 500, failed.body)

  const problemLine = (lines: Array<Record<string, unknown>>, id: string) => lines.find(line => line.requestId === id && line.code !== undefined)
  t.match(problemLine(logs.lines, 'lvl-501'), { level: 30, code: 'not_supported' }, '501 not_supported is information')
  t.match(problemLine(awayLogs.lines, 'lvl-503'), { level: 40, code: 'engine_unavailable' }, 'the engine away is a warning')
  t.match(problemLine(faultLogs.lines, 'lvl-500'), { level: 50, code: 'internal_error', err: { message: 'a bug in berth' } }, 'a fault is an error')
  t.same([...logs.lines, ...awayLogs.lines].filter(line => (line.level as number) >= 50), [], 'nothing else at error level')
})

const TOKEN_PREFIXES = ['alice-token-', 'bob-token-']
