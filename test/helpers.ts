// Shared test harness: a fresh berth app per suite against the real test engine and registries
// that scripts/test-env.sh started, with everything a test creates named after its run and removed
// at the end, also when the test fails.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import type { Test } from 'tap'
import { Type } from 'typebox'
import { Value } from 'typebox/value'
import { buildApp } from '../src/app.ts'
import { DOCKER_SOCKET, hashToken, makeConfig, type Config, type DeepPartial, type Scope } from '../src/config.ts'
import type { TokenStore } from '../src/access/token-store.ts'
import { DockerHost, docker as dockerBackend } from '../src/engine/docker/backend.ts'
import { composeFrom } from '../src/engine/parts.ts'
import type { Backend, ContainersPart, OptionalPart, Parts } from '../src/engine/parts.ts'
import { parseImage, type ImageRef } from '../src/engine/image-ref.ts'
import { createLogger } from '../src/http/log-redactions.ts'
import { errorCodes, PROBLEM_TYPE_BASE, type ErrorCode } from '../src/errors.ts'
import { declaredHeaders, HEADERS, type HeaderName } from '../src/schemas/headers.ts'
import { declares, PROBLEM_JSON, PROBLEM_MEMBERS } from '../src/schemas/problems.ts'

function readTestEnv (): Record<string, string> {
  const file = new URL('../.test-env/env', import.meta.url)
  const values: Record<string, string> = {}
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const eq = line.indexOf('=')
      if (eq > 0) values[line.slice(0, eq)] = line.slice(eq + 1)
    }
  }
  return { ...values, ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key.startsWith('BERTH_TEST_')) as Array<[string, string]>) }
}

const testEnv = readTestEnv()
function required (name: string): string {
  const value = testEnv[name]
  if (!value) throw new Error(`${name} is not set: run the tests with "npm test" (it starts the engine and registries)`)
  return value
}

export const env = {
  socket: testEnv.BERTH_TEST_SOCKET ?? '/var/run/docker.sock',
  get registry () { return required('BERTH_TEST_REGISTRY') },
  get authRegistry () { return required('BERTH_TEST_AUTH_REGISTRY') },
  get authUser () { return required('BERTH_TEST_AUTH_USER') },
  get authPassword () { return required('BERTH_TEST_AUTH_PASSWORD') },
  get image () { return required('BERTH_TEST_IMAGE') }
}

/** Unique to this test process: every container, image and volume a test makes carries it. */
export const RUN = `bt${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
export const RUN_LABEL = 'berth.test.run'

/** A raw client for arranging and checking the engine's state behind berth's back. */
export const docker = new Docker({ socketPath: env.socket })

export const TOKENS = {
  admin: { token: 'admin-token-' + randomBytes(12).toString('hex'), scopes: ['admin'] as Scope[] },
  alice: { token: 'alice-token-' + randomBytes(12).toString('hex'), scopes: ['write'] as Scope[] },
  bob: { token: 'bob-token-' + randomBytes(12).toString('hex'), scopes: ['write'] as Scope[] },
  reader: { token: 'reader-token-' + randomBytes(12).toString('hex'), scopes: ['read'] as Scope[] }
}
export type TokenName = keyof typeof TOKENS

export function auth (who: TokenName = 'admin'): Record<string, string> {
  return { authorization: `Bearer ${TOKENS[who].token}` }
}

export function name (suffix: string): string {
  return `${RUN}-${suffix}`
}

export function testConfig (overrides: DeepPartial<Config> = {}): Config {
  return makeConfig({
    ...overrides,
    // The engine is shared by every test run on the machine: a call it answers slowly under that load
    // is not what these tests are about. Those about the deadline set a short one of their own.
    engine: { socketPath: env.socket, timeoutMs: 60_000, ...overrides.engine },
    auth: {
      tokens: Object.entries(TOKENS).map(([tokenName, { token, scopes }]) => ({ name: tokenName, scopes, sha256: hashToken(token) })),
      ...overrides.auth
    },
    // No background sweeps unless a test asks for them: they would add engine calls and connections
    // to what other tests count, and act on containers of suites running beside them.
    lifecycle: { sweepIntervalMs: 0, ...overrides.lifecycle }
  })
}

/** Captures everything the app logs, as the parsed JSON lines and as raw text. */
export class LogCapture {
  readonly lines: Array<Record<string, unknown>> = []
  text = ''
  readonly logger = createLogger({ level: 'debug' }, new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      this.text += chunk.toString()
      for (const line of chunk.toString().split('\n')) if (line) this.lines.push(JSON.parse(line))
      done()
    }
  }))
}

/** Error-level lines are for faults: a suite that provokes none asserts that it logged none (refusals included). */
export function assertNoFaults (t: Test, logs: LogCapture, what = 'no error-level log line: nothing here is a fault'): void {
  t.same(logs.lines.filter(line => (line.level as number) >= 50), [], what)
}

export interface BuildOptions {
  config?: DeepPartial<Config>
  socketPath?: string
  logs?: LogCapture
  /** The app's clock (ms), for time windows tested without waiting. */
  now?: () => number
  /** The tokens in use, for a test that reloads them; by default the TOKENS, fixed. */
  tokens?: TokenStore
  /** A backend of the test's own (one that wraps the real one); by default the docker backend on socketPath. */
  engine?: Backend
  /**
   * false: the docker backend without its watch-fed copy, every read asking the engine. For a test that
   * counts the connections to the engine that requests and streams hold, which the copy's own event
   * stream and pings would blur.
   */
  copy?: false
}

/** The docker backend on the test engine, as build() makes it: for a test that wraps some of its calls (withParts). */
export async function dockerEngine (): Promise<Backend> {
  return await composeFrom(dockerBackend, new DockerHost({ socketPath: env.socket, timeoutMs: 10_000, registryAuth: {} }))
}

type PartOverrides = { containers?: Partial<ContainersPart> } & { [N in OptionalPart]?: Partial<Parts[N]> }

/** `real` with some methods of its parts replaced by the test's own; every other call is the real one's. */
export function withParts (real: Backend, overrides: PartOverrides): Backend {
  const over = <P extends object>(part: P, methods: Partial<P> | undefined): P => methods === undefined
    ? part
    : new Proxy(part, {
      get (target, property) {
        if (Object.hasOwn(methods, property)) return (methods as Record<string | symbol, unknown>)[property]
        const value = Reflect.get(target, property, target) as unknown
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  const parts = new Map<string, unknown>()
  return {
    ...real,
    containers: over(real.containers, overrides.containers),
    part: <N extends OptionalPart>(name: N): Parts[N] => {
      if (!parts.has(name)) parts.set(name, over(real.part(name), overrides[name] as Partial<Parts[N]> | undefined))
      return parts.get(name) as Parts[N]
    }
  }
}

/** A clock a test moves by hand, for the app (BuildOptions.now): time passes without waiting for it. */
export class TestClock {
  at = Date.now()
  readonly now = (): number => this.at
  advance (ms: number): void {
    this.at += ms
  }
}

/** A promise the test resolves when it chooses: holds a wrapped engine call until then. */
export function gate (): { opened: Promise<void>, open: () => void } {
  let open: () => void = () => {}
  const opened = new Promise<void>(resolve => { open = resolve })
  return { opened, open }
}

export async function build (t: Test, options: BuildOptions = {}) {
  const config = testConfig(options.config)
  const engine = options.engine ?? await composeFrom(dockerBackend, new DockerHost({
    socketPath: options.socketPath ?? ('socketPath' in config.engine ? config.engine.socketPath : DOCKER_SOCKET),
    timeoutMs: config.engine.timeoutMs,
    registryAuth: config.registryAuth,
    deployment: config.deployment,
    ...(options.copy === false ? { copy: false } : {})
  }))
  const app = await buildApp(config, { engine, ...(options.logs ? { logger: options.logs.logger } : {}), ...(options.now ? { now: options.now } : {}), ...(options.tokens ? { tokens: options.tokens } : {}) })
  checkDeclaredProblems(t, app)
  t.teardown(() => app.close())
  // An engine made here is closed here (its copy's event stream and pings); one handed in is its maker's.
  if (options.engine === undefined) t.teardown(() => engine.close())
  return app
}

export type App = Awaited<ReturnType<typeof build>>

/**
 * The contract, checked on every answer the suites get: a problem an operation answers must be one
 * its schema (so the OpenAPI document) declares for that status; and of the headers the document
 * declares (src/schemas/headers.ts), each one sent must be declared for that answer, and each one
 * declared as always sent must be there. A suite that meets an undeclared one fails at its end,
 * naming the operation, status and code or header.
 */
export function checkDeclaredProblems (t: Test, app: Awaited<ReturnType<typeof buildApp>>): void {
  const undeclared = new Set<string>()
  app.addHook('onSend', async (request, reply, payload) => {
    const schema = request.routeOptions.schema
    if (schema?.operationId === undefined) return payload
    const responses = (schema.response ?? {}) as Record<string, { headers?: Record<string, unknown> }>
    const status = String(reply.statusCode)
    const response = responses[status] ?? responses[`${status[0]}xx`]
    if (response !== undefined) {
      const declared = declaredHeaders(status, response)
      for (const name of Object.keys(HEADERS) as HeaderName[]) {
        const sent = reply.hasHeader(name)
        if (sent && !declared.includes(name)) undeclared.add(`${schema.operationId} answered ${status} with ${name}, undeclared`)
        if (!sent && declared.includes(name) && HEADERS[name].required) undeclared.add(`${schema.operationId} answered ${status} without ${name}, declared as always sent`)
      }
    }
    if (typeof payload !== 'string' || !String(reply.getHeader('content-type')).startsWith(PROBLEM_JSON)) return payload
    const { code, type: _type, title: _title, status: _status, detail: _detail, instance: _instance, requestId: _requestId, ...members } = JSON.parse(payload) as { code: ErrorCode, [member: string]: unknown }
    if (!declares(schema.response as Record<string, unknown>, reply.statusCode, code)) undeclared.add(`${schema.operationId} answered ${reply.statusCode} ${code}`)
    // The members it carries, as its code's schema in the document declares them.
    const declaredMembers = Type.Partial(Type.Object(PROBLEM_MEMBERS[code] ?? {}, { additionalProperties: false }))
    if (!Value.Check(declaredMembers, members)) undeclared.add(`${schema.operationId} answered ${code} with members ${JSON.stringify(members)}, not as declared`)
    return payload
  })
  t.teardown(() => {
    if (undeclared.size > 0) throw new Error(`problems and headers the contract does not declare: ${[...undeclared].join('; ')}`)
  })
}

/** A run body for the test image, labelled with the run so cleanup finds it. */
export function runBody (body: Record<string, unknown> = {}): Record<string, unknown> {
  const labels = (body.labels ?? {}) as Record<string, string>
  // The docker test image only when the body names none: a cluster's suites run without the docker engine's.
  return { ...(body.image === undefined ? { image: env.image } : {}), command: ['sleep', '300'], ...body, labels: { ...labels, [RUN_LABEL]: RUN } }
}

/** docker run through berth, as `who`: POST /v1/containers with the run body `body` (see runBody). */
export async function runContainer (app: App, who: TokenName, body: Record<string, unknown> = {}) {
  return await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
}

type Answer = Awaited<ReturnType<App['inject']>>

/**
 * Asserts that `response` is exactly this problem+json: the status, the content type and every member
 * of the body, nothing more. The type and title follow from the code; the instance is the request's
 * path unless `expected` names it. A RegExp anywhere in `expected` is matched rather than compared.
 */
export function assertProblem (t: Test, response: Answer, status: number, expected: { code: ErrorCode, detail: string | RegExp, instance?: string, [member: string]: unknown }, what: string = expected.code): void {
  t.equal(response.statusCode, status, `${what}: status`)
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8', `${what}: content type`)
  const body = response.json() as Record<string, unknown>
  const { code, detail, instance = (response.raw.req.url ?? '').split('?')[0], ...members } = expected
  t.same(body, matched(t, body, {
    type: PROBLEM_TYPE_BASE + code,
    title: errorCodes[code].title,
    status,
    detail,
    code,
    instance,
    requestId: response.headers['x-request-id'],
    ...members
  }), `${what}: body`)
}

/** `expected` with each RegExp in it replaced by what it matched in `actual` (each match is asserted). */
function matched (t: Test, actual: unknown, expected: unknown): unknown {
  if (expected instanceof RegExp) {
    t.match(actual, expected)
    return typeof actual === 'string' && expected.test(actual) ? actual : expected.source
  }
  if (Array.isArray(expected)) return expected.map((item, i) => matched(t, Array.isArray(actual) ? actual[i] : undefined, item))
  if (typeof expected === 'object' && expected !== null) {
    const of = (typeof actual === 'object' && actual !== null ? actual : {}) as Record<string, unknown>
    return Object.fromEntries(Object.entries(expected).map(([key, value]) => [key, matched(t, of[key], value)]))
  }
  return expected
}

/** Removes every container and image of this run; registered once per test file. */
export function cleanupAfter (t: Test): void {
  t.teardown(async () => {
    const containers = await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
    const named = await docker.listContainers({ all: true, filters: { name: [RUN] } })
    for (const info of [...containers, ...named]) {
      await docker.getContainer(info.Id).remove({ force: true, v: true }).catch(() => {})
    }
    const images = await docker.listImages({ filters: { reference: [`*/${RUN}*/*`, `*/${RUN}*`] } })
    for (const image of images) {
      // By name, never by id: the test images share their id with berth-test/busybox:1. An image
      // pulled by digest has no tag, only its repo@digest.
      const names = [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].filter(ref => ref.includes(RUN))
      for (const ref of names) await docker.getImage(ref).remove({ force: true }).catch(() => {})
    }
    const volumes = await docker.listVolumes({ filters: { name: [RUN] } })
    for (const volume of volumes.Volumes ?? []) await docker.getVolume(volume.Name).remove().catch(() => {})
    // Networks after the containers attached to them.
    const networks = await docker.listNetworks({ filters: { name: [RUN] } })
    for (const network of networks) await docker.getNetwork(network.Id).remove().catch(() => {})
  })
}

/**
 * Pushes the test image to a local registry as `registry/RUN-suffix/web:tag` and removes the local
 * copy, so that a pull through berth is a real pull over the registry protocol.
 */
export async function pushImage (suffix: string, options: { registry?: string, tag?: string } = {}): Promise<{ reference: string, digest: string }> {
  const registry = options.registry ?? env.registry
  const repository = `${registry}/${RUN}-${suffix}/web`
  const tag = options.tag ?? '1'
  await docker.getImage(env.image).tag({ repo: repository, tag })
  const authconfig = registry === env.authRegistry ? { username: env.authUser, password: env.authPassword, serveraddress: registry } : {}
  const stream = await docker.getImage(`${repository}:${tag}`).push({ authconfig })
  const output: Array<{ error?: string, aux?: { Digest?: string } }> = await new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (error, result) => error ? reject(error) : resolve(result))
  })
  const failed = output.find(line => line.error)
  if (failed) throw new Error(`push of ${repository}:${tag} failed: ${failed.error}`)
  const digest = output.find(line => line.aux?.Digest)?.aux?.Digest
  if (!digest) throw new Error(`push of ${repository}:${tag} reported no digest`)
  await docker.getImage(`${repository}:${tag}`).remove()
  return { reference: `${repository}:${tag}`, digest }
}

export async function imageExists (reference: string): Promise<boolean> {
  try {
    await docker.getImage(reference).inspect()
    return true
  } catch {
    return false
  }
}

export async function containersOfRun (): Promise<Docker.ContainerInfo[]> {
  return await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
}

/** A TCP port nobody listens on right now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '0.0.0.0', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/** GETs http://127.0.0.1:port/ until a server in a container answers (it needs a moment to start). */
export async function fetchFromContainer (port: number, timeoutMs = 10_000): Promise<string> {
  return await waitFor(`a server on port ${port}`, async () => {
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    return await response.text()
  }, () => true, timeoutMs)
}

/**
 * Shell for a container script: holds the container still until the test calls letGo() for it, so
 * that what a test checks meanwhile cannot race the container's own timeline.
 */
export const HOLD = 'until [ -e /tmp/go ]; do sleep 0.05; done'

/** Lets a container held by HOLD go on: makes the file it waits for (docker exec, behind berth's back). */
export async function letGo (id: string): Promise<void> {
  await promisify(execFile)('docker', ['-H', `unix://${env.socket}`, 'exec', id, 'sh', '-c', ': > /tmp/go'])
}

/** The command that makes the busybox test image serve HTTP on port 80. */
export const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www']

/**
 * Polls `probe` until it answers a value `done` accepts, and answers that value; fails naming `what` at
 * the deadline. The deadline only tells a failure from a slow machine: a passing test never reaches it.
 */
export async function waitFor<T> (what: string, probe: () => Promise<T> | T, done: (value: T) => boolean = Boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      last = await probe()
      if (done(last)) return last
    } catch (error) {
      lastError = error
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what} (last: ${lastError === undefined ? JSON.stringify(last) : String(lastError)})`)
}

/** Everything an async iterable yields, once it ends. */
export async function readAll<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

/** An image reference parsed as berth parses one; throws on one that is not (test input is known good). */
export function imageRef (text: string): ImageRef {
  const parsed = parseImage(text)
  if (typeof parsed === 'string' || parsed.kind !== 'ref') throw new Error(`bad reference ${text}`)
  return parsed.ref
}
