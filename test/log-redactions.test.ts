// berth censors secret fields itself (src/http/log-redactions.ts) rather than through pino's path
// redaction, which re-parsed every path for every field of every line. What a line shows must not
// change: each case is logged through both, and through berth's it must read exactly as through
// pino's paths, and hide the secret. No engine needed.
import { Writable } from 'node:stream'
import { pino, type Logger, type LoggerOptions } from 'pino'
import t from 'tap'
import { REDACTED, SECRET_KEYS, createLogger, logOptions } from '../src/http/log-redactions.ts'

const SECRET = 's3cret-value'

/** pino's own redaction by path, as berth configured it before: the reference. */
const byPaths: LoggerOptions = {
  ...logOptions,
  formatters: {},
  redact: { paths: ['req.headers.authorization', 'req.headers["x-registry-auth"]', ...SECRET_KEYS.map(key => `*.${key}`)], censor: REDACTED },
  serializers: {
    ...logOptions.serializers,
    // berth's err serializer censors on its own now; the reference is the serializer without that.
    err: (error: Error) => {
      const serialized = (logOptions.serializers?.err as (error: Error) => Record<string, unknown>)(error)
      if (typeof error !== 'object' || error === null) return serialized
      return { ...serialized, ...Object.fromEntries(SECRET_KEYS.filter(key => key in error).map(key => [key, (error as unknown as Record<string, unknown>)[key]])) }
    }
  }
}

/** A logger writing into `lines`: berth's own (createLogger), or a plain pino with these options. */
function capture (options: LoggerOptions | 'berth'): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const into = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line))
      done()
    }
  })
  const fixed: LoggerOptions = { level: 'debug', base: null, timestamp: false }
  return { logger: options === 'berth' ? createLogger(fixed, into) : pino({ ...options, ...fixed }, into), lines }
}

const withSecrets = () => Object.assign(new Error('pull failed'), { token: SECRET, statusCode: 401 })

// Each case makes what it logs once, and logs the same values through both loggers.
const cases: Array<[string, () => (logger: Logger) => void]> = [
  ['a spec\'s env', () => {
    const spec = { image: 'busybox', env: [`API_KEY=${SECRET}`] }
    return logger => { logger.info({ spec }, 'run') }
  }],
  ['every secret key one level down', () => {
    const registry = { password: SECRET, identitytoken: SECRET, token: SECRET, auth: SECRET, env: SECRET, server: 'r.example' }
    return logger => { logger.warn({ registry }, 'login') }
  }],
  ['an error under err, with a token of its own', () => {
    const err = withSecrets()
    return logger => { logger.error({ err }, 'failed') }
  }],
  ['an error under another key', () => {
    const cause = withSecrets()
    return logger => { logger.error({ cause }, 'failed') }
  }],
  ['a request with its headers', () => {
    const req = { method: 'GET', url: '/v1/containers', headers: { authorization: `Bearer ${SECRET}`, 'x-registry-auth': SECRET } }
    return logger => { logger.info({ req }, 'request') }
  }],
  ['a child logger\'s bindings, and its child\'s', () => {
    const session = { token: SECRET, id: 7 }
    return logger => {
      const child = logger.child({ session })
      child.info('bound')
      child.child({ registry: { auth: SECRET } }, { level: 'info' }).info('bound twice')
    }
  }],
  ['fields with no secret', () => logger => { logger.info({ req: { method: 'GET', url: '/v1/containers' }, res: { statusCode: 200 }, responseTime: 1.5 }, 'request completed') }],
  ['a top-level key of a secret\'s name (both redact one level down, never the line\'s own fields)', () => logger => { logger.info({ token: 'name-of-a-token', spec: { auth: SECRET } }, 'top') }],
  ['two levels down, as pino did not', () => logger => { logger.info({ outer: { inner: { password: 'deep' } } }, 'deep') }],
  ['a string and a number', () => logger => { logger.info({ env: 'production', count: 3 }, 'plain') }],
  ['an error thrown as a string, a number, or null', () => logger => {
    logger.error({ err: 'boom' }, 'a string')
    logger.error({ err: 42 }, 'a number')
    logger.error({ err: null, cause: 'text' }, 'null')
  }],
  ['a class that says what it writes (toJSON)', () => {
    class Session {
      id = 1
      token = SECRET
      secret = SECRET
      toJSON () { return { id: this.id } }
    }
    const session = new Session()
    return logger => { logger.info({ session }, 'session') }
  }],
  ['bindings set on a child later (setBindings)', () => logger => {
    const child = logger.child({ step: 1 })
    child.setBindings({ registry: { password: SECRET } })
    child.info('rebound')
  }]
]

t.test('berth\'s censor writes every line exactly as pino\'s path redaction did', async t => {
  for (const [what, make] of cases) {
    const log = make()
    const reference = capture(byPaths)
    const berth = capture('berth')
    log(reference.logger)
    log(berth.logger)
    t.ok(berth.lines.length > 0, `${what}: logged`)
    t.same(berth.lines, reference.lines, what)
    t.notMatch(JSON.stringify(berth.lines), SECRET, `${what}: the secret is not in the line`)
  }
})

t.test('what is censored, said plainly', async t => {
  const berth = capture('berth')
  const error = withSecrets()
  berth.logger.error({ err: error, spec: { env: ['A=1'], image: 'busybox' } }, 'failed')
  const [line] = berth.lines
  t.match(line, { err: { message: 'pull failed', token: REDACTED, statusCode: 401, type: 'Error' }, spec: { env: REDACTED, image: 'busybox' } })
  t.equal(error.token, SECRET, 'the logged error itself is left as it was')
  const spec = { env: ['A=1'] }
  berth.logger.info({ spec }, 'run')
  t.same(spec, { env: ['A=1'] }, 'and so is a logged object')
})
