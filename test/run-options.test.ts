// The run body's CLI habits and data-science knobs, on the real engine: `-p` and `-v` strings,
// shmSize, hostname, ulimits, init, a read-only root, the stop signal and grace period, GPUs (this
// engine has no GPU runtime: gpu_unavailable), and the policy over them.
import t from 'tap'
import { parsePortString, parseVolumeString } from '../src/access/cli-forms.ts'
import { hashToken } from '../src/config.ts'
import { BerthError } from '../src/errors.ts'
import { HTTPD, RUN, auth, build, cleanupAfter, containersOfRun, docker, fetchFromContainer, freePort, name, runBody, waitFor, TOKENS } from './helpers.ts'
import { engineRequests } from './engine-spies.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function run (app: App, body: Record<string, unknown>, who: 'admin' | 'alice' | 'bob' = 'alice') {
  return await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
}

/** The output of a container once it has printed everything up to a marker line. */
async function outputOf (app: App, id: string, marker = 'END'): Promise<string> {
  return await waitFor('the container\'s output', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('admin') })).body,
    body => body.includes(marker))
}

t.test('-p strings: the CLI\'s forms bind what the CLI would', async t => {
  const app = await build(t)
  const plain = await freePort()
  const local = await freePort()
  const pair = await freePort()
  const response = await run(app, {
    name: name('ports'),
    command: HTTPD,
    ports: [`${plain}:80`, `127.0.0.1:${local}:80`, '5353/udp', `${pair}-${pair + 1}:8000-8001`, { container: 81 }]
  })
  t.equal(response.statusCode, 201, response.body)
  const ports = response.json().ports as Array<{ container: number, host: number, protocol: string, hostIp: string }>
  const find = (container: number, protocol = 'tcp', hostIp?: string) => ports.filter(p => p.container === container && p.protocol === protocol && (hostIp === undefined || p.hostIp === hostIp))
  t.ok(find(80, 'tcp', '0.0.0.0').some(p => p.host === plain), `"${plain}:80" on every interface`)
  t.ok(find(80, 'tcp', '127.0.0.1').some(p => p.host === local), `"127.0.0.1:${local}:80" on loopback only`)
  t.ok(find(5353, 'udp').length > 0 && find(5353, 'udp').every(p => p.host > 0), '"5353/udp": udp, on a port the engine chose')
  t.same([find(8000)[0]?.host, find(8001)[0]?.host], [pair, pair + 1], 'a range binds port for port')
  t.ok(find(81).length > 0, 'objects and strings mix')
  t.equal(await fetchFromContainer(plain), 'hello from berth-test\n', 'reachable through the string-bound port')
  t.equal(await fetchFromContainer(local), 'hello from berth-test\n')

  const base = await freePort()
  const ranged = await run(app, { name: name('port-range'), command: HTTPD, ports: [`${base}-${base + 20}:80`] })
  t.equal(ranged.statusCode, 201, ranged.body)
  const bound = (ranged.json().ports as Array<{ host: number }>).map(p => p.host)
  t.ok(bound.length > 0 && bound.every(host => host >= base && host <= base + 20), `a host range with one container port binds one port of the range (${bound})`)
})

t.test('-v strings: named volumes, read-write or read-only', async t => {
  const app = await build(t)
  const response = await run(app, {
    name: name('vols'),
    volumes: [`${name('rw')}:/data`, `${name('ro')}:/ref:ro`, `${name('rw2')}:/more:rw`],
    command: ['sh', '-c', 'echo x > /data/f && echo wrote; { echo y > /ref/f; } 2>/dev/null || echo refused; echo END; sleep 300']
  })
  t.equal(response.statusCode, 201, response.body)
  const info = await docker.getContainer(response.json().id).inspect()
  t.same(info.Mounts.map(m => [m.Name, m.Destination, m.RW]).sort(), [[name('ro'), '/ref', false], [name('rw'), '/data', true], [name('rw2'), '/more', true]])
  t.equal(await outputOf(app, response.json().id), 'wrote\nrefused\nEND\n')
})

t.test('malformed strings: a 400 that shows the accepted forms, and nothing is created', async t => {
  const app = await build(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['a word', 'http', /^body\/ports\/0 "http" has "http" as the container port, which is not a port \(1-65535\) or a range of them; accepted forms: "8888", "8888:8888", "127.0.0.1:8888:8888", "127.0.0.1::8888", "\[::1\]:8888:8888", "5353:53\/udp", "8000-8009:8000-8009", "8000-8009:80", or an object/],
    ['port 0', '0:80', /"0:80" has "0" as the host port/],
    ['port 65536', '65536', /not a port \(1-65535\)/],
    ['an unknown protocol', '53/icmp', /names no protocol berth knows/],
    ['a bad IPv4 address', '300.1.1.1:80:80', /not an IPv4 address/],
    ['IPv6 without brackets', '::1:80:80', /has too many parts|not an IPv4/],
    ['a bad IPv6 address', '[zz]:80:80', /not an IPv6 address/],
    ['ranges of different lengths', '8000-8002:9000-9001', /ranges of different lengths/],
    ['a container range on one host port', '8000:9000-9001', /a range of container ports to one host port/],
    ['a reversed range', '9001-9000', /not a port \(1-65535\) or a range/],
    ['more ports than a run binds', '1000-1100', /spans 101 ports; a run binds 64 at most/],
    ['an empty host port without an address', ':80', /leaves the host port empty/],
    // Neither shape: both are named, with the strings -p takes.
    ['a number', 8080, /^body\/ports\/0 must be object or string: an object \{container, host\?, protocol\?, hostIp\?\} or a string as `-p` takes it \("8888", "8888:8888", "127\.0\.0\.1:8888:8888", .*"8000-8009:80"\)$/],
    ['an object with a port as text', { container: '80' }, /^body\/ports\/0\/container must be integer$/],
    ['an object with a misspelt field', { containr: 80 }, /^body\/ports\/0\/containr is not a known field$/],
    ['an object with a field in the wrong case', { container: 80, hostIP: '127.0.0.1' }, /^body\/ports\/0\/hostIP is not a known field \(did you mean "hostIp"\?\)$/]
  ]
  for (const [what, port, detail] of cases) {
    const response = await run(app, { name: name('bad-port'), ports: [port] })
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  const volumeCases: Array<[string, unknown, RegExp]> = [
    ['no target', 'data', /^body\/volumes\/0 "data" is not source:target\[:ro\|rw\]; accepted forms: "name:\/data", "name:\/data:ro", "\/srv\/data\/default\/alice:\/data"/],
    ['a relative target', 'data:data', /names no absolute target path/],
    ['a bad mode', 'data:/data:rx', /ends in "rx", which is neither ro nor rw/],
    ['an empty source', ':/data', /names no source/],
    ['a bad volume name', 'a b:/data', /^body\/volumes\/0 must be a volume name or an absolute host path$/],
    ['a host path outside the policy', '/etc:/host', /bind-mounting host path \/etc is not allowed/],
    ['a traversal', '/srv/../etc:/host', /must not contain "\.\." or "\." segments/]
  ]
  for (const [what, volume, detail] of volumeCases) {
    const response = await run(app, { name: name('bad-vol'), volumes: [volume] })
    t.ok([400, 403].includes(response.statusCode), `${what}: ${response.statusCode}`)
    t.match(response.json(), { detail }, what)
  }
  t.same((await containersOfRun()).filter(c => c.Names.some(n => n.includes('bad-'))), [], 'no refused run created a container')
  t.same((await docker.listVolumes({ filters: { name: ['data'] } })).Volumes?.filter(v => v.Name === 'data') ?? [], [], 'nor a volume')
})

t.test('the CLI forms, parsed', async t => {
  t.same(parsePortString('8888', 'f'), [{ container: 8888, protocol: 'tcp' }])
  t.same(parsePortString('8888:8888', 'f'), [{ container: 8888, host: 8888, protocol: 'tcp' }])
  t.same(parsePortString('127.0.0.1:8888:80', 'f'), [{ container: 80, host: 8888, protocol: 'tcp', hostIp: '127.0.0.1' }])
  t.same(parsePortString('127.0.0.1::80/udp', 'f'), [{ container: 80, protocol: 'udp', hostIp: '127.0.0.1' }])
  t.same(parsePortString('[::1]:8888:80', 'f'), [{ container: 80, host: 8888, protocol: 'tcp', hostIp: '::1' }])
  t.same(parsePortString('[::1]::80/sctp', 'f'), [{ container: 80, protocol: 'sctp', hostIp: '::1' }])
  t.same(parsePortString('5353:53/udp', 'f'), [{ container: 53, host: 5353, protocol: 'udp' }])
  t.same(parsePortString('7000-7001', 'f'), [{ container: 7000, protocol: 'tcp' }, { container: 7001, protocol: 'tcp' }])
  t.same(parsePortString('8000-8009:80', 'f'), [{ container: 80, hostRange: { min: 8000, max: 8009 }, protocol: 'tcp' }])
  t.throws(() => parsePortString('[::1]:80', 'f'), BerthError, 'an address and no host port')
  t.throws(() => parsePortString('1:2:3:4', 'f'), /too many parts|not an IPv4/)
  t.same(parseVolumeString('d:/data', 'f'), { source: 'd', target: '/data', readOnly: false })
  t.same(parseVolumeString('/srv/x:/data:ro', 'f'), { source: '/srv/x', target: '/data', readOnly: true })
  t.throws(() => parseVolumeString('a:/b:ro:x', 'f'), /is not source:target/)
})

t.test('shmSize, hostname, ulimits, init and a read-only root reach the container', async t => {
  const app = await build(t)
  const response = await run(app, {
    name: name('knobs'),
    shmSize: 256 * 1024 * 1024,
    hostname: 'notebook-ada',
    ulimits: { nofile: { soft: 1024, hard: 2048 } },
    init: true,
    readOnly: true,
    stopSignal: 'SIGINT',
    stopTimeout: 7,
    command: ['sh', '-c', 'busybox df -k /dev/shm | busybox tail -n 1; hostname; ulimit -n; ulimit -Hn; touch /x 2>/dev/null || echo read-only; cat /proc/1/comm; echo END; sleep 300']
  })
  t.equal(response.statusCode, 201, response.body)
  const output = (await outputOf(app, response.json().id)).split('\n')
  t.match(output[0], /^shm\s+262144\s/, '/dev/shm is 256 MiB')
  t.same(output.slice(1, 6), ['notebook-ada', '1024', '2048', 'read-only', 'docker-init'])
  const info = await docker.getContainer(response.json().id).inspect()
  t.match(info.Config, { StopSignal: 'SIGINT', StopTimeout: 7 })

  // The container's spec carries them, so that the same environment can be run again.
  const spec = await app.inject({ method: 'GET', url: `/v1/containers/${name('knobs')}/spec`, headers: auth('alice') })
  t.equal(spec.statusCode, 200, spec.body)
  t.match(spec.json().run, { shmSize: 256 * 1024 * 1024, hostname: 'notebook-ada', ulimits: { nofile: { soft: 1024, hard: 2048 } }, init: true, readOnly: true, stopSignal: 'SIGINT', stopTimeout: 7 })
  const plain = await run(app, { name: name('plain-knobs') })
  const plainSpec = await app.inject({ method: 'GET', url: `/v1/containers/${name('plain-knobs')}/spec`, headers: auth('alice') })
  t.equal(plain.statusCode, 201)
  for (const knob of ['shmSize', 'hostname', 'ulimits', 'init', 'readOnly', 'stopSignal', 'stopTimeout', 'gpus']) {
    t.notOk(knob in plainSpec.json().run, `${knob}: the engine's default is not written out`)
  }
  const again = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: { ...spec.json().run, name: name('knobs-again'), labels: { 'berth.test.run': RUN } } })
  t.equal(again.statusCode, 201, again.body)
  t.match((await docker.getContainer(again.json().id).inspect()).HostConfig, { ShmSize: 256 * 1024 * 1024, Init: true, ReadonlyRootfs: true })
})

t.test('a stop without its own timeout waits the container\'s stopTimeout, not the engine\'s 10 s', async t => {
  const app = await build(t)
  // sleep as PID 1 ignores SIGTERM: only the kill after the grace period ends it.
  const response = await run(app, { name: name('grace'), stopTimeout: 1 })
  t.equal(response.statusCode, 201, response.body)
  t.equal(((await docker.getContainer(response.json().id).inspect()).Config as { StopTimeout?: number }).StopTimeout, 1, 'the engine holds the container\'s grace period')
  // What the engine is asked decides which grace period it uses: a stop without t is the container's own.
  const stops = engineRequests(t, path => path.includes('/stop'))
  const began = performance.now()
  const stop = await app.inject({ method: 'POST', url: `/v1/containers/${name('grace')}/stop`, headers: auth('alice') })
  const took = performance.now() - began
  t.equal(stop.statusCode, 200, stop.body)
  t.equal(stop.json().container.exitCode, 137, 'killed once the grace period was over')
  t.equal(stops.length, 1)
  t.notMatch(stops[0], /[?&]t=/, `the engine was not given a timeout of berth's: ${stops[0]}`)
  // From below only: a busy machine makes a stop longer, never shorter than its grace period.
  t.ok(took >= 900, `not killed before its grace period (${took.toFixed(0)} ms)`)
})

t.test('GPUs: an engine without a GPU runtime answers gpu_unavailable, and nothing is left', async t => {
  const app = await build(t)
  for (const gpus of ['all', 2, ['0', 'GPU-6f9e1c2a-0000-0000-0000-000000000000']]) {
    const response = await run(app, { name: name('gpu'), gpus })
    t.equal(response.statusCode, 409, JSON.stringify(gpus))
    t.match(response.json(), {
      code: 'gpu_unavailable',
      title: 'The engine cannot give the container the GPUs asked for',
      detail: /could not select device driver "" with capabilities: \[\[gpu\]\]/
    }, JSON.stringify(gpus))
    t.same(await docker.listContainers({ all: true, filters: { name: [name('gpu')] } }), [], 'the created container was removed')
  }
  const bad: Array<[unknown, RegExp]> = [
    [0, /^body\/gpus must be >= 1$/],
    ['some', /^body\/gpus must be integer or "all" or array: GPUs, as `--gpus` takes them/],
    [[], /^body\/gpus must NOT have fewer than 1 items$/],
    [['0', '0'], /must NOT have duplicate items/],
    [['a b'], /must match pattern/],
    [true, /^body\/gpus must be integer or "all" or array: GPUs, as `--gpus` takes them/]
  ]
  for (const [gpus, detail] of bad) {
    const response = await run(app, { gpus })
    t.equal(response.statusCode, 400, JSON.stringify(gpus))
    t.match(response.json(), { code: 'validation_failed', detail }, JSON.stringify(gpus))
  }
})

t.test('policy: GPU quotas per token, the largest /dev/shm, host port ranges', async t => {
  const tokens = Object.entries(TOKENS).map(([tokenName, { token, scopes }]) => ({
    name: tokenName,
    scopes,
    sha256: hashToken(token),
    ...(tokenName === 'bob' ? { quota: { gpus: 0 } } : {})
  }))
  const app = await build(t, { config: { auth: { tokens }, policy: { maxShmBytes: 128 * 1024 * 1024, hostPortMin: 20000, hostPortMax: 40000, quota: { gpus: 2 } } } })
  const denied: Array<[string, 'alice' | 'bob', Record<string, unknown>, object]> = [
    ['a token that may use no GPUs', 'bob', { gpus: 1 }, { code: 'quota_exceeded', limit: 'gpus', quota: 0, detail: 'the token may not use GPUs' }],
    ['"all" under a quota', 'alice', { gpus: 'all' }, { code: 'quota_exceeded', limit: 'gpus', quota: 2, detail: /ask for a count or device ids/ }],
    ['more than the quota', 'alice', { gpus: 3 }, { code: 'quota_exceeded', limit: 'gpus', quota: 2, used: 0 }],
    ['more device ids than the quota', 'alice', { gpus: ['0', '1', '2'] }, { code: 'quota_exceeded', limit: 'gpus' }],
    ['a /dev/shm above the maximum', 'alice', { shmSize: 256 * 1024 * 1024 }, { code: 'policy_denied', rule: 'maxShmSize', detail: `shmSize ${256 * 1024 * 1024} exceeds the allowed maximum of ${128 * 1024 * 1024} bytes` }],
    ['a host range reaching outside the allowed one', 'alice', { ports: ['39990-40010:80'] }, { code: 'policy_denied', rule: 'hostPorts', detail: /reach outside the allowed range 20000-40000/ }],
    ['a host port below the allowed range', 'alice', { ports: ['8080:80'] }, { code: 'policy_denied', rule: 'hostPorts' }]
  ]
  for (const [what, who, body, problem] of denied) {
    const response = await run(app, { name: name('denied'), ...body }, who)
    t.equal(response.statusCode, 403, what)
    t.match(response.json(), problem, what)
  }
  const within = await run(app, { name: name('gpu-within'), gpus: 2 })
  t.equal(within.statusCode, 409, 'within the quota, the run reaches the engine (which has no GPUs)')
  t.equal(within.json().code, 'gpu_unavailable')
  const shm = await run(app, { name: name('shm-ok'), shmSize: 128 * 1024 * 1024 })
  t.equal(shm.statusCode, 201, shm.body)
  t.same((await containersOfRun()).filter(c => c.Names.some(n => n.includes('denied') || n.includes('gpu-within'))), [], 'nothing was created')
})

t.test('bad knobs: clear problems', async t => {
  const app = await build(t)
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a soft limit above the hard one', { ulimits: { nofile: { soft: 4096, hard: 1024 } } }, /^body\/ulimits\/nofile has a soft limit \(4096\) above its hard limit \(1024\)$/],
    ['an unknown ulimit', { ulimits: { core: { soft: 1, hard: 1 } } }, /body\/ulimits\/core is not a known field/],
    ['a nofile above the kernel\'s bound', { ulimits: { nofile: { soft: 1, hard: 2000000 } } }, /must be <= 1048576/],
    ['a hostname with a space', { hostname: 'a b' }, /body\/hostname must match pattern/],
    ['an unknown signal', { stopSignal: 'SIGNOPE' }, /body\/stopSignal must match pattern/],
    ['a negative stop timeout', { stopTimeout: -1 }, /body\/stopTimeout must be >= 0/],
    ['a tiny /dev/shm', { shmSize: 1024 }, /body\/shmSize must be >= 1048576/],
    ['init as a string', { init: 'yes' }, /body\/init must be boolean/]
  ]
  for (const [what, body, detail] of cases) {
    const response = await run(app, { name: name('bad-knob'), ...body })
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  t.same(await docker.listContainers({ all: true, filters: { name: [name('bad-knob')] } }), [])
  t.ok(RUN)
})
