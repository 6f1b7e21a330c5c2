// `npm run bench:build`, cluster part: build once, run on the cluster. From a build context to a
// replica answering on the cluster's published port, on the three-node test Swarm
// (scripts/swarm-env.sh up), two ways in one run, round by round:
//   berth: POST /v1/images/build on a Swarm berth whose builder is node1's engine (BERTH_BUILDER; the
//          build pushes its tag and answers the digest), then POST /v1/containers with image@digest;
//   hand:  docker build and docker push against the same engine (the CLI), then the manager's own
//          service API (POST /services/create with image@digest) — what a person does without berth.
// Writes a table and bench/results/build-cluster.json. Without the cluster it says so and does nothing.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { HttpClient, answersOn, benchLog, dockerCli, formatTable, inBatches, ms, percentiles, round, runBench, startBerth, until, type BerthProcess, type Percentiles } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const ROUNDS = Number(process.env.BERTH_BENCH_CLUSTER_BUILDS ?? 5)
const log = benchLog('build-cluster')
const BUDGET_MS = 300_000
const envFile = join(root, '.swarm-env/env')
const prefix = `bbc${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
const LABEL = 'berth.bench.run'
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-build-cluster-'))
const berthLog = join(workDir, 'berth.log')
const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www']
// berth's ownership labels, as if berth had made the hand-made services (so cleanup finds both the same way).
const OWNED = { 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' }

type Way = 'berth' | 'hand'
interface Sample { buildPush: number, run: number, total: number }

async function main (): Promise<void> {
  if (!existsSync(envFile)) {
    log('no test cluster (.swarm-env/env): run "bash scripts/swarm-env.sh up" to time build → push → run on the cluster')
    return
  }
  const started = performance.now()
  const cluster = Object.fromEntries(readFileSync(envFile, 'utf8').split('\n').filter(line => line.includes('=')).map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
  const managerSocket = cluster.BERTH_TEST_SWARM_SOCKET as string
  const builderSocket = (cluster.BERTH_TEST_SWARM_NODE_SOCKETS as string).split(',').map(pair => pair.split('=')[1] as string)[0] as string
  const registry = cluster.BERTH_TEST_SWARM_REGISTRY as string
  const base = cluster.BERTH_TEST_SWARM_IMAGE as string
  const addresses = (cluster.BERTH_TEST_SWARM_NODES as string).split(',').map(pair => pair.split('=')[1] as string)
  const manager = new HttpClient({ socketPath: managerSocket })
  const version = JSON.parse((await manager.expect(200, 'GET', '/version')).body) as { Version: string, ApiVersion: string }
  const api = `/v${version.ApiVersion}`
  const loadAverage = os.loadavg().map(value => round(value, 2))

  // The environment: a page to serve and a per-build nonce, so every build has a new layer to push.
  const contextDir = join(workDir, 'context')
  mkdirSync(join(contextDir, 'www'), { recursive: true })
  writeFileSync(join(contextDir, 'www', 'index.html'), `<p>${prefix}</p>\n`)
  writeFileSync(join(contextDir, 'Dockerfile'), `FROM ${base}\nCOPY www /www\nARG NONCE\nRUN echo "$NONCE" > /www/nonce\n`)
  const tar = execFileSync('tar', ['-c', '-C', contextDir, '.'])

  let berthProcess: BerthProcess | null = null
  try {
    berthProcess = await startBerth(root, {
      BERTH_ENGINE: 'swarm',
      BERTH_DOCKER_SOCKET: managerSocket,
      BERTH_BUILDER: `unix://${builderSocket}`,
      BERTH_TOKENS: `bench:admin:${token}`
    }, berthLog)
    const berth = new HttpClient({ host: '127.0.0.1', port: berthProcess.port }, { authorization: `Bearer ${token}` })
    await berth.expect(200, 'GET', '/readyz')
    const berthPort = berthProcess.port
    log(`manager ${version.Version} (API ${version.ApiVersion}); builder node1; ${ROUNDS} rounds, each way in turn`)

    const samples: Record<Way, Sample[]> = { berth: [], hand: [] }
    const ways: Record<Way, (round: number, tag: string, port: number) => Promise<Sample>> = {
      berth: async (i, tag, port) => {
        const t0 = performance.now()
        const answer = await fetch(`http://127.0.0.1:${berthPort}/v1/images/build?tag=${encodeURIComponent(tag)}&buildArg=${encodeURIComponent(`NONCE=${prefix}-${i}`)}`, {
          method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' }, body: tar
        })
        const text = await answer.text()
        if (answer.status !== 200) throw new Error(`berth's build answered ${answer.status}: ${text.slice(0, 400)}`)
        const built = JSON.parse(text) as { pushed: Array<{ reference: string, digest: string }> }
        const digest = built.pushed[0]?.digest
        if (digest === undefined) throw new Error(`berth's build answered no pushed digest: ${JSON.stringify(built)}`)
        const t1 = performance.now()
        await berth.expect(201, 'POST', '/v1/containers', { image: `${tag.replace(/:[^:/]+$/, '')}@${digest}`, name: `${prefix}-berth${i}`, command: HTTPD, stopTimeout: 1, ports: [{ container: 80, host: port }], labels: { [LABEL]: prefix } })
        await until(`berth's run ${i} to answer`, async () => await answersOn(addresses, port), 60_000, 20)
        const t2 = performance.now()
        return { buildPush: t1 - t0, run: t2 - t1, total: t2 - t0 }
      },
      hand: async (i, tag, port) => {
        const t0 = performance.now()
        await dockerCli(builderSocket, ['build', '-q', '--build-arg', `NONCE=${prefix}-${i}`, '-t', tag, contextDir])
        const pushed = await dockerCli(builderSocket, ['push', tag])
        const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed)?.[1]
        if (digest === undefined) throw new Error(`docker push printed no digest: ${pushed.slice(-400)}`)
        const t1 = performance.now()
        await manager.expect(201, 'POST', `${api}/services/create`, {
          Name: `${prefix}-hand${i}`,
          Labels: { [LABEL]: prefix, ...OWNED },
          TaskTemplate: { ContainerSpec: { Image: `${tag.replace(/:[^:/]+$/, '')}@${digest}`, Args: HTTPD, StopGracePeriod: 1e9 }, RestartPolicy: { Condition: 'none' } },
          Mode: { Replicated: { Replicas: 1 } },
          EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: port, PublishMode: 'host' }] }
        })
        await until(`the hand-made service ${i} to answer`, async () => await answersOn(addresses, port), 60_000, 20)
        const t2 = performance.now()
        return { buildPush: t1 - t0, run: t2 - t1, total: t2 - t0 }
      }
    }
    // One warm-up round each (the base's layers, the COPY step's cache), then the measured rounds, the order turning.
    for (let i = -1; i < ROUNDS; i++) {
      const order: Way[] = i % 2 === 0 ? ['berth', 'hand'] : ['hand', 'berth']
      for (const way of order) {
        // Below the ephemeral range (32768 and up), where a connection of the node's own may hold a port.
        const port = 29100 + (i + 1) * 2 + (way === 'berth' ? 0 : 1)
        const sample = await ways[way](i + 1, `${registry}/${prefix}/${way}:${i + 1}`, port)
        if (i >= 0) samples[way].push(sample)
      }
      log(`round ${i + 1} of ${ROUNDS} done`)
    }
    const phases = ['buildPush', 'run', 'total'] as const
    const results = Object.fromEntries(phases.map(phase => {
      const berthP = percentiles(samples.berth.map(sample => sample[phase]))
      const handP = percentiles(samples.hand.map(sample => sample[phase]))
      return [phase, { berth: berthP, hand: handP, ratio: round(berthP.p50 / handP.p50, 2) }]
    })) as Record<typeof phases[number], { berth: Percentiles, hand: Percentiles, ratio: number }>
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAverageAtStart: loadAverage, node: process.version, engine: version.Version, engineApi: version.ApiVersion },
      setup: {
        cluster: 'three Swarm nodes on this machine (scripts/swarm-env.sh); node1 is the manager and the builder; the registry is the cluster\'s own',
        context: `FROM ${base}, a page, and a RUN writing a per-build nonce (a new layer to push every time), a ${tar.length}-byte tar`,
        berth: 'POST /v1/images/build (the build pushes its tag; the answer has the digest), then POST /v1/containers with image@digest and a host-mode published port',
        hand: 'docker build -q and docker push on node1\'s engine (the CLI), then POST /services/create on the manager with image@digest and the same port',
        measured: `${ROUNDS} rounds after one warm-up; each from the request to the first HTTP answer on the published port`
      },
      resultsMs: results,
      seconds: round((performance.now() - started) / 1000, 1)
    }
    mkdirSync(join(root, 'bench/results'), { recursive: true })
    writeFileSync(join(root, 'bench/results/build-cluster.json'), JSON.stringify(report, null, 2) + '\n')
    const names: Record<typeof phases[number], string> = { buildPush: 'build → push', run: 'run → answers', total: 'build → push → run' }
    console.log(formatTable('Build once, run on the Swarm: p50 ms; × is berth ÷ by hand (docker CLI + the manager\'s API)', ['phase', 'berth', 'by hand', '×'],
      phases.map(phase => [names[phase], ms(results[phase].berth.p50), ms(results[phase].hand.p50), results[phase].ratio.toFixed(2)])))
    console.log(`wrote bench/results/build-cluster.json after ${report.seconds} s`)
    berth.close()
  } finally {
    await berthProcess?.stop()
    const reply = await manager.request('GET', `${api}/services?filters=${encodeURIComponent(JSON.stringify({ label: [`${LABEL}=${prefix}`] }))}`)
    const services = reply.status === 200 ? JSON.parse(reply.body) as Array<{ ID: string }> : []
    await inBatches(services, 8, service => manager.request('DELETE', `${api}/services/${service.ID}`))
    const builder = new HttpClient({ socketPath: builderSocket })
    const images = JSON.parse((await builder.request('GET', `${api}/images/json?filters=${encodeURIComponent(JSON.stringify({ reference: [`${registry}/${prefix}/*`] }))}`)).body) as Array<{ Id: string }>
    await inBatches(images, 4, image => builder.request('DELETE', `${api}/images/${image.Id}?force=1`))
    builder.close()
    manager.close()
    rmSync(workDir, { recursive: true, force: true })
  }
}

await runBench(log, BUDGET_MS, main)
