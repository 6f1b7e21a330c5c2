// The entry point: configuration from the environment, the logger, listen, graceful close. Nothing else.
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { buildApp } from './app.ts'
import { verifyBindRoots } from './access/binds.ts'
import { firstToken } from './access/first-token.ts'
import { TokenStore, watchTokens } from './access/token-store.ts'
import { ConfigError, configFromEnv, tokensFromEnv, type Config } from './config.ts'
import { createBackend } from './engine/index.ts'
import { checkSocketAccess } from './engine/socket-check.ts'
import { createLogger } from './http/log-redactions.ts'

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

// Lines are written to stdout off the request path: a synchronous write per line cost a request
// more than its routing and serialisation together (bench/). pino flushes what is buffered
// synchronously when the process exits, whatever the reason.
const logger = createLogger({ level: process.env.BERTH_LOG_LEVEL ?? 'info' }, pino.destination({ dest: 1, sync: false }))

let config: Config
// The environment tokens are read from, at start and on each reload.
let tokenEnv = process.env
try {
  config = configFromEnv()
  await verifyBindRoots(config.policy.bindPaths)
  if ('socketPath' in config.engine) await checkSocketAccess(config.engine.socketPath)
  // No token configured, and a place to keep one (the image's volume): berth makes an admin token,
  // whose tokens file is then read as if BERTH_TOKENS_FILE named it. Configured tokens always win.
  if (!config.auth.disabled && config.auth.tokens.length === 0 && config.auth.tokensFile === null && config.auth.stateDir !== null) {
    const first = await firstToken(config.auth.stateDir)
    tokenEnv = { ...process.env, BERTH_TOKENS_FILE: first.file }
    config.auth.tokens = tokensFromEnv(tokenEnv)
    config.auth.tokensFile = first.file
    // Shown whatever BERTH_LOG_LEVEL says: this line is the only place the secret ever is.
    const shown = logger.child({}, { level: 'info' })
    if (first.secret !== null) {
      shown.warn(`no token was configured, so berth made an admin token and keeps only its hash, in ${first.file}. ` +
        `Its secret is shown this once: BERTH_TOKEN=${first.secret} (set BERTH_TOKENS to use your own tokens instead)`)
    } else {
      shown.info(`no token is configured: using the admin token berth made at its first start (its hash is in ${first.file}; ` +
        'its secret was shown then). Lost it? Remove that file, or the volume, and restart berth for a new one')
    }
  }
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  logger.fatal(error.message)
  process.exit(78)
}

if (!config.auth.disabled && config.auth.tokens.length === 0) {
  logger.fatal('no token is configured: set BERTH_TOKENS or BERTH_TOKENS_FILE, or set BERTH_AUTH_DISABLED=true to run without authentication on loopback only')
  process.exit(78)
}
if (config.auth.disabled) {
  if (!LOOPBACK.has(config.host)) {
    logger.warn({ requestedHost: config.host }, 'authentication is disabled, so berth listens on 127.0.0.1 only, whatever BERTH_HOST says')
    config.host = '127.0.0.1'
  }
  logger.warn('AUTHENTICATION IS DISABLED: anyone who can reach 127.0.0.1:%d controls the Docker engine', config.port)
}

const engine = await createBackend(config)
const tokens = new TokenStore(config.auth.tokens)
const app = await buildApp(config, { engine, logger, tokens })

// Tokens change without a restart: BERTH_TOKENS_FILE is re-read when it changes, and on SIGHUP
// (for changes a watch cannot see, such as a single file bind-mounted into a container).
const reloader = watchTokens({ store: tokens, load: () => tokensFromEnv(tokenEnv), file: config.auth.tokensFile, log: app.log })
process.on('SIGHUP', () => { reloader.reload('SIGHUP') })

// SIGHUP is close-with-grace's by default: it would close berth instead.
closeWithGrace({ delay: 10_000, logger, skip: ['SIGHUP'] }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing berth after an error')
  else app.log.info({ signal }, 'closing berth: finishing requests in flight')
  reloader.close()
  await app.close()
})

try {
  await app.listen({ host: config.host, port: config.port })
  try {
    const info = await engine.info()
    app.log.info({ engine: info }, 'engine reachable')
  } catch (error) {
    // berth starts without its engine and says so on /readyz; it connects when the engine is back.
    // (A socket it may not open stopped it above: no waiting fixes that.)
    app.log.warn({ err: error }, 'engine not reachable yet')
  }
} catch (error) {
  app.log.fatal({ err: error }, 'cannot listen')
  process.exit(1)
}
