// Issue 15, building: POST /v1/images/build on the real engine — contexts, options, progress in JSON,
// NDJSON, SSE and as jobs, cancel and time limit that really stop the engine, the policy on every
// FROM, limits, scopes and names — and nothing left behind by a build that does not finish.
/* eslint-disable no-template-curly-in-string -- Dockerfiles write ${VAR} literally */
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, docker, env, imageExists, pushImage, waitFor } from './helpers.ts'
import { builderAuth, cleanupBuilds, formOf, gzipped, imageName, tarOf, withBuilders } from './build-helpers.ts'

cleanupAfter(t)
const leftovers = cleanupBuilds(t)
const LABEL = `label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`
const TAR = { 'content-type': 'application/x-tar' }

type App = Awaited<ReturnType<typeof build>>
interface Event { type: string, [key: string]: unknown }

function ndjson (body: string): Event[] {
  return body.split('\n').filter(Boolean).map(line => JSON.parse(line))
}

function query (params: Record<string, string | string[] | boolean | undefined>): string {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) if (item !== undefined) search.append(key, String(item))
  }
  return search.toString()
}

async function postBuild (app: App, files: Record<string, string> | Buffer, params: Record<string, string | string[] | boolean | undefined> = {}, headers: Record<string, string> = {}) {
  const payload = Buffer.isBuffer(files) ? files : tarOf(files)
  return await app.inject({ method: 'POST', url: `/v1/images/build?${query(params)}&${LABEL}`, headers: { ...builderAuth('builder'), ...TAR, ...headers }, payload })
}

/** Remembers the images a streamed build made, for the cleanup (an earlier stage's image has no name). */
function remember (events: Event[]): void {
  for (const event of events) if (event.type === 'layer' && event.cached === false) leftovers.add(event.id as string)
}

t.test('a multi-stage build with ARG-substituted FROM, build args, labels and tags: the image runs what was built', async t => {
  const app = await build(t, withBuilders())
  const tag = imageName('multi')
  const files = {
    Dockerfile: `ARG BASE=busybox:0\nFROM berth-test/$BASE AS first\nARG WHO\nRUN echo "made by $WHO in ${RUN}" > /made && echo to-stdout && echo to-stderr >&2\n` +
      'FROM berth-test/busybox:1\nCOPY --from=first /made /made\nCOPY notes.txt /notes.txt\nCMD ["cat", "/made", "/notes.txt"]\n',
    'notes.txt': 'from the context\n'
  }
  const response = await postBuild(app, files, { tag: [tag, imageName('multi', 'also')], buildArg: ['BASE=busybox:1', 'WHO=ada'], label: 'team=ml' }, { accept: 'application/x-ndjson' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /application\/x-ndjson/)
  const events = ndjson(response.body)
  remember(events)
  t.match(events[0], { type: 'started', build: /^[0-9a-f-]{36}$/ })
  t.same(events.filter(e => e.type === 'step').map(e => e.step), Array.from({ length: (events.find(e => e.type === 'step')?.total as number) }, (_, i) => i + 1), 'every step, in order')
  t.ok(events.some(e => e.type === 'output' && e.stream === 'stdout' && e.line === 'to-stdout'), 'stdout of a step')
  t.ok(events.some(e => e.type === 'output' && e.stream === 'stderr' && e.line === 'to-stderr'), 'stderr of a step')
  const built = events.at(-1) as { type: string, image: { id: string, tags: string[] } }
  t.equal(built.type, 'built')
  t.same(built.image.tags, [tag, imageName('multi', 'also')])
  const image = await docker.getImage(tag).inspect()
  t.equal(image.Id, built.image.id)
  t.match(image.Config.Labels, { team: 'ml', [RUN_LABEL]: RUN, 'io.berth.built-by': 'default/builder' })

  // What was built runs: through berth, as a client would.
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(), payload: { image: tag, name: `${RUN}-multi`, labels: { [RUN_LABEL]: RUN } } })
  t.equal(run.statusCode, 201)
  const logs = await waitFor('the container\'s output', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${RUN}-multi/logs`, headers: auth() })).body, body => body.includes('context'))
  t.match(logs, `made by ada in ${RUN}`)
  t.match(logs, 'from the context')

  // The same build again: every step a cache hit, the same image, in JSON.
  const again = await postBuild(app, files, { tag, buildArg: ['BASE=busybox:1', 'WHO=ada'], label: 'team=ml' })
  t.equal(again.statusCode, 200)
  t.same(again.json(), { id: built.image.id, tags: [tag] })
  const replay = await app.inject({ method: 'GET', url: '/v1/builds', headers: builderAuth('builder') })
  const latest = replay.json()[0]
  t.match(latest, { state: 'succeeded', tags: [tag], result: { id: built.image.id }, owner: 'builder' })
  const cachedEvents = ndjson((await app.inject({ method: 'GET', url: `/v1/builds/${latest.id}/events`, headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' } })).body)
  const layers = cachedEvents.filter(e => e.type === 'layer')
  t.ok(layers.length > 3 && layers.every(e => e.cached === true), 'the second build took every step from the cache')
  t.notOk(cachedEvents.some(e => e.type === 'output'), 'and ran nothing')
})

t.test('a failing step: 422 build_failed with the step, its output and exit code; nothing it made is left', async t => {
  const app = await build(t, withBuilders())
  const files = { Dockerfile: `FROM berth-test/busybox:1\nRUN echo made-${RUN} > /made\nRUN echo before-failing; echo why-it-failed >&2; exit 3\nRUN echo never\n` }
  const streamed = await postBuild(app, files, { tag: imageName('fails') }, { accept: 'application/x-ndjson' })
  t.equal(streamed.statusCode, 200, 'a stream that has begun is a 200; the failure is its last event')
  const events = ndjson(streamed.body)
  const last = events.at(-1) as { type: string, problem: Record<string, unknown> }
  t.equal(last.type, 'error')
  t.match(last.problem, {
    code: 'build_failed',
    status: 422,
    reason: 'step_failed',
    exitCode: 3,
    step: { number: 3, total: 6, instruction: 'RUN echo before-failing; echo why-it-failed >&2; exit 3' },
    detail: /at step 3\/6 .*returned a non-zero code: 3/
  })
  // The engine interleaves a step's stdout and stderr as they come.
  t.same([...last.problem.output as string[]].sort(), ['before-failing', 'why-it-failed'])
  const made = events.find(e => e.type === 'layer' && e.step === 2) as unknown as { id: string }
  t.ok(made, 'step 2 made an image')
  t.notOk(await imageExists(made.id), 'which the failed build removed')
  t.notOk(await imageExists(imageName('fails')), 'and no tag')

  const json = await postBuild(app, files, { tag: imageName('fails') })
  t.equal(json.statusCode, 422)
  t.match(json.headers['content-type'], /application\/problem\+json/)
  t.match(json.json(), { code: 'build_failed', reason: 'step_failed', step: { number: 3 } })
  t.same([...json.json().output].sort(), ['before-failing', 'why-it-failed'])
})

t.test('a Dockerfile the builder refuses, and a base image nobody has', async t => {
  const app = await build(t, withBuilders())
  const refused = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\nFROBNICATE now\n' })
  t.equal(refused.statusCode, 422)
  t.match(refused.json(), { code: 'build_failed', reason: 'dockerfile', detail: /unknown instruction: FROBNICATE/ })
  const missing = `${env.registry}/${RUN}-nothere/base:1`
  const absent = await postBuild(app, { Dockerfile: `FROM ${missing}\nRUN true\n` })
  t.equal(absent.statusCode, 422)
  t.match(absent.json(), { code: 'build_failed', reason: 'base_image', step: { number: 1, instruction: `FROM ${missing}` } })
  const target = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\n' }, { target: 'nosuch' })
  t.equal(target.statusCode, 400)
  t.match(target.json(), { code: 'validation_failed', detail: /no stage is named nosuch/, errors: [{ location: 'dockerfile' }] })
})

t.test('options: a gzip context, a Dockerfile elsewhere, a target stage, no-cache, pull of a base from a registry', async t => {
  const app = await build(t, withBuilders())
  const base = await pushImage('build-base')
  const files = {
    'ci/Dockerfile.build': `FROM ${base.reference} AS first\nRUN echo first-${RUN} > /stage\nFROM first AS second\nRUN echo second > /stage\n`
  }
  const response = await postBuild(app, gzipped(tarOf(files)), { tag: imageName('target'), dockerfile: 'ci/Dockerfile.build', target: 'first', pull: true, noCache: true }, { 'content-type': 'application/gzip', accept: 'application/x-ndjson' })
  t.equal(response.statusCode, 200)
  const events = ndjson(response.body)
  remember(events)
  t.ok(events.some(e => e.type === 'status' && /Pulling from|Digest|Status/.test(e.message as string)), 'the base was pulled from the registry')
  t.notOk(events.some(e => e.type === 'step' && /second/.test(e.instruction as string)), 'stages after the target are not built')
  t.equal(events.at(-1)?.type, 'built')
  t.ok(events.filter(e => e.type === 'layer').every(e => e.cached === false), 'no-cache: nothing from the cache')
  await docker.getImage(base.reference).remove().catch(() => {})
})

t.test('a form instead of a tar: a dockerfile field and files at their paths', async t => {
  const app = await build(t, withBuilders())
  const form = await formOf(`FROM berth-test/busybox:1\nCOPY . /app\nRUN cat /app/site/index.html /app/notes.txt # ${RUN}\n`, { 'site/index.html': 'from a form', 'notes.txt': '\nand a second file' })
  const response = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${imageName('form')}&${LABEL}`, headers: { ...builderAuth('builder'), 'content-type': form.contentType, accept: 'application/x-ndjson' }, payload: form.body })
  t.equal(response.statusCode, 200)
  const events = ndjson(response.body)
  remember(events)
  t.same(events.filter(e => e.type === 'output').map(e => e.line), ['from a form', 'and a second file'])
  t.equal(events.at(-1)?.type, 'built')
  const escape = await formOf('FROM berth-test/busybox:1', { '../../etc/shadow': 'x' })
  const refused = await app.inject({ method: 'POST', url: `/v1/images/build?${LABEL}`, headers: { ...builderAuth('builder'), 'content-type': escape.contentType }, payload: escape.body })
  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { code: 'invalid_build_context', reason: 'name', detail: /not a relative path inside the context/ })
})

t.test('a base from a registry that needs credentials: pulled with the server\'s (X-Registry-Config), refused without', async t => {
  const base = await pushImage('private-base', { registry: env.authRegistry })
  const files = { Dockerfile: `FROM ${base.reference}\nRUN echo private-${RUN}\n` }
  const without = await build(t, withBuilders())
  const refused = await postBuild(without, files, { pull: true })
  t.equal(refused.statusCode, 422)
  t.match(refused.json(), { code: 'build_failed', reason: 'base_image', step: { number: 1 }, detail: /no basic auth credentials|unauthorized|authentication required/ })
  const withCredentials = await build(t, withBuilders({ config: { registryAuth: { [env.authRegistry]: { username: env.authUser, password: env.authPassword } } } }))
  const built = await postBuild(withCredentials, files, { pull: true, tag: imageName('private') }, { accept: 'application/x-ndjson' })
  const events = ndjson(built.body)
  remember(events)
  t.equal(events.at(-1)?.type, 'built')
  t.ok(events.some(e => e.type === 'status'), 'the base was pulled')
  await docker.getImage(base.reference).remove({ force: true }).catch(() => {})
})

t.test('server-sent events, and an async build followed as a job', async t => {
  const app = await build(t, withBuilders())
  const sse = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\nRUN echo sse\n' }, { tag: imageName('sse') }, { accept: 'text/event-stream' })
  t.equal(sse.statusCode, 200)
  t.match(sse.body, /^retry: 2000\n\nid: 1\ndata: \{"type":"started"/)
  t.match(sse.body, /data: \{"type":"built","image":\{"id":"sha256:/)

  const started = await postBuild(app, { Dockerfile: `FROM berth-test/busybox:1\nRUN echo async-${RUN}\n` }, { tag: imageName('async'), async: true })
  t.equal(started.statusCode, 202)
  const job = started.json()
  t.equal(started.headers.location, `/v1/builds/${job.id}`)
  t.match(job, { owner: 'builder', tags: [imageName('async')], dockerfile: 'Dockerfile', links: { events: `/v1/builds/${job.id}/events` } })
  const events = ndjson((await app.inject({ method: 'GET', url: `/v1/builds/${job.id}/events`, headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' } })).body)
  t.equal(events.at(-1)?.type, 'built', 'the events run to the end of the build')
  const done = await app.inject({ method: 'GET', url: `/v1/builds/${job.id}`, headers: builderAuth('builder') })
  t.match(done.json(), { state: 'succeeded', result: { tags: [imageName('async')] }, step: { number: 4, total: 4 }, finishedAt: /Z$/ })
  const resumed = await app.inject({ method: 'GET', url: `/v1/builds/${job.id}/events`, headers: { ...builderAuth('builder'), 'last-event-id': String(events.length - 1) } })
  t.match(resumed.body, /^retry: 2000\n\nid: \d+\ndata: \{"type":"built"/, 'Last-Event-ID resumes after it')
  const prefer = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\n' }, {}, { prefer: 'respond-async' })
  t.equal(prefer.statusCode, 202)
  t.equal(prefer.headers['preference-applied'], 'respond-async')

  for (const who of ['admin'] as const) {
    t.equal((await app.inject({ method: 'GET', url: `/v1/builds/${job.id}`, headers: auth(who) })).statusCode, 200, 'an admin sees every build')
  }
  const others = await app.inject({ method: 'GET', url: `/v1/builds/${job.id}`, headers: builderAuth('maker') })
  t.equal(others.statusCode, 404, "another token's build is not found")
  t.same((await app.inject({ method: 'GET', url: '/v1/builds', headers: builderAuth('maker') })).json(), [])
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/builds/${job.id}`, headers: builderAuth('maker') })).statusCode, 404)
  const cancelDone = await app.inject({ method: 'DELETE', url: `/v1/builds/${job.id}`, headers: builderAuth('builder') })
  t.match(cancelDone.json(), { state: 'succeeded' }, 'cancelling a finished build answers it as it is')
})

async function stepContainers (marker: string): Promise<number> {
  return (await docker.listContainers({ all: true })).filter(container => container.Command.includes(marker)).length
}

t.test('cancel: the engine stops the step, and the build leaves no container, no image, no tag', async t => {
  const app = await build(t, withBuilders())
  const marker = `${RUN}-cancelled`
  const started = await postBuild(app, { Dockerfile: `FROM berth-test/busybox:1\nRUN echo first-${marker} > /f\nRUN echo sleeping; sleep 60 # ${marker}\n` }, { tag: imageName('cancelled'), async: true })
  const id = started.json().id
  await waitFor('the sleeping step', async () => (await app.inject({ method: 'GET', url: `/v1/builds/${id}`, headers: builderAuth('builder') })).json().step?.number, number => number === 3)
  await waitFor('its container', () => stepContainers(marker), count => count === 1)
  const cancelled = await app.inject({ method: 'DELETE', url: `/v1/builds/${id}`, headers: builderAuth('builder') })
  t.equal(cancelled.statusCode, 200)
  t.match(cancelled.json(), { state: 'cancelled', error: { code: 'build_cancelled', status: 409 } })
  t.equal(await stepContainers(marker), 0, 'the step container is gone when the cancel answers')
  const events = ndjson((await app.inject({ method: 'GET', url: `/v1/builds/${id}/events`, headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' } })).body)
  const made = events.find(e => e.type === 'layer' && e.step === 2) as unknown as { id: string }
  t.notOk(await imageExists(made.id), 'the image step 2 made is removed')
  t.notOk(await imageExists(imageName('cancelled')))
  t.match(events.at(-1), { type: 'error', problem: { code: 'build_cancelled' } })
})

t.test('a client that leaves the build it follows cancels it', async t => {
  const app = await build(t, withBuilders())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const marker = `${RUN}-left`
  const controller = new AbortController()
  const response = await fetch(`http://127.0.0.1:${port}/v1/images/build?tag=${imageName('left')}&${LABEL}`, {
    method: 'POST',
    headers: { ...builderAuth('builder'), ...TAR, accept: 'application/x-ndjson' },
    body: tarOf({ Dockerfile: `FROM berth-test/busybox:1\nRUN echo sleeping; sleep 60 # ${marker}\n` }),
    signal: controller.signal
  })
  const reader = (response.body as ReadableStream<Uint8Array>).getReader()
  let text = ''
  while (!text.includes('"line":"sleeping"')) text += new TextDecoder().decode((await reader.read()).value)
  t.equal(await stepContainers(marker), 1)
  controller.abort()
  await waitFor('the step container to go', () => stepContainers(marker), count => count === 0)
  const listed = await waitFor('the build to end', async () => (await app.inject({ method: 'GET', url: '/v1/builds', headers: builderAuth('builder') })).json()[0], job => job.state !== 'building')
  t.match(listed, { state: 'cancelled', error: { code: 'build_cancelled', detail: /its client went away/ } })
  t.notOk(await imageExists(imageName('left')))
})

t.test('the build time limit stops a build that takes too long', async t => {
  const app = await build(t, withBuilders({ config: { limits: { buildTimeoutMs: 2000 } } }))
  const marker = `${RUN}-slow`
  const response = await postBuild(app, { Dockerfile: `FROM berth-test/busybox:1\nRUN sleep 60 # ${marker}\n` })
  t.equal(response.statusCode, 422)
  t.match(response.json(), { code: 'build_failed', reason: 'timeout', detail: /longer than the limit of 2000 ms/, step: { number: 2 } })
  t.equal(await stepContainers(marker), 0)
})

t.test('policy: every FROM and COPY --from on the allow-list, tags too; no network unless allowed; reserved labels', async t => {
  const app = await build(t, withBuilders({ config: { policy: { images: ['docker.io/berth-test/*'] } } }))
  const denied: Array<[string, Record<string, string>, Record<string, string | string[]>, RegExp, number?]> = [
    ['a FROM outside', { Dockerfile: 'FROM berth-test/busybox:1\nFROM alpine:3\n' }, {}, /FROM alpine:3 \(Dockerfile line 2\): image docker.io\/library\/alpine is not on the allow-list/, 2],
    ['a FROM an ARG makes outside', { Dockerfile: 'ARG BASE=berth-test/busybox:1\nFROM ${BASE}\n' }, { buildArg: 'BASE=evil/miner:1' }, /FROM \$\{BASE\} \(Dockerfile line 2\): image docker.io\/evil\/miner/, 2],
    ['a COPY --from an image outside', { Dockerfile: 'FROM berth-test/busybox:1\nCOPY --from=127.0.0.1:5000/tools:1 /t /t\n' }, {}, /COPY --from=127.0.0.1:5000\/tools:1/, 2],
    ['a tag outside', { Dockerfile: 'FROM berth-test/busybox:1\n' }, { tag: 'other/name:1' }, /image docker.io\/other\/name is not on the allow-list/]
  ]
  for (const [what, files, params, detail, line] of denied) {
    const response = await postBuild(app, files, params)
    t.equal(response.statusCode, 403, what)
    t.match(response.json(), { code: 'policy_denied', rule: 'images', detail, ...(line === undefined ? {} : { line }) }, what)
  }
  const network = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\n' }, { network: 'default' })
  t.match(network.json(), { code: 'policy_denied', rule: 'buildNetwork' })
  const reserved = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\n' }, { label: 'io.berth.owner=alice' })
  t.match(reserved.json(), { code: 'validation_failed', detail: /io.berth.owner is reserved/ })

  // Allowed: stages by name, scratch; and RUN steps see no network but loopback.
  const allowed = await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1 AS tools\nRUN ls /sys/class/net > /nets && cat /nets\nFROM scratch\nCOPY --from=tools /nets /nets\n' }, { tag: imageName('scratch') }, { accept: 'application/x-ndjson' })
  const events = ndjson(allowed.body)
  remember(events)
  t.equal(events.at(-1)?.type, 'built')
  t.same(events.filter(e => e.type === 'output').map(e => e.line), ['lo'], 'a RUN step has only loopback')
})

t.test('a policy that allows the network gives RUN steps one', async t => {
  const app = await build(t, withBuilders({ config: { policy: { buildNetwork: true } } }))
  const response = await postBuild(app, { Dockerfile: `FROM berth-test/busybox:1\nRUN ls /sys/class/net # ${RUN}\n` }, { network: 'default', noCache: true }, { accept: 'application/x-ndjson' })
  const events = ndjson(response.body)
  remember(events)
  t.ok(events.some(e => e.type === 'output' && e.line === 'eth0'), 'eth0 is there')
})

t.test('scopes and names: build needs the build scope; a name is free, the builder\'s own, or an admin\'s to move', async t => {
  const app = await build(t, withBuilders())
  const files = { Dockerfile: 'FROM berth-test/busybox:1\n' }
  for (const who of ['reader', 'alice'] as const) {
    const response = await app.inject({ method: 'POST', url: `/v1/images/build?${LABEL}`, headers: { ...auth(who), ...TAR }, payload: tarOf(files) })
    t.equal(response.statusCode, 403, who)
    t.match(response.json(), { code: 'forbidden', scope: 'build' })
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/builds', headers: auth('alice') })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: builderAuth('builder') })).statusCode, 200, 'build implies read')
  t.equal((await app.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('builder'), payload: { image: env.image } })).statusCode, 403, 'but not write')

  const owned = imageName('owned')
  t.equal((await postBuild(app, files, { tag: owned })).statusCode, 200)
  t.equal((await postBuild(app, { Dockerfile: 'FROM berth-test/busybox:1\nLABEL v=2\n' }, { tag: owned })).statusCode, 200, 'the builder moves its own name')
  const taken = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${owned}&${LABEL}`, headers: { ...builderAuth('maker'), ...TAR }, payload: tarOf(files) })
  t.equal(taken.statusCode, 403)
  t.match(taken.json(), { code: 'policy_denied', rule: 'imageNames', detail: /names an image token "maker" did not build/ })
  const shared = await postBuild(app, files, { tag: env.image })
  t.match(shared.json(), { code: 'policy_denied', rule: 'imageNames' }, 'nobody but an admin moves the name every run relies on')
  const admins = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${owned}&${LABEL}`, headers: { ...auth('admin'), ...TAR }, payload: tarOf(files) })
  t.equal(admins.statusCode, 200, 'an admin may')
})

t.test('bad requests: media type, body, size (declared and streamed), query, Accept', async t => {
  const app = await build(t, withBuilders({ config: { limits: { buildContextBytes: 32 * 1024 } } }))
  const url = `/v1/images/build?${LABEL}`
  const json = await app.inject({ method: 'POST', url, headers: builderAuth('builder'), payload: { dockerfile: 'FROM busybox' } })
  t.equal(json.statusCode, 415)
  t.match(json.json(), { code: 'unsupported_media_type', detail: /application\/x-tar/ })
  const text = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), 'content-type': 'text/plain' }, payload: 'FROM busybox' })
  t.equal(text.statusCode, 415)
  const none = await app.inject({ method: 'POST', url, headers: builderAuth('builder') })
  t.equal(none.statusCode, 415)
  const big = tarOf({ Dockerfile: 'FROM berth-test/busybox:1\n', 'data.bin': Buffer.alloc(64 * 1024, 7) })
  const declared = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR }, payload: big })
  t.equal(declared.statusCode, 413)
  t.match(declared.json(), { code: 'payload_too_large', limit: 32 * 1024, detail: /BERTH_BUILD_CONTEXT_LIMIT/ })
  const streamed = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR }, payload: Readable.from([big.subarray(0, 30_000), big.subarray(30_000)]) })
  t.equal(streamed.statusCode, 413, 'a chunked body is cut at the limit')
  const notTar = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR }, payload: Buffer.from('x'.repeat(2048)) })
  t.match(notTar.json(), { code: 'invalid_build_context', reason: 'format', detail: /not a tar archive/ })
  const noDockerfile = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR }, payload: tarOf({ 'app.py': 'print(1)' }) })
  t.match(noDockerfile.json(), { code: 'invalid_build_context', reason: 'dockerfile', entry: 'Dockerfile', detail: 'the build context has no "Dockerfile" (the dockerfile parameter names the Dockerfile\'s path in the context)' })
  const badTag = await app.inject({ method: 'POST', url: `${url}&tag=Bad:Tag:x`, headers: { ...builderAuth('builder'), ...TAR }, payload: tarOf({ Dockerfile: 'FROM a' }) })
  t.match(badTag.json(), { code: 'validation_failed', detail: /querystring\/tag\/0/ })
  const unknown = await app.inject({ method: 'POST', url: `${url}&privileged=true`, headers: { ...builderAuth('builder'), ...TAR }, payload: tarOf({ Dockerfile: 'FROM a' }) })
  t.equal(unknown.statusCode, 400)
  const twice = await app.inject({ method: 'POST', url: `${url}&buildArg=A=1&buildArg=A=2`, headers: { ...builderAuth('builder'), ...TAR }, payload: tarOf({ Dockerfile: 'ARG A\nFROM berth-test/busybox:1' }) })
  t.match(twice.json(), { code: 'validation_failed', detail: /buildArg\/A is given twice/ })
  const accept = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR, accept: 'text/html' }, payload: tarOf({ Dockerfile: 'FROM a' }) })
  t.equal(accept.statusCode, 406)
  const badFrom = await app.inject({ method: 'POST', url, headers: { ...builderAuth('builder'), ...TAR }, payload: tarOf({ Dockerfile: 'FROM Not/Valid' }) })
  t.match(badFrom.json(), { code: 'validation_failed', errors: [{ location: 'dockerfile', path: '/1' }] })
  t.same((await app.inject({ method: 'GET', url: '/v1/builds', headers: builderAuth('builder') })).json(), [], 'none of these started a build')
})
