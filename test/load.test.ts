// berth under load and under concurrency, on the real engine: many concurrent reads stay correct and
// reuse a bounded set of engine connections, concurrent runs race for names and ports and leave
// nothing behind, and a private engine stopped in the middle of the load gives fast 503s, then recovery.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { LogCapture, RUN_LABEL, RUN, assertProblem, auth, build, cleanupAfter, docker, freePort, name, runContainer, waitFor } from './helpers.ts'
import { engineConnections } from './engine-spies.ts'
import { PrivateEngine } from './private-engine.ts'

cleanupAfter(t)

/** How many requests a load phase makes, and with how many in flight: counted, so a slow machine makes it longer, not smaller. */
const REQUESTS = 640
const CONCURRENCY = 32
/** Heap a load phase may leave behind, once collected; a leak of one kilobyte a request would exceed it. */
const HEAP_GROWTH_BOUND_MB = 8

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

/** Runs `concurrency` workers until `until()` says stop; every request is awaited, none is abandoned. */
async function load<T> (concurrency: number, until: () => boolean, request: (worker: number, i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    for (let i = 0; !until(); i++) results.push(await request(worker, i))
  }))
  return results
}

t.test('concurrent ps / ps -a / inspect / images: no 5xx, no error logs, a bounded set of reused engine connections, no heap left behind', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs, config: { limits: { rateLimitPerMinute: 1_000_000 } } })
  const connectionsAtRest = engineConnections()
  const names = Array.from({ length: 10 }, (_, i) => name(`load-${i}`))
  for (const container of names) {
    const run = await runContainer(app, 'admin', { name: container })
    t.equal(run.statusCode, 201, run.body)
  }
  const urls = [
    `/v1/containers?label=${RUN_LABEL}%3D${RUN}`,
    `/v1/containers?all=true&label=${RUN_LABEL}%3D${RUN}`,
    '/v1/images',
    ...names.map(container => `/v1/containers/${container}`),
    `/v1/containers/${name('load-missing')}`
  ]
  const request = async (worker: number, i: number) => {
    const url = urls[(worker + i) % urls.length] as string
    const response = await app.inject({ method: 'GET', url, headers: auth() })
    return { url, status: response.statusCode, body: response.statusCode === 200 ? '' : response.body }
  }

  // Warm up (connections, compiled code, caches), then take the baseline.
  await load(CONCURRENCY, (() => { let n = 0; return () => n++ >= 500 })(), request)
  // The callbacks the warm-up's last answers queued run first, so that the baseline heap does not count them.
  await new Promise(resolve => setImmediate(resolve))
  gc()
  const heapBefore = process.memoryUsage().heapUsed
  const connectionsWarm = engineConnections()

  // Every connection this process opens during the load: a new one per request would show here.
  let opened = 0
  const onSocket = () => { opened++ }
  subscribe('net.client.socket', onSocket)
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, engineConnections()) }, 200)
  const began = performance.now()
  let started = 0
  const results = await load(CONCURRENCY, () => started++ >= REQUESTS, request)
  const tookMs = performance.now() - began
  clearInterval(sampler)
  unsubscribe('net.client.socket', onSocket)
  const connectionsAfter = engineConnections()

  t.comment(`${results.length} requests at concurrency ${CONCURRENCY} in ${tookMs.toFixed(0)} ms; engine connections: ${connectionsAtRest} at rest, ` +
    `${connectionsWarm} after the warm-up, at most ${peak} during the load, ${connectionsAfter} after it, ${opened} opened during it`)
  t.equal(results.length, REQUESTS, `a real load: ${results.length} requests, ${CONCURRENCY} at a time`)
  const unexpected = results.filter(result => result.url.endsWith(name('load-missing')) ? result.status !== 404 : result.status !== 200)
  t.same(unexpected.slice(0, 5), [], 'every answer is the one expected: 200, and 404 for the missing container')
  t.equal(results.filter(result => result.status >= 500).length, 0, 'no 5xx')
  t.same(logs.lines.filter(line => (line.level as number) >= 50).slice(0, 5), [], 'no error-level log line')
  // Each request makes one or two engine calls one after another, so at most CONCURRENCY are open at once.
  t.ok(peak <= CONCURRENCY, `open engine connections stay within the concurrency (${peak} ≤ ${CONCURRENCY})`)
  // Reused, not one per request. (Not "at most CONCURRENCY": an idle pooled connection is closed after
  // the agent's 5 s and opened again later, which a slow machine makes more likely, and is no leak.)
  t.ok(opened * 10 <= results.length, `keep-alive: ${opened} connections opened for ${results.length} requests`)
  t.ok(connectionsAfter <= peak, 'no connection is left open beyond the pool the load needed')

  // Idle keep-alive connections close by themselves: the count goes back to where it was at rest.
  const settled = await waitFor(`the engine connections to go back to the ${connectionsAtRest} at rest`, engineConnections, count => count <= connectionsAtRest)
  t.ok(settled <= connectionsAtRest, `idle connections are closed again (${settled}; ${connectionsAtRest} at rest)`)

  // The captured log is the test's, not berth's: drop it before weighing the heap.
  logs.lines.length = 0
  logs.text = ''
  gc()
  const growthMb = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024
  t.comment(`heap after the load, collected: ${growthMb.toFixed(1)} MiB more than before`)
  t.ok(growthMb < HEAP_GROWTH_BOUND_MB, `heap growth ${growthMb.toFixed(1)} MiB < ${HEAP_GROWTH_BOUND_MB} MiB`)
})

t.test('twenty concurrent runs with distinct names and engine-assigned ports: all run, each on its own host port', async t => {
  // Twenty is more than the default of eight concurrent runs: the rest wait their turn, none is refused.
  const app = await build(t, { config: { limits: { rateLimitPerMinute: 1_000_000 } } })
  const runs = await Promise.all(Array.from({ length: 20 }, async (_, i) => await runContainer(app, 'admin', { name: name(`twenty-${i}`), ports: [{ container: 80 }] })))
  t.same(runs.map(run => run.statusCode), Array(20).fill(201), runs.find(run => run.statusCode !== 201)?.body ?? 'all 201')
  // Host ports are unique per IP family (the engine allocates IPv4 and IPv6 separately): compare the IPv4 ones.
  const ports = runs.map(run => (run.json().ports as Array<{ host: number, hostIp: string }>).find(binding => binding.hostIp === '0.0.0.0')?.host)
  t.ok(ports.every(port => typeof port === 'number' && port > 0), 'each reply carries its bound host port')
  t.equal(new Set(ports).size, 20, `twenty distinct host ports: ${ports.join(' ')}`)
  const running = await docker.listContainers({ filters: { name: [name('twenty-')] } })
  t.equal(running.length, 20, 'twenty containers run on the engine')
})

t.test('concurrent runs with the same name: exactly one wins, the others are 409 name_conflict and leave nothing', async t => {
  const app = await build(t, { config: { limits: { rateLimitPerMinute: 1_000_000 } } })
  const trial = `${RUN}-samename`
  const runs = await Promise.all(Array.from({ length: 6 }, async () => await runContainer(app, 'admin', { name: name('same'), labels: { trial } })))
  const statuses = runs.map(run => run.statusCode).sort()
  t.same(statuses, [201, 409, 409, 409, 409, 409])
  for (const run of runs.filter(r => r.statusCode === 409)) assertProblem(t, run, 409, { code: 'name_conflict', detail: `the container name ${name('same')} is already in use`, name: name('same') }, 'a loser')
  const containers = await docker.listContainers({ all: true, filters: { label: [`trial=${trial}`] } })
  t.equal(containers.length, 1, 'one container on the engine')
  t.equal(containers[0]?.State, 'running')
  t.equal(containers[0]?.Id, runs.find(run => run.statusCode === 201)?.json().id, 'and it is the winner')
})

t.test('concurrent runs asking for the same host port: exactly one wins, the others are 409 port_conflict and leave nothing', async t => {
  const app = await build(t, { config: { limits: { rateLimitPerMinute: 1_000_000 } } })
  const port = await freePort()
  const trial = `${RUN}-sameport`
  const runs = await Promise.all(Array.from({ length: 6 }, async (_, i) => await runContainer(app, 'admin', { name: name(`port-${i}`), labels: { trial }, ports: [{ container: 80, host: port }] })))
  const statuses = runs.map(run => run.statusCode).sort()
  t.same(statuses, [201, 409, 409, 409, 409, 409], runs.filter(run => run.statusCode !== 409 && run.statusCode !== 201).map(run => run.body).join('\n'))
  const winner = runs.find(run => run.statusCode === 201)?.json()
  // The holder is named when the winner already runs as a loser's conflict is looked into; it may not yet.
  for (const run of runs.filter(r => r.statusCode === 409)) {
    if ('holder' in run.json()) assertProblem(t, run, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated by container ${winner?.name}`, port, holder: { id: winner?.id, name: winner?.name } }, 'a loser told the holder')
    else assertProblem(t, run, 409, { code: 'port_conflict', detail: `host port ${port} is already allocated`, port }, 'a loser')
  }
  t.same(winner?.ports, [{ container: 80, host: port, protocol: 'tcp', hostIp: '0.0.0.0' }])
  // The losers were created and failed to start: berth removed them, so no "created" container is left.
  const containers = await docker.listContainers({ all: true, filters: { label: [`trial=${trial}`] } })
  t.same(containers.map(container => [container.Id, container.State]), [[winner?.id, 'running']], 'only the winner, running')
})

t.test('the engine stopped under load: every request completes, fast 503 engine_unavailable while it is down, recovery when it is back', async t => {
  const engine = new PrivateEngine()
  t.teardown(() => engine.dispose())
  await engine.start()
  // Long enough for a busy machine's engine to answer while it is up; only requests caught by the
  // engine's own shutdown wait it out.
  const timeoutMs = 15_000
  const app = await build(t, { socketPath: engine.socketPath, config: { engine: { timeoutMs }, limits: { rateLimitPerMinute: 1_000_000 } } })

  type Phase = 'up' | 'stopping' | 'down' | 'starting' | 'back'
  let phase: Phase = 'up'
  let stop = false
  const answeredUp = new Set<number>()
  const answeredDown = new Set<number>()
  const recovered = new Set<number>()
  const loaded = load(16, () => stop, async (worker, i) => {
    const started = phase
    const url = i % 2 === 0 ? '/v1/containers?all=true' : `/v1/containers/${name('outage-missing')}`
    const response = await app.inject({ method: 'GET', url, headers: auth() })
    const ended = phase
    if (started === 'up' && ended === 'up') answeredUp.add(worker)
    if (started === 'down' && ended === 'down') answeredDown.add(worker)
    if (ended === 'back' && response.statusCode !== 503) recovered.add(worker)
    // The outage is judged by requests that began and ended while the engine was wholly down.
    return { phase: started === ended ? started : 'stopping' as Phase, url, status: response.statusCode, code: response.statusCode >= 400 ? response.json().code : null, detail: response.statusCode >= 400 ? response.json().detail as string : '' }
  })

  try {
    await waitFor('every worker to be answered while the engine is up', () => answeredUp.size, count => count === 16)
    phase = 'stopping'
    await engine.stop()
    phase = 'down'
    // Every worker has a request that began and ended while the engine was wholly down. Had one waited
    // out its deadline instead of failing at connect, it is among them (the phase lasts until it ends).
    await waitFor('every worker to be answered while the engine is down', () => answeredDown.size, count => count === 16)
    phase = 'starting'
    await engine.start()
    phase = 'back'
    // Recovery: every worker gets an engine answer again, without berth being restarted.
    await waitFor('every worker to be answered by the engine again', () => recovered.size, count => count === 16)
  } finally {
    stop = true
  }
  const results = await loaded

  const by = (p: Phase) => results.filter(result => result.phase === p)
  t.comment(`${results.length} requests: ${by('up').length} before, ${by('down').length} while down, ${by('back').length} after`)
  t.ok(by('up').length > 0 && by('down').length > 0 && by('back').length > 0, 'load in every phase')
  const expected = (result: { url: string, status: number }) => result.url.includes('?all=true') ? 200 : 404
  t.same(by('up').filter(result => result.status !== expected(result)), [], 'correct answers while the engine is up')
  t.same(results.filter(result => result.status >= 500 && result.status !== 503), [], 'never a 500 or 502: only 503 when the engine is away')
  t.same(results.filter(result => result.status === 503 && result.code !== 'engine_unavailable'), [], 'every 503 is engine_unavailable')
  // "cannot reach" is the connection failing at once; "did not answer within" would be a request that waited out its deadline.
  const down = by('down')
  t.same(down.filter(result => result.status !== 503 || !/^cannot reach the container engine \(E[A-Z]+\)$/.test(result.detail)).slice(0, 5), [],
    'while the engine is down every request fails fast at connect, none waits out its deadline')
  // Requests the engine took in while it shut down may wait out their deadline (how many depends on how
  // long its shutdown takes); none that began once it was down did: those are all 'cannot reach' above.
  t.comment(`${results.filter(result => result.detail.startsWith('the container engine did not answer')).length} requests met the engine shutting down and waited out their deadline`)
  t.equal(recovered.size, 16, 'every worker got answers again once the engine was back')
  t.same(by('back').slice(-16).filter(result => result.status !== expected(result)), [], 'and the last answers are correct ones')
})
