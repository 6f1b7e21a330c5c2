// Container models: what `docker run -d` takes, and containers as berth reports them.
import { Type, type Static } from 'typebox'
import { ImageReference, RegistryAuth } from './images.ts'
import { PortBinding, keyedMap, ref } from './common.ts'

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
  ports: Type.Optional(Type.Array(PortRequest, { maxItems: 64, description: 'Port bindings (`-p`).' })),
  volumes: Type.Optional(Type.Array(Volume, { maxItems: 32, description: 'Volumes and bind mounts (`-v`).' })),
  restart: Type.Optional(Type.Object({
    policy: Type.Enum(['no', 'always', 'unless-stopped', 'on-failure'], { type: 'string', description: 'When the engine restarts the container.' }),
    maxRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'With on-failure: how many times at most.' }))
  }, { additionalProperties: false, description: 'Restart policy (`--restart`).' })),
  resources: Type.Optional(Type.Object({
    memory: Type.Optional(Type.Integer({ minimum: 6 * 1024 * 1024, maximum: 2 ** 50, description: 'Memory limit in bytes (`--memory`); at least 6 MiB.' })),
    cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'CPU limit in cores (`--cpus`).' }))
  }, { additionalProperties: false, description: 'Resource limits.' })),
  autoRemove: Type.Optional(Type.Boolean({ default: false, description: 'Remove the container when it exits (`--rm`).' })),
  tty: Type.Optional(Type.Boolean({ default: false, description: 'Allocate a terminal (`-t`); its logs then have no separate stderr.' })),
  pull: Type.Optional(Type.Enum(['missing', 'always', 'never'], {
    type: 'string',
    default: 'missing',
    description: 'Pull the image first: when missing (the CLI\'s default), always, or never (404 image_not_found when missing).'
  })),
  auth: Type.Optional(Type.Unsafe<Static<typeof RegistryAuth>>(Type.Ref('RegistryAuth')))
}, {
  $id: 'RunRequest',
  additionalProperties: false,
  description: 'What `docker run -d` takes. There are deliberately no fields for privileged mode, host namespaces, capabilities or devices.',
  examples: [{ image: '127.0.0.1:5000/jupyter/base-notebook:2024-01', name: 'notebook-ada', ports: [{ container: 8888, host: 8888 }], env: { JUPYTER_TOKEN: 'change-me' } }]
})
export type RunRequest = Static<typeof RunRequest>

/** A run body as validation leaves it: ajv has filled in every default the schema declares. */
export type ValidatedRunRequest = Omit<RunRequest, 'pull' | 'autoRemove' | 'tty' | 'ports' | 'volumes'> & {
  pull: NonNullable<RunRequest['pull']>
  autoRemove: boolean
  tty: boolean
  ports?: Array<Static<typeof PortRequest> & { protocol: NonNullable<Static<typeof PortRequest>['protocol']> }>
  volumes?: Array<Static<typeof Volume> & { readOnly: boolean }>
}

const portList = Type.Array(ref(PortBinding), { description: 'Host ports bound to container ports, one entry per binding.' })
const STATES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'] as const
const stateSchema = Type.Enum([...STATES, 'removed'], { type: 'string', description: 'Container state; `removed` only in a run reply, for an autoRemove container that exited and was removed before it could be inspected.' })
const labels = Type.Record(Type.String(), Type.String(), { description: 'Labels, berth\'s own (`io.berth.*`) included.' })

export const ContainerSummary = Type.Object({
  id: Type.String({ description: 'Container id.' }),
  name: Type.String({ description: 'Container name.' }),
  image: Type.String({ description: 'The image as it was asked for.' }),
  imageId: Type.String({ description: 'Id of the image it runs.' }),
  command: Type.String({ description: 'Command, as one string.' }),
  state: stateSchema,
  status: Type.String({ description: 'Human-readable status, such as "Up 5 minutes".' }),
  createdAt: Type.String({ format: 'date-time', description: 'When it was created.' }),
  ports: portList,
  labels
}, { $id: 'ContainerSummary', additionalProperties: false, description: 'A container, as `docker ps` lists it.' })
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
  autoRemove: Type.Boolean({ description: 'Removed when it exits.' })
}, { $id: 'Container', additionalProperties: false, description: 'A container, as `docker inspect` shows it.' })
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

export const containerSchemas = [RunRequest, ContainerSummary, Container, StateChange]
