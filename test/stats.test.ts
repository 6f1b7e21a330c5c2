// docker stats through berth, on the real engine: one reading checked against `docker stats
// --no-stream` itself, streams of readings (NDJSON, SSE) that end with the container or the client,
// many streams at once without a leaked engine connection, and ownership.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { auth, build, cleanupAfter, env, name, runBody, waitFor } from './helpers.ts'
import { listen } from './stream-client.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function run (app: App, body: Record<string, unknown>) {
  const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody(body) })
  if (response.statusCode !== 201) throw new Error(response.body)
  return response.json() as { id: string }
}

/** "1.5MiB", "516B", "2.3kB" as the CLI prints them (binary units for memory, decimal for I/O), in bytes. */
function bytes (text: string): number {
  const match = /^([\d.]+)\s*([a-zA-Z]*)$/.exec(text.trim())
  if (match === null) throw new Error(`not a size: ${text}`)
  const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, kB: 1000, MB: 1000 ** 2, GB: 1000 ** 3 }
  return Number(match[1]) * (units[match[2] as string] ?? NaN)
}

/** The CLI's own reading, through the same engine. */
async function dockerStats (id: string) {
  const { stdout } = await promisify(execFile)('docker', ['-H', `unix://${env.socket}`, 'stats', '--no-stream', '--format', '{{json .}}', id])
  const line = JSON.parse(stdout) as { CPUPerc: string, MemUsage: string, NetIO: string, BlockIO: string, PIDs: string }
  const [memUsed = '', memLimit = ''] = line.MemUsage.split(' / ')
  const [rx = '', tx = ''] = line.NetIO.split(' / ')
  return { cpuPercent: parseFloat(line.CPUPerc), memUsed: bytes(memUsed), memLimit: bytes(memLimit), rx: bytes(rx), tx: bytes(tx), pids: Number(line.PIDs), blockIo: line.BlockIO }
}

t.test('one reading, computed as docker stats computes it', async t => {
  const app = await build(t)
  // Half a core busy, 64 MiB at most, and a few processes.
  const { id } = await run(app, { name: name('busy'), resources: { cpus: 0.5, memory: 64 * 1024 * 1024 }, command: ['sh', '-c', 'sleep 300 & sleep 300 & while :; do :; done'] })
  await new Promise(resolve => setTimeout(resolve, 1500))
  const [ours, theirs] = await Promise.all([
    app.inject({ method: 'GET', url: `/v1/containers/${name('busy')}/stats`, headers: auth('alice') }),
    dockerStats(id)
  ])
  t.equal(ours.statusCode, 200, ours.body)
  const reading = ours.json()
  t.comment(`berth: ${JSON.stringify(reading)}`)
  t.comment(`docker stats: ${JSON.stringify(theirs)}`)
  t.equal(reading.memory.limit, 64 * 1024 * 1024, 'the memory limit')
  t.equal(theirs.memLimit, reading.memory.limit, 'the same limit as docker stats')
  t.ok(Math.abs(reading.cpuPercent - theirs.cpuPercent) < 15, `CPU % close to docker stats' (${reading.cpuPercent.toFixed(1)} vs ${theirs.cpuPercent})`)
  // At most half a core (it gets less when the machine is busy with other suites).
  t.ok(reading.cpuPercent > 1 && reading.cpuPercent < 65, `a busy loop capped at half a core (${reading.cpuPercent.toFixed(1)} %)`)
  t.ok(Math.abs(reading.memory.used - theirs.memUsed) <= Math.max(256 * 1024, theirs.memUsed * 0.2), `memory used close to docker stats' (${reading.memory.used} vs ${theirs.memUsed})`)
  t.equal(reading.memory.percent, reading.memory.used / reading.memory.limit * 100)
  t.equal(reading.pids, theirs.pids, 'processes, as docker stats counts them')
  t.equal(reading.pids, 3)
  t.ok(Math.abs(reading.network.rxBytes - theirs.rx) <= 1000 + theirs.rx * 0.1, `network in close to docker stats' (${reading.network.rxBytes} vs ${theirs.rx})`)
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
  const app = await build(t)
  const base = await listen(app)
  await run(app, { name: name('watched') })
  const before = await waitFor('idle engine connections to settle', () => engineConnections(), count => count <= 2, 10_000)
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
  const after = await waitFor('the engine connections to close', () => engineConnections(), count => count <= before, 15_000)
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
