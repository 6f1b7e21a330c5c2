// The engine backends a test run has: docker always (the shared test engine), swarm when
// scripts/swarm-env.sh brought its three-node cluster up (.swarm-env/env). Each backend builds an
// app on itself, says where a published port answers, and finds and removes what a test made there
// (by the run's label), also when the test failed.
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { buildApp } from '../src/app.ts'
import type { DeepPartial, Config } from '../src/config.ts'
import type { EngineKind } from '../src/engine/types.ts'
import { swarm } from '../src/engine/swarm/backend.ts'
import { SwarmHost } from '../src/engine/swarm/host.ts'
import { composeFrom } from '../src/engine/parts.ts'
import { HTTPD, RUN, RUN_LABEL, build, checkDeclaredProblems, docker, env, pushImage, testConfig, waitFor } from './helpers.ts'
import { admin, buildKube, kubeEnv, leftoversIn } from './kubernetes-env.ts'

const run = promisify(execFile)
const root = new URL('..', import.meta.url).pathname

export interface SwarmEnv {
  socket: string
  /** node name → its address */
  nodes: Record<string, string>
  /** node name → its own Docker socket, for checking what runs there behind berth's back */
  nodeSockets: Record<string, string>
  image: string
  imageDigest: string
  registry: string
  /** A registry behind htpasswd, and an image in it that no node holds. */
  authRegistry: string
  authUser: string
  authPassword: string
  authImage: string
  state: string
  /** The secret berth's agents on the nodes hold, and their port. */
  agentSecretFile: string
  agentPort: number
}

function pairs (text: string | undefined): Record<string, string> {
  return Object.fromEntries((text ?? '').split(',').filter(Boolean).map(pair => {
    const eq = pair.indexOf('=')
    return [pair.slice(0, eq), pair.slice(eq + 1)]
  }))
}

function readSwarmEnv (): SwarmEnv | null {
  const file = `${root}.swarm-env/env`
  if (!existsSync(file)) return null
  const values: Record<string, string> = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) values[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return {
    socket: values.BERTH_TEST_SWARM_SOCKET as string,
    nodes: pairs(values.BERTH_TEST_SWARM_NODES),
    nodeSockets: pairs(values.BERTH_TEST_SWARM_NODE_SOCKETS),
    image: values.BERTH_TEST_SWARM_IMAGE as string,
    imageDigest: values.BERTH_TEST_SWARM_IMAGE_DIGEST as string,
    registry: values.BERTH_TEST_SWARM_REGISTRY as string,
    authRegistry: values.BERTH_TEST_SWARM_AUTH_REGISTRY as string,
    authUser: values.BERTH_TEST_SWARM_AUTH_USER as string,
    authPassword: values.BERTH_TEST_SWARM_AUTH_PASSWORD as string,
    authImage: values.BERTH_TEST_SWARM_AUTH_IMAGE as string,
    state: values.BERTH_TEST_SWARM_STATE as string,
    agentSecretFile: values.BERTH_TEST_SWARM_AGENT_SECRET_FILE as string,
    agentPort: Number(values.BERTH_TEST_SWARM_AGENT_PORT)
  }
}

export const swarmEnv = readSwarmEnv()

/** A client of one node's own engine (not through the manager). */
export function nodeEngine (node: string): Docker {
  return new Docker({ socketPath: (swarmEnv as SwarmEnv).nodeSockets[node] as string })
}

/** The manager's API, for arranging and checking the cluster behind berth's back. */
export const manager = swarmEnv === null ? null : new Docker({ socketPath: swarmEnv.socket })

/**
 * stop-node (SIGTERM), kill-node (SIGKILL) or start-node of the cluster's harness. A node started again
 * is handed back once berth's agent there listens again (Swarm restarts it a while after its engine
 * answers): a suite that holds the cluster next reaches every node through its agent.
 */
export async function swarmNode (action: 'stop-node' | 'kill-node' | 'start-node', node: string): Promise<void> {
  const cluster = swarmEnv as SwarmEnv
  await run('bash', [`${root}scripts/swarm-env.sh`, action, node], { env: { ...process.env, BERTH_SWARM_STATE: cluster.state } })
  if (action === 'start-node' && Number.isInteger(cluster.agentPort) && cluster.agentPort > 0) {
    await waitFor(`berth's agent on ${node} to listen again`, async () => await listening(cluster.nodes[node] as string, cluster.agentPort), Boolean, 180_000)
  }
}

async function listening (host: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect({ host, port, timeout: 2000 })
    const done = (answer: boolean) => { socket.destroy(); resolve(answer) }
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
    socket.once('timeout', () => { done(false) })
  })
}

export interface BuildOn {
  config?: DeepPartial<Config>
  socketPath?: string
  /** Swarm: without berth's agents (no secret), as a berth configured without them. */
  noAgents?: boolean
  /** Swarm: this secret instead of the one the agents hold. */
  agentSecret?: string
}

export interface Backend {
  kind: EngineKind
  /** The test image as this backend runs it. */
  image: string
  /** The command that makes the image serve "hello from berth-test", and the port it listens on. */
  httpd: string[]
  httpPort: number
  build (t: Test, options?: BuildOn): Promise<FastifyInstance>
  /** Where each published port of a container (as berth reports it) answers, as [address, port]. */
  endpoints (container: { ports: Array<{ host: number | null, hostIp: string }> }): Array<[string, number]>
  /** Run-body fields that make a run take its host port on every node it could run on. */
  everywhere: Record<string, unknown>
  /** What of this test run is still on the engine (containers, services, tasks' containers). */
  leftovers (): Promise<string[]>
  /** Removes everything of this test run. */
  cleanup (): Promise<void>
  /** A new image of this run in a registry the backend's engines pull from, on none of them: `registry/RUN-suffix/web:1`. */
  pushImage (suffix: string): Promise<{ reference: string, digest: string }>
}

export const dockerBackend: Backend = {
  kind: 'docker',
  // Read when a test asks, not at import: the Kubernetes suites import this file and must run
  // without the docker test environment's variables.
  get image () { return env.image },
  httpd: HTTPD,
  httpPort: 80,
  build: async (t, options = {}) => await build(t, options),
  endpoints: container => container.ports.flatMap(port => port.host === null ? [] : [['127.0.0.1', port.host] as [string, number]]),
  everywhere: {},
  leftovers: async () => {
    const containers = await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
    return containers.map(container => `container ${container.Names[0]}`)
  },
  cleanup: async () => {
    for (const info of await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })) {
      await docker.getContainer(info.Id).remove({ force: true, v: true }).catch(() => {})
    }
  },
  pushImage: async suffix => await pushImage(suffix)
}

async function swarmLeftovers (): Promise<string[]> {
  const cluster = swarmEnv as SwarmEnv
  const services = await (manager as Docker).listServices({ filters: { label: [`${RUN_LABEL}=${RUN}`] } })
  const left = services.map(service => `service ${service.Spec?.Name}`)
  for (const node of Object.keys(cluster.nodeSockets)) {
    const containers = await nodeEngine(node).listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } }).catch(() => [])
    left.push(...containers.map(container => `container ${container.Names[0]} on ${node}`))
  }
  return left
}

export const swarmBackend: Backend | null = swarmEnv === null
  ? null
  : {
      kind: 'swarm',
      image: swarmEnv.image,
      httpd: HTTPD,
      httpPort: 80,
      build: async (t, options = {}) => await buildSwarm(t, options),
      // Host-mode ports answer on the address of the node each replica runs on.
      endpoints: container => container.ports.flatMap(port => port.host === null || port.hostIp === '' ? [] : [[port.hostIp, port.host] as [string, number]]),
      everywhere: { replicas: Object.keys(swarmEnv.nodes).length },
      leftovers: swarmLeftovers,
      cleanup: async () => {
        const services = await (manager as Docker).listServices({ filters: { label: [`${RUN_LABEL}=${RUN}`] } }).catch(() => [])
        for (const service of services) await (manager as Docker).getService(service.ID).remove().catch(() => {})
        // The nodes stop the tasks' containers by themselves; one that is not coming is removed here.
        await waitFor('the run\'s task containers to go', swarmLeftovers, left => left.length === 0, 30_000).catch(() => {})
        for (const node of Object.keys(swarmEnv.nodeSockets)) {
          const engine = nodeEngine(node)
          for (const info of await engine.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } }).catch(() => [])) {
            await engine.getContainer(info.Id).remove({ force: true }).catch(() => {})
          }
          // What berth made for the run there: volumes named after it, images tagged with it.
          for (const volume of (await engine.listVolumes({ filters: { name: [RUN] } }).catch(() => ({ Volumes: [] }))).Volumes ?? []) {
            await engine.getVolume(volume.Name).remove().catch(() => {})
          }
          for (const image of await engine.listImages().catch(() => [])) {
            for (const ref of [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].filter(ref => ref.includes(RUN))) await engine.getImage(ref).remove({ force: true }).catch(() => {})
          }
        }
        const hub = manager as Docker
        for (const network of await hub.listNetworks({ filters: { name: [RUN] } }).catch(() => [])) await hub.getNetwork(network.Id).remove().catch(() => {})
        // Moved expiry ends of services that are gone (berth forgets them at its next look; this run's are forgotten now).
        const live = new Set((await hub.listServices().catch(() => [])).map(service => service.ID))
        for (const config of await hub.listConfigs({ filters: { label: ['io.berth.lease-for'] } }).catch(() => [])) {
          if (!live.has(config.Spec?.Labels?.['io.berth.lease-for'] ?? '')) await hub.getConfig(config.ID).remove().catch(() => {})
        }
      },
      pushImage: async suffix => {
        // Pushed by node1 (the host's engine cannot reach the cluster's registry) and dropped there again.
        const engine = nodeEngine('node1')
        const repository = `${swarmEnv.registry}/${RUN}-${suffix}/web`
        await engine.getImage(swarmEnv.image).tag({ repo: repository, tag: '1' })
        const stream = await engine.getImage(`${repository}:1`).push({ authconfig: {} })
        const output: Array<{ error?: string, aux?: { Digest?: string } }> = await new Promise((resolve, reject) => {
          engine.modem.followProgress(stream, (error, result) => error ? reject(error) : resolve(result))
        })
        const failed = output.find(line => line.error)
        if (failed) throw new Error(`push of ${repository}:1 failed: ${failed.error}`)
        await engine.getImage(`${repository}:1`).remove()
        return { reference: `${repository}:1`, digest: output.find(line => line.aux?.Digest)?.aux?.Digest as string }
      }
    }

/** The contract's namespace on the test cluster, as deploy/kubernetes/namespaces.yaml makes berth-default, made once when first used. */
let contractNamespace: Promise<string> | null = null
export async function kubeContractNamespace (): Promise<string> {
  contractNamespace ??= (async () => {
    const name = `${RUN}-contract`
    await (admin as NonNullable<typeof admin>).core.createNamespace({ body: { metadata: { name, labels: { 'pod-security.kubernetes.io/warn': 'restricted' } } } })
    return name
  })()
  return await contractNamespace
}

/** The Kubernetes backend, when a cluster is named. */
export const kubernetesBackend: Backend | null = kubeEnv === null
  ? null
  : {
      kind: 'kubernetes',
      image: kubeEnv.image,
      httpd: kubeEnv.httpd,
      httpPort: kubeEnv.port,
      build: async (t, options = {}) => await buildKube(t, { namespace: await kubeContractNamespace(), ...(options.config === undefined ? {} : { config: options.config }) }),
      // A hostPort answers on the address of the node its pod runs on.
      endpoints: container => container.ports.flatMap(port => port.host === null || port.hostIp === '' ? [] : [[port.hostIp, port.host] as [string, number]]),
      everywhere: {},
      leftovers: async () => await leftoversIn(await kubeContractNamespace()),
      cleanup: async () => {
        if (contractNamespace === null) return
        await (admin as NonNullable<typeof admin>).core.deleteNamespace({ name: await contractNamespace }).catch(() => {})
      },
      pushImage: async () => { throw new Error('no registry for the Kubernetes test cluster is known here') }
    }

/** Whether the docker test environment is there (npm test starts it); the Kubernetes suites run without it. */
function hasDockerEnv (): boolean {
  try {
    return env.image !== ''
  } catch {
    return false
  }
}

export const backends: Backend[] = [...(hasDockerEnv() ? [dockerBackend] : []), ...(swarmBackend === null ? [] : [swarmBackend]), ...(kubernetesBackend === null ? [] : [kubernetesBackend])]

/** An app on the Swarm backend, driving the test cluster's manager. */
export async function buildSwarm (t: Test, options: BuildOn = {}): Promise<FastifyInstance> {
  const cluster = swarmEnv as SwarmEnv
  const config = testConfig({
    ...options.config,
    engine: { kind: 'swarm', socketPath: options.socketPath ?? cluster.socket, publishMode: 'host', placementTimeoutMs: 20_000, ...options.config?.engine } as DeepPartial<Config['engine']>
  })
  const engineConfig = config.engine as Extract<Config['engine'], { kind: 'swarm' }>
  const engine = await composeFrom(swarm, new SwarmHost({
    socketPath: engineConfig.socketPath,
    timeoutMs: engineConfig.timeoutMs,
    publishMode: engineConfig.publishMode,
    placementTimeoutMs: engineConfig.placementTimeoutMs,
    registryAuth: config.registryAuth,
    agent: options.noAgents === true ? null : { secret: options.agentSecret ?? readFileSync(cluster.agentSecretFile, 'utf8'), port: cluster.agentPort },
    pollMs: 50,
    eventPollMs: 200
  }), config)
  const app = await buildApp(config, { engine })
  checkDeclaredProblems(t, app)
  t.teardown(() => app.close())
  return app as unknown as FastifyInstance
}

/** GETs http://address:port/ until a server answers (a replica needs a moment to listen). */
export async function fetchFrom (address: string, port: number, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://${address}:${port}/`, { signal: AbortSignal.timeout(2000) })
      if (response.ok) return await response.text()
      lastError = new Error(`HTTP ${response.status}`)
    } catch (error) {
      lastError = error
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`nothing answered on ${address}:${port}: ${String(lastError)}`)
}

/**
 * Holds the test cluster for this test file: suites run in parallel, and one that restarts the
 * manager or loses a node would break another's services mid-test. A lock directory with the
 * holder's pid; a holder that died is replaced.
 */
export async function holdCluster (t: Test): Promise<void> {
  const lock = `${(swarmEnv as SwarmEnv).state}/test-lock`
  await waitFor('the test cluster (another suite holds it)', () => {
    try {
      mkdirSync(lock)
      writeFileSync(`${lock}/pid`, String(process.pid))
      return true
    } catch {
      const holder = Number(readFileSync(`${lock}/pid`, 'utf8').trim() || 0)
      if (holder > 0 && !alive(holder)) rmSync(lock, { recursive: true, force: true })
      return false
    }
  }, Boolean, 15 * 60_000)
  t.teardown(() => rmSync(lock, { recursive: true, force: true }))
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
