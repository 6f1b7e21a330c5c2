// `npm run bench`: the same reads through berth, straight against the engine's own API, and through a
// HAProxy socket proxy in front of the same engine (the kind of proxy most used in front of the Docker
// socket; it checks nothing), in one run on one engine; then 64 connections of load on each (autocannon),
// a run-stop-rm cycle, the Docker CLI for scale, and berth's memory and what holds it. Writes a table
// and bench/results/latest.json. The machine is shared: the ratios within one run are what count.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MAX_API, compareVersions } from '../src/engine/docker/transport.ts'
import {
  HttpClient, alternatingLoads, benchLog, cannon, dockerCli, formatTable, inBatches, interleavedLatency, memoryDetail, memoryOf, ms, round, runBench,
  imageEnvironment, imageNodeOptions, startBerth, startHaproxy, type BerthProcess, type Load, type Memory, type MemoryDetail, type Percentiles, type Proxy
} from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const socketPath = process.env.BERTH_BENCH_SOCKET ?? process.env.BERTH_TEST_SOCKET ?? '/var/run/docker.sock'
const image = process.env.BERTH_BENCH_IMAGE ?? 'berth-test/busybox:1'
const CONTAINERS = Number(process.env.BERTH_BENCH_CONTAINERS ?? 50)
const RUNNING = Math.round(CONTAINERS * 0.8)
/** Connections of the load (autocannon), and seconds of it per target and operation, in two slices. */
const CONNECTIONS = Number(process.env.BERTH_BENCH_CONNECTIONS ?? 64)
const LOAD_SECONDS = Number(process.env.BERTH_BENCH_SECONDS ?? 10)
const ITERATIONS = Number(process.env.BERTH_BENCH_ITERATIONS ?? 400)
/** Seconds after berth listens at which its idle memory is read. */
const IDLE_AFTER_S = 15
const BUDGET_MS = 900_000

// The targets berth is held to; the bench reports against them, it does not enforce them.
const TARGETS = { p50VsHaproxy: 1.0, rpsVsHaproxy: 1.0, idleMb: 100, afterLoadMb: 200 }

const log = benchLog('run')
const prefix = `berthbench-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const LABEL = 'berth.bench.run'
const labelFilter = `${LABEL}=${prefix}`
const token = randomBytes(24).toString('hex')
const bearer = { authorization: `Bearer ${token}` }
/** berth's ownership labels (deployment "default", the bench's token): berth shows a token only what is its own. */
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }
const engine = new HttpClient({ socketPath })
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: BerthProcess | null = null
let haproxyProcess: Proxy | null = null

interface Read {
  name: string
  what: string
  /** The engine path; HAProxy is asked the same. */
  path: string
  berth: string
  cli: string[]
  /** Under 64 connections too. */
  load: boolean
}

interface ReadResult {
  name: string
  what: string
  latencyMs: { engine: Percentiles, haproxy: Percentiles, berth: Percentiles, cli: Percentiles }
  /** berth ÷ HAProxy and berth ÷ engine at p50. */
  ratio: { p50VsHaproxy: number, p50VsEngine: number }
  load: { engine: Load, haproxy: Load, berth: Load, rpsVsHaproxy: number } | null
}

await runBench(log, BUDGET_MS, async () => {
  try {
    await main()
  } finally {
    await cleanup()
  }
})

async function main (): Promise<void> {
  const started = performance.now()
  const loadAverageAtStart = os.loadavg().map(value => round(value, 2))
  const version = JSON.parse((await engine.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  // The version berth negotiates (the engine's own, up to the newest berth knows); the others use the same.
  const api = `/v${compareVersions(version.ApiVersion, MAX_API) < 0 ? version.ApiVersion : MAX_API}`
  if ((await engine.request('GET', `${api}/images/${encodeURIComponent(image)}/json`)).status !== 200) {
    throw new Error(`image ${image} is not on the engine: run "bash scripts/test-env.sh up" first, or set BERTH_BENCH_IMAGE`)
  }
  const cliVersion = (await dockerCli(socketPath, ['version', '--format', '{{.Client.Version}}'])).trim()
  log(`engine ${version.Version} (API ${version.ApiVersion}) on ${socketPath}; ${CONTAINERS} containers named ${prefix}-*; load average ${loadAverageAtStart.join(' ')}`)
  await inBatches(Array.from({ length: CONTAINERS }, (_, i) => i), 8, async i => {
    const created = await engine.expect(201, 'POST', `${api}/containers/create?name=${prefix}-c${i}`, { Image: image, Cmd: ['sleep', '3600'], Labels: { [LABEL]: prefix, ...OWNED } })
    if (i < RUNNING) await engine.expect(204, 'POST', `${api}/containers/${(JSON.parse(created.body) as { Id: string }).Id}/start`)
  })

  haproxyProcess = await startHaproxy(socketPath, workDir, log)
  const haproxy = new HttpClient({ host: '127.0.0.1', port: haproxyProcess.port })
  const berthStarted = performance.now()
  berthProcess = await startBerth(root, { BERTH_DOCKER_SOCKET: socketPath, BERTH_TOKENS: `bench:admin:${token}` }, berthLog)
  const pid = berthProcess.child.pid as number
  const berth = new HttpClient({ host: '127.0.0.1', port: berthProcess.port }, bearer)
  const metrics = async (): Promise<string> => (await berth.expect(200, 'GET', '/metrics')).body
  // Ready: the engine answers and berth's copy of it is current.
  await until(async () => (await berth.request('GET', '/readyz')).status === 200, 60_000)
  const readyMs = round(performance.now() - berthStarted, 0)
  await sleep(Math.max(0, IDLE_AFTER_S * 1000 - (performance.now() - berthStarted)))
  const idle = await memoryDetail(pid, metrics)
  log(`berth on 127.0.0.1:${berthProcess.port} (pid ${pid}), ready after ${readyMs} ms; ${idle.rssMb} MiB resident ${IDLE_AFTER_S} s after start; HAProxy ${haproxyProcess.version} on ${haproxyProcess.port}`)

  // The same answer or the comparison means nothing: berth must list what the engine lists.
  const listed = JSON.parse((await berth.expect(200, 'GET', `/v1/containers?all=true&label=${encodeURIComponent(labelFilter)}`)).body) as unknown[]
  if (listed.length !== CONTAINERS) throw new Error(`berth lists ${listed.length} of the ${CONTAINERS} fixtures`)

  const filter = encodeURIComponent(JSON.stringify({ label: [labelFilter] }))
  const label = encodeURIComponent(labelFilter)
  const inspected = `${prefix}-c0`
  const reads: Read[] = [
    { name: 'ps', what: `list running containers (${RUNNING} match)`, path: `${api}/containers/json?filters=${filter}`, berth: `/v1/containers?label=${label}`, cli: ['ps', '--filter', `label=${labelFilter}`], load: true },
    { name: 'ps -a', what: `list all containers (${CONTAINERS} match)`, path: `${api}/containers/json?all=1&filters=${filter}`, berth: `/v1/containers?all=true&label=${label}`, cli: ['ps', '-a', '--filter', `label=${labelFilter}`], load: false },
    { name: 'inspect', what: 'inspect one container by name', path: `${api}/containers/${inspected}/json`, berth: `/v1/containers/${inspected}`, cli: ['inspect', inspected], load: true },
    { name: 'images', what: 'list images, with how many containers use each', path: `${api}/images/json`, berth: '/v1/images', cli: ['images'], load: false }
  ]

  let sampling = false
  let peak: Memory = memoryOf(pid)
  const sampler = setInterval(() => {
    if (!sampling) return
    const now = memoryOf(pid)
    if (now.rssMb > peak.rssMb) peak = now
  }, 50)
  const results: ReadResult[] = []
  for (const read of reads) {
    log(`${read.name}: latency, one request at a time`)
    const latency = await interleavedLatency({
      engine: () => engine.expect(200, 'GET', read.path),
      haproxy: () => haproxy.expect(200, 'GET', read.path),
      berth: () => berth.expect(200, 'GET', read.berth)
    }, ITERATIONS, Math.ceil(ITERATIONS / 10), 60_000)
    log(`${read.name}: docker CLI`)
    const cli = (await interleavedLatency({ cli: () => dockerCli(socketPath, read.cli) }, 15, 1, 20_000)).cli as Percentiles
    let load: ReadResult['load'] = null
    if (read.load) {
      log(`${read.name}: ${CONNECTIONS} connections for ${LOAD_SECONDS} s each (autocannon)`)
      const slice = { connections: CONNECTIONS, seconds: Math.max(1, Math.round(LOAD_SECONDS / 2)) }
      const loads = await alternatingLoads({
        engine: () => cannon({ socketPath }, read.path, slice),
        haproxy: () => cannon({ port: (haproxyProcess as Proxy).port }, read.path, slice),
        berth: () => cannon({ port: (berthProcess as BerthProcess).port }, read.berth, { ...slice, headers: bearer })
      }, 2, (name, phase) => { if (name === 'berth') sampling = phase === 'start' })
      const failed = Object.entries(loads).filter(([, result]) => result.errors > 0 || result.non2xx > 0)
      if (failed.length > 0) throw new Error(`errors under load: ${JSON.stringify(Object.fromEntries(failed))}`)
      load = { engine: loads.engine as Load, haproxy: loads.haproxy as Load, berth: loads.berth as Load, rpsVsHaproxy: round((loads.berth as Load).rps / (loads.haproxy as Load).rps, 2) }
    }
    const { engine: e, haproxy: h, berth: b } = latency as Record<'engine' | 'haproxy' | 'berth', Percentiles>
    results.push({ name: read.name, what: read.what, latencyMs: { engine: e, haproxy: h, berth: b, cli }, ratio: { p50VsHaproxy: round(b.p50 / h.p50, 2), p50VsEngine: round(b.p50 / e.p50, 2) }, load })
  }
  clearInterval(sampler)
  await sleep(2000)
  const afterLoad = await memoryDetail(pid, metrics)

  log('run-stop-rm: one cycle at a time')
  let cycles = 0
  const cycle = await interleavedLatency({
    engine: async () => {
      const created = await engine.expect(201, 'POST', `${api}/containers/create?name=${prefix}-e${cycles++}`, { Image: image, Cmd: ['sleep', '3600'], Labels: { [LABEL]: prefix } })
      const { Id: id } = JSON.parse(created.body) as { Id: string }
      await engine.expect(204, 'POST', `${api}/containers/${id}/start`)
      await engine.expect(204, 'POST', `${api}/containers/${id}/stop?t=0`)
      await engine.expect(204, 'DELETE', `${api}/containers/${id}`)
    },
    berth: async () => {
      const run = await berth.expect(201, 'POST', '/v1/containers', { image, name: `${prefix}-b${cycles++}`, command: ['sleep', '3600'], labels: { [LABEL]: prefix } })
      const { id } = JSON.parse(run.body) as { id: string }
      await berth.expect(200, 'POST', `/v1/containers/${id}/stop?timeout=0`)
      await berth.expect(204, 'DELETE', `/v1/containers/${id}`)
    }
  }, 10, 1, 120_000) as Record<'engine' | 'berth', Percentiles>

  await sleep(IDLE_AFTER_S * 1000)
  const settled = await memoryDetail(pid, metrics)
  const errors = readFileSync(berthLog, 'utf8').split('\n').filter(line => /"level":(5|6)\d/.test(line)).length
  const loadAverageAtEnd = os.loadavg().map(value => round(value, 2))
  const met = {
    p50: results.every(result => result.ratio.p50VsHaproxy <= TARGETS.p50VsHaproxy),
    rps: results.every(result => result.load === null || result.load.rpsVsHaproxy >= TARGETS.rpsVsHaproxy),
    idleMemory: idle.rssMb < TARGETS.idleMb,
    afterLoadMemory: afterLoad.rssMb < TARGETS.afterLoadMb && settled.rssMb < TARGETS.afterLoadMb
  }
  const report = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: round(os.totalmem() / 1024 ** 3, 1),
      os: `${os.type()} ${os.release()}`,
      loadAverageAtStart,
      loadAverageAtEnd,
      node: process.version,
      engine: version.Version,
      engineApi: version.ApiVersion,
      haproxy: haproxyProcess.version,
      dockerCli: cliVersion
    },
    setup: {
      containers: CONTAINERS,
      running: RUNNING,
      berth: `dist/server.js as the image starts it (deploy/docker/entrypoint.sh's node ${imageNodeOptions(root).join(' ')}${Object.entries(imageEnvironment(root)).map(([name, value]) => ` and ${name}=${value}`).join('')}) on 127.0.0.1, logging at info to a file, one admin token, rate limit raised`,
      engine: `the engine's HTTP API on ${socketPath}, keep-alive, ${api.slice(1)}`,
      haproxy: `Debian's haproxy ${haproxyProcess.version} in HTTP mode on 127.0.0.1, keep-alive on both sides (http-reuse always), every request passed to ${socketPath}`,
      latency: `${ITERATIONS} requests one at a time, engine, HAProxy and berth interleaved request by request`,
      load: `autocannon, ${CONNECTIONS} connections, ${LOAD_SECONDS} s per target in two alternating slices`,
      cli: `docker ${cliVersion} against the same socket, one process per command`
    },
    readyMs,
    reads: results,
    runStopRm: { engine: cycle.engine, berth: cycle.berth, ratio: round(cycle.berth.p50 / cycle.engine.p50, 2) },
    memory: { idle, peakUnderLoad: peak, afterLoad, settled },
    berthErrorLogLines: errors,
    targets: { ...TARGETS, met },
    seconds: round((performance.now() - started) / 1000, 1)
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  writeFileSync(join(root, 'bench/results/latest.json'), json)
  // A dated copy for comparing runs on one machine; git ignores these.
  writeFileSync(join(root, `bench/results/${report.date.replace(/[:.]/g, '-')}.json`), json)
  console.log(formatTable(`p50 latency in ms, one request at a time; rps at ${CONNECTIONS} connections (autocannon); load average ${loadAverageAtStart.join(' ')} at the start, ${loadAverageAtEnd.join(' ')} at the end`,
    ['operation', 'engine', 'HAProxy', 'berth', 'berth ÷ HAProxy', 'berth ÷ engine', 'rps engine', 'rps HAProxy', 'rps berth', 'rps berth ÷ HAProxy', 'docker CLI'],
    results.map(r => [r.name, ms(r.latencyMs.engine.p50), ms(r.latencyMs.haproxy.p50), ms(r.latencyMs.berth.p50), r.ratio.p50VsHaproxy.toFixed(2), r.ratio.p50VsEngine.toFixed(2),
      r.load?.engine.rps.toFixed(0) ?? '-', r.load?.haproxy.rps.toFixed(0) ?? '-', r.load?.berth.rps.toFixed(0) ?? '-', r.load?.rpsVsHaproxy.toFixed(2) ?? '-', ms(r.latencyMs.cli.p50)])))
  console.log(`run → stop → rm: engine ${ms(cycle.engine.p50)} ms, berth ${ms(cycle.berth.p50)} ms (${report.runStopRm.ratio}×)`)
  console.log(`berth memory: ${describe('idle', idle)}; under load at most ${peak.rssMb} MiB; ${describe('after the load', afterLoad)}; ${describe(`${IDLE_AFTER_S} s later`, settled)}; ${errors} error lines in its log`)
  console.log(`targets: p50 ≤ HAProxy's: ${yes(met.p50)}; rps ≥ HAProxy's: ${yes(met.rps)}; idle < ${TARGETS.idleMb} MiB: ${yes(met.idleMemory)}; after load < ${TARGETS.afterLoadMb} MiB: ${yes(met.afterLoadMemory)}`)
  console.log(`wrote bench/results/latest.json after ${report.seconds} s`)
}

function describe (what: string, memory: MemoryDetail): string {
  const heap = Object.entries(memory.heap).map(([space, mb]) => `${space.replace(/_space$/, '')} ${mb}`).join(', ')
  return `${what} ${memory.rssMb} MiB (node's binary and libraries ${memory.fileMb}, V8 heap ${heap}, native ${memory.nativeMb})`
}

async function until (done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await done().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('berth was not ready in time')
    await sleep(100)
  }
}

function yes (met: boolean): string {
  return met ? 'met' : 'NOT met'
}

/** Removes everything the bench made, whatever state the run ended in. */
async function cleanup (): Promise<void> {
  await berthProcess?.stop()
  await haproxyProcess?.stop()
  const mine = new Set<string>()
  for (const filters of [{ label: [labelFilter] }, { name: [prefix] }]) {
    const reply = await engine.request('GET', `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify(filters))}`)
    if (reply.status !== 200) continue
    for (const { Id, Names } of JSON.parse(reply.body) as Array<{ Id: string, Names: string[] }>) {
      // The name filter matches substrings: remove only what carries the bench's own prefix.
      if (Names.some(name => name.startsWith(`/${prefix}-`))) mine.add(Id)
    }
  }
  await inBatches([...mine], 8, id => engine.request('DELETE', `/containers/${id}?force=1&v=1`))
  engine.close()
  if (process.exitCode) log(`berth's log ends:\n${readFileSync(berthLog, 'utf8').slice(-3000)}`)
  rmSync(workDir, { recursive: true, force: true })
}
