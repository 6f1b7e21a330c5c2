// `npm run bench:scale`: berth's watch-fed copy at scale. 5,000 containers (created, not started:
// what a list costs does not depend on what runs) with berth's ownership labels on the engine; then
// `docker ps -a` of all of them through berth against the engine's own list in one run, the time
// berth takes to be ready (it lists and inspects every one), its resident memory holding them, and
// the memory of the copy itself, measured in this process: the V8 heap (after collections) before
// and after a copy of the engine has listed them. Writes a table and bench/results/scale-latest.json;
// everything it made is removed, also on failure. Run with node --expose-gc (npm run bench:scale does).
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { DockerHost } from '../src/engine/docker/backend.ts'
import { MAX_API, compareVersions } from '../src/engine/docker/transport.ts'
import {
  HttpClient, benchLog, formatTable, inBatches, interleavedLatency, memoryDetail, ms, round, runBench, startBerth, until, type BerthProcess, type MemoryDetail
} from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const socketPath = process.env.BERTH_BENCH_SOCKET ?? process.env.BERTH_TEST_SOCKET ?? '/var/run/docker.sock'
const image = process.env.BERTH_BENCH_IMAGE ?? 'berth-test/busybox:1'
const CONTAINERS = Number(process.env.BERTH_BENCH_SCALE ?? 5000)
const ITERATIONS = Number(process.env.BERTH_BENCH_ITERATIONS ?? 40)
const BUDGET_MS = 1_500_000
// The targets berth is held to; the bench reports against them, it does not enforce them.
const TARGETS = { p50VsEngine: 0.5, copyMb: 50 }

const log = benchLog('scale')
const prefix = `berthscale-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const LABEL = 'berth.bench.run'
const labelFilter = `${LABEL}=${prefix}`
const token = randomBytes(24).toString('hex')
/** berth's ownership labels (deployment "default", the bench's token): berth shows a token only what is its own. */
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }
const engine = new HttpClient({ socketPath })
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-scale-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: BerthProcess | null = null

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:scale does): the copy\'s memory is read after collections')

await runBench(log, BUDGET_MS, async () => {
  try {
    await main()
  } finally {
    await cleanup()
  }
})

/** The V8 heap in use after full collections: what is reachable, nothing waiting to be collected. */
async function heapUsed (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise(resolve => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

async function main (): Promise<void> {
  const started = performance.now()
  const loadAverageAtStart = os.loadavg().map(value => round(value, 2))
  const version = JSON.parse((await engine.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  const api = `/v${compareVersions(version.ApiVersion, MAX_API) < 0 ? version.ApiVersion : MAX_API}`
  if ((await engine.request('GET', `${api}/images/${encodeURIComponent(image)}/json`)).status !== 200) {
    throw new Error(`image ${image} is not on the engine: run "bash scripts/test-env.sh up" first, or set BERTH_BENCH_IMAGE`)
  }
  const others = (JSON.parse((await engine.expect(200, 'GET', `${api}/containers/json?all=1`)).body) as unknown[]).length
  log(`engine ${version.Version} (API ${version.ApiVersion}); creating ${CONTAINERS} containers named ${prefix}-* beside the ${others} already there; load average ${loadAverageAtStart.join(' ')}`)
  let made = 0
  const creating = performance.now()
  await inBatches(Array.from({ length: CONTAINERS }, (_, i) => i), 16, async i => {
    await engine.expect(201, 'POST', `${api}/containers/create?name=${prefix}-c${i}`, { Image: image, Cmd: ['sleep', '3600'], Labels: { [LABEL]: prefix, ...OWNED } })
    if (++made % 1000 === 0) log(`${made} created`)
  })
  const createSeconds = round((performance.now() - creating) / 1000, 1)

  // The copy's own memory, in this process: the heap before it exists and once it holds them all.
  const before = await heapUsed()
  const host = new DockerHost({ socketPath, timeoutMs: 30_000, deployment: 'default' })
  const listing = performance.now()
  await host.copy?.ready(600_000)
  const copyReadyMs = round(performance.now() - listing, 0)
  const held = [...(host.copy?.containers() ?? [])].length
  const copyMb = round((await heapUsed() - before) / 1048576, 1)
  await host.copy?.stop()
  log(`a copy of ${held} containers holds ${copyMb} MiB of heap; it listed and inspected them in ${copyReadyMs} ms`)

  const berthStarted = performance.now()
  berthProcess = await startBerth(root, { BERTH_DOCKER_SOCKET: socketPath, BERTH_TOKENS: `bench:admin:${token}`, BERTH_ENGINE_TIMEOUT_MS: '30000' }, berthLog)
  const pid = berthProcess.child.pid as number
  const berth = new HttpClient({ host: '127.0.0.1', port: berthProcess.port }, { authorization: `Bearer ${token}` })
  await until('berth to be ready (its copy lists every container)', async () => (await berth.request('GET', '/readyz')).status === 200, 600_000, 250)
  const readyMs = round(performance.now() - berthStarted, 0)
  const metrics = async (): Promise<string> => (await berth.expect(200, 'GET', '/metrics')).body
  const idle = await memoryDetail(pid, metrics)

  const label = encodeURIComponent(labelFilter)
  const filter = encodeURIComponent(JSON.stringify({ label: [labelFilter] }))
  const listed = JSON.parse((await berth.expect(200, 'GET', `/v1/containers?all=true&label=${label}`)).body) as unknown[]
  if (listed.length !== CONTAINERS) throw new Error(`berth lists ${listed.length} of the ${CONTAINERS} fixtures`)
  log(`berth ready after ${readyMs} ms, ${idle.rssMb} MiB resident; ps -a of ${CONTAINERS}, ${ITERATIONS} times each, interleaved`)
  const latency = await interleavedLatency({
    engine: () => engine.expect(200, 'GET', `${api}/containers/json?all=1&filters=${filter}`),
    berth: () => berth.expect(200, 'GET', `/v1/containers?all=true&label=${label}`)
  }, ITERATIONS, 3, 300_000)
  const afterLists = await memoryDetail(pid, metrics)
  const e = latency.engine as { p50: number, p99: number, n: number, mean: number }
  const b = latency.berth as { p50: number, p99: number, n: number, mean: number }
  const ratio = round(b.p50 / e.p50, 2)
  const loadAverageAtEnd = os.loadavg().map(value => round(value, 2))
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, memoryGb: round(os.totalmem() / 1024 ** 3, 1), loadAverageAtStart, loadAverageAtEnd, node: process.version, engine: version.Version, engineApi: version.ApiVersion },
    setup: {
      containers: CONTAINERS,
      otherContainersOnTheEngine: others,
      createSeconds,
      list: `${ITERATIONS} requests one at a time, engine and berth interleaved: the engine's list with a label filter against GET /v1/containers?all=true&label=… (berth answers from its copy)`,
      copyMemory: 'V8 heap in use (after full collections) in the bench process, before a DockerHost exists and once its copy is current'
    },
    list: { engine: e, berth: b, ratio },
    copy: { containers: held, heapMb: copyMb, readyMs: copyReadyMs },
    berth: { readyMs, memory: { idle, afterLists } },
    targets: { ...TARGETS, met: { list: ratio <= TARGETS.p50VsEngine, copyMemory: copyMb <= TARGETS.copyMb } },
    seconds: round((performance.now() - started) / 1000, 1)
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  writeFileSync(join(root, 'bench/results/scale-latest.json'), JSON.stringify(report, null, 2) + '\n')
  console.log(formatTable(`docker ps -a of ${CONTAINERS} containers, ms, one request at a time; load average ${loadAverageAtStart.join(' ')} at the start, ${loadAverageAtEnd.join(' ')} at the end`,
    ['operation', 'engine p50', 'berth p50', 'berth ÷ engine', 'engine p99', 'berth p99'],
    [[`ps -a (${CONTAINERS})`, ms(e.p50), ms(b.p50), ratio.toFixed(2), ms(e.p99), ms(b.p99)]]))
  console.log(`the copy of ${held} containers: ${copyMb} MiB of heap, current after ${copyReadyMs} ms; berth ready after ${readyMs} ms, ${idle.rssMb} MiB resident (${describe(idle)}), ${afterLists.rssMb} MiB after the lists`)
  console.log(`targets: list ≤ ${TARGETS.p50VsEngine}× the engine's: ${report.targets.met.list ? 'met' : 'NOT met'}; copy ≤ ${TARGETS.copyMb} MB: ${report.targets.met.copyMemory ? 'met' : 'NOT met'}`)
  console.log(`wrote bench/results/scale-latest.json after ${report.seconds} s`)
}

function describe (memory: MemoryDetail): string {
  const heap = Object.values(memory.heap).reduce((sum, mb) => sum + mb, 0)
  return `binary and libraries ${memory.fileMb}, V8 heap ${round(heap, 1)}, native ${memory.nativeMb}`
}

/** Removes everything the bench made, whatever state the run ended in. */
async function cleanup (): Promise<void> {
  await berthProcess?.stop()
  const reply = await engine.request('GET', `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: [labelFilter] }))}`)
  const mine = reply.status === 200 ? (JSON.parse(reply.body) as Array<{ Id: string }>).map(container => container.Id) : []
  log(`removing ${mine.length} containers`)
  await inBatches(mine, 16, id => engine.request('DELETE', `/containers/${id}?force=1&v=1`))
  engine.close()
  if (process.exitCode && existsSync(berthLog)) log(`berth's log ends:\n${readFileSync(berthLog, 'utf8').slice(-3000)}`)
  rmSync(workDir, { recursive: true, force: true })
}
