// GET /metrics on the real engine: request and engine-call series move with the right labels, the
// pull and run gauges show work under way, and the endpoint is closed without a read token.
import t from 'tap'
import { configFromEnv } from '../src/config.ts'
import { DockerHost, docker } from '../src/engine/docker/backend.ts'
import { composeFrom, type Backend } from '../src/engine/parts.ts'
import { assertProblem, auth, build, cleanupAfter, name, pushImage, runContainer, testConfig, waitFor, type App } from './helpers.ts'

cleanupAfter(t)

interface Sample { name: string, labels: Record<string, string>, value: number }

/** Parses Prometheus text into samples (no escapes in berth's label values, so a simple split does). */
function parse (text: string): Sample[] {
  return text.split('\n').filter(line => line !== '' && !line.startsWith('#')).map(line => {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) throw new Error(`not a sample: ${line}`)
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key, value]))
    return { name: match[1] as string, labels, value: Number(match[3]) }
  })
}

/** The value of the one sample with this name and (at least) these labels; undefined when there is none. */
function value (samples: Sample[], metric: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter(sample => sample.name === metric && Object.entries(labels).every(([key, v]) => sample.labels[key] === v))
  if (found.length > 1) throw new Error(`${found.length} samples of ${metric} match ${JSON.stringify(labels)}`)
  return found[0]?.value
}

async function scrape (app: App): Promise<Sample[]> {
  const response = await app.inject({ method: 'GET', url: '/metrics', headers: auth('reader') })
  if (response.statusCode !== 200) throw new Error(`/metrics answered ${response.statusCode}: ${response.body}`)
  return parse(response.body)
}

t.test('requests by route pattern and status, engine calls by operation and outcome, process metrics', async t => {
  const app = await build(t)
  const missing = name('no-such-container')
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers', headers: auth() })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth() })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${missing}`, headers: auth() })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: `/nowhere/${missing}` })).statusCode, 404)

  const closed = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(closed.statusCode, 401, 'closed without a token')
  t.equal(closed.json().code, 'unauthorized')
  const response = await app.inject({ method: 'GET', url: '/metrics', headers: auth('reader') })
  t.equal(response.statusCode, 200, 'a read token is enough')
  t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.notOk(response.body.includes(missing), 'no series carries a raw URL, so no container name either')
  const samples = parse(response.body)

  const requests = 'berth_http_request_duration_seconds_count'
  t.equal(value(samples, requests, { method: 'GET', route: '/v1/containers', status_code: '200' }), 2, 'both lists, under their route pattern')
  t.equal(value(samples, requests, { method: 'GET', route: '/v1/containers/:idOrName', status_code: '404' }), 1)
  t.equal(value(samples, requests, { method: 'GET', route: 'unmatched', status_code: '404' }), 1, 'an unknown path is one series, not one per path')
  t.equal(value(samples, requests, { method: 'GET', route: '/metrics', status_code: '401' }), 1, 'the refused scrape counts too')
  t.equal(value(samples, 'berth_http_request_duration_seconds_bucket', { route: '/v1/containers', status_code: '200', le: '+Inf' }), 2)
  t.ok((value(samples, 'berth_http_request_duration_seconds_sum', { route: '/v1/containers', status_code: '200' }) ?? 0) > 0, 'durations are recorded')

  const calls = 'berth_engine_call_duration_seconds_count'
  // Two lists, and one more behind the 404: a name the engine does not know is looked for among the token's own.
  t.equal(value(samples, calls, { operation: 'containers.list', outcome: 'ok' }), 3)
  t.equal(value(samples, calls, { operation: 'containers.inspect', outcome: 'error' }), 1)
  t.equal(value(samples, calls, { operation: 'containers.inspect', outcome: 'ok' }), undefined)
  t.equal(value(samples, 'berth_engine_call_errors_total', { operation: 'containers.inspect', code: 'not_found' }), 1)
  t.equal(value(samples, 'berth_engine_call_errors_total', { operation: 'containers.list' }), undefined, 'no error where none happened')

  t.equal(value(samples, 'berth_pulls_in_progress'), 0)
  t.equal(value(samples, 'berth_runs_in_progress'), 0)
  t.ok((value(samples, 'process_resident_memory_bytes') ?? 0) > 0, 'process metrics')
  t.ok(samples.some(sample => sample.name.startsWith('nodejs_eventloop_lag')), 'Node.js runtime metrics')
})

// /metrics is routed in the metrics plugin, which is registered before the problems plugin sets the
// error handler, so its refusals get Fastify's default error body ({ statusCode, code, error,
// message } as application/json). Found by this check; the fix belongs to the plugin order in src/app.ts.
t.test('a refused scrape is problem+json like every other refusal', async t => {
  const app = await build(t)
  assertProblem(t, await app.inject({ method: 'GET', url: '/metrics' }), 401, { code: 'unauthorized', detail: 'send Authorization: Bearer <token>' }, 'no token')
})

t.test('an unreachable engine shows as engine_unavailable errors by operation', async t => {
  const app = await build(t, { socketPath: '/nonexistent/docker.sock', config: { engine: { timeoutMs: 1000 } } })
  const images = await app.inject({ method: 'GET', url: '/v1/images', headers: auth() })
  assertProblem(t, images, 503, { code: 'engine_unavailable', detail: 'cannot reach the container engine (ENOENT)' }, 'images with no engine')
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  assertProblem(t, ready, 503, { code: 'engine_unavailable', detail: 'cannot reach the container engine (ENOENT)' }, 'readiness with no engine')
  const samples = await scrape(app)
  t.equal(value(samples, 'berth_engine_call_errors_total', { operation: 'images.list', code: 'engine_unavailable' }), 1)
  t.equal(value(samples, 'berth_engine_call_errors_total', { operation: 'engine.info', code: 'engine_unavailable' }), 1)
  t.equal(value(samples, 'berth_http_request_duration_seconds_count', { route: '/v1/images', status_code: '503' }), 1)
})

t.test('pulls and runs under way, and runs waiting for a slot, are gauges', async t => {
  // The real engine behind a gate: the test decides when a pull or run may reach it, so the
  // gauges can be read while the work is provably under way.
  const real = await composeFrom(docker, new DockerHost({ socketPath: (testConfig().engine as { socketPath: string }).socketPath, timeoutMs: 10_000 }))
  let open = () => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const entered: string[] = []
  // A part whose `method` waits at the gate; every other method is the real part's.
  const gatedPart = <P extends object>(part: P, method: string, label: string): P => new Proxy(part, {
    get (target, property) {
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function') return value
      if (property !== method) return value.bind(target)
      return async (...args: unknown[]) => {
        entered.push(label)
        await gate
        return await value.apply(target, args)
      }
    }
  })
  const images = gatedPart(real.part('images'), 'pull', 'pull')
  const gated: Backend = {
    ...real,
    containers: gatedPart(real.containers, 'run', 'run'),
    part: (name => name === 'images' ? images : real.part(name)) as Backend['part']
  }
  const app = await build(t, { engine: gated, config: { limits: { maxConcurrentRuns: 1 } } })
  const { reference } = await pushImage('metrics')

  const pull = app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  const first = runContainer(app, 'admin', { name: name('gauge-1') })
  const second = runContainer(app, 'admin', { name: name('gauge-2') })
  // Both the pull and the first run have reached the engine (and wait at the gate); the second run cannot, with one slot.
  await waitFor('the pull and the first run to reach the engine', () => entered, entered => entered.includes('pull') && entered.includes('run'))
  const busy = await scrape(app)
  t.equal(value(busy, 'berth_pulls_in_progress'), 1)
  t.equal(value(busy, 'berth_pulls_waiting'), 0)
  t.equal(value(busy, 'berth_runs_in_progress'), 1)
  t.equal(value(busy, 'berth_runs_waiting'), 1, 'the second run waits for the one slot')
  t.same(entered.filter(what => what === 'run'), ['run'], 'only one run reached the engine')

  open()
  t.equal((await pull).statusCode, 200, 'the pull finishes once let through')
  t.equal((await first).statusCode, 201)
  t.equal((await second).statusCode, 201)
  const done = await scrape(app)
  t.equal(value(done, 'berth_pulls_in_progress'), 0)
  t.equal(value(done, 'berth_runs_in_progress'), 0)
  t.equal(value(done, 'berth_runs_waiting'), 0)
  t.equal(value(done, 'berth_engine_call_duration_seconds_count', { operation: 'images.pull', outcome: 'ok' }), 1)
  t.equal(value(done, 'berth_engine_call_duration_seconds_count', { operation: 'containers.run', outcome: 'ok' }), 2)
})

t.test('BERTH_METRICS_PUBLIC=true opens /metrics to a scraper without a token; it stays out of the API document', async t => {
  t.equal(configFromEnv({ BERTH_AUTH_DISABLED: 'true' }).auth.metricsPublic, false, 'closed by default')
  t.equal(configFromEnv({ BERTH_AUTH_DISABLED: 'true', BERTH_METRICS_PUBLIC: 'true' }).auth.metricsPublic, true)
  const app = await build(t, { config: { auth: { metricsPublic: true } } })
  const open = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(open.statusCode, 200)
  t.match(open.body, /# TYPE berth_http_request_duration_seconds histogram/)
  const list = await app.inject({ method: 'GET', url: '/v1/containers' })
  assertProblem(t, list, 401, { code: 'unauthorized', detail: 'send Authorization: Bearer <token>' }, 'only /metrics is opened')
  await app.ready()
  t.notOk('/metrics' in (app.swagger() as { paths: Record<string, unknown> }).paths, 'Prometheus text, documented in docs/metrics.md')
})

t.test('every app has its own registry: two apps in one process count apart', async t => {
  const one = await build(t)
  const two = await build(t)
  await one.inject({ method: 'GET', url: '/healthz' })
  await one.inject({ method: 'GET', url: '/healthz' })
  await two.inject({ method: 'GET', url: '/healthz' })
  t.equal(value(await scrape(one), 'berth_http_request_duration_seconds_count', { route: '/healthz' }), 2)
  t.equal(value(await scrape(two), 'berth_http_request_duration_seconds_count', { route: '/healthz' }), 1)
})
