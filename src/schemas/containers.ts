// Container models: what `docker run -d` takes, and containers as berth reports them.
import { Type, type Static } from 'typebox'
import { ImageReference, RegistryAuth } from './images.ts'
import { PortBinding, keyedMap, ref } from './common.ts'
import { Expiry, ExpiryRequest } from './lifecycle.ts'

// No control characters: they would end up in logs, headers and terminals.
const printable = '^[^\\u0000-\\u001f\\u007f]*$'
export const NAME_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$'
const absolutePath = '^/[^\\u0000-\\u001f\\u007f]*$'

const ArgList = (description: string) => Type.Array(Type.String({ maxLength: 4096, pattern: '^[^\\u0000]*$' }), { maxItems: 256, description })

export const PortRequest = Type.Object({
  container: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port inside the container.' }),
  host: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Host port to bind; omit to let the engine choose a free one (the reply says which).' })),
  protocol: Type.Optional(Type.Enum(['tcp', 'udp', 'sctp'], { type: 'string', default: 'tcp', description: 'Transport protocol.' })),
  hostIp: Type.Optional(Type.String({ anyOf: [{ type: 'string', format: 'ipv4' }, { type: 'string', format: 'ipv6' }], maxLength: 45, description: 'Host address to bind on; omit for every interface.' }))
}, { additionalProperties: false, description: 'Bind a host port to a container port, as `-p [hostIp:][host:]container[/protocol]`.' })

export const Volume = Type.Object({
  source: Type.String({ minLength: 1, maxLength: 4096, pattern: printable, description: 'A named volume (created when missing), or an absolute host path for a bind mount when policy allows that path.' }),
  target: Type.String({ minLength: 2, maxLength: 4096, pattern: absolutePath, description: 'Absolute path inside the container.' }),
  readOnly: Type.Optional(Type.Boolean({ default: false, description: 'Mount read-only.' }))
}, { additionalProperties: false, description: 'A volume or bind mount, as `-v source:target[:ro]`.' })

// Swarm's constraint language, narrowed to what a node can be matched on: a malformed one would
// otherwise reach the manager and come back as a 500.
const CONSTRAINT = '^(node\\.(id|hostname|role|platform\\.os|platform\\.arch|labels\\.[A-Za-z0-9][A-Za-z0-9._-]{0,127})|engine\\.labels\\.[A-Za-z0-9][A-Za-z0-9._-]{0,127}) ?(==|!=) ?[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$'
const SPREAD = '^(node\\.(id|hostname|role|platform\\.os|platform\\.arch|labels\\.[A-Za-z0-9][A-Za-z0-9._-]{0,127})|engine\\.labels\\.[A-Za-z0-9][A-Za-z0-9._-]{0,127})$'

export const PlacementSchema = Type.Object({
  constraints: Type.Optional(Type.Array(Type.String({ pattern: CONSTRAINT, maxLength: 300, description: 'attribute==value or attribute!=value.' }), {
    maxItems: 16, description: 'Every one must hold on a node for a replica to run there (`--constraint`), such as `node.labels.gpu==true` or `node.role!=manager`.'
  })),
  spread: Type.Optional(Type.Array(Type.String({ pattern: SPREAD, maxLength: 200, description: 'A node attribute.' }), {
    maxItems: 4, description: 'Spread replicas evenly over the values of these node attributes (`--placement-pref spread=…`), such as `node.labels.zone`.'
  }))
}, {
  $id: 'Placement',
  additionalProperties: false,
  description: 'Cluster only (501 not_supported on docker): where replicas may run. Without it the scheduler spreads replicas over the nodes.'
})

/** The forms of `-p` berth takes as strings, as a 400 lists them. */
export const PORT_FORMS = ['8888', '8888:8888', '127.0.0.1:8888:8888', '127.0.0.1::8888', '[::1]:8888:8888', '5353:53/udp', '8000-8009:8000-8009', '8000-8009:80']
export const PortString = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: printable,
  description: `\`-p\` as the CLI writes it: \`[hostIp:][host:]container[/protocol]\`, ports or ranges: ${PORT_FORMS.map(form => `\`${form}\``).join(', ')}. ` +
    'A host range with one container port binds one free port of the range.'
})

/** The forms of `-v` berth takes as strings. */
export const VOLUME_FORMS = ['name:/data', 'name:/data:ro', '/srv/data/default/alice:/data']
export const VolumeString = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: printable,
  description: `\`-v\` as the CLI writes it: \`source:target[:ro|rw]\`, such as ${VOLUME_FORMS.map(form => `\`${form}\``).join(', ')} (a host path only when the policy allows it).`
})

const SIGNAL = '^(SIG)?(HUP|INT|QUIT|ILL|TRAP|ABRT|BUS|FPE|KILL|USR1|SEGV|USR2|PIPE|ALRM|TERM|STKFLT|CHLD|CONT|STOP|TSTP|TTIN|TTOU|URG|XCPU|XFSZ|VTALRM|PROF|WINCH|IO|PWR|SYS|RTMIN|RTMIN\\+[0-9]{1,2}|RTMAX|RTMAX-[0-9]{1,2})$|^[1-9][0-9]?$'

export const GpuRequest = Type.Union([
  Type.Integer({ minimum: 1, maximum: 64, description: 'This many GPUs (`--gpus 2`).' }),
  Type.Literal('all', { description: 'Every GPU of the host (`--gpus all`).' }),
  Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$' }), { minItems: 1, maxItems: 64, uniqueItems: true, description: 'These GPUs, by index or UUID (`--gpus \'"device=0,2"\'`).' })
], { description: 'GPUs, as `--gpus` takes them: `"all"`, a count, or device ids. An engine without a GPU runtime answers 409 gpu_unavailable.' })
export type GpuRequest = Static<typeof GpuRequest>

export const ContainerNetwork = Type.Object({
  name: Type.String({ description: 'Network name (`bridge` is the engine\'s default one).' }),
  ipAddress: Type.Union([Type.String(), Type.Null()], { description: 'Its address there while it runs.' }),
  aliases: Type.Array(Type.String(), { description: 'The names it is reached by there besides its own (`--network-alias`).' })
}, { additionalProperties: false, description: 'A network a container is attached to.' })
export type ContainerNetwork = Static<typeof ContainerNetwork>

export const RunRequest = Type.Object({
  image: ImageReference,
  name: Type.Optional(Type.String({ pattern: NAME_PATTERN, description: 'Container name (`--name`); unique on the engine.' })),
  command: Type.Optional(ArgList('Command and arguments, exec form (what follows the image in `docker run`).')),
  entrypoint: Type.Optional(ArgList('Overrides the image\'s entrypoint (`--entrypoint`), exec form.')),
  env: Type.Optional(keyedMap('^[A-Za-z_][A-Za-z0-9_]{0,255}$', Type.String({ maxLength: 32768, pattern: '^[^\\u0000]*$' }), {
    maxProperties: 256, description: 'Environment variables (`-e`). Values are never logged nor sent to the engine in a URL.'
  })),
  workingDir: Type.Optional(Type.String({ maxLength: 4096, pattern: absolutePath, description: 'Working directory inside the container (`-w`).' })),
  user: Type.Optional(Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$', description: 'User (and group) to run as (`-u`).' })),
  labels: Type.Optional(keyedMap('^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$', Type.String({ maxLength: 4096, pattern: printable }), {
    maxProperties: 64, description: 'Labels (`-l`). Keys under `io.berth.` are berth\'s own and cannot be set.'
  })),
  // The union's description is also what a value of neither shape is told (plugins/problems.ts).
  ports: Type.Optional(Type.Array(Type.Union([PortRequest, PortString], { description: `an object {container, host?, protocol?, hostIp?} or a string as \`-p\` takes it (${PORT_FORMS.map(form => `"${form}"`).join(', ')})` }), { maxItems: 64, description: 'Port bindings (`-p`): objects, or the CLI\'s strings; 64 at most once ranges are expanded.' })),
  volumes: Type.Optional(Type.Array(Type.Union([Volume, VolumeString], { description: `an object {source, target, readOnly?} or a string as \`-v\` takes it (${VOLUME_FORMS.map(form => `"${form}"`).join(', ')})` }), { maxItems: 32, description: 'Volumes and bind mounts (`-v`): objects, or the CLI\'s strings.' })),
  restart: Type.Optional(Type.Object({
    policy: Type.Enum(['no', 'always', 'unless-stopped', 'on-failure'], { type: 'string', description: 'When the engine restarts the container.' }),
    maxRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'With on-failure: how many times at most.' }))
  }, { additionalProperties: false, description: 'Restart policy (`--restart`).' })),
  resources: Type.Optional(Type.Object({
    memory: Type.Optional(Type.Integer({ minimum: 6 * 1024 * 1024, maximum: 2 ** 50, description: 'Memory limit in bytes (`--memory`); at least 6 MiB.' })),
    cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'CPU limit in cores (`--cpus`).' })),
    reservations: Type.Optional(Type.Object({
      memory: Type.Optional(Type.Integer({ minimum: 4 * 1024 * 1024, maximum: 2 ** 50, description: 'Memory to reserve on a node for each replica, in bytes (`--reserve-memory`).' })),
      cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'CPU cores to reserve on a node for each replica (`--reserve-cpu`).' }))
    }, { additionalProperties: false, description: 'Cluster only (501 not_supported on docker): what the scheduler reserves for each replica; a replica goes only to a node with that much unreserved.' }))
  }, { additionalProperties: false, description: 'Resource limits, and on a cluster reservations.' })),
  replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 1, description: 'How many replicas to run (`docker service create --replicas`). More than 1 needs a cluster: 501 not_supported on docker.' })),
  placement: Type.Optional(Type.Unsafe<Static<typeof PlacementSchema>>(Type.Ref('Placement'))),
  autoRemove: Type.Optional(Type.Boolean({
    default: false,
    description: 'Remove the container once it has exited (`--rm`) and its exit was collected: when a wait on it is answered, ' +
      'or BERTH_AUTO_REMOVE_GRACE_MS after it exited when nobody waits. Until then its logs stay readable. Not with a restart policy.'
  })),
  tty: Type.Optional(Type.Boolean({ default: false, description: 'Allocate a terminal (`-t`); its logs then have no separate stderr.' })),
  pull: Type.Optional(Type.Enum(['missing', 'always', 'never'], {
    type: 'string',
    default: 'missing',
    description: 'Pull the image first: when missing (the CLI\'s default), always, or never (404 image_not_found when missing).'
  })),
  auth: Type.Optional(Type.Unsafe<Static<typeof RegistryAuth>>(Type.Ref('RegistryAuth'))),
  // ---- Environments (issue 14): the data-science knobs
  shmSize: Type.Optional(Type.Integer({ minimum: 1024 * 1024, maximum: 2 ** 40, description: 'Size of /dev/shm in bytes (`--shm-size`); the engine\'s default of 64 MiB is too small for PyTorch data loaders.' })),
  hostname: Type.Optional(Type.String({ maxLength: 63, pattern: '^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$', description: 'Host name inside the container (`--hostname`).' })),
  ulimits: Type.Optional(Type.Object({
    nofile: Type.Optional(Type.Object({
      soft: Type.Integer({ minimum: 1, maximum: 1048576, description: 'Soft limit.' }),
      hard: Type.Integer({ minimum: 1, maximum: 1048576, description: 'Hard limit; at least the soft one.' })
    }, { additionalProperties: false, description: 'Open files (`--ulimit nofile=soft:hard`).' }))
  }, { additionalProperties: false, description: 'Resource limits of the processes (`--ulimit`).' })),
  init: Type.Optional(Type.Boolean({ description: 'Run a tiny init as PID 1 that reaps zombies and forwards signals (`--init`).' })),
  readOnly: Type.Optional(Type.Boolean({ description: 'Mount the root filesystem read-only (`--read-only`); volumes stay writable.' })),
  stopSignal: Type.Optional(Type.String({ pattern: SIGNAL, maxLength: 16, description: 'The signal a stop sends first (`--stop-signal`), such as `SIGINT`; by default the image\'s, or SIGTERM.' })),
  stopTimeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: 'Seconds a stop waits after the stop signal before it kills (`--stop-timeout`); a stop\'s own `timeout` wins.' })),
  gpus: Type.Optional(GpuRequest),
  network: Type.Optional(Type.String({
    pattern: NAME_PATTERN,
    description: 'The network to join (`--network`): one of the token\'s networks (by name or id), or `bridge` (the default) or `none`. Never `host`.'
  })),
  aliases: Type.Optional(Type.Array(Type.String({ pattern: '^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$' }), {
    maxItems: 16, uniqueItems: true, description: 'More names it is reached by on `network` (`--network-alias`), so a hub or proxy finds it; needs a user-defined network.'
  })),
  expiry: Type.Optional(ExpiryRequest)
}, {
  $id: 'RunRequest',
  additionalProperties: false,
  description: 'What `docker run -d` takes. There are deliberately no fields for privileged mode, host namespaces, capabilities or devices.',
  examples: [{ image: '127.0.0.1:5000/jupyter/base-notebook:2024-01', name: 'notebook-ada', ports: [{ container: 8888, host: 8888 }], env: { JUPYTER_TOKEN: 'change-me' } }]
})
export type RunRequest = Static<typeof RunRequest>

/**
 * A run body as validation leaves it: ajv has filled in every default the schema declares — except
 * inside `ports` and `volumes` entries, which may be objects or strings (ajv fills no defaults in a
 * union): src/access/run-spec.ts does.
 */
export type ValidatedRunRequest = Omit<RunRequest, 'pull' | 'autoRemove' | 'tty'> & {
  pull: NonNullable<RunRequest['pull']>
  autoRemove: boolean
  tty: boolean
}

const portList = Type.Array(ref(PortBinding), { description: 'Host ports bound to container ports, one entry per binding.' })
const STATES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'] as const
const stateSchema = Type.Enum([...STATES, 'removed'], { type: 'string', description: 'Container state. (`removed` is no longer answered: berth keeps an autoRemove container until its exit is collected.)' })
const labels = Type.Record(Type.String(), Type.String(), { description: 'Labels, berth\'s own (`io.berth.*`) included.' })

export const Task = Type.Object({
  id: Type.String({ description: 'Task id.' }),
  slot: Type.Union([Type.Integer(), Type.Null()], { description: 'Which replica it is (1..count).' }),
  node: Type.Union([Type.String(), Type.Null()], { description: 'The node it was placed on; null while it waits to be placed.' }),
  address: Type.Union([Type.String(), Type.Null()], { description: 'That node\'s address: host-mode ports answer there.' }),
  state: Type.String({ description: 'Swarm\'s task state: pending, assigned, preparing, starting, running, complete, failed, shutdown, rejected…' }),
  desiredState: Type.String({ description: 'The state the orchestrator wants it in (running, shutdown…).' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why it is not running, as the scheduler or the node said; null when nothing is wrong.' }),
  exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'Its container\'s exit code, once it has exited.' }),
  ports: portList,
  since: Type.String({ format: 'date-time', description: 'When it entered its state.' })
}, { $id: 'Task', additionalProperties: false, description: 'One replica of a container on a cluster (a Swarm task).' })
export type Task = Static<typeof Task>

const clusterFields = {
  replicas: Type.Optional(Type.Object({
    count: Type.Integer({ description: 'The replicas it runs when started (kept while it is stopped).' }),
    running: Type.Integer({ description: 'The replicas running now.' })
  }, { additionalProperties: false, description: 'On a cluster: how many replicas it has.' })),
  tasks: Type.Optional(Type.Array(Type.Unsafe<Static<typeof Task>>(Type.Ref('Task')), { description: 'On a cluster: the latest task of each replica.' }))
}

export const ContainerSummary = Type.Object({
  id: Type.String({ description: 'Container id.' }),
  name: Type.String({ description: 'Container name.' }),
  image: Type.String({ description: 'The image as it was asked for.' }),
  imageId: Type.String({ description: 'Id of the image it runs.' }),
  command: Type.Array(Type.String(), { description: 'Entrypoint and command as run, as inspect gives them (on one host, read back from the engine\'s list, where an argument with both a space and a single quote cannot be told apart).' }),
  state: stateSchema,
  status: Type.String({ description: 'Human-readable status, such as "Up 5 minutes".' }),
  createdAt: Type.String({ format: 'date-time', description: 'When it was created.' }),
  ports: portList,
  labels,
  ...clusterFields
}, { $id: 'ContainerSummary', additionalProperties: false, description: 'A container, as `docker ps` lists it. On a Swarm cluster it is a service, and also has `replicas` and `tasks`.' })
export type ContainerSummary = Static<typeof ContainerSummary>

export const Container = Type.Object({
  id: Type.String({ description: 'Container id.' }),
  name: Type.String({ description: 'Container name.' }),
  image: Type.String({ description: 'The image as it was asked for.' }),
  imageId: Type.String({ description: 'Id of the image it runs.' }),
  imageDigest: Type.Union([Type.String(), Type.Null()], { description: 'Registry digest of the image it runs (null for an image never pulled from a registry): run `repo@digest` to get exactly this image again.' }),
  command: Type.Array(Type.String(), { description: 'Entrypoint and command as run.' }),
  state: stateSchema,
  running: Type.Boolean({ description: 'Whether it runs now.' }),
  exitCode: Type.Union([Type.Integer(), Type.Null()], { description: 'Exit code once it has exited; null otherwise.' }),
  createdAt: Type.String({ format: 'date-time', description: 'When it was created.' }),
  startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it last started.' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When it last exited.' }),
  ports: portList,
  labels,
  restart: Type.Object({
    policy: Type.Enum(['no', 'always', 'unless-stopped', 'on-failure'], { type: 'string', description: 'Restart policy.' }),
    maxRetries: Type.Integer({ description: 'Retries with on-failure.' })
  }, { additionalProperties: false, description: 'Restart policy.' }),
  resources: Type.Object({
    memory: Type.Union([Type.Integer(), Type.Null()], { description: 'Memory limit in bytes, null for none.' }),
    cpus: Type.Union([Type.Number(), Type.Null()], { description: 'CPU limit in cores, null for none.' })
  }, { additionalProperties: false, description: 'Resource limits.' }),
  autoRemove: Type.Boolean({ description: 'Removed when it exits.' }),
  ...clusterFields,
  placement: Type.Optional(Type.Unsafe<Static<typeof PlacementSchema>>(Type.Ref('Placement'))),
  reservations: Type.Optional(Type.Object({
    memory: Type.Union([Type.Integer(), Type.Null()], { description: 'Memory reserved for each replica in bytes, null for none.' }),
    cpus: Type.Union([Type.Number(), Type.Null()], { description: 'CPU cores reserved for each replica, null for none.' })
  }, { additionalProperties: false, description: 'On a cluster: what the scheduler reserves on a node for each replica.' })),
  // ---- Environments (issue 14)
  gpus: Type.Optional(Type.Unsafe<GpuRequest>({ ...GpuRequest, description: 'The GPUs it was given, as asked for; absent when none.' })),
  networks: Type.Optional(Type.Array(ContainerNetwork, { description: 'The networks it is attached to.' })),
  expiry: Type.Optional(ref(Expiry, 'When it expires, when it was run with an expiry.'))
}, { $id: 'Container', additionalProperties: false, description: 'A container, as `docker inspect` shows it. On a Swarm cluster it is a service, and also has `replicas` and `tasks`.' })
export type Container = Static<typeof Container>

export const StateChange = Type.Object({
  changed: Type.Boolean({ description: 'False when the container already was in the state asked for (nothing was done).' }),
  container: Type.Unsafe<Static<typeof Container>>(Type.Ref('Container'))
}, { $id: 'StateChange', additionalProperties: false, description: 'The outcome of start, stop or restart.' })

export const ContainerParams = Type.Object({
  idOrName: Type.String({ pattern: NAME_PATTERN, description: 'Container id (full or unique prefix) or name.' })
})

export const ListContainersQuery = Type.Object({
  all: Type.Optional(Type.Boolean({ default: false, description: 'Every state (`docker ps -a`); by default only running containers.' })),
  status: Type.Optional(Type.Array(Type.Enum(STATES, { type: 'string' }), { maxItems: 7, description: 'Only containers in these states; repeat for several.' })),
  label: Type.Optional(Type.Array(Type.String({ maxLength: 1024, pattern: printable }), { maxItems: 32, description: 'Only containers with this label (`key` or `key=value`); repeat for several.' })),
  name: Type.Optional(Type.String({ pattern: NAME_PATTERN, description: 'Only the container with exactly this name.' }))
}, { additionalProperties: false })

export const StopQuery = Type.Object({
  timeout: Type.Optional(Type.Integer({ minimum: 0, maximum: 600, description: 'Seconds to wait after SIGTERM before the engine kills the container (`docker stop -t`); the engine\'s default is 10.' }))
}, { additionalProperties: false })

export const RemoveContainerQuery = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'Remove even when running (`docker rm -f`).' })),
  volumes: Type.Optional(Type.Boolean({ default: false, description: 'Also remove anonymous volumes (`docker rm -v`).' }))
}, { additionalProperties: false })

export const ScaleRequest = Type.Object({
  replicas: Type.Integer({ minimum: 1, maximum: 100, description: 'How many replicas it runs (`docker service scale`). To run none, stop it.' })
}, { $id: 'ScaleRequest', additionalProperties: false, description: 'The replicas a container is to run.' })
export type ScaleRequest = Static<typeof ScaleRequest>

export const containerSchemas = [PlacementSchema, RunRequest, Task, ContainerSummary, Container, StateChange, ScaleRequest]
