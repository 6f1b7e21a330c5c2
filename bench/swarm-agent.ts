// `npm run bench`, what berth reaches through its agent on each Swarm node (scripts/swarm-env.sh up
// deploys them): an exec round trip and a stats reading in a replica on node2, through berth and its
// agent against the node's own engine asked directly; and a pull onto the three nodes through berth
// against `docker pull` on each node by hand, one after the other. Writes a table and
// bench/results/swarm-agent-latest.json. Without the cluster or its agents it says so and does nothing.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { HttpClient, benchLog, dockerCli, formatTable, interleavedLatency, ms, percentiles, round, runBench, startBerth, until, type BerthProcess, type Percentiles } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const EXECS = Number(process.env.BERTH_BENCH_EXECS ?? 100)
const STATS = Number(process.env.BERTH_BENCH_STATS ?? 10)
const PULLS = Number(process.env.BERTH_BENCH_PULLS ?? 3)
const PULL_MB = 8
const log = benchLog('swarm-agent')
const BUDGET_MS = 300_000

const envFile = join(root, '.swarm-env/env')
const prefix = `bsa${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
const LABEL = 'berth.bench.run'
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-swarm-agent-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: BerthProcess | null = null

// The replica carries berth's ownership labels (deployment "default", token "bench"), as if berth had made it.
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }

function readEnv (): Record<string, string> {
  return Object.fromEntries(readFileSync(envFile, 'utf8').split('\n').filter(line => line.includes('=')).map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
}

function pairs (text: string): Record<string, string> {
  return Object.fromEntries(text.split(',').map(pair => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]))
}

async function main (): Promise<void> {
  if (!existsSync(envFile)) {
    log('no test cluster (.swarm-env/env): run "bash scripts/swarm-env.sh up" to measure berth\'s agents')
    return
  }
  const cluster = readEnv()
  if (cluster.BERTH_TEST_SWARM_AGENT_SECRET_FILE === undefined) {
    log('the test cluster has no agents (BERTH_TEST_SWARM_AGENT_SECRET_FILE): run "bash scripts/swarm-env.sh up" from this checkout')
    return
  }
  const started = performance.now()
  const socketPath = cluster.BERTH_TEST_SWARM_SOCKET as string
  const sockets = pairs(cluster.BERTH_TEST_SWARM_NODE_SOCKETS as string)
  const image = cluster.BERTH_TEST_SWARM_IMAGE as string
  const registry = cluster.BERTH_TEST_SWARM_REGISTRY as string
  const manager = new HttpClient({ socketPath })
  const node2 = new HttpClient({ socketPath: sockets.node2 as string })
  const version = JSON.parse((await manager.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  const api = `/v${version.ApiVersion}`
  const loadAverage = os.loadavg().map(value => round(value, 2))
  const service = `${prefix}-box`
  const pulled = `${registry}/${prefix}/pull:1`

  try {
    await manager.expect(201, 'POST', `${api}/services/create`, {
      Name: service,
      Labels: { [LABEL]: prefix, ...OWNED },
      TaskTemplate: { ContainerSpec: { Image: image, Args: ['sleep', '3600'], Labels: { [LABEL]: prefix, ...OWNED }, StopGracePeriod: 1e9 }, Placement: { Constraints: ['node.hostname==node2'] }, RestartPolicy: { Condition: 'none' } },
      Mode: { Replicated: { Replicas: 1 } }
    })
    let containerId = ''
    await until('the replica on node2', async () => {
      const listed = JSON.parse((await node2.expect(200, 'GET', `${api}/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.name=${service}`] }))}`)).body) as Array<{ Id: string }>
      containerId = listed[0]?.Id ?? ''
      return containerId !== ''
    }, 60_000)
    berthProcess = await startBerth(root, {
      BERTH_ENGINE: 'swarm',
      BERTH_DOCKER_SOCKET: socketPath,
      BERTH_SWARM_AGENT_SECRET_FILE: cluster.BERTH_TEST_SWARM_AGENT_SECRET_FILE,
      BERTH_SWARM_AGENT_PORT: cluster.BERTH_TEST_SWARM_AGENT_PORT ?? '7988',
      BERTH_TOKENS: `bench:admin:${token}`
    }, berthLog)
    const berth = new HttpClient({ host: '127.0.0.1', port: berthProcess.port }, { authorization: `Bearer ${token}`, accept: 'application/json' })
    await berth.expect(200, 'GET', '/readyz')

    // exec `true`: berth (ownership, then create, start attached, inspect, through the agent) against the same three calls on node2's socket.
    log(`exec round trip: ${EXECS} each, interleaved`)
    const exec = await interleavedLatency({
      engine: async () => {
        const created = JSON.parse((await node2.expect(201, 'POST', `${api}/containers/${containerId}/exec`, { Cmd: ['true'], AttachStdout: true, AttachStderr: true })).body) as { Id: string }
        await node2.expect(200, 'POST', `${api}/exec/${created.Id}/start`, { Detach: false, Tty: false })
        await node2.expect(200, 'GET', `${api}/exec/${created.Id}/json`)
      },
      berth: async () => {
        const reply = await berth.expect(200, 'POST', `/v1/containers/${service}/exec`, { command: ['true'] })
        if ((JSON.parse(reply.body) as { exitCode: number }).exitCode !== 0) throw new Error(`exec through berth: ${reply.body}`)
      }
    }, EXECS, 5, 120_000)
    // One reading: the engine takes two samples a second apart for the CPU share, through berth as directly.
    log(`stats, one reading: ${STATS} each, interleaved`)
    const stats = await interleavedLatency({
      engine: async () => await node2.expect(200, 'GET', `${api}/containers/${containerId}/stats?stream=false`),
      berth: async () => await berth.expect(200, 'GET', `/v1/containers/${service}/stats`)
    }, STATS, 1, 60_000)

    // A pull of an image no node has: a layer of PULL_MB random MB, pushed once to the cluster's registry.
    const tar = join(workDir, 'layer.tar')
    mkdirSync(join(workDir, 'layer'))
    writeFileSync(join(workDir, 'layer', 'data'), randomBytes(PULL_MB * 1024 * 1024))
    await run('tar', ['-C', join(workDir, 'layer'), '-cf', tar, 'data'])
    await dockerCli(sockets.node1 as string, ['import', tar, pulled])
    await dockerCli(sockets.node1 as string, ['push', '-q', pulled])
    const dropEverywhere = async (): Promise<void> => {
      for (const socket of Object.values(sockets)) await dockerCli(socket, ['rmi', '-f', pulled]).catch(() => '')
    }
    log(`pull onto ${Object.keys(sockets).length} nodes: ${PULLS} through berth, ${PULLS} by hand (docker pull on each node in turn)`)
    const pulls = { berth: [] as number[], byHand: [] as number[] }
    for (let i = 0; i < PULLS; i++) {
      await dropEverywhere()
      let t0 = performance.now()
      const reply = await berth.expect(200, 'POST', '/v1/images/pull', { image: pulled })
      pulls.berth.push(performance.now() - t0)
      const nodes = (JSON.parse(reply.body) as { nodes?: Array<{ state: string }> }).nodes ?? []
      if (nodes.length !== Object.keys(sockets).length || nodes.some(node => node.state !== 'pulled')) throw new Error(`berth's pull did not reach every node: ${reply.body}`)
      await dropEverywhere()
      t0 = performance.now()
      for (const socket of Object.values(sockets)) await dockerCli(socket, ['pull', '-q', pulled])
      pulls.byHand.push(performance.now() - t0)
    }
    await dropEverywhere()
    const pull = { berth: percentiles(pulls.berth), byHand: percentiles(pulls.byHand) }

    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAverageAtStart: loadAverage, node: process.version, engine: version.Version, engineApi: version.ApiVersion },
      setup: {
        cluster: 'three nodes on this machine (scripts/swarm-env.sh), berth\'s agent on each (deploy/swarm/agent.yml), one replica on node2',
        berth: 'dist/server.js with BERTH_ENGINE=swarm on the manager\'s socket and the agents\' secret, on 127.0.0.1, logging at info to a file',
        engine: 'node2\'s own engine on its socket, keep-alive: exec create, start attached, inspect; stats?stream=false',
        pull: `an image of one ${PULL_MB} MB layer in the cluster's registry, removed from every node before each pull; berth pulls onto the nodes at once, by hand is docker pull on each node in turn`
      },
      execRoundTrip: { engine: exec.engine as Percentiles, berth: exec.berth as Percentiles, ratio: round((exec.berth as Percentiles).p50 / (exec.engine as Percentiles).p50, 2) },
      statsReading: { engine: stats.engine as Percentiles, berth: stats.berth as Percentiles, ratio: round((stats.berth as Percentiles).p50 / (stats.engine as Percentiles).p50, 2) },
      pullOntoThreeNodes: { ...pull, ratio: round(pull.berth.p50 / pull.byHand.p50, 2) },
      berthErrorLogLines: readFileSync(berthLog, 'utf8').split('\n').filter(line => /"level":(5|6)\d/.test(line)).length,
      seconds: round((performance.now() - started) / 1000, 1)
    }
    mkdirSync(join(root, 'bench/results'), { recursive: true })
    writeFileSync(join(root, 'bench/results/swarm-agent-latest.json'), JSON.stringify(report, null, 2) + '\n')
    const rows = [
      ['exec round trip', ms(report.execRoundTrip.engine.p50), ms(report.execRoundTrip.berth.p50), report.execRoundTrip.ratio.toFixed(2), ms(report.execRoundTrip.engine.p99), ms(report.execRoundTrip.berth.p99)],
      ['stats, one reading', ms(report.statsReading.engine.p50), ms(report.statsReading.berth.p50), report.statsReading.ratio.toFixed(2), ms(report.statsReading.engine.p99), ms(report.statsReading.berth.p99)],
      ['pull onto 3 nodes', ms(pull.byHand.p50), ms(pull.berth.p50), report.pullOntoThreeNodes.ratio.toFixed(2), ms(pull.byHand.p99), ms(pull.berth.p99)]
    ]
    console.log(formatTable('Through berth\'s agents, latency in ms; × is berth ÷ the node\'s engine directly (pull: ÷ docker pull on each node by hand)',
      ['operation', 'p50 direct', 'p50 berth', '×', 'p99 direct', 'p99 berth'], rows))
    console.log(`wrote bench/results/swarm-agent-latest.json after ${report.seconds} s`)
    berth.close()
  } finally {
    await berthProcess?.stop()
    const reply = await manager.request('DELETE', `${api}/services/${service}`)
    if (reply.status !== 200 && reply.status !== 404) log(`could not remove ${service}: ${reply.status}`)
    for (const socket of Object.values(sockets)) await dockerCli(socket, ['rmi', '-f', pulled]).catch(() => '')
    manager.close()
    node2.close()
    rmSync(workDir, { recursive: true, force: true })
  }
}

async function run (command: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile(command, args, error => { if (error) reject(error); else resolve() })
  })
}

await runBench(log, BUDGET_MS, main)
