// The build settings and the build scope, as configuration reads them; and what the scope grants.
import t from 'tap'
import { configFromEnv, defaults } from '../src/config.ts'
import { grants } from '../src/plugins/auth.ts'

t.test('build limits and the build network come from the environment, with safe defaults', async t => {
  t.match(defaults, { policy: { buildNetwork: false }, limits: { buildContextBytes: 256 * 1024 ** 2, buildTimeoutMs: 30 * 60_000, maxConcurrentBuilds: 2 } })
  const config = configFromEnv({
    BERTH_AUTH_DISABLED: 'true',
    BERTH_BUILD_CONTEXT_LIMIT: '64m',
    BERTH_BUILD_TIMEOUT_MS: '600000',
    BERTH_MAX_CONCURRENT_BUILDS: '3',
    BERTH_BUILD_NETWORK: 'true',
    BERTH_TOKENS: 'ci:build:a-long-enough-token-1'
  })
  t.match(config, { policy: { buildNetwork: true }, limits: { buildContextBytes: 64 * 1024 ** 2, buildTimeoutMs: 600_000, maxConcurrentBuilds: 3 } })
  t.same(config.auth.tokens[0]?.scopes, ['build'])
  t.throws(() => configFromEnv({ BERTH_BUILD_TIMEOUT_MS: '10' }), /BERTH_BUILD_TIMEOUT_MS must be an integer/)
  t.throws(() => configFromEnv({ BERTH_BUILD_NETWORK: 'maybe' }), /BERTH_BUILD_NETWORK must be true or false/)
  t.throws(() => configFromEnv({ BERTH_TOKENS: 'ci:root:a-long-enough-token-1' }), /unknown scope "root" \(read, write, admin, build\)/)
})

t.test('the push namespace: {deployment}/{token} by default, a template of the operator\'s, or * for anywhere', async t => {
  t.equal(defaults.policy.pushNamespace, '{deployment}/{token}')
  t.equal(configFromEnv({}).policy.pushNamespace, '{deployment}/{token}')
  t.equal(configFromEnv({ BERTH_PUSH_NAMESPACE: 'teams/{token}' }).policy.pushNamespace, 'teams/{token}')
  t.equal(configFromEnv({ BERTH_PUSH_NAMESPACE: 'ml.{deployment}/u-{token}' }).policy.pushNamespace, 'ml.{deployment}/u-{token}')
  t.equal(configFromEnv({ BERTH_PUSH_NAMESPACE: '*' }).policy.pushNamespace, null)
  for (const bad of ['/{token}', '{token}/', 'a//{token}', 'Teams/{token}', '{user}', 'a b', '{token}/*']) {
    t.throws(() => configFromEnv({ BERTH_PUSH_NAMESPACE: bad }), /BERTH_PUSH_NAMESPACE must be \* or a repository path/, bad)
  }
})

t.test('build sits beside read < write < admin: admin implies it, it implies read', async t => {
  t.ok(grants(['admin'], 'build'))
  t.ok(grants(['build'], 'build'))
  t.ok(grants(['build'], 'read'))
  t.notOk(grants(['build'], 'write'))
  t.notOk(grants(['write'], 'build'))
  t.notOk(grants(['read'], 'build'))
  t.ok(grants(['write', 'build'], 'write'))
  t.notOk(grants([], 'read'))
})
