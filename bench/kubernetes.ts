// `npm run bench`, Kubernetes part: berth's Kubernetes backend against the apiserver's own API, on the
// cluster BERTH_TEST_KUBECONFIG names, with 500 Deployments in a namespace of the bench's, in one run:
// ps and inspect latency (berth answers from its watch-fed copy; the apiserver's side is the list and
// get calls a client makes for the same answer), and the time from a run to a pod that answers on its
// host port, against creating the same Deployment straight through the API (what `kubectl create
// deployment` sends; no kubectl is needed), and an exec round trip in a running pod against the
// apiserver's exec subresource itself. Writes a table and bench/results/kubernetes-latest.json.
// Without a cluster it says so and does nothing.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type https from 'node:https'
import os from 'node:os'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import WebSocket from 'ws'
import { measureNodePulls } from './kubernetes-pull.ts'
import { HttpClient, benchLog, runBench, formatTable, inBatches, interleavedLatency, ms, percentiles, round, startBerth, until, type BerthProcess, type Percentiles } from './measure.ts'

const root = new URL('..', import.meta.url).pathname
const DEPLOYMENTS = Number(process.env.BERTH_BENCH_DEPLOYMENTS ?? 500)
const RUNS = Number(process.env.BERTH_BENCH_RUNS ?? 5)
const log = benchLog('kubernetes')
const BUDGET_MS = 300_000
const prefix = `bk${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
const namespace = `${prefix}-bench`
const token = randomBytes(24).toString('hex')
const workDir = mkdtempSync(join(os.tmpdir(), 'berth-bench-kube-'))
const berthLog = join(workDir, 'berth.log')
let berthProcess: BerthProcess | null = null

// The fixtures carry berth's ownership as berth writes it (deployment "default", token "bench").
const LABELS = JSON.stringify({ 'io.berth.managed': 'true', 'io.berth.deployment': 'default', 'io.berth.owner': 'bench' })
const HTTPD = ['httpd', '-f', '-p', '8080', '-h', '/www']

interface Row { name: string, what: string, calls: string, engine: Percentiles, berth: Percentiles }

async function main (): Promise<void> {
  const kubeconfig = process.env.BERTH_TEST_KUBECONFIG ?? ''
  const image = process.env.BERTH_TEST_KUBE_IMAGE ?? ''
  if (kubeconfig === '' || image === '') {
    log('no Kubernetes cluster (BERTH_TEST_KUBECONFIG and BERTH_TEST_KUBE_IMAGE unset; docs/testing.md: "Testing on Kubernetes"): nothing measured')
    return
  }
  const started = performance.now()
  const config = new KubeConfig()
  config.loadFromFile(kubeconfig)
  const server = new URL(config.getCurrentCluster()?.server ?? '')
  const options: https.RequestOptions = {}
  await config.applyToHTTPSOptions(options)
  const apiserver = new HttpClient({ host: server.hostname, port: Number(server.port || 443) }, (options.headers ?? {}) as Record<string, string>,
    { ca: options.ca, cert: options.cert, key: options.key })
  const version = JSON.parse((await apiserver.expect(200, 'GET', '/version')).body) as { gitVersion: string }
  const loadAverage = os.loadavg().map(value => round(value, 2))
  log(`apiserver ${version.gitVersion} at ${server.host}; ${DEPLOYMENTS} Deployments in namespace ${namespace}`)
  const ns = `/namespaces/${namespace}`
  try {
    await apiserver.expect(201, 'POST', '/api/v1/namespaces', { metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/warn': 'restricted' } } })
    // Stopped containers, as berth keeps them: a Deployment scaled to none, nothing to schedule.
    await inBatches(Array.from({ length: DEPLOYMENTS }, (_, i) => i), 8, async i => {
      await apiserver.expect(201, 'POST', `/apis/apps/v1${ns}/deployments`, deployment(`${prefix}-d${i}`, image, 0))
    })
    // The controller manager makes a ReplicaSet for each: measured runs must not queue behind that.
    await until('the controller manager to have seen every fixture', async () => {
      const list = JSON.parse((await apiserver.expect(200, 'GET', `/apis/apps/v1${ns}/deployments`)).body) as { items: Array<{ status?: { observedGeneration?: number } }> }
      return list.items.filter(item => (item.status?.observedGeneration ?? 0) >= 1).length === DEPLOYMENTS
    }, 180_000, 500)
    berthProcess = await startBerth(root, {
      BERTH_ENGINE: 'kubernetes',
      BERTH_KUBECONFIG: kubeconfig,
      BERTH_KUBE_NAMESPACE: namespace,
      BERTH_TOKENS: `bench:admin:${token}`
    }, berthLog)
    const berth = new HttpClient({ host: '127.0.0.1', port: berthProcess.port }, { authorization: `Bearer ${token}` })
    await until('berth\'s copy of the namespace', async () => (await berth.request('GET', '/readyz')).status === 200, 60_000)
    const listed = JSON.parse((await berth.expect(200, 'GET', '/v1/containers?all=true')).body) as unknown[]
    if (listed.length !== DEPLOYMENTS) throw new Error(`berth listed ${listed.length} of ${DEPLOYMENTS}`)

    const rows: Row[] = []
    const read = async (name: string, what: string, calls: string, tasks: { engine: () => Promise<unknown>, berth: () => Promise<unknown> }, iterations = 100): Promise<void> => {
      log(`${name}: latency, one at a time`)
      const latency = await interleavedLatency(tasks, iterations, 10, 60_000)
      rows.push({ name, what, calls, engine: latency.engine as Percentiles, berth: latency.berth as Percentiles })
    }
    const inspected = `${prefix}-d7`
    await read('ps -a', `all ${DEPLOYMENTS} containers: the Deployments and their pods`, '0 / 2',
      {
        engine: async () => {
          await apiserver.expect(200, 'GET', `/apis/apps/v1${ns}/deployments`)
          await apiserver.expect(200, 'GET', `/api/v1${ns}/pods`)
        },
        berth: () => berth.expect(200, 'GET', '/v1/containers?all=true')
      })
    await read('inspect', 'one container by name: its Deployment and its pods', '0 / 2',
      {
        engine: async () => {
          await apiserver.expect(200, 'GET', `/apis/apps/v1${ns}/deployments/${inspected}`)
          await apiserver.expect(200, 'GET', `/api/v1${ns}/pods?labelSelector=${encodeURIComponent(`io.berth/id=${inspected}`)}`)
        },
        berth: () => berth.expect(200, 'GET', `/v1/containers/${inspected}`)
      })

    log(`run → reachable: ${RUNS} each through berth and straight through the apiserver`)
    const node = process.env.BERTH_TEST_KUBE_NODE_ADDRESS ?? server.hostname
    const reach = { berth: [] as number[], engine: [] as number[] }
    for (let i = 0; i < RUNS; i++) {
      for (const via of ['berth', 'engine'] as const) {
        const hostPort = 31000 + i * 2 + (via === 'berth' ? 0 : 1)
        const name = `${prefix}-r${via}${i}`
        const t0 = performance.now()
        if (via === 'berth') {
          await berth.expect(201, 'POST', '/v1/containers', { image, name, command: HTTPD, stopTimeout: 1, ports: [{ container: 8080, host: hostPort }] })
        } else {
          const body = deployment(name, image, 1) as { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } }
          Object.assign(body.spec.template.spec.containers[0] as object, { args: HTTPD, ports: [{ containerPort: 8080, hostPort }] })
          await apiserver.expect(201, 'POST', `/apis/apps/v1${ns}/deployments`, body)
        }
        await until(`${name} to answer`, async () => await answers(node, hostPort), 60_000, 20)
        reach[via].push(performance.now() - t0)
        log(`${name}: answered after ${Math.round(performance.now() - t0)} ms`)
      }
    }
    const runRow = { berth: percentiles(reach.berth), engine: percentiles(reach.engine) }

    // exec: the same command in the same running pod, through berth (which finds the pod in its copy)
    // and straight through the apiserver's exec subresource, a WebSocket of its own each time, as kubectl.
    const target = `${prefix}-rengine0`
    const pods = JSON.parse((await apiserver.expect(200, 'GET', `/api/v1${ns}/pods?labelSelector=${encodeURIComponent(`io.berth/id=${target}`)}`)).body) as { items: Array<{ metadata: { name: string }, status?: { phase?: string } }> }
    const pod = pods.items.find(item => item.status?.phase === 'Running')?.metadata.name
    if (pod === undefined) throw new Error(`no running pod of ${target}`)
    const command = ['sh', '-c', 'echo hello']
    const execUrl = `wss://${server.host}/api/v1${ns}/pods/${pod}/exec?${[...command.map(argument => `command=${encodeURIComponent(argument)}`), 'container=main', 'stdout=true', 'stderr=true'].join('&')}`
    await read('exec', 'sh -c "echo hello" in a running pod: its output and exit code', '1 / 1', {
      engine: async () => {
        const output = await apiserverExec(execUrl, options)
        if (output !== 'hello\n') throw new Error(`the apiserver's exec said ${JSON.stringify(output)}`)
      },
      berth: async () => {
        // NDJSON, as it streams: the output line, then the exit code.
        const answer = (await berth.expect(200, 'POST', `/v1/containers/${target}/exec`, { command })).body
        if (answer !== '{"type":"output","stream":"stdout","line":"hello"}\n{"type":"exit","exitCode":0}\n') throw new Error(`berth's exec said ${answer}`)
      }
    }, 50)
    log(`pull onto the nodes: ${RUNS} each through berth's puller and straight through the apiserver`)
    const pulls = await measureNodePulls({ kubeconfig, image, namespace, apiserver, runs: RUNS, log })
    const memory = readFileSync(`/proc/${berthProcess.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1]

    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', loadAverageAtStart: loadAverage, node: process.version, kubernetes: version.gitVersion },
      setup: {
        cluster: `the cluster BERTH_TEST_KUBECONFIG names; ${DEPLOYMENTS} Deployments scaled to none in one namespace`,
        berth: 'dist/server.js with BERTH_ENGINE=kubernetes on 127.0.0.1, logging at info to a file; ps and inspect answer from its watch-fed copy',
        engine: 'the apiserver\'s HTTPS API with the same kubeconfig, keep-alive: the list and get calls a client makes for the same answer',
        latency: 'one request at a time, apiserver and berth interleaved request by request',
        runToReachable: `${RUNS} runs each, from the request to the first HTTP answer on the pod's host port at its node`,
        exec: 'berth: POST /v1/containers/{name}/exec streamed as NDJSON, read to its end; the apiserver: a WebSocket to the pod\'s exec subresource per command, read to its close',
        pullOntoNodes: `${RUNS} pulls each of an image the nodes hold (pull policy Always: the registry is asked), from the call until every node has it and the puller pods are gone; berth's is the engine's puller in the bench process (not yet behind POST /v1/images/pull)`
      },
      operations: rows.map(row => ({ ...row, ratio: { p50: round(row.berth.p50 / row.engine.p50, 2), p99: round(row.berth.p99 / row.engine.p99, 2) } })),
      runToReachableMs: { ...runRow, ratio: { berthToApiserver: round(runRow.berth.p50 / runRow.engine.p50, 2) } },
      pullOntoNodesMs: { ...pulls, ratio: { berthToApiserver: round(pulls.berth.p50 / pulls.engine.p50, 2) } },
      berthRssMiB: memory === undefined ? null : round(Number(memory) / 1024, 1),
      berthErrorLogLines: readFileSync(berthLog, 'utf8').split('\n').filter(line => /"level":(5|6)\d/.test(line)).length,
      seconds: round((performance.now() - started) / 1000, 1)
    }
    mkdirSync(join(root, 'bench/results'), { recursive: true })
    writeFileSync(join(root, 'bench/results/kubernetes-latest.json'), JSON.stringify(report, null, 2) + '\n')
    console.log(table(report.operations, runRow))
    console.log(`pull onto ${pulls.nodes} node(s), p50: berth's puller ${ms(pulls.berth.p50)} ms, the apiserver's API ${ms(pulls.engine.p50)} ms (× ${report.pullOntoNodesMs.ratio.berthToApiserver})`)
    console.log(`wrote bench/results/kubernetes-latest.json after ${report.seconds} s`)
    berth.close()
  } finally {
    await berthProcess?.stop()
    await apiserver.request('DELETE', `/api/v1/namespaces/${namespace}`)
    apiserver.close()
    rmSync(workDir, { recursive: true, force: true })
  }
}

function deployment (name: string, image: string, replicas: number): object {
  const selector = { 'io.berth/id': name }
  return {
    metadata: { name, labels: selector, annotations: { 'io.berth/labels': LABELS, 'io.berth/replicas': '1' } },
    spec: {
      replicas,
      selector: { matchLabels: selector },
      strategy: { type: 'Recreate' },
      template: {
        metadata: { labels: selector, annotations: { 'io.berth/labels': LABELS } },
        spec: {
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 1,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{ name: 'main', image, securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }]
        }
      }
    }
  }
}

/** A command's stdout through the apiserver's exec subresource (channel protocol v4: stdout is channel 1, the status channel 3). */
async function apiserverExec (url: string, tls: https.RequestOptions): Promise<string> {
  const socket = new WebSocket(url, ['v4.channel.k8s.io'], { ca: tls.ca, cert: tls.cert, key: tls.key, headers: (tls.headers ?? {}) as Record<string, string>, perMessageDeflate: false })
  const stdout: Buffer[] = []
  return await new Promise<string>((resolve, reject) => {
    socket.on('message', (data: Buffer) => { if (data[0] === 1) stdout.push(data.subarray(1)) })
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(stdout).toString()))
  })
}

async function answers (address: string, port: number): Promise<boolean> {
  try {
    return (await fetch(`http://${address}:${port}/`, { signal: AbortSignal.timeout(500) })).ok
  } catch {
    return false
  }
}

function table (rows: Array<Row & { ratio: { p50: number, p99: number } }>, run: Record<'berth' | 'engine', Percentiles>): string {
  const header = ['operation', 'p50 apiserver', 'p50 berth', '×', 'p99 apiserver', 'p99 berth', '×', 'calls b/a']
  const body = rows.map(r => [r.name, ms(r.engine.p50), ms(r.berth.p50), r.ratio.p50.toFixed(2), ms(r.engine.p99), ms(r.berth.p99), r.ratio.p99.toFixed(2), r.calls])
  body.push(['run → reachable', ms(run.engine.p50), ms(run.berth.p50), (run.berth.p50 / run.engine.p50).toFixed(2), ms(run.engine.p99), ms(run.berth.p99), (run.berth.p99 / run.engine.p99).toFixed(2), '-'])
  return formatTable(`Kubernetes backend, ${DEPLOYMENTS} Deployments, latency in ms one request at a time; × is berth ÷ the apiserver's own API`, header, body)
}

await runBench(log, BUDGET_MS, main)
