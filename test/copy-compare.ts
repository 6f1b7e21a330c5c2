// Checking berth's watch-fed copy of an engine against the engine itself: the same reads through a
// backend that answers from the copy and through one that asks the engine every time, compared at a
// point where the copy has caught up with everything done before it (a marker volume is made on the
// engine; once the copy has read its event, and what every event before it asked for, it has seen
// all that happened earlier). Only what the test made is compared: other suites change the shared
// engine at any moment.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import type { Test } from 'tap'
import { DockerHost, docker as dockerBackend } from '../src/engine/docker/backend.ts'
import type { DockerCopy } from '../src/engine/docker/copy.ts'
import { composeFrom, type Backend } from '../src/engine/parts.ts'
import type { ContainerSummary, ImageSummary } from '../src/engine/types.ts'
import { RUN, RUN_LABEL, auth, env, type App } from './helpers.ts'

const run = promisify(execFile)

/** The docker CLI on the shared engine, as a person would use it beside berth. */
export async function cli (...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { env: { ...process.env, DOCKER_HOST: `unix://${env.socket}` } })
  return stdout.trim()
}

/** What the CLI gives a container so that berth's admin sees it (berth's own labels) and cleanup finds it. */
export function owned (trial: string): string[] {
  return ['--label', `${RUN_LABEL}=${RUN}`, '--label', `berth.test.copy=${trial}`,
    '--label', 'io.berth.managed=true', '--label', 'io.berth.deployment=default', '--label', 'io.berth.owner=admin']
}

export interface Opened {
  host: DockerHost
  /** The copy the host keeps (null for a host without one). */
  copy: DockerCopy
  backend: Backend
}

/**
 * A docker backend on `socketPath`, with a copy of the containers of berth's deployment ("default", as
 * the test apps have it), or (copy: false) asking the engine every time; closed when the test ends.
 */
export async function openDocker (t: Test, socketPath: string, options: { copy?: false, timeoutMs?: number } = {}): Promise<Opened> {
  const host = new DockerHost({
    socketPath,
    timeoutMs: options.timeoutMs ?? 10_000,
    deployment: 'default',
    ...(options.copy === false ? { copy: false } : { copy: { keepAliveMs: 1000, retryMs: { first: 100, max: 1000 } } })
  })
  const backend = await composeFrom(dockerBackend, host)
  t.teardown(() => backend.close())
  return { host, copy: host.copy as DockerCopy, backend }
}

let marks = 0

/**
 * Resolves once the copy is current and holds everything the engine did before this call: a marker
 * volume is made on the engine (through `engine`, its own socket), and the copy has read its event
 * and finished what every earlier event asked for.
 */
export async function caughtUp (copy: DockerCopy, engine: Docker, timeoutMs = 60_000): Promise<void> {
  await copy.ready(timeoutMs)
  const marker = `${RUN}-mark-${++marks}`
  let seen: () => void = () => {}
  const saw = new Promise<void>(resolve => { seen = resolve })
  const stop = copy.observe(event => { if (event.type === 'volume' && event.action === 'create' && event.id === marker) seen() })
  const timer = new Promise<never>((_resolve, reject) => { setTimeout(() => reject(new Error(`the copy did not see marker ${marker} within ${timeoutMs} ms`)), timeoutMs).unref() })
  try {
    await engine.createVolume({ Name: marker })
    await Promise.race([saw, timer])
    await copy.settled()
  } finally {
    stop()
  }
  await copy.ready(timeoutMs)
  await engine.getVolume(marker).remove().catch(() => {})
}

const DURATION = /\b(Less than a second|About an? (minute|hour)|\d+ (seconds?|minutes|hours|days|weeks|months|years))\b/g

/** A list entry with its status's duration blanked: two reads a moment apart may round it differently. */
export function timeless<T extends { status: string }> (summary: T): T {
  return { ...summary, status: summary.status.replace(DURATION, '…') }
}

/** An image with only the names `mine` accepts (the others' tags come and go on a shared engine); null when it has none of them. */
function narrowed (image: ImageSummary, mine: (name: string) => boolean): ImageSummary | null {
  const tags = image.tags.filter(mine)
  const digests = image.digests.filter(mine)
  return tags.length === 0 && digests.length === 0 ? null : { ...image, tags, digests }
}

export interface Scope {
  /** Label filters selecting the containers and volumes to compare. */
  labels: string[]
  /** Image names to compare. */
  images: (name: string) => boolean
  /** Through the HTTP API too, as the admin token sees it. */
  app?: App
}

/** Every read berth answers from its copy, against the engine's own answer. Resolves with the containers compared. */
export async function compareWithEngine (t: Test, from: Backend, truth: Backend, scope: Scope, what: string): Promise<ContainerSummary[]> {
  // The copy holds berth's deployment's containers (openDocker's "default"), and answers questions
  // about those; a question about everybody's goes to the engine, and would compare nothing.
  const labels = [...scope.labels, 'io.berth.deployment=default']
  let listed: ContainerSummary[] = []
  for (const all of [true, false]) {
    const [copied, engine] = await Promise.all([from.containers.list({ all, labels }), truth.containers.list({ all, labels })])
    t.same(copied.map(timeless), engine.map(timeless), `${what}: ps${all ? ' -a' : ''}`)
    if (all) listed = engine
  }
  for (const states of [['running'], ['exited', 'created', 'paused']] as const) {
    const [copied, engine] = await Promise.all([from.containers.list({ all: false, status: [...states], labels }), truth.containers.list({ all: false, status: [...states], labels })])
    t.same(copied.map(timeless), engine.map(timeless), `${what}: ps --filter status=${states.join(',')}`)
  }
  for (const [i, container] of listed.entries()) {
    for (const key of i === 0 ? [container.id, container.name, container.id.slice(0, 20)] : [container.id, container.name]) {
      const [copied, engine] = await Promise.all([from.containers.inspect(key).catch(error => error.code), truth.containers.inspect(key).catch(error => error.code)])
      t.same(copied, engine, `${what}: inspect ${key}`)
    }
  }
  const [copiedVolumes, engineVolumes] = await Promise.all([
    from.part('volumes').list({ labels: scope.labels, usedBy: labels }),
    truth.part('volumes').list({ labels: scope.labels, usedBy: labels })
  ])
  t.same(copiedVolumes, engineVolumes, `${what}: volumes with their users`)
  for (const volume of engineVolumes) {
    t.same(await from.part('volumes').inspect(volume.name, { usedBy: labels }), await truth.part('volumes').inspect(volume.name, { usedBy: labels }), `${what}: volume ${volume.name}`)
  }
  const [copiedImages, engineImages] = await Promise.all([from.part('images').list({}), truth.part('images').list({})])
  const mine = (images: ImageSummary[]): ImageSummary[] => images.flatMap(image => narrowed(image, scope.images) ?? []).sort((a, b) => a.id.localeCompare(b.id))
  t.same(mine(copiedImages), mine(engineImages), `${what}: images`)
  if (scope.app !== undefined) {
    const query = labels.map(label => `label=${encodeURIComponent(label)}`).join('&')
    const http = await scope.app.inject({ method: 'GET', url: `/v1/containers?all=true&${query}`, headers: auth() })
    t.same((http.json() as ContainerSummary[]).map(timeless), listed.map(timeless), `${what}: GET /v1/containers`)
    for (const container of listed) {
      const one = await scope.app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: auth() })
      t.same(one.json(), await truth.containers.inspect(container.id), `${what}: GET /v1/containers/${container.name}`)
    }
  }
  return listed
}

/** The test image on another engine (a private one), as the shared engine has it. */
export async function copyTestImage (to: Docker): Promise<void> {
  const from = new Docker({ socketPath: env.socket })
  const archive = await from.getImage(env.image).get()
  const loading = await to.loadImage(archive)
  await new Promise<void>((resolve, reject) => { to.modem.followProgress(loading, error => error ? reject(error) : resolve()) })
}
