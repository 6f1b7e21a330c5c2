// The bench's instruments: one keep-alive HTTP client for the engine's socket and for berth, the
// Docker CLI, latency and throughput loops, percentiles, and a process's resident memory.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'

export interface Reply {
  status: number
  body: string
}

/**
 * One HTTP endpoint, spoken to the way a careful client would: keep-alive connections, the whole
 * body read. The engine and berth get the same client, so the difference is theirs, not the client's.
 */
export class HttpClient {
  readonly #agent: http.Agent
  readonly #where: { socketPath: string } | { host: string, port: number }
  readonly #headers: Record<string, string>
  readonly #tls: boolean

  /** With `tls`, HTTPS with those certificates (an apiserver's, from a kubeconfig). */
  constructor (where: { socketPath: string } | { host: string, port: number }, headers: Record<string, string> = {}, tls?: https.AgentOptions) {
    this.#where = where
    this.#headers = headers
    this.#tls = tls !== undefined
    this.#agent = tls === undefined ? new http.Agent({ keepAlive: true, maxSockets: 64 }) : new https.Agent({ ...tls, keepAlive: true, maxSockets: 64 })
  }

  async request (method: string, path: string, body?: unknown): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return await new Promise((resolve, reject) => {
      const request = (this.#tls ? https : http).request({
        ...this.#where,
        agent: this.#agent,
        method,
        path,
        headers: { ...this.#headers, ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }) }
      }, response => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
        response.on('error', reject)
      })
      request.on('error', reject)
      request.end(payload)
    })
  }

  /** Fails the bench on any other status: a fast error is not a measurement. */
  async expect (status: number, method: string, path: string, body?: unknown): Promise<Reply> {
    const reply = await this.request(method, path, body)
    if (reply.status !== status) throw new Error(`${method} ${path} answered ${reply.status}, not ${status}: ${reply.body.slice(0, 300)}`)
    return reply
  }

  close (): void {
    this.#agent.destroy()
  }
}

/** Runs the Docker CLI against the same engine, as a user's script would. */
export async function dockerCli (socketPath: string, args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile('docker', args, { env: { ...process.env, DOCKER_HOST: `unix://${socketPath}` }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`docker ${args.join(' ')}: ${stderr || error.message}`))
      else resolve(stdout)
    })
  })
}

export interface Percentiles {
  n: number
  p50: number
  p99: number
  mean: number
}

export function percentiles (samples: number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b)
  // Nearest-rank: the smallest sample at or above the given share of all samples.
  const rank = (share: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(share * sorted.length) - 1))] ?? NaN
  const mean = sorted.reduce((sum, value) => sum + value, 0) / sorted.length
  return { n: sorted.length, p50: round(rank(0.5)), p99: round(rank(0.99)), mean: round(mean) }
}

export function round (value: number, digits = 3): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

async function timed (task: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await task()
  return performance.now() - started
}

/**
 * Serial latency of several targets, interleaved request by request (and in a rotating order), so
 * that whatever else the machine does at that moment weighs on all of them alike.
 */
export async function interleavedLatency (tasks: Record<string, () => Promise<unknown>>, iterations: number, warmup: number, maxMs = Infinity): Promise<Record<string, Percentiles>> {
  const names = Object.keys(tasks)
  const samples: Record<string, number[]> = Object.fromEntries(names.map(name => [name, []]))
  // The time cap keeps a slow engine from stretching the run: fewer samples then, never none.
  const deadline = performance.now() + maxMs
  for (let i = 0; i < warmup + iterations && (i <= warmup || performance.now() < deadline); i++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(i + k) % names.length] as string
      const elapsed = await timed(tasks[name] as () => Promise<unknown>)
      if (i >= warmup) samples[name]?.push(elapsed)
    }
  }
  return Object.fromEntries(names.map(name => [name, percentiles(samples[name] ?? [])]))
}

export interface Throughput {
  concurrency: number
  requests: number
  seconds: number
  rps: number
  latency: Percentiles
}

/** `concurrency` workers, each starting its next request as soon as the last one answered, for about `ms`. */
export async function throughput (task: () => Promise<unknown>, concurrency: number, ms: number): Promise<{ requests: number, seconds: number, samples: number[] }> {
  const samples: number[] = []
  const started = performance.now()
  const deadline = started + ms
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) samples.push(await timed(task))
  }))
  // Until the last worker finished its last request: a slow operation overshoots the deadline, and that counts.
  return { requests: samples.length, seconds: (performance.now() - started) / 1000, samples }
}

/**
 * Throughput of several targets in alternating slices (A B A B), so a change in the background load
 * during the run does not favour whichever target went first.
 */
export async function alternatingThroughput (tasks: Record<string, () => Promise<unknown>>, concurrency: number, msEach: number, slices = 2, onSlice?: (name: string, phase: 'start' | 'end') => void): Promise<Record<string, Throughput>> {
  const totals: Record<string, { requests: number, seconds: number, samples: number[] }> = {}
  for (let slice = 0; slice < slices; slice++) {
    for (const [name, task] of Object.entries(tasks)) {
      onSlice?.(name, 'start')
      const result = await throughput(task, concurrency, msEach / slices)
      onSlice?.(name, 'end')
      const total = totals[name] ??= { requests: 0, seconds: 0, samples: [] }
      total.requests += result.requests
      total.seconds += result.seconds
      total.samples.push(...result.samples)
    }
  }
  return Object.fromEntries(Object.entries(totals).map(([name, total]) => [name, {
    concurrency,
    requests: total.requests,
    seconds: round(total.seconds),
    rps: round(total.requests / total.seconds, 1),
    latency: percentiles(total.samples)
  }]))
}

export interface Memory {
  /** The resident set, as ps shows it and the targets count it. */
  rssMb: number
  /** Its peak so far (VmHWM). */
  peakMb: number
  /** Its anonymous, private part; the rest is Node's binary and libraries, shared and reclaimable. */
  anonymousMb: number
}

/** A process's resident memory, in MiB, from /proc (Linux). */
export function memoryOf (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMb: round(kb('VmRSS') / 1024, 1), peakMb: round(kb('VmHWM') / 1024, 1), anonymousMb: round(kb('RssAnon') / 1024, 1) }
}

/** Polls a condition (no fixed sleeps standing in for it); fails naming it at the deadline. */
export async function until (what: string, done: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

export async function inBatches<T> (items: T[], size: number, task: (item: T) => Promise<unknown>): Promise<void> {
  const queue = [...items]
  await Promise.all(Array.from({ length: size }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await task(item)
  }))
}

export interface BerthProcess {
  child: ChildProcess
  port: number
  /** SIGTERM, and resolves once it has exited. */
  stop: () => Promise<void>
}

/**
 * The options the image starts node with (deploy/docker/entrypoint.sh's `set -- node … /app/dist/server.js`),
 * so that a bench measures berth as it runs in production.
 */
export function imageNodeOptions (root: string): string[] {
  const line = /^\s*set -- node (.*) \/app\/dist\/server\.js/m.exec(readFileSync(join(root, 'deploy/docker/entrypoint.sh'), 'utf8'))
  if (line === null) throw new Error('deploy/docker/entrypoint.sh no longer starts node on /app/dist/server.js: update bench/measure.ts')
  return (line[1] as string).split(/\s+/).filter(Boolean)
}

/** The variables the entrypoint gives node by default (its `export NAME="${NAME:-value}"` lines), such as MALLOC_ARENA_MAX. */
export function imageEnvironment (root: string): Record<string, string> {
  const text = readFileSync(join(root, 'deploy/docker/entrypoint.sh'), 'utf8')
  return Object.fromEntries([...text.matchAll(/^export ([A-Z_]+)="\$\{\1:-([^}]*)\}"$/gm)].map(match => [match[1] as string, match[2] as string]))
}

/** Starts dist/server.js as the image does, on a free loopback port with these variables (and PATH), logging to `logFile`. */
export async function startBerth (root: string, env: Record<string, string>, logFile: string): Promise<BerthProcess> {
  const script = `${root}dist/server.js`
  if (!existsSync(script)) throw new Error('dist/server.js is missing: run "npm run bench" (it builds first) or "npm run build"')
  const out = openSync(logFile, 'a')
  const child = spawn(process.execPath, [...imageNodeOptions(root), script], {
    cwd: root,
    stdio: ['ignore', out, out],
    env: { PATH: process.env.PATH ?? '', ...imageEnvironment(root), BERTH_HOST: '127.0.0.1', BERTH_PORT: '0', BERTH_RATE_LIMIT: '1000000', BERTH_LOG_LEVEL: 'info', ...env }
  })
  closeSync(out)
  let port = 0
  await until('berth to listen', () => {
    if (child.exitCode !== null) throw new Error(`berth exited with ${child.exitCode}: ${readFileSync(logFile, 'utf8').slice(-2000)}`)
    port = Number(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(logFile, 'utf8'))?.[1] ?? 0)
    return port > 0
  }, 20_000)
  return {
    child,
    port,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/** A plain-text table: the first column left-aligned, the others right-aligned, under a title. */
export function formatTable (title: string, header: string[], rows: string[][]): string {
  const widths = header.map((heading, i) => Math.max(heading.length, ...rows.map(row => String(row[i]).length)))
  const line = (cells: string[]) => cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ')
  return ['', title, '', line(header), ...rows.map(line), ''].join('\n')
}

/** Milliseconds as a table shows them: two decimals below 10. */
export function ms (value: number): string {
  return value < 10 ? value.toFixed(2) : value.toFixed(0)
}

/** A bench's progress line on stderr: `[bench:NAME] …`. */
export function benchLog (name: string): (message: string) => void {
  return message => { process.stderr.write(`[bench:${name}] ${message}\n`) }
}

/** Runs a bench's main: a failure is exit status 1 with its stack; past the budget (and a minute) it is stopped. */
export async function runBench (log: (message: string) => void, budgetMs: number, main: () => Promise<void>): Promise<void> {
  const watchdog = setTimeout(() => { log('ran past its budget'); process.exit(1) }, budgetMs + 60_000)
  try {
    await main()
  } catch (error) {
    process.exitCode = 1
    log(`failed: ${(error as Error).stack ?? String(error)}`)
  } finally {
    clearTimeout(watchdog)
  }
}

/** A TCP port on loopback that nobody listens on right now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

export interface Proxy {
  port: number
  version: string
  stop: () => Promise<void>
}

/**
 * HAProxy in front of the engine's socket, as the usual Docker socket proxies run it (it checks nothing):
 * HTTP mode, keep-alive on both sides, every request passed through. Debian's haproxy package is
 * installed when it is missing, as scripts/test-env.sh installs what the tests need.
 */
export async function startHaproxy (socketPath: string, dir: string, log: (message: string) => void): Promise<Proxy> {
  if (!existsSync('/usr/sbin/haproxy')) {
    log('installing Debian\'s haproxy')
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' })
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'haproxy'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  }
  const version = /HAProxy version (\S+)/.exec(execFileSync('/usr/sbin/haproxy', ['-v'], { encoding: 'utf8' }))?.[1] ?? 'unknown'
  const port = await freePort()
  const config = join(dir, 'haproxy.cfg')
  writeFileSync(config, [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend engine',
    `  bind 127.0.0.1:${port}`,
    '  default_backend engine',
    'backend engine',
    '  http-reuse always',
    `  server engine ${socketPath}`,
    ''
  ].join('\n'))
  const child = spawn('/usr/sbin/haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await until('haproxy to listen', async () => {
    if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}: ${output}`)
    return await new Promise<boolean>(resolve => {
      const request = http.get({ host: '127.0.0.1', port, path: '/_ping' }, response => { response.resume(); resolve(response.statusCode === 200) })
      request.on('error', () => resolve(false))
    })
  }, 20_000)
  return {
    port,
    version,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

export interface Load {
  rps: number
  requests: number
  p50: number
  p99: number
  errors: number
  non2xx: number
}

/** autocannon: `connections` keep-alive connections sending GET `path` for `seconds`, to a TCP port or a unix socket. */
export async function cannon (target: { port: number } | { socketPath: string }, path: string, options: { connections: number, seconds: number, headers?: Record<string, string> }): Promise<Load> {
  const result = await autocannon({
    url: 'port' in target ? `http://127.0.0.1:${target.port}${path}` : `http://localhost${path}`,
    ...('socketPath' in target ? { socketPath: target.socketPath } : {}),
    connections: options.connections,
    duration: options.seconds,
    headers: options.headers ?? {}
  })
  return { rps: round(result.requests.average, 1), requests: result.requests.total, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx }
}

/** Several targets' loads in alternating slices (A B C A B C), so a change in the background load favours none. */
export async function alternatingLoads (targets: Record<string, () => Promise<Load>>, slices: number, onSlice?: (name: string, phase: 'start' | 'end') => void): Promise<Record<string, Load>> {
  const totals: Record<string, Load[]> = {}
  for (let slice = 0; slice < slices; slice++) {
    for (const [name, load] of Object.entries(targets)) {
      onSlice?.(name, 'start')
      ;(totals[name] ??= []).push(await load())
      onSlice?.(name, 'end')
    }
  }
  return Object.fromEntries(Object.entries(totals).map(([name, loads]) => {
    const requests = loads.reduce((sum, load) => sum + load.requests, 0)
    return [name, {
      rps: round(loads.reduce((sum, load) => sum + load.rps, 0) / loads.length, 1),
      requests,
      // The median of the slices' medians: autocannon keeps no samples to pool.
      p50: [...loads.map(load => load.p50)].sort((a, b) => a - b)[Math.floor(loads.length / 2)] as number,
      p99: Math.max(...loads.map(load => load.p99)),
      errors: loads.reduce((sum, load) => sum + load.errors, 0),
      non2xx: loads.reduce((sum, load) => sum + load.non2xx, 0)
    }]
  }))
}

export interface MemoryDetail extends Memory {
  /** File-backed resident pages: node's binary and libraries, shared and reclaimable. */
  fileMb: number
  /** V8's heap by space (used MiB), external memory and array buffers, from berth's own /metrics. */
  heap: Record<string, number>
  externalMb: number
  /** Anonymous memory that is not V8's heap: malloc (V8's compiler zones, Node, libuv, OpenSSL), thread stacks. */
  nativeMb: number
}

/** A process's memory, its resident set split into what holds it: the binary, V8's heap spaces, and native allocations. */
export async function memoryDetail (pid: number, metrics: () => Promise<string>): Promise<MemoryDetail> {
  const memory = memoryOf(pid)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const fileMb = round(Number(/^RssFile:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024, 1)
  const text = await metrics()
  const heap: Record<string, number> = {}
  let heapTotal = 0
  for (const match of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="([a-z_]+)"\} (\d+)/gm)) {
    const mb = round(Number(match[2]) / 1048576, 1)
    if (mb > 0) heap[match[1] as string] = mb
    heapTotal += Number(match[2])
  }
  const external = Number(/^nodejs_external_memory_bytes (\d+)/m.exec(text)?.[1] ?? 0)
  return { ...memory, fileMb, heap, externalMb: round(external / 1048576, 1), nativeMb: round(memory.anonymousMb - heapTotal / 1048576, 1) }
}

/** Whether an HTTP server answers 2xx on this port of any of these addresses (a published port of a cluster's nodes). */
export async function answersOn (addresses: string[], port: number): Promise<boolean> {
  for (const address of addresses) {
    try {
      const response = await fetch(`http://${address}:${port}/`, { signal: AbortSignal.timeout(500) })
      if (response.ok) return true
    } catch {}
  }
  return false
}
