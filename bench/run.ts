// `npm run bench`: the same operations through berth, straight against the engine's own API and
// through the Docker CLI, in one run on one engine; writes a table and bench/results/latest.json.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MAX_API, compareVersions } from '../src/engine/docker/transport.ts'
import {
  HttpClient, alternatingThroughput, dockerCli, interleavedLatency, memoryOf, round, type Memory, type Percentiles, type Throughput
} from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const socketPath = process.env.BERTH_BENCH_SOCKET ?? process.env.BERTH_TEST_SOCKET ?? '/var/run/docker.sock'
const image = process.env.BERTH_BENCH_IMAGE ?? 'berth-test/busybox:1'
const CONTAINERS = Number(process.env.BERTH_BENCH_CONTAINERS ?? 50)
const RUNNING = Math.round(CONTAINERS * 0.8)
const CONCURRENCY = Number(process.env.BERTH_BENCH_CONCURRENCY ?? 8)
/** Seconds of concurrent load per target and read operation; the whole run scales with it. */
const SECONDS = Number(process.env.BERTH_BENCH_SECONDS ?? 3)
/** Past this the bench stops measuring, cleans up and fails: it must never run away. */
const BUDGET_MS = 240_000

// The targets berth is held to; the bench reports against them, it does not enforce them.
const TARGETS = { p50Ratio: 1.3, idleMb: 100, loadMb: 200 }

const prefix = `berthbench-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const LABEL = 'berth.bench.run'
const labelFilter = `${LABEL}=${prefix}`
const token = randomBytes(24).toString('hex')
const engine = new HttpClient({ socketPath })
let berthProcess: ChildProcess | null = null
let berth: HttpClient | null = null
let passthroughProcess: ChildProcess | null = null
let passthrough: HttpClient | null = null
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-'))
const berthLog = join(workDir, 'berth.log')

interface Operation {
  name: string
  what: string
  /** Engine API calls per operation: berth's / the direct client's. */
  engineCalls: string
  latency: { iterations: number, maxMs: number }
  cli: { iterations: number, maxMs: number } | null
  seconds: number
  engine: () => Promise<unknown>
  berth: () => Promise<unknown>
  /** The same engine request through bench/passthrough.ts: what any HTTP hop costs here. */
  passthrough?: () => Promise<unknown>
  viaCli?: () => Promise<unknown>
}

interface Result {
  name: string
  what: string
  engineCalls: string
  latencyMs: { engine: Percentiles, berth: Percentiles, passthrough: Percentiles | null, cli: Percentiles | null }
  throughput: { engine: Throughput, berth: Throughput, cli: Throughput | null }
  /** berth ÷ engine; addedMs is berth's p50 minus the engine's. */
  ratio: { p50: number, p99: number, rps: number, addedMs: number }
  /** bench/passthrough.ts ÷ engine at p50: the least a hop in front of the engine costs on this machine. */
  passthroughRatio: number | null
}

async function main (): Promise<void> {
  const started = performance.now()
  // Others' work on the machine skews every number: the load average says how much there was.
  const loadAverage = os.loadavg().map(value => round(value, 2))
  const version = JSON.parse((await engine.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  // The version berth negotiates (the engine's own, up to the newest berth knows); the direct calls use the same.
  const api = `/v${compareVersions(version.ApiVersion, MAX_API) < 0 ? version.ApiVersion : MAX_API}`
  const found = await engine.request('GET', `${api}/images/${encodeURIComponent(image)}/json`)
  if (found.status !== 200) throw new Error(`image ${image} is not on the engine: run "bash scripts/test-env.sh up" first, or set BERTH_BENCH_IMAGE`)
  const cliVersion = (await dockerCli(socketPath, ['version', '--format', '{{.Client.Version}}'])).trim()

  log(`engine ${version.Version} (API ${version.ApiVersion}) on ${socketPath}; ${CONTAINERS} containers named ${prefix}-*`)
  await fixtures(api)
  const { pid, port, command } = await startBerth()
  berth = new HttpClient({ host: '127.0.0.1', port }, { authorization: `Bearer ${token}` })
  passthrough = new HttpClient({ host: '127.0.0.1', port: await startPassthrough() })
  await berth.expect(200, 'GET', '/readyz')
  await sleep(2000)
  const idle = memoryOf(pid)
  log(`berth (${command.join(' ')}) on 127.0.0.1:${port}, pid ${pid}: ${idle.rssMb} MiB resident when idle`)

  // Memory under load: sampled while berth serves the concurrent slices.
  let underLoad = false
  const loadPeak: Memory = { rssMb: 0, peakMb: 0, anonymousMb: 0 }
  const sampler = setInterval(() => {
    if (!underLoad) return
    const now = memoryOf(pid)
    loadPeak.rssMb = Math.max(loadPeak.rssMb, now.rssMb)
    loadPeak.anonymousMb = Math.max(loadPeak.anonymousMb, now.anonymousMb)
    loadPeak.peakMb = now.peakMb
  }, 50)
  const onSlice = (name: string, phase: 'start' | 'end') => { if (name === 'berth') underLoad = phase === 'start' }

  // The same answer or the comparison means nothing: berth must list what the engine lists.
  const listed = JSON.parse((await berth.expect(200, 'GET', `/v1/containers?all=true&label=${encodeURIComponent(labelFilter)}`)).body) as unknown[]
  if (listed.length !== CONTAINERS) throw new Error(`berth lists ${listed.length} of the ${CONTAINERS} fixtures`)

  const results: Result[] = []
  for (const operation of operations(api, berth)) {
    if (performance.now() - started > BUDGET_MS) throw new Error(`the bench ran past its budget of ${BUDGET_MS / 1000} s`)
    log(`${operation.name}: latency, one at a time`)
    const latency = await interleavedLatency({ engine: operation.engine, berth: operation.berth, ...(operation.passthrough ? { passthrough: operation.passthrough } : {}) }, operation.latency.iterations,
      Math.ceil(operation.latency.iterations / 10), operation.latency.maxMs)
    log(`${operation.name}: throughput at concurrency ${CONCURRENCY}`)
    const load = await alternatingThroughput({ engine: operation.engine, berth: operation.berth }, CONCURRENCY, operation.seconds * 1000, 2, onSlice)
    let cliLatency: Percentiles | null = null
    let cliLoad: Throughput | null = null
    if (operation.cli !== null && operation.viaCli !== undefined) {
      log(`${operation.name}: docker CLI`)
      cliLatency = (await interleavedLatency({ cli: operation.viaCli }, operation.cli.iterations, 1, operation.cli.maxMs)).cli as Percentiles
      cliLoad = (await alternatingThroughput({ cli: operation.viaCli }, CONCURRENCY, Math.min(operation.seconds, 2) * 1000, 1)).cli as Throughput
    }
    const engineLatency = latency.engine as Percentiles
    const berthLatency = latency.berth as Percentiles
    const passthroughLatency = latency.passthrough ?? null
    const engineLoad = load.engine as Throughput
    const berthLoad = load.berth as Throughput
    results.push({
      name: operation.name,
      what: operation.what,
      engineCalls: operation.engineCalls,
      latencyMs: { engine: engineLatency, berth: berthLatency, passthrough: passthroughLatency, cli: cliLatency },
      throughput: { engine: engineLoad, berth: berthLoad, cli: cliLoad },
      ratio: {
        p50: round(berthLatency.p50 / engineLatency.p50, 2),
        p99: round(berthLatency.p99 / engineLatency.p99, 2),
        rps: round(berthLoad.rps / engineLoad.rps, 2),
        addedMs: round(berthLatency.p50 - engineLatency.p50, 2)
      },
      passthroughRatio: passthroughLatency === null ? null : round(passthroughLatency.p50 / engineLatency.p50, 2)
    })
  }
  clearInterval(sampler)
  await sleep(2000)
  const after = memoryOf(pid)
  const errors = readFileSync(berthLog, 'utf8').split('\n').filter(line => /"level":(5|6)\d/.test(line)).length

  const memory = { idle, underLoad: loadPeak, afterLoad: after }
  const readOps = results.filter(result => ['ps', 'ps -a', 'inspect'].includes(result.name))
  const report = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: round(os.totalmem() / 1024 ** 3, 1),
      os: `${os.type()} ${os.release()}`,
      loadAverageAtStart: loadAverage,
      node: process.version,
      engine: version.Version,
      engineApi: version.ApiVersion,
      dockerCli: cliVersion
    },
    setup: {
      containers: CONTAINERS,
      running: RUNNING,
      concurrency: CONCURRENCY,
      berth: `\`${command.join(' ')}\` (as the image runs it) on 127.0.0.1, logging at info to a file, one admin token, rate limit raised`,
      engine: `the engine's HTTP API on ${socketPath}, keep-alive, ${api.slice(1)}`,
      cli: `docker ${cliVersion} against the same socket, one process per command`,
      passthrough: 'bench/passthrough.ts: node:http in front of the same socket, keep-alive, JSON parsed and written again, nothing else',
      latency: 'one request at a time, engine, berth and the pass-through interleaved request by request',
      throughput: `${CONCURRENCY} requests in flight, engine and berth in alternating slices`
    },
    operations: results,
    memory,
    berthErrorLogLines: errors,
    targets: {
      ...TARGETS,
      met: {
        listAndInspectP50: readOps.every(result => result.ratio.p50 <= TARGETS.p50Ratio),
        idleMemory: idle.rssMb < TARGETS.idleMb,
        loadMemory: Math.max(loadPeak.rssMb, after.peakMb) < TARGETS.loadMb
      }
    },
    seconds: round((performance.now() - started) / 1000, 1)
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  writeFileSync(join(root, 'bench/results/latest.json'), json)
  // A dated copy for comparing runs on one machine; git ignores these.
  writeFileSync(join(root, `bench/results/${report.date.replace(/[:.]/g, '-')}.json`), json)
  console.log(table(report.machine, results, memory, errors))
  console.log(`targets: list and inspect p50 ≤ ${TARGETS.p50Ratio}× the engine's: ${yes(report.targets.met.listAndInspectP50)}; ` +
    `idle < ${TARGETS.idleMb} MiB: ${yes(report.targets.met.idleMemory)}; under load < ${TARGETS.loadMb} MiB: ${yes(report.targets.met.loadMemory)}`)
  console.log(`wrote bench/results/latest.json after ${report.seconds} s`)
}

/** One GET, straight to the engine and through the pass-through. */
function direct (path: string): Pick<Operation, 'engine' | 'passthrough'> {
  return {
    engine: () => engine.expect(200, 'GET', path),
    passthrough: async () => {
      if (passthrough === null) throw new Error('the pass-through is not running')
      return await passthrough.expect(200, 'GET', path)
    }
  }
}

function operations (api: string, client: HttpClient): Operation[] {
  const filter = encodeURIComponent(JSON.stringify({ label: [labelFilter] }))
  const label = encodeURIComponent(labelFilter)
  const inspected = `${prefix}-c0`
  let cycles = 0
  const reads = { latency: { iterations: 400, maxMs: 5000 }, cli: { iterations: 15, maxMs: 5000 }, seconds: SECONDS }
  return [
    {
      name: 'ping',
      what: 'berth /healthz against the engine\'s /_ping: the cost of one more HTTP hop',
      engineCalls: '0 / 1',
      ...reads,
      cli: null,
      ...direct('/_ping'),
      berth: () => client.expect(200, 'GET', '/healthz')
    },
    {
      name: 'ps',
      what: `list running containers (${RUNNING} match)`,
      engineCalls: '1 / 1',
      ...reads,
      ...direct(`${api}/containers/json?filters=${filter}`),
      berth: () => client.expect(200, 'GET', `/v1/containers?label=${label}`),
      viaCli: () => dockerCli(socketPath, ['ps', '--filter', `label=${labelFilter}`])
    },
    {
      name: 'ps -a',
      what: `list all containers (${CONTAINERS} match)`,
      engineCalls: '1 / 1',
      ...reads,
      ...direct(`${api}/containers/json?all=1&filters=${filter}`),
      berth: () => client.expect(200, 'GET', `/v1/containers?all=true&label=${label}`),
      viaCli: () => dockerCli(socketPath, ['ps', '-a', '--filter', `label=${labelFilter}`])
    },
    {
      name: 'inspect',
      what: 'inspect one container by name',
      // The image's digests come from a second call, reused for a few seconds (DIGEST_TTL_MS).
      engineCalls: '1+ / 1',
      ...reads,
      ...direct(`${api}/containers/${inspected}/json`),
      berth: () => client.expect(200, 'GET', `/v1/containers/${inspected}`),
      viaCli: () => dockerCli(socketPath, ['inspect', inspected])
    },
    {
      name: 'images',
      what: 'list images (every image on the engine)',
      engineCalls: '1 / 1',
      ...reads,
      ...direct(`${api}/images/json`),
      berth: () => client.expect(200, 'GET', '/v1/images'),
      viaCli: () => dockerCli(socketPath, ['images'])
    },
    {
      name: 'run-stop-rm',
      what: 'docker run -d, stop -t 0, rm: one cycle',
      // berth: create, start, inspect | inspect, stop, inspect | inspect, remove (image digests reused).
      engineCalls: '8 / 4',
      latency: { iterations: 10, maxMs: 20_000 },
      cli: { iterations: 5, maxMs: 15_000 },
      seconds: SECONDS * 2,
      engine: async () => {
        const created = await engine.expect(201, 'POST', `${api}/containers/create?name=${prefix}-e${cycles++}`, { Image: image, Cmd: ['sleep', '3600'], Labels: { [LABEL]: prefix } })
        const { Id: id } = JSON.parse(created.body) as { Id: string }
        await engine.expect(204, 'POST', `${api}/containers/${id}/start`)
        await engine.expect(204, 'POST', `${api}/containers/${id}/stop?t=0`)
        await engine.expect(204, 'DELETE', `${api}/containers/${id}`)
      },
      berth: async () => {
        const run = await client.expect(201, 'POST', '/v1/containers', { image, name: `${prefix}-b${cycles++}`, command: ['sleep', '3600'], labels: { [LABEL]: prefix } })
        const { id } = JSON.parse(run.body) as { id: string }
        await client.expect(200, 'POST', `/v1/containers/${id}/stop?timeout=0`)
        await client.expect(204, 'DELETE', `/v1/containers/${id}`)
      },
      viaCli: async () => {
        const id = (await dockerCli(socketPath, ['run', '-d', '--name', `${prefix}-x${cycles++}`, '--label', labelFilter, image, 'sleep', '3600'])).trim()
        await dockerCli(socketPath, ['stop', '-t', '0', id])
        await dockerCli(socketPath, ['rm', id])
      }
    }
  ]
}

/**
 * berth's ownership labels (deployment "default", the bench's token): berth shows a token only its
 * deployment's containers, so fixtures without them would be listed by the engine and not by berth.
 */
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }

/** CONTAINERS containers of the bench's own, RUNNING of them running, made straight on the engine. */
async function fixtures (api: string): Promise<void> {
  await inBatches(Array.from({ length: CONTAINERS }, (_, i) => i), 8, async i => {
    const created = await engine.expect(201, 'POST', `${api}/containers/create?name=${prefix}-c${i}`, { Image: image, Cmd: ['sleep', '3600'], Labels: { [LABEL]: prefix, ...OWNED } })
    if (i < RUNNING) await engine.expect(204, 'POST', `${api}/containers/${(JSON.parse(created.body) as { Id: string }).Id}/start`)
  })
}

/** berth as its image runs it: the Dockerfile's ENTRYPOINT, on the compiled dist/ that `npm run bench` builds first. */
async function startBerth (): Promise<{ pid: number, port: number, command: string[] }> {
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1]
  const command = entrypoint === undefined ? ['node', 'dist/server.js'] : JSON.parse(entrypoint) as string[]
  if (command[0] !== 'node') throw new Error(`the Dockerfile's ENTRYPOINT ${entrypoint} does not start with node`)
  const script = command.at(-1) as string
  if (!existsSync(join(root, script))) throw new Error(`${script} is missing: run "npm run bench" (it builds first) or "npm run build"`)
  const out = openSync(berthLog, 'a')
  const child = spawn(process.execPath, command.slice(1), {
    cwd: root,
    stdio: ['ignore', out, out],
    env: {
      PATH: process.env.PATH ?? '',
      // To try runtime flags (say --max-semi-space-size=2) without editing the Dockerfile.
      ...(process.env.BERTH_BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BERTH_BENCH_NODE_OPTIONS } : {}),
      BERTH_HOST: '127.0.0.1',
      BERTH_PORT: '0',
      BERTH_DOCKER_SOCKET: socketPath,
      BERTH_TOKENS: `bench:admin:${token}`,
      // The default of 600 a minute guards a token in production; the bench is one token at full speed.
      BERTH_RATE_LIMIT: '1000000',
      BERTH_LOG_LEVEL: 'info'
    }
  })
  closeSync(out)
  berthProcess = child
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`berth exited with ${child.exitCode}`)
    const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(berthLog, 'utf8'))
    if (match) return { pid: child.pid as number, port: Number(match[1]), command: [...command.slice(0, -1), script] }
    await sleep(100)
  }
  throw new Error('berth did not listen within 20 s')
}

/** bench/passthrough.ts in a process of its own, as berth is; answers with its port. */
async function startPassthrough (): Promise<number> {
  const child = spawn(process.execPath, [join(root, 'bench/passthrough.ts'), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] })
  passthroughProcess = child
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the pass-through did not listen within 10 s')), 10_000)
    child.once('exit', code => reject(new Error(`the pass-through exited with ${code}`)))
    child.stdout.on('data', (chunk: Buffer) => {
      const match = /listening on (\d+)/.exec(chunk.toString())
      if (match) { clearTimeout(timer); resolve(Number(match[1])) }
    })
  })
}

/** Removes everything the bench made, whatever state the run ended in. */
async function cleanup (): Promise<void> {
  berth?.close()
  passthrough?.close()
  passthroughProcess?.kill('SIGKILL')
  const child = berthProcess
  if (child !== null && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await exited
    clearTimeout(timer)
  }
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

async function inBatches<T> (items: T[], size: number, task: (item: T) => Promise<unknown>): Promise<void> {
  const queue = [...items]
  await Promise.all(Array.from({ length: size }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await task(item)
  }))
}

function table (machine: Record<string, unknown>, results: Result[], memory: { idle: Memory, underLoad: Memory, afterLoad: Memory }, errors: number): string {
  const ms = (value: number) => value < 10 ? value.toFixed(2) : value.toFixed(0)
  const header = ['operation', 'p50 engine', 'p50 berth', '×', '+ms', 'hop ×', 'p99 engine', 'p99 berth', `rps@${CONCURRENCY} engine`, 'berth', '×', 'CLI p50', 'CLI rps', 'calls b/e']
  const rows = results.map(r => [
    r.name,
    ms(r.latencyMs.engine.p50), ms(r.latencyMs.berth.p50), r.ratio.p50.toFixed(2), r.ratio.addedMs.toFixed(2),
    r.passthroughRatio === null ? '-' : r.passthroughRatio.toFixed(2),
    ms(r.latencyMs.engine.p99), ms(r.latencyMs.berth.p99),
    r.throughput.engine.rps.toFixed(0), r.throughput.berth.rps.toFixed(0), r.ratio.rps.toFixed(2),
    r.latencyMs.cli === null ? '-' : ms(r.latencyMs.cli.p50), r.throughput.cli === null ? '-' : r.throughput.cli.rps.toFixed(1), r.engineCalls
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map(row => String(row[i]).length)))
  const line = (cells: string[]) => cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ')
  const mem = (m: Memory) => `${m.rssMb} MiB (${m.anonymousMb} anonymous)`
  return [
    '',
    `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb} GiB, node ${machine.node}, engine ${machine.engine} (API ${machine.engineApi}), docker CLI ${machine.dockerCli}`,
    'latency in ms, one request at a time; × is berth ÷ engine; +ms is berth\'s p50 minus the engine\'s;',
    'hop × is bench/passthrough.ts ÷ engine: a bare node:http pass-through, the least any API in front of the engine costs here',
    '',
    line(header),
    ...rows.map(line),
    '',
    `berth resident memory: idle ${mem(memory.idle)}, under load at most ${mem(memory.underLoad)}, ` +
      `after ${mem(memory.afterLoad)}, peak ${memory.afterLoad.peakMb} MiB; ${errors} error lines in its log`,
    ''
  ].join('\n')
}

function yes (met: boolean): string {
  return met ? 'met' : 'NOT met'
}

function log (message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

const exit = (code: number) => () => process.exit(code)
const watchdog = setTimeout(() => {
  log(`still running after ${(BUDGET_MS + 60_000) / 1000} s: cleaning up and giving up`)
  process.exitCode = 1
  cleanup().then(exit(1), exit(1))
}, BUDGET_MS + 60_000)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { cleanup().then(exit(130), exit(130)) })
}

try {
  await main()
} catch (error) {
  process.exitCode = 1
  log(`failed: ${(error as Error).stack ?? String(error)}`)
} finally {
  clearTimeout(watchdog)
  await cleanup()
}
