// `npm run bench:build`: a build of a small context and a push of what it built, through berth,
// straight against the engine's own API, and through the Docker CLI, interleaved in one run on one
// engine and one registry; writes a table and bench/results/build-push.json.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { dockerCli, percentiles, round, type Percentiles } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const socketPath = process.env.BERTH_BENCH_SOCKET ?? process.env.BERTH_TEST_SOCKET ?? '/var/run/docker.sock'
const base = process.env.BERTH_BENCH_IMAGE ?? 'berth-test/busybox:1'
const registry = process.env.BERTH_BENCH_REGISTRY ?? process.env.BERTH_TEST_REGISTRY ?? '127.0.0.1:5000'
const ITERATIONS = Number(process.env.BERTH_BENCH_BUILDS ?? 12)
const BUILT_BY = 'io.berth.built-by'
/** Files in the context, of 4 KiB each. */
const FILES = 32

const prefix = `berthbench-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-build-'))
const contextDir = join(workDir, 'context')
const berthLog = join(workDir, 'berth.log')
let berthProcess: ChildProcess | null = null
const made: string[] = []

interface Reply { status: number, body: string }

/** One request and its whole answer; a build or push that fails inside its 200 stream fails here too. */
async function request (where: { socketPath: string } | { host: string, port: number }, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Reply> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, path, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(body.length) }) } }, response => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
      response.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function check (what: string, reply: Reply, status: number): Reply {
  if (reply.status !== status || /"error(Detail)?":/.test(reply.body)) throw new Error(`${what} answered ${reply.status}: ${reply.body.slice(-400)}`)
  return reply
}

async function startBerth (): Promise<number> {
  const script = join(root, 'dist/server.js')
  if (!existsSync(script)) throw new Error('dist/server.js is missing: run "npm run bench:build" (it builds first)')
  const out = openSync(berthLog, 'a')
  const child = spawn(process.execPath, ['--max-semi-space-size=4', script], {
    cwd: root,
    stdio: ['ignore', out, out],
    env: { PATH: process.env.PATH ?? '', BERTH_HOST: '127.0.0.1', BERTH_PORT: '0', BERTH_DOCKER_SOCKET: socketPath, BERTH_TOKENS: `bench:admin:${token}`, BERTH_RATE_LIMIT: '1000000', BERTH_LOG_LEVEL: 'info' }
  })
  closeSync(out)
  berthProcess = child
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`berth exited with ${child.exitCode}`)
    const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(berthLog, 'utf8'))
    if (match) return Number(match[1])
    await sleep(100)
  }
  throw new Error('berth did not listen within 20 s')
}

async function main (): Promise<void> {
  const loadAverage = os.loadavg().map(value => round(value, 2))
  mkdirSync(join(contextDir, 'files'), { recursive: true })
  for (let i = 0; i < FILES; i++) writeFileSync(join(contextDir, 'files', `f${i}.bin`), randomBytes(4096))
  // Each build gets a new NONCE: the RUN step and its layer are new every time, so each push uploads one.
  writeFileSync(join(contextDir, 'Dockerfile'), `FROM ${base}\nCOPY files /files\nARG NONCE\nRUN echo "$NONCE" > /nonce\n`)
  const tar = execFileSync('tar', ['-c', '-C', contextDir, '.'], { maxBuffer: 64 * 1024 * 1024 })
  const engine = { socketPath }
  const version = JSON.parse(check('version', await request(engine, 'GET', '/version', {}), 200).body) as { Version: string, ApiVersion: string }
  const api = `/v${version.ApiVersion}`
  const port = await startBerth()
  const berth = { host: '127.0.0.1', port }
  const auth = { authorization: `Bearer ${token}` }
  const emptyAuth = Buffer.from('{}').toString('base64')

  type Target = 'engine' | 'berth' | 'cli'
  const builds: Record<Target, (tag: string, nonce: string) => Promise<unknown>> = {
    // berth labels what it builds with its builder (io.berth.built-by), one LABEL step more: the engine and the CLI are given the same label, so the work is the same.
    engine: async (tag, nonce) => check('engine build', await request(engine, 'POST', `${api}/build?t=${encodeURIComponent(tag)}&rm=1&forcerm=1&networkmode=none&buildargs=${encodeURIComponent(JSON.stringify({ NONCE: nonce }))}&labels=${encodeURIComponent(JSON.stringify({ [BUILT_BY]: 'default/bench' }))}`, { 'content-type': 'application/x-tar' }, tar), 200),
    berth: async (tag, nonce) => check('berth build', await request(berth, 'POST', `/v1/images/build?tag=${encodeURIComponent(tag)}&buildArg=${encodeURIComponent(`NONCE=${nonce}`)}`, { ...auth, 'content-type': 'application/x-tar' }, tar), 200),
    cli: async (tag, nonce) => await dockerCli(socketPath, ['build', '-q', '--network', 'none', '--build-arg', `NONCE=${nonce}`, '--label', `${BUILT_BY}=default/bench`, '-t', tag, contextDir])
  }
  const pushes: Record<Target, (tag: string) => Promise<unknown>> = {
    engine: async tag => {
      const at = tag.lastIndexOf(':')
      return check('engine push', await request(engine, 'POST', `${api}/images/${tag.slice(0, at)}/push?tag=${tag.slice(at + 1)}`, { 'x-registry-auth': emptyAuth }), 200)
    },
    berth: async tag => check('berth push', await request(berth, 'POST', '/v1/images/push', { ...auth, 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ image: tag }))), 200),
    cli: async tag => await dockerCli(socketPath, ['push', '-q', tag])
  }

  const samples: Record<'build' | 'push', Record<Target, number[]>> = { build: { engine: [], berth: [], cli: [] }, push: { engine: [], berth: [], cli: [] } }
  const targets: Target[] = ['engine', 'berth', 'cli']
  // One warm-up round (the COPY step's cache, connections), then the measured rounds, in a rotating order.
  for (let i = -1; i < ITERATIONS; i++) {
    for (let k = 0; k < targets.length; k++) {
      const target = targets[((i + 1) + k) % targets.length] as Target
      const tag = `${registry}/${prefix}-${target}/app:${i + 1}`
      made.push(tag)
      const nonce = `${prefix}-${target}-${i}`
      let started = performance.now()
      await builds[target](tag, nonce)
      const built = performance.now() - started
      started = performance.now()
      await pushes[target](tag)
      const pushed = performance.now() - started
      if (i >= 0) {
        samples.build[target].push(built)
        samples.push[target].push(pushed)
      }
    }
    process.stderr.write(`[bench] round ${i + 1} of ${ITERATIONS} done\n`)
  }
  const results = Object.fromEntries((['build', 'push'] as const).map(operation => {
    const p = Object.fromEntries(targets.map(target => [target, percentiles(samples[operation][target])])) as Record<Target, Percentiles>
    return [operation, { ...p, ratio: { berthToEngine: round(p.berth.p50 / p.engine.p50, 2), cliToEngine: round(p.cli.p50 / p.engine.p50, 2) } }]
  }))
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAverageAtStart: loadAverage, node: process.version, engine: version.Version, engineApi: version.ApiVersion },
    setup: {
      context: `a Dockerfile (FROM ${base}, COPY of ${FILES} files of 4 KiB, a RUN writing a per-build nonce) as a ${tar.length}-byte tar`,
      build: 'classic builder, no network for RUN; the COPY step comes from the cache after the warm-up, the RUN step never does; all three add the label berth adds (io.berth.built-by), so all do the same steps',
      push: `the image just built to ${registry} (one new layer and a manifest each time)`,
      iterations: ITERATIONS,
      engine: 'POST /build and POST /images/{name}/push on the engine\'s socket, the whole stream read',
      berth: 'POST /v1/images/build and POST /v1/images/push, answered in JSON when done',
      cli: 'docker build -q and docker push -q, one process per command, against the same socket'
    },
    results
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  writeFileSync(join(root, 'bench/results/build-push.json'), JSON.stringify(report, null, 2) + '\n')
  const ms = (value: number) => value.toFixed(0)
  console.log('\noperation  engine p50  berth p50  berth ×  CLI p50  CLI ×   (ms, one at a time)')
  for (const [operation, r] of Object.entries(results) as Array<[string, { engine: Percentiles, berth: Percentiles, cli: Percentiles, ratio: { berthToEngine: number, cliToEngine: number } }]>) {
    console.log(`${operation.padEnd(9)}  ${ms(r.engine.p50).padStart(10)}  ${ms(r.berth.p50).padStart(9)}  ${r.ratio.berthToEngine.toFixed(2).padStart(7)}  ${ms(r.cli.p50).padStart(7)}  ${r.ratio.cliToEngine.toFixed(2).padStart(5)}`)
  }
  console.log('wrote bench/results/build-push.json')
}

async function cleanup (): Promise<void> {
  const child = berthProcess
  if (child !== null && child.exitCode === null) {
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  }
  for (const tag of made) await request({ socketPath }, 'DELETE', `/images/${encodeURIComponent(tag)}?force=1`, {}).catch(() => {})
  if (process.exitCode) process.stderr.write(`[bench] berth's log ends:\n${readFileSync(berthLog, 'utf8').slice(-3000)}\n`)
  rmSync(workDir, { recursive: true, force: true })
}

try {
  await main()
} catch (error) {
  process.exitCode = 1
  process.stderr.write(`[bench] failed: ${(error as Error).stack ?? String(error)}\n`)
} finally {
  await cleanup()
}
