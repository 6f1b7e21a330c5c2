// `npm run bench`, cluster part: berth's Swarm backend against the manager's own service API and the
// `docker service` CLI, on the three-node test cluster (scripts/swarm-env.sh up) with 50 services, in
// one run: ps and inspect latency, and the time from a run to a replica that answers. Writes a table
// and bench/results/swarm-latest.json. Without the cluster it says so and does nothing.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { HttpClient, answersOn, benchLog, runBench, dockerCli, formatTable, inBatches, interleavedLatency, ms, percentiles, round, startBerth, until, type BerthProcess, type Percentiles } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const SERVICES = Number(process.env.BERTH_BENCH_SERVICES ?? 50)
const RUNNING = Math.round(SERVICES * 0.8)
const RUNS = Number(process.env.BERTH_BENCH_RUNS ?? 5)
const log = benchLog('swarm')
const BUDGET_MS = 240_000

const envFile = join(root, '.swarm-env/env')
const prefix = `bsw${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
const LABEL = 'berth.bench.run'
const labelFilter = `${LABEL}=${prefix}`
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-swarm-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: BerthProcess | null = null

function readEnv (): Record<string, string> {
  return Object.fromEntries(readFileSync(envFile, 'utf8').split('\n').filter(line => line.includes('=')).map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
}

interface Row { name: string, what: string, calls: string, engine: Percentiles, berth: Percentiles, cli: Percentiles | null }

async function main (): Promise<void> {
  if (!existsSync(envFile)) {
    log('no test cluster (.swarm-env/env): run "bash scripts/swarm-env.sh up" to measure the Swarm backend')
    return
  }
  const started = performance.now()
  const cluster = readEnv()
  const socketPath = cluster.BERTH_TEST_SWARM_SOCKET as string
  const image = cluster.BERTH_TEST_SWARM_IMAGE as string
  const addresses = (cluster.BERTH_TEST_SWARM_NODES as string).split(',').map(pair => pair.split('=')[1] as string)
  const manager = new HttpClient({ socketPath })
  const version = JSON.parse((await manager.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  const api = `/v${version.ApiVersion}`
  const loadAverage = os.loadavg().map(value => round(value, 2))
  log(`manager ${version.Version} (API ${version.ApiVersion}) on ${socketPath}; ${SERVICES} services named ${prefix}-*`)

  try {
    // The fixtures: services made straight on the manager, RUNNING of them with a running replica.
    await inBatches(Array.from({ length: SERVICES }, (_, i) => i), 8, async i => {
      await manager.expect(201, 'POST', `${api}/services/create`, serviceSpec(`${prefix}-s${i}`, image, i < RUNNING ? 1 : 0))
    })
    await until('the fixtures\' replicas to run', async () => {
      const tasks = JSON.parse((await manager.expect(200, 'GET', `${api}/tasks?filters=${encodeURIComponent(JSON.stringify({ 'desired-state': ['running'] }))}`)).body) as Array<{ Status: { State: string } }>
      return tasks.filter(task => task.Status.State === 'running').length >= RUNNING
    }, 120_000)
    berthProcess = await startBerth(root, { BERTH_ENGINE: 'swarm', BERTH_DOCKER_SOCKET: socketPath, BERTH_TOKENS: `bench:admin:${token}` }, berthLog)
    const port = berthProcess.port
    const berth = new HttpClient({ host: '127.0.0.1', port }, { authorization: `Bearer ${token}` })
    await berth.expect(200, 'GET', '/readyz')

    const label = encodeURIComponent(labelFilter)
    const filter = encodeURIComponent(JSON.stringify({ label: [labelFilter] }))
    const inspected = `${prefix}-s0`
    const rows: Row[] = []
    const read = async (name: string, what: string, calls: string, tasks: { engine: () => Promise<unknown>, berth: () => Promise<unknown>, cli: () => Promise<unknown> }): Promise<void> => {
      log(`${name}: latency, one at a time`)
      // The same answer or the comparison means nothing: berth must list what the manager lists.
      const listed = JSON.parse((await tasks.berth() as { body: string }).body) as unknown
      if (Array.isArray(listed) && listed.length !== (name === 'ps' ? RUNNING : SERVICES)) throw new Error(`berth listed ${listed.length} for ${name}`)
      const latency = await interleavedLatency({ engine: tasks.engine, berth: tasks.berth }, 200, 20, 20_000)
      log(`${name}: docker CLI`)
      const cli = (await interleavedLatency({ cli: tasks.cli }, 15, 1, 15_000)).cli as Percentiles
      rows.push({ name, what, calls, engine: latency.engine as Percentiles, berth: latency.berth as Percentiles, cli })
    }
    // The manager's side gives the same answer as berth's: the services, then their tasks (which
    // replica runs where, with what ports and errors). `docker service ls` asks for the first only.
    const servicesAndTasks = async (): Promise<void> => {
      const services = JSON.parse((await manager.expect(200, 'GET', `${api}/services?status=true&filters=${filter}`)).body) as Array<{ ID: string }>
      await manager.expect(200, 'GET', `${api}/tasks?filters=${encodeURIComponent(JSON.stringify({ service: services.map(service => service.ID) }))}`)
    }
    await read('ps', `list services with a running replica (${RUNNING} of ${SERVICES}), with their tasks`, '0 / 2',
      {
        engine: servicesAndTasks,
        berth: () => berth.expect(200, 'GET', `/v1/containers?label=${label}`),
        cli: () => dockerCli(socketPath, ['service', 'ls', '--filter', `label=${labelFilter}`])
      })
    await read('ps -a', `list all ${SERVICES} services, with their tasks`, '0 / 2',
      {
        engine: servicesAndTasks,
        berth: () => berth.expect(200, 'GET', `/v1/containers?all=true&label=${label}`),
        cli: () => dockerCli(socketPath, ['service', 'ls', '--filter', `label=${labelFilter}`])
      })
    await read('inspect', 'one service and its tasks, by name', '0 / 2',
      {
        engine: async () => {
          await manager.expect(200, 'GET', `${api}/services/${inspected}`)
          await manager.expect(200, 'GET', `${api}/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [inspected] }))}`)
        },
        berth: () => berth.expect(200, 'GET', `/v1/containers/${inspected}`),
        cli: () => dockerCli(socketPath, ['service', 'ps', inspected])
      })

    // From asking for a service to a replica answering on its node's published port.
    log(`run → reachable: ${RUNS} each through berth, the manager's API and docker service create`)
    const reach = { berth: [] as number[], engine: [] as number[], cli: [] as number[] }
    for (let i = 0; i < RUNS; i++) {
      for (const via of ['berth', 'engine', 'cli'] as const) {
        const hostPort = 32000 + i * 3 + ['berth', 'engine', 'cli'].indexOf(via)
        const name = `${prefix}-r${via}${i}`
        const t0 = performance.now()
        if (via === 'berth') {
          await berth.expect(201, 'POST', '/v1/containers', { image, name, command: HTTPD, stopTimeout: 1, ports: [{ container: 80, host: hostPort }], labels: { [LABEL]: prefix } })
        } else if (via === 'engine') {
          await manager.expect(201, 'POST', `${api}/services/create`, { ...serviceSpec(name, image, 1, HTTPD), EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: hostPort, PublishMode: 'host' }] } })
        } else {
          await dockerCli(socketPath, ['service', 'create', '-d', '--name', name, '--label', labelFilter, '--stop-grace-period', '1s', '--publish', `mode=host,published=${hostPort},target=80`, image, ...HTTPD])
        }
        await until(`${name} to answer`, async () => await answersOn(addresses, hostPort), 60_000, 20)
        reach[via].push(performance.now() - t0)
      }
    }
    const runRow = { berth: percentiles(reach.berth), engine: percentiles(reach.engine), cli: percentiles(reach.cli) }

    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAverageAtStart: loadAverage, node: process.version, engine: version.Version, engineApi: version.ApiVersion },
      setup: {
        cluster: `three nodes on this machine (scripts/swarm-env.sh), ${SERVICES} services, ${RUNNING} with a running replica`,
        berth: 'dist/server.js with BERTH_ENGINE=swarm on the manager\'s socket, on 127.0.0.1, logging at info to a file',
        engine: 'the manager\'s HTTP API on its socket, keep-alive: the calls a client makes for the same answer (services, then their tasks)',
        cli: 'docker service ls / service ps / service create -d, one process per command',
        latency: 'one request at a time, engine and berth interleaved request by request',
        runToReachable: `${RUNS} runs each, from the request to the first HTTP answer on the published port (host mode)`
      },
      operations: rows.map(row => ({ ...row, ratio: { p50: round(row.berth.p50 / row.engine.p50, 2), p99: round(row.berth.p99 / row.engine.p99, 2), cliP50: row.cli === null ? null : round(row.cli.p50 / row.engine.p50, 2) } })),
      runToReachableMs: { ...runRow, ratio: { berthToEngine: round(runRow.berth.p50 / runRow.engine.p50, 2), berthToCli: round(runRow.berth.p50 / runRow.cli.p50, 2) } },
      berthErrorLogLines: readFileSync(berthLog, 'utf8').split('\n').filter(line => /"level":(5|6)\d/.test(line)).length,
      seconds: round((performance.now() - started) / 1000, 1)
    }
    mkdirSync(join(root, 'bench/results'), { recursive: true })
    writeFileSync(join(root, 'bench/results/swarm-latest.json'), JSON.stringify(report, null, 2) + '\n')
    console.log(table(report.operations, runRow))
    console.log(`wrote bench/results/swarm-latest.json after ${report.seconds} s`)
    berth.close()
  } finally {
    await cleanup(manager, api)
  }
}

const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www']

// The fixtures carry berth's ownership labels (deployment "default", token "bench"), as if berth
// had made them: berth shows a token only what is its deployment's.
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }

function serviceSpec (name: string, image: string, replicas: number, command = ['sleep', '3600']): object {
  return {
    Name: name,
    Labels: { [LABEL]: prefix, ...OWNED },
    TaskTemplate: { ContainerSpec: { Image: image, Args: command, StopGracePeriod: 1e9 }, RestartPolicy: { Condition: 'none' } },
    Mode: { Replicated: { Replicas: replicas } }
  }
}

async function cleanup (manager: HttpClient, api: string): Promise<void> {
  await berthProcess?.stop()
  const reply = await manager.request('GET', `${api}/services?filters=${encodeURIComponent(JSON.stringify({ label: [labelFilter] }))}`)
  const services = reply.status === 200 ? JSON.parse(reply.body) as Array<{ ID: string }> : []
  await inBatches(services, 8, service => manager.request('DELETE', `${api}/services/${service.ID}`))
  manager.close()
  rmSync(workDir, { recursive: true, force: true })
}

function table (rows: Array<Row & { ratio: { p50: number, p99: number } }>, run: Record<'berth' | 'engine' | 'cli', Percentiles>): string {
  const header = ['operation', 'p50 manager', 'p50 berth', '×', 'p99 manager', 'p99 berth', '×', 'CLI p50', 'calls b/m']
  const body = rows.map(r => [r.name, ms(r.engine.p50), ms(r.berth.p50), r.ratio.p50.toFixed(2), ms(r.engine.p99), ms(r.berth.p99), r.ratio.p99.toFixed(2), r.cli === null ? '-' : ms(r.cli.p50), r.calls])
  body.push(['run → reachable', ms(run.engine.p50), ms(run.berth.p50), (run.berth.p50 / run.engine.p50).toFixed(2), ms(run.engine.p99), ms(run.berth.p99), (run.berth.p99 / run.engine.p99).toFixed(2), ms(run.cli.p50), '-'])
  return formatTable('Swarm backend, latency in ms one request at a time; × is berth ÷ the manager\'s own API', header, body)
}

await runBench(log, BUDGET_MS, main)
