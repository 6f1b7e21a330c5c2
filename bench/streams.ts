// `npm run bench:streams`: 50 stats streams and 50 exec output streams at once, through berth and
// straight against the engine's own API, in one run on one engine; then every client hangs up and
// the engine connections berth holds are counted. Writes a table and bench/results/streams.json.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { round } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const socketPath = process.env.BERTH_BENCH_SOCKET ?? process.env.BERTH_TEST_SOCKET ?? '/var/run/docker.sock'
const image = process.env.BERTH_BENCH_IMAGE ?? 'berth-test/busybox:1'
const STREAMS = Number(process.env.BERTH_BENCH_STREAMS ?? 50)
/** Seconds each stats stream is read for. */
const STATS_SECONDS = Number(process.env.BERTH_BENCH_SECONDS ?? 6)
/** Lines each exec writes. */
const EXEC_LINES = 2000

const prefix = `berthbench-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-streams-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: ChildProcess | null = null
let container: string | null = null
const api = '/v1.41'

type Where = { socketPath: string } | { host: string, port: number }

/** A request whose response is read as it streams; `onData` sees each chunk; resolves at its end or when `until` aborts. */
async function stream (where: Where, method: string, path: string, options: { headers?: Record<string, string>, body?: unknown, until?: AbortSignal, onData: (chunk: Buffer) => void }): Promise<number> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
  return await new Promise((resolve, reject) => {
    // Each on its own connection, as separate clients are: no pooling.
    const request = http.request({ ...where, agent: false, method, path, headers: { ...options.headers, ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }) } }, response => {
      response.on('data', options.onData)
      response.on('end', () => resolve(response.statusCode ?? 0))
      response.on('error', () => resolve(response.statusCode ?? 0))
    })
    options.until?.addEventListener('abort', () => { request.destroy() }, { once: true })
    request.on('error', error => options.until?.aborted === true ? resolve(0) : reject(error))
    request.end(payload)
  })
}

async function json (where: Where, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  let text = ''
  const status = await stream(where, method, path, { headers, body, onData: chunk => { text += chunk.toString() } })
  return { status, body: text }
}

/** The unix-socket connections a process holds to the engine (their peers are the engine's socket). */
function engineConnections (pid: number): number {
  const engineSide = new Set<string>()
  const ours: string[] = []
  for (const line of execFileSync('ss', ['-xpn'], { encoding: 'utf8' }).split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields[0] !== 'u_str' || fields[1] !== 'ESTAB') continue
    const [,,,, local, inode, , peerInode] = fields
    if (local === socketPath && peerInode !== undefined) engineSide.add(peerInode)
    if (line.includes(`pid=${pid},`) && inode !== undefined) ours.push(inode)
  }
  return ours.filter(inode => engineSide.has(inode)).length
}

async function startBerth (): Promise<{ pid: number, port: number }> {
  const script = join(root, 'dist/server.js')
  if (!existsSync(script)) throw new Error('dist/server.js is missing: run "npm run bench:streams" (it builds first)')
  const out = openSync(berthLog, 'a')
  const child = spawn(process.execPath, ['--max-semi-space-size=4', script], {
    cwd: root,
    stdio: ['ignore', out, out],
    env: { PATH: process.env.PATH ?? '', BERTH_HOST: '127.0.0.1', BERTH_PORT: '0', BERTH_DOCKER_SOCKET: socketPath, BERTH_TOKENS: `bench:admin:${token}`, BERTH_RATE_LIMIT: '1000000', BERTH_LOG_LEVEL: 'info', BERTH_SWEEP_INTERVAL_MS: '0' }
  })
  closeSync(out)
  berthProcess = child
  for (let i = 0; i < 100; i++) {
    const match = /"msg":"Server listening at http:\/\/127\.0\.0\.1:(\d+)"/.exec(readFileSync(berthLog, 'utf8'))
    if (match) return { pid: child.pid as number, port: Number(match[1]) }
    await sleep(100)
  }
  throw new Error(`berth did not start: ${readFileSync(berthLog, 'utf8').slice(-1000)}`)
}

/**
 * STREAMS stats streams at once for STATS_SECONDS: readings in all, and the rate each stream holds
 * once its readings flow (from its first reading to its last), so that the time to set a stream up
 * is not taken for a slower rate.
 */
async function statsStreams (where: Where, path: string, headers: Record<string, string>): Promise<{ readings: number, perStreamPerSecond: number, firstReadingMs: number }> {
  let readings = 0
  const until = AbortSignal.timeout(STATS_SECONDS * 1000)
  const started = performance.now()
  const streams = await Promise.all(Array.from({ length: STREAMS }, async () => {
    const times: number[] = []
    await stream(where, 'GET', path, {
      headers,
      until,
      onData: chunk => { for (const byte of chunk) if (byte === 0x0a) times.push(performance.now()) }
    })
    readings += times.length
    return times
  }))
  const rates = streams.filter(times => times.length > 1).map(times => (times.length - 1) / (((times.at(-1) as number) - (times[0] as number)) / 1000))
  const firsts = streams.filter(times => times.length > 0).map(times => (times[0] as number) - started)
  return {
    readings,
    perStreamPerSecond: round(rates.reduce((sum, rate) => sum + rate, 0) / Math.max(1, rates.length), 2),
    firstReadingMs: Math.round(firsts.reduce((sum, ms) => sum + ms, 0) / Math.max(1, firsts.length))
  }
}

/** STREAMS execs at once, each writing EXEC_LINES lines: how long until all are read. */
async function execStreams (run: () => Promise<number>): Promise<{ seconds: number, linesPerSecond: number }> {
  const started = performance.now()
  const lines = await Promise.all(Array.from({ length: STREAMS }, run))
  const seconds = (performance.now() - started) / 1000
  const total = lines.reduce((sum, n) => sum + n, 0)
  if (total < STREAMS * EXEC_LINES) throw new Error(`only ${total} of ${STREAMS * EXEC_LINES} lines arrived`)
  return { seconds: round(seconds, 2), linesPerSecond: Math.round(total / seconds) }
}

const COMMAND = ['sh', '-c', `i=0; while [ $i -lt ${EXEC_LINES} ]; do echo line-$i; i=$((i+1)); done`]

/** One exec straight against the engine: create, start (its multiplexed output read whole), lines counted. */
async function engineExec (id: string): Promise<number> {
  const engine = { socketPath }
  const created = JSON.parse((await json(engine, 'POST', `${api}/containers/${id}/exec`, { Cmd: COMMAND, AttachStdout: true, AttachStderr: true })).body) as { Id: string }
  let buffer = Buffer.alloc(0)
  let lines = 0
  await stream(engine, 'POST', `${api}/exec/${created.Id}/start`, {
    body: { Detach: false, Tty: false },
    onData: chunk => {
      buffer = Buffer.concat([buffer, chunk])
      while (buffer.length >= 8 && buffer.length >= 8 + buffer.readUInt32BE(4)) {
        const size = buffer.readUInt32BE(4)
        for (const byte of buffer.subarray(8, 8 + size)) if (byte === 0x0a) lines++
        buffer = buffer.subarray(8 + size)
      }
    }
  })
  return lines
}

async function main (): Promise<void> {
  const engine = { socketPath }
  const loadAverage = os.loadavg().map(value => round(value, 2))
  const created = await json(engine, 'POST', `${api}/containers/create?name=${prefix}`, {
    Image: image,
    Cmd: ['sleep', '600'],
    Labels: { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench', 'berth.bench.run': prefix }
  })
  if (created.status !== 201) throw new Error(`could not create the container: ${created.body}`)
  container = (JSON.parse(created.body) as { Id: string }).Id
  await json(engine, 'POST', `${api}/containers/${container}/start`)
  const { pid, port } = await startBerth()
  const berth = { host: '127.0.0.1', port }
  const auth = { authorization: `Bearer ${token}` }
  console.error(`[bench] ${STREAMS} streams at once on ${container.slice(0, 12)}; berth pid ${pid}`)
  const before = engineConnections(pid)

  const statsEngine = await statsStreams(engine, `${api}/containers/${container}/stats?stream=true`, {})
  const statsBerth = await statsStreams(berth, `/v1/containers/${container}/stats`, { ...auth, accept: 'application/x-ndjson' })
  const execEngine = await execStreams(async () => await engineExec(container as string))
  const execBerth = await execStreams(async () => {
    let lines = 0
    await stream(berth, 'POST', `/v1/containers/${container}/exec`, {
      headers: { ...auth, accept: 'application/x-ndjson' },
      body: { command: COMMAND },
      onData: chunk => { for (const byte of chunk) if (byte === 0x0a) lines++ }
    })
    // The last line is the exit code, not output.
    return lines - 1
  })

  // Every client has hung up or finished: what berth still holds to the engine (keep-alive idles out).
  let after = engineConnections(pid)
  for (let i = 0; i < 40 && after > before; i++) {
    await sleep(250)
    after = engineConnections(pid)
  }
  const report = {
    machine: { cpus: os.cpus().length, loadAverage, node: process.version },
    streams: STREAMS,
    stats: { engine: statsEngine, berth: statsBerth, ratio: round(statsBerth.perStreamPerSecond / statsEngine.perStreamPerSecond, 2) },
    exec: { linesEach: EXEC_LINES, engine: execEngine, berth: execBerth, ratio: round(execBerth.seconds / execEngine.seconds, 2) },
    engineConnections: { before, after }
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  writeFileSync(join(root, 'bench/results/streams.json'), JSON.stringify(report, null, 2) + '\n')
  console.log([
    `| ${STREAMS} streams at once | engine | berth | berth ÷ engine |`,
    '|---|---|---|---|',
    `| stats: readings a stream a second, once flowing | ${statsEngine.perStreamPerSecond} | ${statsBerth.perStreamPerSecond} | ${report.stats.ratio} |`,
    `| stats: first reading after (ms, mean) | ${statsEngine.firstReadingMs} | ${statsBerth.firstReadingMs} | ${round(statsBerth.firstReadingMs / Math.max(1, statsEngine.firstReadingMs), 2)} |`,
    `| exec: ${EXEC_LINES} lines each, all read (s) | ${execEngine.seconds} | ${execBerth.seconds} | ${report.exec.ratio} |`,
    `| exec: lines a second, all streams | ${execEngine.linesPerSecond} | ${execBerth.linesPerSecond} | ${round(execBerth.linesPerSecond / execEngine.linesPerSecond, 2)} |`,
    '',
    `berth's engine connections: ${before} before, ${after} after every client hung up or finished. Load average at start: ${loadAverage.join(' ')}.`
  ].join('\n'))
  if (after > before) throw new Error(`berth holds ${after - before} more engine connections than before the streams`)
}

async function cleanup (): Promise<void> {
  berthProcess?.kill('SIGTERM')
  if (container !== null) await json({ socketPath }, 'DELETE', `${api}/containers/${container}?force=true`).catch(() => {})
  rmSync(workDir, { recursive: true, force: true })
}

main().then(cleanup, async (error: unknown) => {
  console.error(error)
  console.error(`berth's log: ${existsSync(berthLog) ? readFileSync(berthLog, 'utf8').slice(-2000) : '(none)'}`)
  await cleanup()
  process.exit(1)
})
