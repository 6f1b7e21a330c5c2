// docker stats through berth, on the real engine: one reading checked against `docker stats
// --no-stream` itself computing from the same raw counters, streams of readings (NDJSON, SSE) that end with the container or the client,
// many streams at once without a leaked engine connection, and ownership.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { auth, build, cleanupAfter, docker, env, name, runBody, waitFor } from './helpers.ts'
import { PinnedStats } from './engine-spies.ts'
import { listen } from './stream-client.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

/** As much of the engine's raw stats as the test looks at. */
interface RawReading {
  read: string
  pids_stats?: { current?: number }
  cpu_stats: { cpu_usage: { total_usage: number } }
  precpu_stats: { cpu_usage?: { total_usage?: number } }
}

async function run (app: App, body: Record<string, unknown>) {
  const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody(body) })
  if (response.statusCode !== 201) throw new Error(response.body)
  return response.json() as { id: string }
}

/** A size as the CLI prints it ("848KiB", "1.5MiB", "2.3kB", "0B"): its number and the bytes of its unit. */
function printed (text: string): { number: number, unit: number } {
  const match = /^([\d.]+)\s*([a-zA-Z]*)$/.exec(text.trim())
  const unit = ({ B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, kB: 1000, MB: 1000 ** 2, GB: 1000 ** 3 } as Record<string, number>)[match?.[2] ?? '']
  if (match === null || unit === undefined) throw new Error(`not a size: ${text}`)
  return { number: Number(match[1]), unit }
}

/**
 * Whether `value` prints as `shown` does with Go's %.Ng (N significant digits, what the CLI uses for
 * sizes): the difference is at most half of the last digit shown. Exact, not a tolerance for drift.
 */
function printsAs (value: number, shown: { number: number, unit: number }, significant: number): boolean {
  const magnitude = shown.number === 0 ? 0 : Math.floor(Math.log10(shown.number))
  const half = 0.5 * 10 ** (magnitude - significant + 1)
  return Math.abs(value / shown.unit - shown.number) <= half * (1 + 1e-9)
}

/** `docker stats --no-stream` of one container, through the engine socket given. */
async function dockerStats (socket: string, id: string) {
  const { stdout } = await promisify(execFile)('docker', ['-H', `unix://${socket}`, 'stats', '--no-stream', '--format', '{{json .}}', id])
  const line = JSON.parse(stdout) as { CPUPerc: string, MemUsage: string, NetIO: string, PIDs: string }
  const [memUsed = '', memLimit = ''] = line.MemUsage.split(' / ')
  const [rx = '', tx = ''] = line.NetIO.split(' / ')
  return { cpuPercent: parseFloat(line.CPUPerc), memUsed: printed(memUsed), memLimit: printed(memLimit), rx: printed(rx), tx: printed(tx), pids: Number(line.PIDs) }
}

t.test('one reading, computed as docker stats computes it from the same counters', async t => {
  // Half a core busy, 64 MiB at most, and a few processes.
  const { id } = await run(await build(t), { name: name('busy'), resources: { cpus: 0.5, memory: 64 * 1024 * 1024 }, command: ['sh', '-c', 'sleep 300 & sleep 300 & while :; do :; done'] })
  // One raw reading of the engine's counters, taken once the three processes run and the loop has
  // used CPU between the reading's two samples.
  const raw = await waitFor('a reading of the busy container', async () => await docker.getContainer(id).stats({ stream: false }) as unknown as RawReading,
    reading => reading.pids_stats?.current === 3 && reading.cpu_stats.cpu_usage.total_usage > (reading.precpu_stats.cpu_usage?.total_usage ?? Infinity))
  // Berth and the CLI both read that reading: whatever they print comes from the same moment.
  const pinned = new PinnedStats(id, raw)
  const app = await build(t, { socketPath: await pinned.listen(t) })
  const [ours, theirs] = await Promise.all([
    app.inject({ method: 'GET', url: `/v1/containers/${name('busy')}/stats`, headers: auth('alice') }),
    dockerStats(pinned.socketPath, id)
  ])
  t.equal(ours.statusCode, 200, ours.body)
  t.equal(pinned.served.length, 2, `berth and the CLI each read the pinned reading: ${pinned.served.join(', ')}`)
  const reading = ours.json()
  t.comment(`berth: ${JSON.stringify(reading)}`)
  t.comment(`docker stats: ${JSON.stringify(theirs)}`)
  t.equal(reading.time, raw.read, 'the reading\'s own time')
  t.equal(reading.memory.limit, 64 * 1024 * 1024, 'the memory limit')
  t.ok(printsAs(reading.memory.limit, theirs.memLimit, 4), 'the same limit as docker stats')
  t.ok(Math.abs(reading.cpuPercent - theirs.cpuPercent) <= 0.005 + 1e-9, `CPU % as docker stats prints it (${reading.cpuPercent} vs ${theirs.cpuPercent} %)`)
  // At most half a core: the engine's CPU quota holds the loop to it over the reading's second.
  t.ok(reading.cpuPercent > 0 && reading.cpuPercent < 65, `a busy loop capped at half a core (${reading.cpuPercent.toFixed(1)} %)`)
  t.ok(printsAs(reading.memory.used, theirs.memUsed, 4), `memory used as docker stats prints it (${reading.memory.used} bytes vs ${theirs.memUsed.number} × ${theirs.memUsed.unit})`)
  t.equal(reading.memory.percent, reading.memory.used / reading.memory.limit * 100)
  t.equal(reading.pids, theirs.pids, 'processes, as docker stats counts them')
  t.equal(reading.pids, 3)
  t.ok(printsAs(reading.network.rxBytes, theirs.rx, 3), `network in as docker stats prints it (${reading.network.rxBytes} vs ${JSON.stringify(theirs.rx)})`)
  t.ok(printsAs(reading.network.txBytes, theirs.tx, 3), `network out as docker stats prints it (${reading.network.txBytes} vs ${JSON.stringify(theirs.tx)})`)
  t.equal(reading.onlineCpus, Number(execFileSync('nproc', { encoding: 'utf8' }).trim()))
  t.match(reading, { time: /^\d{4}-\d\d-\d\dT/, blockIo: { readBytes: Number, writeBytes: Number }, network: { txBytes: Number } })
})

t.test('a stream of readings: NDJSON and SSE, ending with the container or with the client', async t => {
  const app = await build(t)
  const base = await listen(app)
  await run(app, { name: name('streamed') })

  const controller = new AbortController()
  const response = await fetch(`${base}/v1/containers/${name('streamed')}/stats`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' }, signal: controller.signal })
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /application\/x-ndjson/)
  const reader = response.body!.getReader()
  let text = ''
  while (text.split('\n').length < 3) text += Buffer.from((await reader.read()).value ?? []).toString()
  const readings = text.split('\n').slice(0, 2).map(line => JSON.parse(line))
  t.ok(Date.parse(readings[1].time) > Date.parse(readings[0].time), 'one after the other')
  t.equal(readings[1].pids, 1)
  controller.abort()
  await waitFor('the stream to be released', () => app.streams.open, open => open === 0)

  const sse = await fetch(`${base}/v1/containers/${name('streamed')}/stats`, { headers: { ...auth('alice'), accept: 'text/event-stream' } })
  const sseReader = sse.body!.getReader()
  let events = ''
  while (!events.includes('data: ')) events += Buffer.from((await sseReader.read()).value ?? []).toString()
  t.ok(events.startsWith('retry: 2000\n\n'))
  // The container stops: the stream ends by itself.
  await app.inject({ method: 'POST', url: `/v1/containers/${name('streamed')}/stop?timeout=0`, headers: auth('alice') })
  for (;;) {
    const { done } = await sseReader.read()
    if (done) break
  }
  t.pass('the stream ended when the container stopped')
  await waitFor('the stream to be released', () => app.streams.open, open => open === 0)
})

/** The connections this process holds to the engine's socket (its peer's address is the socket). */
function engineConnections (): number {
  const engineSide = new Set<string>()
  const ours: string[] = []
  for (const line of execFileSync('ss', ['-xpn'], { encoding: 'utf8' }).split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields[0] !== 'u_str' || fields[1] !== 'ESTAB') continue
    const [,,,, local, inode, , peerInode] = fields
    if (local === env.socket && peerInode !== undefined) engineSide.add(peerInode)
    if (line.includes(`pid=${process.pid},`) && inode !== undefined) ours.push(inode)
  }
  return ours.filter(inode => engineSide.has(inode)).length
}

t.test('many stats streams at once, all hung up: no engine connection is left', async t => {
  // Without the copy, whose event stream and pings hold connections of their own: counted here are the streams'.
  const app = await build(t, { copy: false })
  const base = await listen(app)
  await run(app, { name: name('watched') })
  // Connections that ended normally may idle in the HTTP agent's pool for its timeout (5 s) first.
  const before = await waitFor('idle engine connections to settle', () => engineConnections(), count => count <= 2)
  const STREAMS = 30
  const controllers = Array.from({ length: STREAMS }, () => new AbortController())
  const firsts = await Promise.all(controllers.map(async controller => {
    const response = await fetch(`${base}/v1/containers/${name('watched')}/stats`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' }, signal: controller.signal })
    const reader = response.body!.getReader()
    let text = ''
    while (!text.includes('\n')) text += Buffer.from((await reader.read()).value ?? []).toString()
    return JSON.parse(text.split('\n')[0] as string)
  }))
  t.equal(firsts.length, STREAMS, 'every stream got its first reading')
  t.ok(engineConnections() >= STREAMS, `one engine connection each while they run (${engineConnections()})`)
  for (const controller of controllers) controller.abort()
  await waitFor('the streams to be released', () => app.streams.open, open => open === 0)
  const after = await waitFor('the engine connections to close', () => engineConnections(), count => count <= before)
  t.ok(after <= before, `engine connections before ${before}, after ${after}`)
})

t.test('ownership and refusals', async t => {
  const app = await build(t)
  await run(app, { name: name('hers') })
  await run(app, { name: name('done'), command: ['true'] })
  await waitFor('it to exit', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${name('done')}`, headers: auth('alice') })).json().state, state => state === 'exited')
  const bobs = await app.inject({ method: 'GET', url: `/v1/containers/${name('hers')}/stats`, headers: auth('bob') })
  t.equal(bobs.statusCode, 404)
  t.equal(bobs.json().code, 'not_found')
  const readers = await app.inject({ method: 'GET', url: `/v1/containers/${name('hers')}/stats`, headers: auth('reader') })
  t.equal(readers.statusCode, 404, 'a reader sees only its own, too')
  const stopped = await app.inject({ method: 'GET', url: `/v1/containers/${name('done')}/stats`, headers: auth('alice') })
  t.equal(stopped.statusCode, 409)
  t.match(stopped.json(), { code: 'container_not_running', detail: /is not running: it uses nothing/ })
  const html = await app.inject({ method: 'GET', url: `/v1/containers/${name('hers')}/stats`, headers: { ...auth('alice'), accept: 'text/html' } })
  t.equal(html.statusCode, 406)
  const admins = await app.inject({ method: 'GET', url: `/v1/containers/${name('hers')}/stats`, headers: auth('admin') })
  t.equal(admins.statusCode, 200, 'an admin reads anyone\'s')
})
