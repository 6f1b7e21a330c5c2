// The Kubernetes backend's test cluster: a real one named by BERTH_TEST_KUBECONFIG (cluster-admin,
// for arranging and checking behind berth's back). CI has none, and the suites that need it say
// they skipped; no mock stands in for the apiserver. Each test run works in namespaces of its own,
// removed at the end, and berth reaches the apiserver through a TCP relay the tests can cut, for a
// real outage that leaves the cluster itself alone.
import { connect, createServer, type Server, type Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import { AppsV1Api, BatchV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, loadAllYaml, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { buildApp } from '../src/app.ts'
import type { Config, DeepPartial } from '../src/config.ts'
import { kubernetes, openKube } from '../src/engine/kubernetes/backend.ts'
import { composeFrom } from '../src/engine/parts.ts'
import type { TokenStore } from '../src/access/token-store.ts'
import { RUN, checkDeclaredProblems, testConfig, waitFor, type LogCapture } from './helpers.ts'

export interface KubeEnv {
  kubeconfig: string
  /** A non-root web server on 8080 that answers "hello from berth-test". */
  image: string
  /** The same, running as root. */
  rootImage: string
  /** The command that serves it (as the image's own). */
  httpd: string[]
  port: number
}

function readKubeEnv (): KubeEnv | null {
  const kubeconfig = process.env.BERTH_TEST_KUBECONFIG
  if (kubeconfig === undefined || kubeconfig === '') return null
  return {
    kubeconfig,
    image: process.env.BERTH_TEST_KUBE_IMAGE ?? '',
    rootImage: process.env.BERTH_TEST_KUBE_ROOT_IMAGE ?? '',
    httpd: ['httpd', '-f', '-p', '8080', '-h', '/www'],
    port: 8080
  }
}

export const kubeEnv = readKubeEnv()
export const KUBE_SKIP = 'BERTH_TEST_KUBECONFIG names no Kubernetes cluster (docs/testing.md: "Testing on Kubernetes")'

/** cluster-admin, for what the tests arrange and check. */
export function adminConfig (): KubeConfig {
  const config = new KubeConfig()
  config.loadFromFile((kubeEnv as KubeEnv).kubeconfig)
  return config
}

export const admin = kubeEnv === null ? null : { apps: adminConfig().makeApiClient(AppsV1Api), batch: adminConfig().makeApiClient(BatchV1Api), core: adminConfig().makeApiClient(CoreV1Api) }

/** This run's namespace for a purpose, as deploy/kubernetes/namespaces.yaml makes berth-default, removed at the end. */
export async function namespaceFor (t: Test, purpose: string): Promise<string> {
  const name = `${RUN}-${purpose}`
  const core = (admin as NonNullable<typeof admin>).core
  await core.createNamespace({ body: { metadata: { name, labels: { 'pod-security.kubernetes.io/warn': 'restricted', 'berth.test.run': RUN } } } })
  t.teardown(async () => { await core.deleteNamespace({ name }).catch(() => {}) })
  return name
}

/** Everything left in a namespace: Deployments, Jobs, pods (also while they terminate), secrets and volumes berth made. */
export async function leftoversIn (namespace: string): Promise<string[]> {
  const { apps, batch, core } = admin as NonNullable<typeof admin>
  const deployments = await apps.listNamespacedDeployment({ namespace })
  const jobs = await batch.listNamespacedJob({ namespace })
  const pods = await core.listNamespacedPod({ namespace })
  const secrets = await core.listNamespacedSecret({ namespace, labelSelector: 'app.kubernetes.io/managed-by=berth' })
  const claims = await core.listNamespacedPersistentVolumeClaim({ namespace })
  return [
    ...deployments.items.map(item => `deployment ${item.metadata?.name}`),
    ...jobs.items.map(item => `job ${item.metadata?.name}`),
    ...pods.items.map(item => `pod ${item.metadata?.name}`),
    ...secrets.items.map(item => `secret ${item.metadata?.name}`),
    ...claims.items.map(item => `volume ${item.metadata?.name}`)
  ]
}

export interface BerthIdentity {
  /** Where berth's own pod would run (the ServiceAccount's namespace). */
  system: string
  /** Where its containers live: the Role's namespace. */
  tenants: string
  /** A token of the ServiceAccount, for buildKube. */
  token: string
}

/**
 * berth's identity as the committed manifests (deploy/kubernetes/) make it, in namespaces of this
 * run: its ServiceAccount, its Role, and the optional ClusterRoles named (under names of this run),
 * removed at the end. What berth can do with its token is what it can do in a cluster set up by them.
 */
export async function berthIdentity (t: Test, purpose: string, clusterRoles: string[] = []): Promise<BerthIdentity> {
  const system = `${RUN}-${purpose}-system`
  const tenants = `${RUN}-${purpose}`
  const objects = KubernetesObjectApi.makeApiClient(adminConfig())
  const core = (admin as NonNullable<typeof admin>).core
  const manifests = ['namespaces.yaml', 'rbac.yaml', ...clusterRoles].flatMap(file => loadAllYaml(readFileSync(new URL(`../deploy/kubernetes/${file}`, import.meta.url), 'utf8')
    .replaceAll('berth-system', system).replaceAll('berth-default', tenants).replace(/name: berth-(nodes-reader|kubelet-stats)/g, `name: ${tenants}-$1`)) as KubernetesObject[])
  t.teardown(async () => {
    for (const object of manifests.filter(candidate => candidate.kind?.startsWith('Cluster') === true)) await objects.delete(object).catch(() => {})
    for (const name of [system, tenants]) await core.deleteNamespace({ name }).catch(() => {})
  })
  for (const object of manifests) await objects.create(object)
  await core.patchNamespace({ name: tenants, body: { metadata: { labels: { 'berth.test.run': RUN } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  const token = await core.createNamespacedServiceAccountToken({ namespace: system, name: 'berth', body: { spec: { audiences: [], expirationSeconds: 3600 } } })
  return { system, tenants, token: token.status?.token as string }
}

/** A TCP relay to the apiserver that a test can cut (every connection dropped, nothing accepted) and restore. */
export class ApiserverRelay {
  readonly #target: URL
  #server: Server | null = null
  readonly #sockets = new Set<Socket>()
  port = 0

  constructor (server: string) {
    this.#target = new URL(server)
  }

  async start (): Promise<void> {
    const server = createServer(client => {
      const upstream = connect(Number(this.#target.port || 443), this.#target.hostname)
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
        socket.on('error', () => { client.destroy(); upstream.destroy() })
      }
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => resolve())
    })
    this.port = (server.address() as { port: number }).port
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = null
    for (const socket of this.#sockets) socket.destroy()
    if (server !== null) await new Promise<void>(resolve => server.close(() => resolve()))
  }
}

export interface KubeBuild {
  config?: DeepPartial<Config>
  namespace: string
  /** Reach the apiserver through this relay (its address replaces the kubeconfig's). */
  relay?: ApiserverRelay
  /** Credentials other than cluster-admin: a bearer token (a ServiceAccount's). */
  token?: string
  /** The tokens in use, for a test that reloads them. */
  tokens?: TokenStore
  logs?: LogCapture
}

/** An app on the Kubernetes backend, in a namespace of this run's. */
export async function buildKube (t: Test, options: KubeBuild): Promise<FastifyInstance> {
  let kubeconfig = adminConfig()
  if (options.relay !== undefined || options.token !== undefined) {
    const cluster = kubeconfig.getCurrentCluster()
    const user = options.token === undefined ? kubeconfig.getCurrentUser() : { name: 'token', token: options.token }
    if (cluster === null || user === null) throw new Error('the test kubeconfig has no current cluster and user')
    // The apiserver's certificate names 127.0.0.1 as well as its own address.
    const server = options.relay === undefined ? cluster.server : `https://127.0.0.1:${options.relay.port}`
    kubeconfig = new KubeConfig()
    kubeconfig.loadFromOptions({ clusters: [{ ...cluster, server }], users: [user], contexts: [{ name: 'test', cluster: cluster.name, user: user.name }], currentContext: 'test' })
  }
  const config = testConfig({
    ...options.config,
    engine: { kind: 'kubernetes', kubeconfig: null, namespace: options.namespace, placementTimeoutMs: 60_000, ...options.config?.engine } as DeepPartial<Config['engine']>
  })
  const engineConfig = config.engine as Extract<Config['engine'], { kind: 'kubernetes' }>
  const engine = await composeFrom(kubernetes, await openKube({
    kubeconfig,
    namespace: options.namespace,
    timeoutMs: engineConfig.timeoutMs,
    placementTimeoutMs: engineConfig.placementTimeoutMs,
    registryAuth: config.registryAuth,
    volumes: engineConfig.volumes,
    pollMs: 50
  }), config)
  const app = await buildApp(config, { engine, ...(options.tokens === undefined ? {} : { tokens: options.tokens }), ...(options.logs === undefined ? {} : { logger: options.logs.logger }) })
  checkDeclaredProblems(t, app)
  t.teardown(() => app.close())
  await waitFor('berth\'s copies of the namespace', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode, status => status === 200, 30_000)
  return app as unknown as FastifyInstance
}
