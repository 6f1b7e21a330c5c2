// Provides `app.metrics` and GET /metrics: Prometheus metrics of the requests berth answers, the
// calls it makes to the engine, the pulls and runs under way, and the process itself.
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { BerthError } from '../errors.ts'
import type { Limiter } from '../http/limiter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export interface Metrics {
  readonly registry: Registry
  /** A part of the engine, with every call timed and every failure counted, by `part.operation`. */
  meter<E extends object>(engine: E, part: string): E
  /** Reports a limiter's work under way and waiting. */
  watch(kind: 'pulls' | 'runs', limiter: Limiter): void
}

/** Not calls to the engine: closing the client, and what a proxy is asked about itself. */
const UNMETERED = new Set(['close', 'constructor'])

// Seconds: engine calls and most requests take milliseconds; pulls and streams take minutes.
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

// Process metrics describe the process, not an app, and prom-client's collectors for them (event
// loop delay, GC) stay installed once made: one registry per process, shared by every app in it.
let processRegistry: Registry | null = null
function processMetrics (): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

export default fp<{ public: boolean }>(async (app, options) => {
  // One registry per app, so that tests can build many apps in one process.
  const registry = new Registry()

  const requests = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'Requests berth answered, by method, route pattern and status code; a stream (logs, events, pull progress) counts until it ended.',
    labelNames: ['method', 'route', 'status_code'],
    buckets: BUCKETS,
    registers: [registry]
  })
  const engineCalls = new Histogram({
    name: 'berth_engine_call_duration_seconds',
    help: 'Calls berth made to its backend, by operation and outcome (ok or error): the engine\'s answer, or the watch-fed copy\'s for a read it holds (microseconds). A stream counts until it opened.',
    labelNames: ['operation', 'outcome'],
    buckets: BUCKETS,
    registers: [registry]
  })
  const engineErrors = new Counter({
    name: 'berth_engine_call_errors_total',
    help: 'Engine calls that failed, by operation and the error code berth answered with.',
    labelNames: ['operation', 'code'],
    registers: [registry]
  })
  // Read when scraped: the limiters belong to the engine plugin, registered after this one.
  // What /metrics serves: berth's own series and the process's. A merge copies the metrics it is
  // given, so the gauges of limiters registered later (watch) go into both.
  const exposed = Registry.merge([registry, processMetrics()])

  /** Gauges of a limiter's slots: how much of that work is under way, and how much waits. */
  function watch (kind: 'pulls' | 'runs', limiter: Limiter): void {
    const what = kind === 'pulls' ? 'Image pulls' : 'Container runs'
    const gauges = [
      new Gauge({ name: `berth_${kind}_in_progress`, help: `${what} under way (at most BERTH_MAX_CONCURRENT_${kind.toUpperCase()}).`, registers: [], collect () { this.set(limiter.active) } }),
      new Gauge({ name: `berth_${kind}_waiting`, help: `${what} waiting for a free slot.`, registers: [], collect () { this.set(limiter.queued) } })
    ]
    for (const gauge of gauges) {
      registry.registerMetric(gauge)
      exposed.registerMetric(gauge)
    }
  }

  function meter<E extends object> (engine: E, part: string): E {
    const observe = (operation: string, started: number, failure: { error: unknown } | null) => {
      engineCalls.observe({ operation, outcome: failure === null ? 'ok' : 'error' }, (performance.now() - started) / 1000)
      if (failure !== null) engineErrors.inc({ operation, code: failure.error instanceof BerthError ? failure.error.code : 'internal_error' })
    }
    const metered = (operation: string, method: (...args: unknown[]) => unknown, target: E) => (...args: unknown[]) => {
      const started = performance.now()
      let result: unknown
      try {
        result = method.apply(target, args)
      } catch (error) {
        observe(operation, started, { error })
        throw error
      }
      // Only what the engine answers later is a call to it; anything answered at once passes through.
      if (!(result instanceof Promise)) return result
      return result.then(
        (value: unknown) => { observe(operation, started, null); return value },
        (error: unknown) => { observe(operation, started, { error }); throw error })
    }
    // A proxy rather than a class that repeats every method: any engine, and any operation added to
    // the interface later, is metered without a change here.
    const wrappers = new Map<string, unknown>()
    return new Proxy(engine, {
      get (target, property) {
        const value: unknown = Reflect.get(target, property, target)
        if (typeof value !== 'function' || typeof property !== 'string') return value
        let wrapper = wrappers.get(property)
        if (wrapper === undefined) {
          // Every method runs on the engine itself, not on the proxy: its private fields live there.
          const method = value as (...args: unknown[]) => unknown
          wrapper = UNMETERED.has(property) ? method.bind(target) : metered(`${part}.${property}`, method, target)
          wrappers.set(property, wrapper)
        }
        return wrapper
      }
    })
  }

  app.decorate('metrics', { registry, meter, watch })

  app.addHook('onResponse', (request, reply, done) => {
    // The route pattern, never the URL: ids and names in URLs would make a series per container.
    const route = request.routeOptions.url ?? 'unmatched'
    requests.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000)
    done()
  })

  app.get('/metrics', {
    // Prometheus text, not JSON: documented in docs/metrics.md rather than in the OpenAPI document.
    schema: { hide: true },
    config: { scope: options.public ? undefined : 'read' }
  }, async (_request, reply) => {
    const text = await exposed.metrics()
    return await reply.type(exposed.contentType).send(text)
  })
}, { name: 'berth-metrics' })
