// Configuration from the environment: defaults, parsing and the errors an operator sees.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, KUBE_VOLUME_DEFAULTS, configFromEnv, defaults, hashToken, parseBytes } from '../src/config.ts'

t.test('defaults: loopback, no tokens, images allowed, no bind mounts, ports 1024-65535', async t => {
  const config = configFromEnv({})
  t.same(config, defaults)
  t.equal(config.host, '127.0.0.1')
  t.same(config.policy.bindPaths, [])
})

t.test('every variable is read and typed', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-config-'))
  const tokensFile = join(dir, 'tokens.json')
  writeFileSync(tokensFile, JSON.stringify([{ name: 'ops', scopes: ['admin'], token: 'a-long-enough-token-1' }, { name: 'ci', scopes: ['read'], sha256: hashToken('another-long-token-2'), quota: { containers: 2, memory: '1g', cpus: null, storage: '5g' } }]))
  const registryFile = join(dir, 'registries.json')
  writeFileSync(registryFile, JSON.stringify({ 'registry.example:5000': { username: 'u', password: 'p' } }))
  const config = configFromEnv({
    BERTH_HOST: '0.0.0.0',
    BERTH_DEPLOYMENT: 'lab-2',
    BERTH_QUOTA_CONTAINERS: '10',
    BERTH_QUOTA_MEMORY: '8g',
    BERTH_QUOTA_CPUS: '4',
    BERTH_QUOTA_STORAGE: '20g',
    BERTH_PORT: '9000',
    BERTH_LOG_LEVEL: 'debug',
    BERTH_DOCKER_SOCKET: '/run/docker.sock',
    BERTH_ENGINE_TIMEOUT_MS: '2500',
    BERTH_TOKENS: 'alice:read,write:alice-secret-token-0; bob:read:sha256:' + hashToken('bob-secret-token-000'),
    BERTH_TOKENS_FILE: tokensFile,
    BERTH_DOCS_PUBLIC: 'false',
    BERTH_ALLOWED_IMAGES: '127.0.0.1:5000/*, docker.io/library/*',
    BERTH_HOST_PORT_RANGE: '20000-30000',
    BERTH_ALLOWED_HOST_IPS: '127.0.0.1',
    BERTH_ALLOWED_BIND_PATHS: '/srv/data/,/home',
    BERTH_MAX_MEMORY: '2g',
    BERTH_MAX_CPUS: '1.5',
    BERTH_BODY_LIMIT: '128k',
    BERTH_RATE_LIMIT: '100',
    BERTH_MAX_CONCURRENT_PULLS: '2',
    BERTH_MAX_CONCURRENT_RUNS: '3',
    BERTH_REGISTRY_AUTH_FILE: registryFile,
    BERTH_AUTH_FAILURES_PER_MINUTE: '7',
    BERTH_HEADERS_TIMEOUT_MS: '2000',
    BERTH_REQUEST_TIMEOUT_MS: '5000'
  })
  t.match(config, {
    host: '0.0.0.0',
    deployment: 'lab-2',
    port: 9000,
    logLevel: 'debug',
    engine: { socketPath: '/run/docker.sock', timeoutMs: 2500 },
    auth: { disabled: false, docsPublic: false, failuresPerMinute: 7 },
    policy: { images: ['127.0.0.1:5000/*', 'docker.io/library/*'], hostPortMin: 20000, hostPortMax: 30000, hostIps: ['127.0.0.1'], bindPaths: ['/srv/data', '/home'], maxMemoryBytes: 2 * 1024 ** 3, maxCpus: 1.5, quota: { containers: 10, memoryBytes: 8 * 1024 ** 3, cpus: 4, storageBytes: 20 * 1024 ** 3 } },
    limits: { bodyLimit: 128 * 1024, headersTimeoutMs: 2000, requestTimeoutMs: 5000, rateLimitPerMinute: 100, maxConcurrentPulls: 2, maxConcurrentRuns: 3 },
    registryAuth: { 'registry.example:5000': { username: 'u', password: 'p' } }
  })
  t.same(config.auth.tokens, [
    { name: 'alice', scopes: ['read', 'write'], sha256: hashToken('alice-secret-token-0') },
    { name: 'bob', scopes: ['read'], sha256: hashToken('bob-secret-token-000') },
    { name: 'ops', scopes: ['admin'], sha256: hashToken('a-long-enough-token-1') },
    { name: 'ci', scopes: ['read'], sha256: hashToken('another-long-token-2'), quota: { containers: 2, memoryBytes: 1024 ** 3, cpus: null, storageBytes: 5 * 1024 ** 3 } }
  ])
  t.notOk(JSON.stringify(config).includes('alice-secret-token-0'), 'only hashes are kept')
})

t.test('mistakes fail at start with a message naming the variable', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ BERTH_PORT: 'eighty' }, /BERTH_PORT/],
    [{ BERTH_PORT: '70000' }, /BERTH_PORT/],
    [{ BERTH_TOKENS: 'alice' }, /BERTH_TOKENS entries are name:scope/],
    [{ BERTH_TOKENS: 'alice:root:a-long-enough-token-1' }, /unknown scope "root"/],
    [{ BERTH_TOKENS: 'alice:read:short' }, /shorter than 16/],
    [{ BERTH_TOKENS: 'a b:read:a-long-enough-token-1' }, /token name/],
    [{ BERTH_TOKENS: 'a:read:a-long-enough-token-1;a:read:a-long-enough-token-2' }, /configured twice/],
    [{ BERTH_TOKENS_FILE: '/nonexistent/tokens.json' }, /BERTH_TOKENS_FILE: cannot read/],
    [{ BERTH_AUTH_DISABLED: 'maybe' }, /BERTH_AUTH_DISABLED must be true or false/],
    [{ BERTH_STATE_DIR: 'var/lib/berth' }, /BERTH_STATE_DIR must be an absolute path/],
    [{ BERTH_HOST_PORT_RANGE: '100' }, /BERTH_HOST_PORT_RANGE/],
    [{ BERTH_HOST_PORT_RANGE: '3000-2000' }, /BERTH_HOST_PORT_RANGE/],
    [{ BERTH_ALLOWED_BIND_PATHS: 'relative/path' }, /absolute/],
    [{ BERTH_ALLOWED_BIND_PATHS: '/srv/../etc' }, /\.\./],
    [{ BERTH_ALLOWED_BIND_PATHS: '/srv/./data' }, /"\." or "\.\."/],
    [{ BERTH_ALLOWED_BIND_PATHS: '/' }, /must not allow "\/"/],
    [{ BERTH_ALLOWED_BIND_PATHS: '/srv,/srv/data' }, /\/srv\/data lies inside \/srv; allowed roots must not nest/],
    [{ BERTH_TOKENS: '..:read:a-long-enough-token-1' }, /not "\." or "\.\."/],
    [{ BERTH_DEPLOYMENT: 'Has Spaces' }, /BERTH_DEPLOYMENT/],
    [{ BERTH_DEPLOYMENT: '..' }, /BERTH_DEPLOYMENT/],
    [{ BERTH_QUOTA_CONTAINERS: 'many' }, /BERTH_QUOTA_CONTAINERS/],
    [{ BERTH_QUOTA_MEMORY: 'lots' }, /BERTH_QUOTA_MEMORY/],
    [{ BERTH_MAX_MEMORY: 'lots' }, /BERTH_MAX_MEMORY/],
    [{ BERTH_MAX_CPUS: '-1' }, /BERTH_MAX_CPUS/],
    [{ BERTH_ENGINE_TIMEOUT_MS: '5' }, /BERTH_ENGINE_TIMEOUT_MS/],
    [{ BERTH_AUTH_FAILURES_PER_MINUTE: '0' }, /BERTH_AUTH_FAILURES_PER_MINUTE must be an integer from 1/],
    [{ BERTH_REQUEST_TIMEOUT_MS: '0' }, /BERTH_REQUEST_TIMEOUT_MS must be an integer from 100/],
    [{ BERTH_HEADERS_TIMEOUT_MS: '20000', BERTH_REQUEST_TIMEOUT_MS: '10000' }, /BERTH_HEADERS_TIMEOUT_MS must not exceed BERTH_REQUEST_TIMEOUT_MS/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => configFromEnv(env), { name: 'ConfigError', message }, JSON.stringify(env))
  }
  const dir = mkdtempSync(join(tmpdir(), 'berth-config-'))
  const notArray = join(dir, 'tokens.json')
  writeFileSync(notArray, '{"name":"x"}')
  t.throws(() => configFromEnv({ BERTH_TOKENS_FILE: notArray }), ConfigError)
  const incomplete = join(dir, 'tokens2.json')
  writeFileSync(incomplete, '[{"name":"x","scopes":["read"]}]')
  t.throws(() => configFromEnv({ BERTH_TOKENS_FILE: incomplete }), { message: /needs a name, scopes and a token or sha256/ })
  const badQuota = join(dir, 'tokens3.json')
  writeFileSync(badQuota, '[{"name":"x","scopes":["read"],"token":"a-long-enough-token-1","quota":{"disks":1}}]')
  t.throws(() => configFromEnv({ BERTH_TOKENS_FILE: badQuota }), { message: 'token "x" quota.disks is not a quota (containers, memory, cpus, gpus, storage)' })
  const registries = join(dir, 'registries.json')
  writeFileSync(registries, '[]')
  t.throws(() => configFromEnv({ BERTH_REGISTRY_AUTH_FILE: registries }), { message: /JSON object/ })
})

t.test('sizes', async t => {
  t.equal(parseBytes('x', '65536'), 65536)
  t.equal(parseBytes('x', '512k'), 512 * 1024)
  t.equal(parseBytes('x', '256MiB'), 256 * 1024 ** 2)
  t.equal(parseBytes('x', '1.5g'), 1.5 * 1024 ** 3)
  t.throws(() => parseBytes('X', '12 parsecs'), { message: /^X must be a size/ })
})

t.test('BERTH_ENGINE=kubernetes: a kubeconfig or a pod\'s service account, and a namespace per deployment', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-kube-'))
  const kubeconfig = join(dir, 'config')
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n')
  t.same(configFromEnv({ BERTH_ENGINE: 'kubernetes', BERTH_KUBECONFIG: kubeconfig, BERTH_DEPLOYMENT: 'lab' }).engine,
    { kind: 'kubernetes', kubeconfig, namespace: 'berth-lab', timeoutMs: defaults.engine.timeoutMs, placementTimeoutMs: 60_000, volumes: KUBE_VOLUME_DEFAULTS, insecureRegistries: [] }, 'the namespace follows the deployment')
  t.same(configFromEnv({ BERTH_ENGINE: 'kubernetes', KUBERNETES_SERVICE_HOST: '10.96.0.1', BERTH_KUBE_NAMESPACE: 'notebooks', BERTH_KUBE_CONTEXT: 'lab', BERTH_KUBE_PLACEMENT_TIMEOUT_MS: '90000', BERTH_KUBE_INSECURE_REGISTRIES: 'registry.lab:5000, 10.0.0.9:5000' }).engine,
    { kind: 'kubernetes', kubeconfig: null, context: 'lab', namespace: 'notebooks', timeoutMs: defaults.engine.timeoutMs, placementTimeoutMs: 90_000, volumes: KUBE_VOLUME_DEFAULTS, insecureRegistries: ['registry.lab:5000', '10.0.0.9:5000'] }, 'in a pod: its service account; registries read over HTTP')
  const inPod = { BERTH_ENGINE: 'kubernetes', KUBERNETES_SERVICE_HOST: '10.96.0.1' }
  t.same(configFromEnv({ ...inPod, BERTH_KUBE_STORAGE_CLASS: 'fast-ssd', BERTH_KUBE_VOLUME_SIZE: '2g', BERTH_KUBE_VOLUME_MAX_SIZE: '50g', BERTH_KUBE_VOLUME_ACCESS_MODE: 'ReadWriteMany' }).engine,
    { kind: 'kubernetes', kubeconfig: null, namespace: 'berth-default', timeoutMs: defaults.engine.timeoutMs, placementTimeoutMs: 60_000, volumes: { storageClass: 'fast-ssd', defaultBytes: 2 * 1024 ** 3, maxBytes: 50 * 1024 ** 3, accessMode: 'ReadWriteMany' }, insecureRegistries: [] }, 'volumes: class, sizes, access mode')
  t.throws(() => configFromEnv({ ...inPod, BERTH_KUBE_STORAGE_CLASS: 'Fast_SSD' }), { name: 'ConfigError', message: /BERTH_KUBE_STORAGE_CLASS/ })
  t.throws(() => configFromEnv({ ...inPod, BERTH_KUBE_VOLUME_SIZE: '200g' }), { name: 'ConfigError', message: /BERTH_KUBE_VOLUME_SIZE must be at least 1 byte and at most BERTH_KUBE_VOLUME_MAX_SIZE/ })
  t.throws(() => configFromEnv({ ...inPod, BERTH_KUBE_VOLUME_ACCESS_MODE: 'ReadOnlyMany' }), { name: 'ConfigError', message: /BERTH_KUBE_VOLUME_ACCESS_MODE must be one of ReadWriteOnce, ReadWriteOncePod, ReadWriteMany/ })
  t.throws(() => configFromEnv({ BERTH_ENGINE: 'kubernetes' }), { name: 'ConfigError', message: /needs BERTH_KUBECONFIG/ })
  t.throws(() => configFromEnv({ BERTH_ENGINE: 'kubernetes', BERTH_KUBECONFIG: join(dir, 'missing') }), { name: 'ConfigError', message: /BERTH_KUBECONFIG: cannot read .*missing \(ENOENT\)/ })
  t.throws(() => configFromEnv({ BERTH_ENGINE: 'kubernetes', BERTH_KUBECONFIG: kubeconfig, BERTH_KUBE_NAMESPACE: 'Not_A_Namespace' }), { name: 'ConfigError', message: /BERTH_KUBE_NAMESPACE/ })
  t.throws(() => configFromEnv({ BERTH_ENGINE: 'nomad' }), { name: 'ConfigError', message: 'BERTH_ENGINE must be one of docker, swarm, kubernetes' })
})

t.test('BERTH_BUILDER: a socket, TCP with TLS, or plain TCP on loopback only', async t => {
  t.same(configFromEnv({ BERTH_BUILDER: 'unix:///run/builder.sock' }).builder, { socketPath: '/run/builder.sock' })
  t.same(configFromEnv({ BERTH_BUILDER: 'tcp://127.0.0.1:2375' }).builder, { host: '127.0.0.1', port: 2375, tls: null })
  t.same(configFromEnv({ BERTH_BUILDER: 'tcp://[::1]:2375' }).builder, { host: '::1', port: 2375, tls: null })
  const certs = mkdtempSync(join(tmpdir(), 'berth-builder-'))
  for (const file of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(certs, file), `${file} contents`)
  t.same(configFromEnv({ BERTH_BUILDER: 'tcp://builder.berth-builder.svc:2376', BERTH_BUILDER_CERT_PATH: certs }).builder, {
    host: 'builder.berth-builder.svc', port: 2376, tls: { ca: Buffer.from('ca.pem contents'), cert: Buffer.from('cert.pem contents'), key: Buffer.from('key.pem contents') }
  })
  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ BERTH_BUILDER: 'tcp://builder:2376' }, /over TCP to another host needs TLS/],
    [{ BERTH_BUILDER: 'unix://run/builder.sock' }, /absolute socket path/],
    [{ BERTH_BUILDER: 'https://builder:2376' }, /must be unix:\/\/\/path\/to\/docker\.sock or tcp:\/\/host:port/],
    [{ BERTH_BUILDER: 'tcp://127.0.0.1:99999' }, /port must be from 1 to 65535/],
    [{ BERTH_BUILDER_CERT_PATH: certs }, /BERTH_BUILDER_CERT_PATH is set without BERTH_BUILDER/],
    [{ BERTH_BUILDER: 'tcp://builder:2376', BERTH_BUILDER_CERT_PATH: join(certs, 'missing') }, /cannot read .*ca\.pem/]
  ]
  for (const [env, message] of refused) t.throws(() => configFromEnv(env), { name: 'ConfigError', message }, Object.keys(env).join(' '))
})
