// The bench's instruments: one keep-alive HTTP client for the engine's socket and for berth, the
// Docker CLI, latency and throughput loops, percentiles, and a process's resident memory.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'

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

/** Starts dist/server.js on a free loopback port with these variables (and PATH), logging to `logFile`. */
export async function startBerth (root: string, env: Record<string, string>, logFile: string): Promise<BerthProcess> {
  const script = `${root}dist/server.js`
  if (!existsSync(script)) throw new Error('dist/server.js is missing: run "npm run bench" (it builds first) or "npm run build"')
  const out = openSync(logFile, 'a')
  const child = spawn(process.execPath, [script], {
    cwd: root,
    stdio: ['ignore', out, out],
    env: { PATH: process.env.PATH ?? '', BERTH_HOST: '127.0.0.1', BERTH_PORT: '0', BERTH_RATE_LIMIT: '1000000', BERTH_LOG_LEVEL: 'info', ...env }
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
