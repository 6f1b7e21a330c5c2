// Issue 10, attacked around the rules: bind mounts through symlinks and swaps, named volumes across
// tenants, the engine's own port defaults, ambiguous id prefixes, another deployment on the same
// engine, and quotas raced by concurrent runs. Every attack runs against the real engine.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { verifyBindRoots } from '../src/access/binds.ts'
import { start } from './berth-process.ts'
import { ConfigError, hashToken } from '../src/config.ts'
import { RUN, RUN_LABEL, TOKENS, assertProblem, auth, build, cleanupAfter, containersOfRun, docker, env, fetchFromContainer, HTTPD, name, runContainer, testConfig, waitFor } from './helpers.ts'

cleanupAfter(t)

/** The output of a shell command run to completion in a running container, behind berth's back. */
async function exec (container: string, command: string): Promise<string> {
  const exec = await docker.getContainer(container).exec({ Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true })
  const stream = await exec.start({ hijack: true, stdin: false })
  const chunks: Buffer[] = []
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  await new Promise(resolve => stream.on('end', resolve))
  // Strip the 8-byte frame headers of the multiplexed stream.
  const raw = Buffer.concat(chunks)
  const out: Buffer[] = []
  for (let offset = 0; offset + 8 <= raw.length;) {
    const size = raw.readUInt32BE(offset + 4)
    out.push(raw.subarray(offset + 8, offset + 8 + size))
    offset += 8 + size
  }
  return Buffer.concat(out).toString()
}

t.test('bind mounts: only the token\'s own directory, never through a symlink, also while a tenant swaps links in a loop', async t => {
  const root = mkdtempSync(join(tmpdir(), `${RUN}-binds-`))
  const app = await build(t, { config: { policy: { bindPaths: [root] } } })
  const alices = `${root}/default/alice`
  const planters: string[] = []
  // The planter swaps links until it is gone: remove it before the directory, or rm races its loop.
  t.teardown(async () => {
    for (const id of planters) await docker.getContainer(id).remove({ force: true }).catch(() => {})
    rmSync(root, { recursive: true, force: true })
  })

  // Alice mounts her directory and plants every kind of link in it, then swaps one in a loop.
  const planter = await runContainer(app, 'alice', {
    name: name('planter'),
    volumes: [{ source: alices, target: '/data' }],
    command: ['sh', '-c', 'echo alice > /data/marker; ln -s / /data/escape; ln -s ../../.. /data/relative; mkdir -p /data/sub; ' +
      'while true; do rm -rf /data/swap; mkdir /data/swap; rm -rf /data/swap; ln -s / /data/swap; done']
  })
  t.equal(planter.statusCode, 201, planter.body)
  planters.push(planter.json().id)
  t.equal(await waitFor('the marker on the host', () => existsSync(`${alices}/marker`) ? readFileSync(`${alices}/marker`, 'utf8') : ''), 'alice\n',
    'the engine created the token\'s directory and the container writes into it')

  const refused: Array<[string, string]> = [
    ['the link to / at the last component', `${alices}/escape`],
    ['a relative link', `${alices}/relative`],
    ['a path through a link in the middle', `${alices}/escape/etc`],
    ['a real directory below her own (a link could replace it)', `${alices}/sub`],
    ['the directory being swapped', `${alices}/swap`],
    ['the allowed root itself', root],
    ['the deployment directory', `${root}/default`],
    ['bob\'s directory', `${root}/default/bob`],
    ['beside the root', `${root}-evil/default/alice`]
  ]
  for (const [what, source] of refused) {
    const response = await runContainer(app, 'alice', { name: name('bind-attack'), volumes: [{ source, target: '/host' }] })
    assertProblem(t, response, 403, { code: 'policy_denied', detail: /is not allowed/, rule: 'bindPaths' }, what)
  }
  const traversal = await runContainer(app, 'alice', { name: name('bind-attack'), volumes: [{ source: `${alices}/escape/../..`, target: '/host' }] })
  assertProblem(t, traversal, 400, {
    code: 'validation_failed',
    detail: 'body/volumes/0/source must not contain ".." or "." segments',
    errors: [{ location: 'body', path: '/volumes/0/source', message: 'must not contain ".." or "." segments' }]
  }, 'a path with .. is refused, not resolved')

  // While the swap loop runs, runs of her own directory race it: each sees her files and nothing of the host.
  const racing = await Promise.all(Array.from({ length: 6 }, async (_, i) => await runContainer(app, 'alice', {
    name: name(`bind-race-${i}`),
    volumes: [{ source: alices, target: '/data', readOnly: true }],
    command: ['sleep', '300']
  })))
  for (const response of racing) {
    t.equal(response.statusCode, 201, response.body)
    const seen = await exec(response.json().id, 'cat /data/marker; ls /data/escape/ | head -50')
    t.match(seen, /^alice\n/, 'her own directory is mounted')
    // The link resolves inside the container, to the container's own root: busybox's /bin/busybox, never the host's /usr.
    t.notMatch(seen, /\busr\b|\bboot\b|\bvar\b/, 'the planted link shows the container\'s root, not the host\'s')
  }
  t.same((await containersOfRun()).filter(c => c.Names.some(n => n.includes('bind-attack'))), [], 'no refused run created anything')

  // A link planted on the host where a token's directory should be (say, left by an earlier berth) is refused.
  mkdirSync(`${root}/default`, { recursive: true })
  symlinkSync('/etc', `${root}/default/bob`)
  const planted = await runContainer(app, 'bob', { name: name('bind-planted'), volumes: [{ source: `${root}/default/bob`, target: '/data' }] })
  assertProblem(t, planted, 403, { code: 'policy_denied', detail: `bind-mounting host path ${root}/default/bob is not allowed: ${root}/default/bob is a symbolic link`, rule: 'bindPaths' }, 'a link planted on the host')
})

t.test('bind roots: berth refuses to start when it cannot see a root, or a root is reached through a link', async t => {
  const base = mkdtempSync(join(tmpdir(), `${RUN}-roots-`))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  mkdirSync(`${base}/real`)
  symlinkSync(`${base}/real`, `${base}/link`)
  writeFileSync(`${base}/file`, 'x')
  await t.resolves(verifyBindRoots([`${base}/real`]))
  await t.rejects(verifyBindRoots([`${base}/missing`]), new ConfigError(`BERTH_ALLOWED_BIND_PATHS: ${base}/missing does not exist (or berth cannot see it). berth must see each allowed root as a real directory; when berth runs in a container, mount each root read-only at the same path (see the README)`))
  await t.rejects(verifyBindRoots([`${base}/link/sub`]), { message: new RegExp(`${base}/link is a symbolic link`) })
  await t.rejects(verifyBindRoots([`${base}/file`]), { message: /is not a directory/ })

  // The process itself: a root it cannot see is a configuration error (78), said in the log, not a crash.
  const refused = await start({ BERTH_TOKENS: `ops:admin:${'x'.repeat(20)}`, BERTH_ALLOWED_BIND_PATHS: `${base}/missing` }).exited
  t.equal(refused.code, 78, refused.output)
  t.match(refused.output, /BERTH_ALLOWED_BIND_PATHS: .*\/missing does not exist \(or berth cannot see it\)/)
  t.notMatch(refused.output, /\bat [\w.<>]+ \(/, 'no stack trace')
})

t.test('named volumes: another token\'s, another deployment\'s or an unlabelled one answers as if it did not exist', async t => {
  const app = await build(t)
  const secret = name('secret')
  const alices = await runContainer(app, 'alice', { name: name('vol-alice'), volumes: [{ source: secret, target: '/data' }], command: ['sh', '-c', 'echo s3cret > /data/s; sleep 300'] })
  t.equal(alices.statusCode, 201, alices.body)
  const labels = (await docker.getVolume(secret).inspect()).Labels
  t.match(labels, { 'io.berth.owner': 'alice', 'io.berth.deployment': 'default', 'io.berth.managed': 'true' }, 'a volume a run creates carries its owner')

  const bobs = await runContainer(app, 'bob', { name: name('vol-bob'), volumes: [{ source: secret, target: '/stolen' }] })
  assertProblem(t, bobs, 404, { code: 'not_found', detail: `volume ${secret} was not found` }, 'bob mounting alice\'s volume')

  await docker.createVolume({ Name: name('unlabelled'), Labels: { [RUN_LABEL]: RUN } })
  await docker.createVolume({ Name: name('elsewhere'), Labels: { [RUN_LABEL]: RUN, 'io.berth.managed': 'true', 'io.berth.deployment': 'other', 'io.berth.owner': 'alice' } })
  for (const [who, volume] of [['alice', name('unlabelled')], ['admin', name('unlabelled')], ['alice', name('elsewhere')], ['admin', name('elsewhere')]] as const) {
    const response = await runContainer(app, who, { name: name('vol-foreign'), volumes: [{ source: volume, target: '/data' }] })
    assertProblem(t, response, 404, { code: 'not_found', detail: `volume ${volume} was not found` }, `${who} mounting ${volume}`)
  }
  t.same((await containersOfRun()).filter(c => c.Names.some(n => n.includes('vol-bob') || n.includes('vol-foreign'))), [], 'refused runs left no container')
  t.same((await docker.getVolume(secret).inspect()).Labels['io.berth.owner'], 'alice', 'the volume is still only alice\'s')

  const admins = await runContainer(app, 'admin', { name: name('vol-admin'), volumes: [{ source: secret, target: '/data' }], command: ['sleep', '300'] })
  t.equal(admins.statusCode, 201, 'admin may mount any volume of its deployment')
  t.equal(await exec(admins.json().id, 'cat /data/s'), 's3cret\n')

  // Two tokens race to create the same new volume: one gets it, the other is told it does not exist.
  const contested = name('contested')
  const [a, b] = await Promise.all([
    runContainer(app, 'alice', { name: name('race-alice'), volumes: [{ source: contested, target: '/data' }] }),
    runContainer(app, 'bob', { name: name('race-bob'), volumes: [{ source: contested, target: '/data' }] })
  ])
  t.same([a.statusCode, b.statusCode].sort(), [201, 404], 'exactly one token owns the contested volume')
  const owner = (await docker.getVolume(contested).inspect()).Labels['io.berth.owner']
  t.equal(owner, a.statusCode === 201 ? 'alice' : 'bob')

  // A run that fails after berth created its volume leaves the volume behind no more than the container.
  const holder = await runContainer(app, 'alice', { name: name('vol-port-holder'), command: HTTPD, ports: [{ container: 80 }] })
  const port = holder.json().ports[0].host
  const failed = await runContainer(app, 'alice', { name: name('vol-failed'), volumes: [{ source: name('fresh'), target: '/data' }], ports: [{ container: 80, host: port }] })
  assertProblem(t, failed, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated by container ${name('vol-port-holder')}`, port, holder: { id: holder.json().id, name: name('vol-port-holder') } }, 'the run that fails after its volume was made')
  const left = await docker.listVolumes({ filters: { name: [name('fresh')] } })
  t.same(left.Volumes ?? [], [], 'the volume made for the failed run is gone')
})

t.test('host ports: an omitted host IP binds the allowed one, an omitted host port lands in the allowed range', async t => {
  const base = 21000 + Math.floor(Math.random() * 8000)
  const range = { hostPortMin: base, hostPortMax: base + 5 }
  const app = await build(t, { config: { policy: { ...range, hostIps: ['127.0.0.1'] } } })

  const loopback = await runContainer(app, 'alice', { name: name('ip-default'), command: HTTPD, ports: [{ container: 80, host: base }] })
  t.equal(loopback.statusCode, 201, loopback.body)
  t.same(loopback.json().ports, [{ container: 80, host: base, protocol: 'tcp', hostIp: '127.0.0.1' }], 'the reply says where it is bound')
  const bound = (await docker.getContainer(loopback.json().id).inspect()).NetworkSettings.Ports['80/tcp']
  t.same(bound, [{ HostIp: '127.0.0.1', HostPort: String(base) }], 'bound on loopback only: not 0.0.0.0, not ::')
  t.equal(await fetchFromContainer(base), 'hello from berth-test\n')

  // Two ports of the range are held by plain processes the engine knows nothing of.
  const held: Server[] = []
  for (const port of [base + 1, base + 2]) {
    const server = createServer()
    await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
    held.push(server)
  }
  t.teardown(() => { for (const server of held) server.close() })

  const chosen = await Promise.all([0, 1, 2].map(async i => await runContainer(app, 'alice', { name: name(`range-${i}`), ports: [{ container: 80 }] })))
  const ports = chosen.map(response => {
    t.equal(response.statusCode, 201, response.body)
    return response.json().ports[0].host as number
  })
  t.same([...ports].sort(), [base + 3, base + 4, base + 5], 'concurrent runs each got a free port inside the range, around the held ones')
  const exhausted = await runContainer(app, 'alice', { name: name('range-full'), ports: [{ container: 80 }] })
  // The conflict names the last port the engine tried, and its holder when that is one of alice's runs.
  const last = exhausted.json() as { port: number, holder?: { id: string, name: string } }
  t.ok(last.port >= base && last.port <= base + 5, `a port of the range: ${last.port}`)
  if (last.holder === undefined) assertProblem(t, exhausted, 409, { code: 'port_conflict', detail: `host port ${last.port} is already allocated`, port: last.port }, 'no free port left in the range')
  else assertProblem(t, exhausted, 409, { code: 'port_conflict', detail: `host port ${last.port} is already allocated by container ${last.holder.name}`, port: last.port, holder: [loopback, ...chosen].map(response => ({ id: response.json().id, name: response.json().name })).find(run => run.id === last.holder?.id) }, 'no free port left in the range')
  t.same((await containersOfRun()).filter(c => c.Names.includes(`/${name('range-full')}`)), [], 'the refused run left nothing')
})

t.test('an id prefix shared with containers the token cannot see is a 404, never a 5xx; one it sees them all is 409', async t => {
  // A deployment of its own, so that alice holds no container yet.
  const deployment = `${RUN}-prefix`
  const app = await build(t, { config: { deployment } })
  // Containers of bob's, made behind berth's back with his labels, until a one-character prefix is shared.
  const bobs: string[] = []
  const byPrefix = (): Map<string, number> => {
    const counts = new Map<string, number>()
    for (const id of bobs) counts.set(id[0] as string, (counts.get(id[0] as string) ?? 0) + 1)
    return counts
  }
  while (![...byPrefix().values()].some(count => count >= 2)) {
    const created = await docker.createContainer({ Image: env.image, Cmd: ['true'], Labels: { [RUN_LABEL]: RUN, 'io.berth.managed': 'true', 'io.berth.deployment': deployment, 'io.berth.owner': 'bob' } })
    bobs.push(created.id)
  }
  const prefix = [...byPrefix().entries()].find(([, count]) => count >= 2)?.[0] as string
  // Made behind berth's back: berth knows of them once it has read their events.
  await waitFor('berth to have seen bob\'s containers', async () => (await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('bob') })).json().length, count => count === bobs.length)
  for (const [method, url] of [['GET', ''], ['GET', '/logs'], ['POST', '/stop'], ['POST', '/start'], ['DELETE', '']] as const) {
    const response = await app.inject({ method, url: `/v1/containers/${prefix}${url}`, headers: auth('alice') })
    assertProblem(t, response, 404, { code: 'not_found', detail: `container ${prefix} was not found` }, `alice ${method} ${prefix}${url}`)
  }
  const bobsAnswer = await app.inject({ method: 'GET', url: `/v1/containers/${prefix}`, headers: auth('bob') })
  const bobsMatches = bobs.filter(id => id.startsWith(prefix)).length
  assertProblem(t, bobsAnswer, 409, { code: 'ambiguous_id', detail: `${prefix} matches ${bobsMatches} containers; give more of the id`, matches: bobsMatches }, 'bob sees at least two matches of his own')
  // Alice's own container that shares the prefix resolves for her, however many of bob's share it.
  let alices = ''
  while (!alices.startsWith(prefix)) {
    if (alices !== '') await docker.getContainer(alices).remove({ force: true })
    alices = (await docker.createContainer({ Image: env.image, Cmd: ['true'], Labels: { [RUN_LABEL]: RUN, 'io.berth.managed': 'true', 'io.berth.deployment': deployment, 'io.berth.owner': 'alice' } })).id
  }
  await waitFor('berth to have seen alice\'s container', async () => (await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).json().map((container: { id: string }) => container.id).join(), ids => ids === alices)
  const resolved = await app.inject({ method: 'GET', url: `/v1/containers/${prefix}`, headers: auth('alice') })
  t.equal(resolved.statusCode, 200)
  t.equal(resolved.json().id, alices, 'the prefix resolves among her own containers only')
})

t.test('two deployments on one engine share nothing: containers, events, port holders, volumes', async t => {
  const one = await build(t, { config: { deployment: 'one' } })
  const two = await build(t, { config: { deployment: 'two' } })
  const made = await runContainer(one, 'alice', { name: name('dep-one'), command: HTTPD, ports: [{ container: 80 }], volumes: [{ source: name('dep-vol'), target: '/data' }] })
  t.equal(made.statusCode, 201, made.body)
  t.match(made.json().labels, { 'io.berth.deployment': 'one', 'io.berth.owner': 'alice' })
  const port = made.json().ports[0].host
  for (const who of ['alice', 'admin'] as const) {
    const listed = await two.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth(who) })
    t.notOk(listed.json().some((c: { id: string }) => c.id === made.json().id), `${who} of deployment two does not list it`)
    const inspect = await two.inject({ method: 'GET', url: `/v1/containers/${made.json().id}`, headers: auth(who) })
    assertProblem(t, inspect, 404, { code: 'not_found', detail: `container ${made.json().id} was not found` }, `${who} of deployment two cannot inspect it`)
    const stop = await two.inject({ method: 'POST', url: `/v1/containers/${name('dep-one')}/stop`, headers: auth(who) })
    assertProblem(t, stop, 404, { code: 'not_found', detail: `container ${name('dep-one')} was not found` }, `${who} of deployment two cannot stop it`)
    const clash = await runContainer(two, who, { name: name(`dep-clash-${who}`), ports: [{ container: 80, host: port }] })
    assertProblem(t, clash, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated`, port }, `${who} of deployment two is not told who holds the port`)
    const volume = await runContainer(two, who, { name: name(`dep-vol-${who}`), volumes: [{ source: name('dep-vol'), target: '/data' }] })
    assertProblem(t, volume, 404, { code: 'not_found', detail: `volume ${name('dep-vol')} was not found` }, `${who} of deployment two cannot mount deployment one's volume`)
  }
  t.equal((await docker.getContainer(made.json().id).inspect()).State.Running, true, 'deployment two changed nothing')
  const configured = testConfig({ deployment: 'two' })
  t.equal(configured.deployment, 'two')
})

t.test('quotas: containers, memory and CPUs per token, not raced past by concurrent runs', async t => {
  const tokens = Object.entries(TOKENS).map(([tokenName, { token, scopes }]) => ({
    name: tokenName,
    scopes,
    sha256: hashToken(token),
    ...(tokenName === 'bob' ? { quota: { containers: null, memoryBytes: 100 * 1024 * 1024, cpus: 1 } } : {})
  }))
  // A deployment of its own: the other tests' containers of alice do not count here.
  const app = await build(t, { config: { deployment: `${RUN}-quota`, auth: { tokens }, policy: { quota: { containers: 3, memoryBytes: null, cpus: null } } } })

  const burst = await Promise.all(Array.from({ length: 6 }, async (_, i) => await runContainer(app, 'alice', { name: name(`quota-${i}`) })))
  const codes = burst.map(response => response.statusCode).sort()
  t.same(codes, [201, 201, 201, 403, 403, 403], 'six concurrent runs against a quota of three: exactly three run')
  assertProblem(t, burst.find(response => response.statusCode === 403)!, 403, { code: 'quota_exceeded', detail: 'the token holds 3 of its 3 containers; remove one first', limit: 'containers', quota: 3, used: 3 }, 'a run past the container quota')
  t.equal((await containersOfRun()).filter(c => c.Labels['io.berth.owner'] === 'alice' && c.Names.some(n => n.includes('quota-'))).length, 3, 'nothing beyond the quota was created')

  // A stopped container still counts: it could be started again without asking.
  const first = burst.find(response => response.statusCode === 201)?.json().id as string
  await app.inject({ method: 'POST', url: `/v1/containers/${first}/stop?timeout=0`, headers: auth('alice') })
  assertProblem(t, await runContainer(app, 'alice', { name: name('quota-stopped') }), 403, { code: 'quota_exceeded', detail: 'the token holds 3 of its 3 containers; remove one first', limit: 'containers', quota: 3, used: 3 }, 'stopping does not free the quota')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${first}`, headers: auth('alice') })).statusCode, 204)
  t.equal((await runContainer(app, 'alice', { name: name('quota-freed') })).statusCode, 201, 'removing does')

  // Bob's own quota: memory and CPUs, no container limit.
  const noMemory = await runContainer(app, 'bob', { name: name('quota-bob-0') })
  assertProblem(t, noMemory, 403, { code: 'quota_exceeded', detail: 'the token has a memory quota: set resources.memory', limit: 'memory', quota: 100 * 1024 * 1024, used: 0 }, 'no memory limit under a memory quota')
  const mib = 1024 * 1024
  t.equal((await runContainer(app, 'bob', { name: name('quota-bob-1'), resources: { memory: 60 * mib, cpus: 0.5 } })).statusCode, 201)
  const tooMuch = await runContainer(app, 'bob', { name: name('quota-bob-2'), resources: { memory: 60 * mib, cpus: 0.25 } })
  assertProblem(t, tooMuch, 403, { code: 'quota_exceeded', detail: `memory ${60 * mib} on top of the ${60 * mib} bytes the token holds exceeds its quota of ${100 * mib}`, limit: 'memory', quota: 100 * mib, used: 60 * mib }, 'past the memory quota')
  const cpus = await runContainer(app, 'bob', { name: name('quota-bob-3'), resources: { memory: 30 * mib, cpus: 0.75 } })
  assertProblem(t, cpus, 403, { code: 'quota_exceeded', detail: 'cpus 0.75 on top of the 0.5 the token holds exceeds its quota of 1', limit: 'cpus', quota: 1, used: 0.5 }, 'past the CPU quota')
  t.equal((await runContainer(app, 'bob', { name: name('quota-bob-4'), resources: { memory: 40 * mib, cpus: 0.5 } })).statusCode, 201, 'exactly up to the quota fits')
  t.equal((await runContainer(app, 'admin', { name: name('quota-admin') })).statusCode, 201, 'a token without a quota of its own has the default, which counts only its own containers')
})
