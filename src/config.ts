// berth's typed configuration: read once from the environment, defaults in one place, overridable by tests.
// One concern kept whole on purpose (over 500 lines): every setting's parsing, default and refusal side by
// side, so docs/configuration.md and docker-compose.yml are checked against one reader (test/docs.test.ts).
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

/** read < write < admin; `build` (building and pushing images runs arbitrary commands) sits beside them: admin implies it, and it implies read. */
export type Scope = 'read' | 'write' | 'admin' | 'build'
export const SCOPES: readonly Scope[] = ['read', 'write', 'admin', 'build']

export interface TokenConfig {
  name: string
  scopes: Scope[]
  /** hex sha256 of the token; the token itself is never kept. */
  sha256: string
  /** This token's own limits, over the policy's default quota; null in a field means no limit. */
  quota?: Partial<Quota>
}

/** The most a token may hold at once, over all its containers in any state; null is no limit. */
export interface Quota {
  containers: number | null
  memoryBytes: number | null
  cpus: number | null
  /** GPUs held at once; 0 forbids them. */
  gpus: number | null
  /** Bytes of volumes held at once, counted where volumes have a size (Kubernetes: their claims' sizes). */
  storageBytes: number | null
}

export interface RegistryCredentials {
  username?: string
  password?: string
  identitytoken?: string
}

export interface Policy {
  /** Glob patterns over canonical repository names (`docker.io/library/busybox`, `127.0.0.1:5000/*`). */
  images: string[]
  hostPortMin: number
  hostPortMax: number
  /** Host IPs a port may be bound on; `*` allows any. */
  hostIps: string[]
  /**
   * Roots under which each token may bind-mount its own directory, `<root>/<deployment>/<token>`,
   * and nothing else; empty means no bind mounts at all.
   */
  bindPaths: string[]
  maxMemoryBytes: number | null
  maxCpus: number | null
  /** The largest /dev/shm a run may ask for. */
  maxShmBytes: number | null
  /** The quota of every token that does not name its own. */
  quota: Quota
  /** Whether a build's RUN steps may have a network (BERTH_BUILD_NETWORK); without it they run with none. */
  buildNetwork: boolean
  /**
   * Where a token that is not admin may push, inside every registry (BERTH_PUSH_NAMESPACE): a
   * repository path of lower-case components, `{deployment}` and `{token}`, under which the token's
   * pushes must go; and nobody else may give an image a name there. null: any name on the allow-list.
   */
  pushNamespace: string | null
}

/** What every backend that speaks the Docker API needs: where its socket is, and how long a call may take. */
interface DockerApiConfig {
  /** The engine's socket; for Swarm, a manager's. */
  socketPath: string
  /** Bound on every engine call except pulls and streams, so no request hangs on a stuck engine. */
  timeoutMs: number
}

/** The backend berth drives (BERTH_ENGINE), with what it alone needs. */
export type EngineConfig =
  | ({ kind: 'docker' } & DockerApiConfig)
  | ({
    kind: 'swarm'
    /** How `-p` publishes: on the node a task runs on (host), or cluster-wide through the routing mesh (ingress). */
    publishMode: 'host' | 'ingress'
    /** How long a run waits for its tasks to be placed and running before it answers. */
    placementTimeoutMs: number
    /**
     * berth's agent on every node (deploy/swarm/agent.yml), through which a replica's exec, stats and
     * files, and each node's images and volumes, are reached: the file holding the per-cluster secret
     * (null: no agent, and those parts answer 501 saying so) and the port the agents listen on.
     */
    agent: { secretFile: string | null, port: number }
  } & DockerApiConfig)
  | {
    kind: 'kubernetes'
    /** A kubeconfig file; null for the service account of the pod berth runs in. */
    kubeconfig: string | null
    /** The kubeconfig's context to use; its current one when absent. */
    context?: string
    /** The one namespace this berth deployment's containers live in (it must exist; berth's Role is there). */
    namespace: string
    /** Bound on every apiserver call except streams. */
    timeoutMs: number
    /** How long a run waits for its pods to be placed and running (image pulls on the nodes included). */
    placementTimeoutMs: number
    /** Named volumes as PersistentVolumeClaims: their storage class, size and access mode. */
    volumes: KubeVolumeSettings
    /** Registries berth reads images' details from over plain HTTP (loopback ones always are), as the nodes' runtime does. */
    insecureRegistries?: string[]
  }

/** How berth makes a named volume's PersistentVolumeClaim on Kubernetes. */
export interface KubeVolumeSettings {
  /** The storage class asked for; null: the cluster's default one. */
  storageClass: string | null
  /** Bytes a volume is made with when its creator asks for no size (a run's `-v name:/path` never does). */
  defaultBytes: number
  /** The most bytes one volume may ask for (policy). */
  maxBytes: number
  /** How nodes may mount it: ReadWriteOnce (one node at a time), ReadWriteOncePod or ReadWriteMany (the class must offer it). */
  accessMode: KubeAccessMode
}
export const KUBE_ACCESS_MODES = ['ReadWriteOnce', 'ReadWriteOncePod', 'ReadWriteMany'] as const
export type KubeAccessMode = typeof KUBE_ACCESS_MODES[number]
export const KUBE_VOLUME_DEFAULTS: KubeVolumeSettings = { storageClass: null, defaultBytes: 1024 ** 3, maxBytes: 100 * 1024 ** 3, accessMode: 'ReadWriteOnce' }

export const ENGINE_KINDS = ['docker', 'swarm', 'kubernetes'] as const

/**
 * Where a Docker engine listens: its unix socket, or a TCP address with TLS (a client certificate),
 * or plain TCP on loopback only (a sidecar in berth's own pod). A cluster's builder is one (BERTH_BUILDER).
 */
export type EngineAddress =
  | { socketPath: string }
  | { host: string, port: number, tls: { ca: Buffer, cert: Buffer, key: Buffer } | null }

export interface Config {
  host: string
  /**
   * This berth's identity on its engine: part of the ownership of everything it creates, so two
   * berths driving one engine do not share tenants.
   */
  deployment: string
  port: number
  logLevel: string
  engine: EngineConfig
  /** Where a cluster's images are built, tagged and pushed from; null: nowhere (builds are 501 on a cluster). */
  builder: EngineAddress | null
  auth: {
    disabled: boolean
    /** The tokens at start; src/token-store.ts holds the ones in use, which a reload replaces. */
    tokens: TokenConfig[]
    /** BERTH_TOKENS_FILE, re-read on SIGHUP and when it changes; null when tokens come from BERTH_TOKENS only. */
    tokensFile: string | null
    docsPublic: boolean
    /** /metrics without a token, for a scraper on a trusted network; off by default. */
    metricsPublic: boolean
    /** Failed authentications a client address may have in a minute; past them it is locked out until they age. */
    failuresPerMinute: number
    /**
     * Where berth keeps the admin token it makes on a start with none configured (BERTH_STATE_DIR; the
     * image's is a volume); null: it makes none, and refuses to start without a token.
     */
    stateDir: string | null
  }
  policy: Policy
  limits: {
    bodyLimit: number
    /** How long a client has to send a request's headers; slowloris is cut after this. */
    headersTimeoutMs: number
    /** How long a client has to send a whole request, headers and body. Responses are not bounded by it. */
    requestTimeoutMs: number
    rateLimitPerMinute: number
    maxConcurrentPulls: number
    maxConcurrentRuns: number
    /** The largest build context berth takes, in bytes (compressed as sent, and unpacked). */
    buildContextBytes: number
    /** How long a build may run before it is cancelled. */
    buildTimeoutMs: number
    maxConcurrentBuilds: number
  }
  jobs: {
    /** How long a finished async pull job stays readable. */
    retentionMs: number
    /** How many pull jobs berth keeps at most; the oldest finished make room first. */
    maxJobs: number
  }
  streams: {
    /** How often a server-sent event stream carries a comment, so proxies keep it open. */
    heartbeatMs: number
  }
  /** Server-side registry credentials by registry host, so clients need not send them. */
  registryAuth: Record<string, RegistryCredentials>
  /** What berth does to containers over time, by itself (src/lifecycle). */
  lifecycle: {
    /** How often berth looks for containers to remove (autoRemove) or expire; 0 never looks. */
    sweepIntervalMs: number
    /** How long an exited autoRemove container stays (its logs readable) when nobody waits for it. */
    autoRemoveGraceMs: number
    /** How many containers the sweeper works on at once (stops, removals, idle readings): one slow stop holds up nobody else. */
    concurrency: number
  }
  /** Files in and out of containers (docker cp). */
  files: {
    /** The largest upload (an archive, or a file); it is spooled to a temporary file before the engine sees it. */
    maxUploadBytes: number
    /** Where a download is cut off. */
    maxDownloadBytes: number
  }
}

/** Where the Docker engine listens unless BERTH_DOCKER_SOCKET says otherwise. */
export const DOCKER_SOCKET = '/var/run/docker.sock'

export const defaults: Config = {
  host: '127.0.0.1',
  deployment: 'default',
  port: 8080,
  logLevel: 'info',
  engine: { kind: 'docker', socketPath: DOCKER_SOCKET, timeoutMs: 10_000 },
  builder: null,
  auth: { disabled: false, tokens: [], tokensFile: null, docsPublic: true, metricsPublic: false, failuresPerMinute: 20, stateDir: null },
  policy: {
    images: ['*'],
    hostPortMin: 1024,
    hostPortMax: 65535,
    hostIps: ['*'],
    bindPaths: [],
    maxMemoryBytes: null,
    maxCpus: null,
    maxShmBytes: null,
    quota: { containers: null, memoryBytes: null, cpus: null, gpus: null, storageBytes: null },
    buildNetwork: false,
    pushNamespace: '{deployment}/{token}'
  },
  limits: {
    bodyLimit: 64 * 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    rateLimitPerMinute: 600,
    maxConcurrentPulls: 4,
    maxConcurrentRuns: 8,
    buildContextBytes: 256 * 1024 ** 2,
    buildTimeoutMs: 30 * 60_000,
    maxConcurrentBuilds: 2
  },
  jobs: { retentionMs: 10 * 60_000, maxJobs: 1000 },
  streams: { heartbeatMs: 15_000 },
  registryAuth: {},
  lifecycle: { sweepIntervalMs: 15_000, autoRemoveGraceMs: 5 * 60_000, concurrency: 8 },
  files: { maxUploadBytes: 256 * 1024 ** 2, maxDownloadBytes: 1024 ** 3 }
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export function hashToken (token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

/** Deep-merges test overrides onto the defaults, one level of sections deep. */
export function makeConfig (overrides: DeepPartial<Config> = {}): Config {
  return {
    ...defaults,
    ...overrides,
    // The Docker socket is no part of a Kubernetes engine's config.
    engine: (overrides.engine?.kind === 'kubernetes' ? { timeoutMs: defaults.engine.timeoutMs, ...overrides.engine, volumes: { ...KUBE_VOLUME_DEFAULTS, ...overrides.engine.volumes } } : { ...defaults.engine, ...overrides.engine }) as EngineConfig,
    auth: { ...defaults.auth, ...overrides.auth } as Config['auth'],
    policy: { ...defaults.policy, ...overrides.policy, quota: { ...defaults.policy.quota, ...overrides.policy?.quota } } as Policy,
    limits: { ...defaults.limits, ...overrides.limits },
    jobs: { ...defaults.jobs, ...overrides.jobs },
    streams: { ...defaults.streams, ...overrides.streams },
    lifecycle: { ...defaults.lifecycle, ...overrides.lifecycle },
    files: { ...defaults.files, ...overrides.files },
    registryAuth: (overrides.registryAuth ?? defaults.registryAuth) as Config['registryAuth'],
    builder: (overrides.builder === undefined ? defaults.builder : overrides.builder) as Config['builder']
  }
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] }

/** Reads the configuration from environment variables (documented in the README). */
export function configFromEnv (env: NodeJS.ProcessEnv = process.env): Config {
  const tokens = tokensFromEnv(env)
  const [portMin, portMax] = parsePortRange(env.BERTH_HOST_PORT_RANGE)
  const headersTimeoutMs = parseInteger('BERTH_HEADERS_TIMEOUT_MS', env.BERTH_HEADERS_TIMEOUT_MS, defaults.limits.headersTimeoutMs, 100, 600_000)
  const requestTimeoutMs = parseInteger('BERTH_REQUEST_TIMEOUT_MS', env.BERTH_REQUEST_TIMEOUT_MS, defaults.limits.requestTimeoutMs, 100, 600_000)
  // The headers are part of the request: Node refuses a headers bound longer than the request's.
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError('BERTH_HEADERS_TIMEOUT_MS must not exceed BERTH_REQUEST_TIMEOUT_MS')
  return makeConfig({
    host: env.BERTH_HOST ?? defaults.host,
    deployment: parseDeployment(env.BERTH_DEPLOYMENT),
    port: parseInteger('BERTH_PORT', env.BERTH_PORT, defaults.port, 0, 65535),
    logLevel: env.BERTH_LOG_LEVEL ?? defaults.logLevel,
    engine: parseEngine(env, parseDeployment(env.BERTH_DEPLOYMENT)),
    builder: parseBuilder(env),
    auth: {
      disabled: parseBoolean('BERTH_AUTH_DISABLED', env.BERTH_AUTH_DISABLED, false),
      tokens,
      tokensFile: env.BERTH_TOKENS_FILE || null,
      docsPublic: parseBoolean('BERTH_DOCS_PUBLIC', env.BERTH_DOCS_PUBLIC, true),
      metricsPublic: parseBoolean('BERTH_METRICS_PUBLIC', env.BERTH_METRICS_PUBLIC, false),
      failuresPerMinute: parseInteger('BERTH_AUTH_FAILURES_PER_MINUTE', env.BERTH_AUTH_FAILURES_PER_MINUTE, defaults.auth.failuresPerMinute, 1, 100_000),
      stateDir: parseStateDir(env.BERTH_STATE_DIR)
    },
    policy: {
      images: parseList(env.BERTH_ALLOWED_IMAGES) ?? defaults.policy.images,
      hostPortMin: portMin,
      hostPortMax: portMax,
      hostIps: parseList(env.BERTH_ALLOWED_HOST_IPS) ?? defaults.policy.hostIps,
      bindPaths: checkBindRoots((parseList(env.BERTH_ALLOWED_BIND_PATHS) ?? []).map(checkBindPrefix)),
      maxMemoryBytes: env.BERTH_MAX_MEMORY ? parseBytes('BERTH_MAX_MEMORY', env.BERTH_MAX_MEMORY) : null,
      maxCpus: env.BERTH_MAX_CPUS ? parsePositive('BERTH_MAX_CPUS', env.BERTH_MAX_CPUS) : null,
      maxShmBytes: env.BERTH_MAX_SHM_SIZE ? parseBytes('BERTH_MAX_SHM_SIZE', env.BERTH_MAX_SHM_SIZE) : null,
      quota: {
        containers: env.BERTH_QUOTA_CONTAINERS ? parseInteger('BERTH_QUOTA_CONTAINERS', env.BERTH_QUOTA_CONTAINERS, 0, 0, 100_000) : null,
        memoryBytes: env.BERTH_QUOTA_MEMORY ? parseBytes('BERTH_QUOTA_MEMORY', env.BERTH_QUOTA_MEMORY) : null,
        cpus: env.BERTH_QUOTA_CPUS ? parsePositive('BERTH_QUOTA_CPUS', env.BERTH_QUOTA_CPUS) : null,
        gpus: env.BERTH_QUOTA_GPUS ? parseInteger('BERTH_QUOTA_GPUS', env.BERTH_QUOTA_GPUS, 0, 0, 1024) : null,
        storageBytes: env.BERTH_QUOTA_STORAGE ? parseBytes('BERTH_QUOTA_STORAGE', env.BERTH_QUOTA_STORAGE) : null
      },
      buildNetwork: parseBoolean('BERTH_BUILD_NETWORK', env.BERTH_BUILD_NETWORK, false),
      pushNamespace: parsePushNamespace(env.BERTH_PUSH_NAMESPACE)
    },
    limits: {
      bodyLimit: env.BERTH_BODY_LIMIT ? parseBytes('BERTH_BODY_LIMIT', env.BERTH_BODY_LIMIT) : defaults.limits.bodyLimit,
      headersTimeoutMs,
      requestTimeoutMs,
      rateLimitPerMinute: parseInteger('BERTH_RATE_LIMIT', env.BERTH_RATE_LIMIT, defaults.limits.rateLimitPerMinute, 1, 1_000_000),
      maxConcurrentPulls: parseInteger('BERTH_MAX_CONCURRENT_PULLS', env.BERTH_MAX_CONCURRENT_PULLS, defaults.limits.maxConcurrentPulls, 1, 1000),
      maxConcurrentRuns: parseInteger('BERTH_MAX_CONCURRENT_RUNS', env.BERTH_MAX_CONCURRENT_RUNS, defaults.limits.maxConcurrentRuns, 1, 1000),
      buildContextBytes: env.BERTH_BUILD_CONTEXT_LIMIT ? parseBytes('BERTH_BUILD_CONTEXT_LIMIT', env.BERTH_BUILD_CONTEXT_LIMIT) : defaults.limits.buildContextBytes,
      buildTimeoutMs: parseInteger('BERTH_BUILD_TIMEOUT_MS', env.BERTH_BUILD_TIMEOUT_MS, defaults.limits.buildTimeoutMs, 1000, 24 * 3_600_000),
      maxConcurrentBuilds: parseInteger('BERTH_MAX_CONCURRENT_BUILDS', env.BERTH_MAX_CONCURRENT_BUILDS, defaults.limits.maxConcurrentBuilds, 1, 100)
    },
    jobs: {
      retentionMs: parseInteger('BERTH_JOB_RETENTION_MS', env.BERTH_JOB_RETENTION_MS, defaults.jobs.retentionMs, 1000, 7 * 24 * 3_600_000),
      maxJobs: parseInteger('BERTH_MAX_JOBS', env.BERTH_MAX_JOBS, defaults.jobs.maxJobs, 1, 100_000)
    },
    streams: {
      heartbeatMs: parseInteger('BERTH_HEARTBEAT_MS', env.BERTH_HEARTBEAT_MS, defaults.streams.heartbeatMs, 100, 600_000)
    },
    registryAuth: env.BERTH_REGISTRY_AUTH_FILE ? parseRegistryAuth(env.BERTH_REGISTRY_AUTH_FILE) : {},
    lifecycle: {
      sweepIntervalMs: parseInteger('BERTH_SWEEP_INTERVAL_MS', env.BERTH_SWEEP_INTERVAL_MS, defaults.lifecycle.sweepIntervalMs, 0, 3_600_000),
      autoRemoveGraceMs: parseInteger('BERTH_AUTO_REMOVE_GRACE_MS', env.BERTH_AUTO_REMOVE_GRACE_MS, defaults.lifecycle.autoRemoveGraceMs, 0, 7 * 24 * 3_600_000),
      concurrency: parseInteger('BERTH_SWEEP_CONCURRENCY', env.BERTH_SWEEP_CONCURRENCY, defaults.lifecycle.concurrency, 1, 1000)
    },
    files: {
      maxUploadBytes: env.BERTH_MAX_UPLOAD ? parseBytes('BERTH_MAX_UPLOAD', env.BERTH_MAX_UPLOAD) : defaults.files.maxUploadBytes,
      maxDownloadBytes: env.BERTH_MAX_DOWNLOAD ? parseBytes('BERTH_MAX_DOWNLOAD', env.BERTH_MAX_DOWNLOAD) : defaults.files.maxDownloadBytes
    }
  })
}

/** The tokens of BERTH_TOKENS and BERTH_TOKENS_FILE together: read at start, and again on each reload. */
export function tokensFromEnv (env: NodeJS.ProcessEnv): TokenConfig[] {
  const tokens = [
    ...parseTokenList(env.BERTH_TOKENS),
    ...(env.BERTH_TOKENS_FILE ? parseTokenFile(env.BERTH_TOKENS_FILE) : [])
  ]
  const names = new Set<string>()
  for (const token of tokens) {
    if (names.has(token.name)) throw new ConfigError(`token name "${token.name}" is configured twice`)
    names.add(token.name)
  }
  return tokens
}

// BERTH_TOKENS="ci:read,write:s3cret;ops:admin:sha256:<hex>" — name:scopes:token, the token last
// so it may contain colons; a token written as sha256:<hex> is taken as already hashed.
function parseTokenList (value: string | undefined): TokenConfig[] {
  if (!value) return []
  return value.split(';').map(entry => entry.trim()).filter(Boolean).map(entry => {
    const first = entry.indexOf(':')
    const second = entry.indexOf(':', first + 1)
    if (first <= 0 || second <= first) throw new ConfigError('BERTH_TOKENS entries are name:scope[,scope]:token')
    return makeToken(entry.slice(0, first), entry.slice(first + 1, second).split(','), entry.slice(second + 1))
  })
}

function parseTokenFile (path: string): TokenConfig[] {
  const parsed = readJson('BERTH_TOKENS_FILE', path)
  if (!Array.isArray(parsed)) throw new ConfigError('BERTH_TOKENS_FILE must hold a JSON array of {name, scopes, token | sha256}')
  return parsed.map((entry: { name?: unknown, scopes?: unknown, token?: unknown, sha256?: unknown, quota?: unknown }) => {
    const secret = typeof entry.sha256 === 'string' ? `sha256:${entry.sha256}` : entry.token
    if (typeof entry.name !== 'string' || !Array.isArray(entry.scopes) || typeof secret !== 'string') {
      throw new ConfigError('each BERTH_TOKENS_FILE entry needs a name, scopes and a token or sha256')
    }
    const token = makeToken(entry.name, entry.scopes as string[], secret)
    return entry.quota === undefined ? token : { ...token, quota: parseQuota(entry.name, entry.quota) }
  })
}

// A token's name is part of paths (its bind directory) and labels: "." and ".." are not names.
export const TOKEN_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/

function makeToken (name: string, scopes: string[], secret: string): TokenConfig {
  if (!TOKEN_NAME.test(name)) throw new ConfigError(`token name "${name}" must be 1-64 letters, digits, '.', '_' or '-', and not "." or ".."`)
  for (const scope of scopes) {
    if (!SCOPES.includes(scope as Scope)) throw new ConfigError(`token "${name}" has unknown scope "${scope}" (${SCOPES.join(', ')})`)
  }
  const hashed = /^sha256:([a-f0-9]{64})$/.exec(secret)
  if (!hashed && secret.length < 16) throw new ConfigError(`token "${name}" is shorter than 16 characters`)
  return { name, scopes: scopes as Scope[], sha256: hashed?.[1] ?? hashToken(secret) }
}

// {"containers": 5, "memory": "8g", "cpus": 4}; a field that is null means no limit for this token.
function parseQuota (token: string, value: unknown): Partial<Quota> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`token "${token}": quota must be an object of containers, memory, cpus, gpus and storage`)
  const quota: Partial<Quota> = {}
  for (const [key, raw] of Object.entries(value)) {
    const name = `token "${token}" quota.${key}`
    if (key === 'containers') quota.containers = raw === null ? null : parseInteger(name, String(raw), 0, 0, 100_000)
    else if (key === 'memory') quota.memoryBytes = raw === null ? null : parseBytes(name, String(raw))
    else if (key === 'cpus') quota.cpus = raw === null ? null : parsePositive(name, String(raw))
    else if (key === 'gpus') quota.gpus = raw === null ? null : parseInteger(name, String(raw), 0, 0, 1024)
    else if (key === 'storage') quota.storageBytes = raw === null ? null : parseBytes(name, String(raw))
    else throw new ConfigError(`${name} is not a quota (containers, memory, cpus, gpus, storage)`)
  }
  return quota
}

function parseEngine (env: NodeJS.ProcessEnv, deployment: string): EngineConfig {
  const api = {
    socketPath: env.BERTH_DOCKER_SOCKET ?? DOCKER_SOCKET,
    timeoutMs: parseInteger('BERTH_ENGINE_TIMEOUT_MS', env.BERTH_ENGINE_TIMEOUT_MS, defaults.engine.timeoutMs, 100, 600_000)
  }
  const kind = env.BERTH_ENGINE ?? 'docker'
  switch (kind) {
    case 'docker': return { kind, ...api }
    case 'swarm': {
      const publishMode = env.BERTH_SWARM_PUBLISH_MODE ?? 'host'
      if (publishMode !== 'host' && publishMode !== 'ingress') throw new ConfigError('BERTH_SWARM_PUBLISH_MODE must be host or ingress')
      const secretFile = env.BERTH_SWARM_AGENT_SECRET_FILE === undefined || env.BERTH_SWARM_AGENT_SECRET_FILE === '' ? null : env.BERTH_SWARM_AGENT_SECRET_FILE
      if (secretFile !== null) readableFile('BERTH_SWARM_AGENT_SECRET_FILE', secretFile)
      return {
        kind,
        ...api,
        publishMode,
        placementTimeoutMs: parseInteger('BERTH_SWARM_PLACEMENT_TIMEOUT_MS', env.BERTH_SWARM_PLACEMENT_TIMEOUT_MS, 30_000, 1000, 600_000),
        agent: { secretFile, port: parseInteger('BERTH_SWARM_AGENT_PORT', env.BERTH_SWARM_AGENT_PORT, 7988, 1, 65_535) }
      }
    }
    case 'kubernetes': {
      const kubeconfig = env.BERTH_KUBECONFIG === undefined || env.BERTH_KUBECONFIG === '' ? null : env.BERTH_KUBECONFIG
      if (kubeconfig === null && (env.KUBERNETES_SERVICE_HOST ?? '') === '') {
        throw new ConfigError('BERTH_ENGINE=kubernetes needs BERTH_KUBECONFIG (a kubeconfig file), or to run in a pod with a service account')
      }
      if (kubeconfig !== null) readableFile('BERTH_KUBECONFIG', kubeconfig)
      const namespace = env.BERTH_KUBE_NAMESPACE ?? `berth-${deployment}`
      if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(namespace)) throw new ConfigError('BERTH_KUBE_NAMESPACE must be a Kubernetes namespace name (a DNS label)')
      return {
        kind,
        kubeconfig,
        ...(env.BERTH_KUBE_CONTEXT === undefined || env.BERTH_KUBE_CONTEXT === '' ? {} : { context: env.BERTH_KUBE_CONTEXT }),
        namespace,
        timeoutMs: api.timeoutMs,
        placementTimeoutMs: parseInteger('BERTH_KUBE_PLACEMENT_TIMEOUT_MS', env.BERTH_KUBE_PLACEMENT_TIMEOUT_MS, 60_000, 1000, 600_000),
        volumes: parseKubeVolumes(env),
        insecureRegistries: parseList(env.BERTH_KUBE_INSECURE_REGISTRIES) ?? []
      }
    }
    default: throw new ConfigError(`BERTH_ENGINE must be one of ${ENGINE_KINDS.join(', ')}`)
  }
}

function parseKubeVolumes (env: NodeJS.ProcessEnv): KubeVolumeSettings {
  const storageClass = env.BERTH_KUBE_STORAGE_CLASS ?? ''
  if (storageClass !== '' && !/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(storageClass)) throw new ConfigError('BERTH_KUBE_STORAGE_CLASS must be a storage class name (a DNS subdomain)')
  const defaultBytes = env.BERTH_KUBE_VOLUME_SIZE ? parseBytes('BERTH_KUBE_VOLUME_SIZE', env.BERTH_KUBE_VOLUME_SIZE) : KUBE_VOLUME_DEFAULTS.defaultBytes
  const maxBytes = env.BERTH_KUBE_VOLUME_MAX_SIZE ? parseBytes('BERTH_KUBE_VOLUME_MAX_SIZE', env.BERTH_KUBE_VOLUME_MAX_SIZE) : KUBE_VOLUME_DEFAULTS.maxBytes
  if (defaultBytes < 1 || defaultBytes > maxBytes) throw new ConfigError('BERTH_KUBE_VOLUME_SIZE must be at least 1 byte and at most BERTH_KUBE_VOLUME_MAX_SIZE')
  const accessMode = env.BERTH_KUBE_VOLUME_ACCESS_MODE === undefined || env.BERTH_KUBE_VOLUME_ACCESS_MODE === '' ? KUBE_VOLUME_DEFAULTS.accessMode : env.BERTH_KUBE_VOLUME_ACCESS_MODE
  if (!(KUBE_ACCESS_MODES as readonly string[]).includes(accessMode)) throw new ConfigError(`BERTH_KUBE_VOLUME_ACCESS_MODE must be one of ${KUBE_ACCESS_MODES.join(', ')}`)
  return { storageClass: storageClass === '' ? null : storageClass, defaultBytes, maxBytes, accessMode: accessMode as KubeAccessMode }
}

// BERTH_BUILDER=unix:///var/run/docker.sock | tcp://builder:2376 (with BERTH_BUILDER_CERT_PATH) | tcp://127.0.0.1:2375
function parseBuilder (env: NodeJS.ProcessEnv): EngineAddress | null {
  const value = env.BERTH_BUILDER ?? ''
  if (value === '') {
    if ((env.BERTH_BUILDER_CERT_PATH ?? '') !== '') throw new ConfigError('BERTH_BUILDER_CERT_PATH is set without BERTH_BUILDER')
    return null
  }
  if (value.startsWith('unix://')) {
    const socketPath = value.slice('unix://'.length)
    if (!socketPath.startsWith('/')) throw new ConfigError('BERTH_BUILDER unix:// needs an absolute socket path, such as unix:///var/run/docker.sock')
    return { socketPath }
  }
  const match = /^tcp:\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value)
  if (match === null) throw new ConfigError('BERTH_BUILDER must be unix:///path/to/docker.sock or tcp://host:port')
  const host = (match[1] as string).replace(/^\[|\]$/g, '')
  const port = Number(match[2])
  if (port < 1 || port > 65535) throw new ConfigError('BERTH_BUILDER\'s port must be from 1 to 65535')
  const certPath = env.BERTH_BUILDER_CERT_PATH ?? ''
  if (certPath === '') {
    // Plain TCP carries root on the builder to anyone on the path: only where nothing else is on it.
    if (!['127.0.0.1', '::1', 'localhost'].includes(host)) {
      throw new ConfigError('BERTH_BUILDER over TCP to another host needs TLS: set BERTH_BUILDER_CERT_PATH to a directory with ca.pem, cert.pem and key.pem')
    }
    return { host, port, tls: null }
  }
  const read = (file: string): Buffer => {
    try {
      return readFileSync(`${certPath}/${file}`)
    } catch (error) {
      throw new ConfigError(`BERTH_BUILDER_CERT_PATH: cannot read ${certPath}/${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`)
    }
  }
  return { host, port, tls: { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') } }
}

function readableFile (name: string, path: string): void {
  try {
    readFileSync(path)
  } catch (error) {
    throw new ConfigError(`${name}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`)
  }
}

function parseDeployment (value: string | undefined): string {
  if (value === undefined || value === '') return defaults.deployment
  if (!/^(?!\.{1,2}$)[a-z0-9][a-z0-9_.-]{0,62}$/.test(value)) throw new ConfigError('BERTH_DEPLOYMENT must be 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit')
  return value
}

/**
 * BERTH_PUSH_NAMESPACE: `*` for any name on the allow-list, or a repository path whose components are
 * lower-case letters, digits, ".", "_" and "-" with `{deployment}` and `{token}` in them.
 */
function parsePushNamespace (value: string | undefined): string | null {
  if (value === undefined || value.trim() === '') return defaults.policy.pushNamespace
  const template = value.trim()
  if (template === '*') return null
  for (const component of template.split('/')) {
    const literal = component.replace(/\{(deployment|token)\}/g, 'x')
    if (component === '' || !/^[a-z0-9._-]+$/.test(literal)) {
      throw new ConfigError('BERTH_PUSH_NAMESPACE must be * or a repository path such as {deployment}/{token} or teams/{token}: lower-case components, {deployment} and {token}, no empty component')
    }
  }
  return template
}

function parseStateDir (value: string | undefined): string | null {
  if (value === undefined || value === '') return null
  if (!value.startsWith('/')) throw new ConfigError('BERTH_STATE_DIR must be an absolute path')
  return value
}

function parseRegistryAuth (path: string): Record<string, RegistryCredentials> {
  const parsed = readJson('BERTH_REGISTRY_AUTH_FILE', path)
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('BERTH_REGISTRY_AUTH_FILE must hold a JSON object of registry host to {username, password}')
  }
  return parsed as Record<string, RegistryCredentials>
}

function readJson (name: string, path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`${name}: cannot read ${path}: ${(error as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    // V8 quotes the text around a syntax error, and these files hold tokens and passwords: the
    // message says where the error is, never what is there.
    const at = /line \d+ column \d+/.exec((error as Error).message)
    throw new ConfigError(`${name}: cannot read ${path}: not valid JSON${at === null ? '' : ` (${at[0]})`}`)
  }
}

function parseList (value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined
  return value.split(',').map(item => item.trim()).filter(Boolean)
}

function parseInteger (name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback
  const number = Number(value)
  if (!Number.isInteger(number) || number < min || number > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}`)
  return number
}

function parsePositive (name: string, value: string): number {
  const number = Number(value)
  if (!Number.isFinite(number) || number <= 0) throw new ConfigError(`${name} must be a positive number`)
  return number
}

function parseBoolean (name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback
  if (['1', 'true', 'yes'].includes(value.toLowerCase())) return true
  if (['0', 'false', 'no'].includes(value.toLowerCase())) return false
  throw new ConfigError(`${name} must be true or false`)
}

/** "512m", "2g", "65536" → bytes. */
export function parseBytes (name: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(value.trim())
  if (!match) throw new ConfigError(`${name} must be a size such as 65536, 512k, 256m or 2g`)
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g']
  return Math.floor(Number(match[1]) * unit)
}

function parsePortRange (value: string | undefined): [number, number] {
  if (!value) return [defaults.policy.hostPortMin, defaults.policy.hostPortMax]
  const match = /^(\d+)-(\d+)$/.exec(value.trim())
  const min = Number(match?.[1])
  const max = Number(match?.[2])
  if (!match || min < 1 || max > 65535 || min > max) throw new ConfigError('BERTH_HOST_PORT_RANGE must be MIN-MAX within 1-65535')
  return [min, max]
}

function checkBindPrefix (path: string): string {
  if (!path.startsWith('/') || path.split('/').some(segment => segment === '..' || segment === '.')) {
    throw new ConfigError(`BERTH_ALLOWED_BIND_PATHS entry "${path}" must be an absolute path without "." or ".."`)
  }
  const root = '/' + path.split('/').filter(Boolean).join('/')
  if (root === '/') throw new ConfigError('BERTH_ALLOWED_BIND_PATHS must not allow "/": name the directories that tenants\' folders live in')
  return root
}

/** Allowed bind roots must not nest: a container given one would hold the path of the other. */
function checkBindRoots (roots: string[]): string[] {
  for (const a of roots) {
    for (const b of roots) {
      if (a !== b && b.startsWith(a + '/')) throw new ConfigError(`BERTH_ALLOWED_BIND_PATHS: ${b} lies inside ${a}; allowed roots must not nest`)
    }
  }
  return roots
}
