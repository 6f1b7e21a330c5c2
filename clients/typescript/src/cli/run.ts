// berth run: docker run's flags as people type them, turned into berth's run body; without -d it stays
// attached to the container's output and ends with its exit code, as docker run does.
import { readFile } from 'node:fs/promises'
import { UsageError, invalidValue, type OptionSpecs } from '../args.ts'
import { ok, type BerthClient, type Schemas } from '../index.ts'
import { pullWithProgress } from './images.ts'
import { command, keyValues, parseSize, type Ctx } from './command.ts'

type RunRequest = Schemas['RunRequest']

const options = {
  detach: { type: 'bool', short: 'd', description: 'Run container in background and print container ID' },
  name: { type: 'string', description: 'Assign a name to the container' },
  publish: { type: 'list', short: 'p', description: 'Publish a container\'s port(s) to the host ([IP:][HOST:]CONTAINER[/PROTO])' },
  env: { type: 'list', short: 'e', description: 'Set environment variables (NAME=VALUE, or NAME to take it from here)' },
  'env-file': { type: 'list', value: 'file', description: 'Read in a file of environment variables' },
  volume: { type: 'list', short: 'v', description: 'Bind mount a volume (NAME:PATH[:ro])' },
  label: { type: 'list', short: 'l', description: 'Set meta data on a container' },
  workdir: { type: 'string', short: 'w', description: 'Working directory inside the container' },
  user: { type: 'string', short: 'u', description: 'Username or UID (format: <name|uid>[:<group|gid>])' },
  entrypoint: { type: 'string', description: 'Overwrite the default ENTRYPOINT of the image' },
  restart: { type: 'string', description: 'Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N])' },
  memory: { type: 'string', short: 'm', value: 'bytes', description: 'Memory limit (such as 512m, 2g)' },
  cpus: { type: 'string', value: 'decimal', description: 'Number of CPUs' },
  gpus: { type: 'string', value: 'gpu-request', description: 'GPU devices to add to the container (\'all\' to pass all GPUs)' },
  'shm-size': { type: 'string', value: 'bytes', description: 'Size of /dev/shm' },
  network: { type: 'string', description: 'Connect a container to a network' },
  'network-alias': { type: 'list', description: 'Add network-scoped alias for the container' },
  hostname: { type: 'string', short: 'h', description: 'Container host name' },
  init: { type: 'bool', description: 'Run an init inside the container that forwards signals and reaps processes' },
  'read-only': { type: 'bool', description: 'Mount the container\'s root filesystem as read only' },
  'stop-signal': { type: 'string', description: 'Signal to stop the container' },
  'stop-timeout': { type: 'string', value: 'int', description: 'Timeout (in seconds) to stop a container' },
  rm: { type: 'bool', description: 'Automatically remove the container when it exits' },
  tty: { type: 'bool', short: 't', description: 'Allocate a pseudo-TTY' },
  interactive: { type: 'bool', short: 'i', description: 'Keep STDIN open (berth cannot attach it: see below)' },
  pull: { type: 'string', description: 'Pull image before running ("always", "missing", "never")' },
  from: { type: 'string', value: 'file', description: 'berth: start from a run body in FILE (berth spec\'s output, or a RunRequest)' },
  quiet: { type: 'bool', short: 'q', description: 'Suppress the pull output' }
} satisfies OptionSpecs

/** Where berth's validation of a run body points, and the flag that set it. */
const FLAGS: Array<[string, string]> = [
  ['/resources/memory', '-m, --memory'], ['/resources/cpus', '--cpus'], ['/resources', '--memory/--cpus'], ['/name', '--name'],
  ['/env', '-e, --env'], ['/ports', '-p, --publish'], ['/volumes', '-v, --volume'], ['/restart', '--restart'], ['/gpus', '--gpus'],
  ['/shmSize', '--shm-size'], ['/network', '--network'], ['/aliases', '--network-alias'], ['/labels', '-l, --label'], ['/user', '-u, --user'],
  ['/workingDir', '-w, --workdir'], ['/entrypoint', '--entrypoint'], ['/command', 'COMMAND'], ['/image', 'IMAGE'], ['/hostname', '-h, --hostname'],
  ['/stopSignal', '--stop-signal'], ['/stopTimeout', '--stop-timeout'], ['/pull', '--pull']
]

/** The flag behind a body path such as `/ports/0`, for a message in the command line's terms. */
export function flagOf (path: string): string | undefined {
  return FLAGS.find(([prefix]) => path === prefix || path.startsWith(`${prefix}/`))?.[1]
}

/** docker's --env-file: NAME=VALUE lines, `#` comments, a bare NAME taken from the environment. */
async function envFile (path: string, env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new UsageError(`open ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (error as Error).message}`)
  }
  const lines = text.split(/\r?\n/).map(line => line.trimStart()).filter(line => line !== '' && !line.startsWith('#'))
  return keyValues(lines, '--env-file', { bare: name => env[name] }) ?? {}
}

function gpus (text: string): RunRequest['gpus'] {
  const value = text.replace(/^"(.*)"$/, '$1')
  if (value === 'all') return 'all'
  if (/^\d+$/.test(value)) return Number(value)
  const devices = /^device=(.+)$/.exec(value)?.[1]
  if (devices) return devices.split(',')
  throw invalidValue(options, 'gpus', text, 'expected all, a count, or device=ID[,ID...]')
}

function restart (text: string): NonNullable<RunRequest['restart']> {
  const [policy, retries] = text.split(':')
  if (policy !== 'no' && policy !== 'always' && policy !== 'unless-stopped' && policy !== 'on-failure') {
    throw invalidValue(options, 'restart', text, 'expected no, always, unless-stopped or on-failure[:max-retries]')
  }
  if (retries === undefined) return { policy }
  if (policy !== 'on-failure' || !/^\d+$/.test(retries)) throw invalidValue(options, 'restart', text, 'maximum retry count is only for on-failure, and a whole number')
  return { policy, maxRetries: Number(retries) }
}

/** The run body the flags describe, on top of --from FILE's when given. */
async function body (values: ReturnType<typeof parsedValues>, image: string | undefined, args: string[], env: NodeJS.ProcessEnv): Promise<RunRequest> {
  let base: Partial<RunRequest> = {}
  if (values.from !== undefined) {
    let parsed: { run?: RunRequest } & Partial<RunRequest>
    try {
      parsed = JSON.parse(await readFile(values.from, 'utf8'))
    } catch (error) {
      throw invalidValue(options, 'from', values.from, (error as Error).message)
    }
    base = parsed.run ?? parsed
  }
  const out: Partial<RunRequest> = { ...base }
  if (image !== undefined) out.image = image
  if (out.image === undefined) throw new UsageError('\'berth run\' requires at least 1 argument', 1)
  if (args.length > 0) out.command = args
  if (values.name !== undefined) out.name = values.name
  if (values.publish) out.ports = [...(out.ports ?? []), ...values.publish]
  if (values.volume) out.volumes = [...(out.volumes ?? []), ...values.volume]
  const fromFiles: Record<string, string> = {}
  for (const file of values['env-file'] ?? []) Object.assign(fromFiles, await envFile(file, env))
  const environment = { ...out.env, ...fromFiles, ...keyValues(values.env, '-e, --env', { bare: name => env[name] }) }
  if (Object.keys(environment).length > 0) out.env = environment
  const labels = keyValues(values.label, '-l, --label')
  if (labels) out.labels = { ...out.labels, ...labels }
  if (values.workdir !== undefined) out.workingDir = values.workdir
  if (values.user !== undefined) out.user = values.user
  if (values.entrypoint !== undefined) out.entrypoint = values.entrypoint === '' ? [] : [values.entrypoint]
  if (values.restart !== undefined) out.restart = restart(values.restart)
  if (values.memory !== undefined || values.cpus !== undefined) {
    const resources = { ...out.resources }
    if (values.memory !== undefined) {
      const bytes = parseSize(values.memory)
      if (bytes === null) throw invalidValue(options, 'memory', values.memory, `invalid size: '${values.memory}'`)
      resources.memory = bytes
    }
    if (values.cpus !== undefined) {
      const cpus = Number(values.cpus)
      if (!Number.isFinite(cpus) || cpus <= 0) throw invalidValue(options, 'cpus', values.cpus, 'a number of CPUs greater than 0, such as 1.5')
      resources.cpus = cpus
    }
    out.resources = resources
  }
  if (values.gpus !== undefined) out.gpus = gpus(values.gpus)
  if (values['shm-size'] !== undefined) {
    const bytes = parseSize(values['shm-size'])
    if (bytes === null) throw invalidValue(options, 'shm-size', values['shm-size'], `invalid size: '${values['shm-size']}'`)
    out.shmSize = bytes
  }
  if (values.network !== undefined) out.network = values.network
  if (values['network-alias']) out.aliases = values['network-alias']
  if (values.hostname !== undefined) out.hostname = values.hostname
  if (values.init) out.init = true
  if (values['read-only']) out.readOnly = true
  if (values['stop-signal'] !== undefined) out.stopSignal = values['stop-signal']
  if (values['stop-timeout'] !== undefined) {
    if (!/^\d+$/.test(values['stop-timeout'])) throw invalidValue(options, 'stop-timeout', values['stop-timeout'], 'seconds, as a whole number')
    out.stopTimeout = Number(values['stop-timeout'])
  }
  if (values.rm) out.autoRemove = true
  if (values.tty) out.tty = true
  if (values.pull !== undefined) {
    if (values.pull !== 'missing' && values.pull !== 'always' && values.pull !== 'never') throw invalidValue(options, 'pull', values.pull, 'expected always, missing or never')
    out.pull = values.pull
  }
  return out as RunRequest
}

function parsedValues (values: Record<string, unknown>) {
  return values as { [K in keyof typeof options]?: (typeof options)[K]['type'] extends 'bool' ? boolean : (typeof options)[K]['type'] extends 'list' ? string[] : string }
}

/** docker run pulls a missing image first, saying so; berth's own pull would be silent. */
async function pullIfMissing (ctx: Ctx, request: RunRequest, quiet: boolean): Promise<void> {
  if (request.pull === 'never') return
  const { response } = await ctx.berth.GET('/v1/images/{ref}', { params: { path: { ref: request.image } } })
  // 404: missing, pull it here with progress; anything else (there; or a cluster without the images part) the run deals with.
  if (response.status !== 404 && request.pull !== 'always') return
  if (response.status === 404) ctx.io.stderr.write(`Unable to find image '${request.image}' locally\n`)
  if (quiet) {
    const events = ctx.berth.pull({ image: request.image })
    while (!(await events.next()).done) { /* quiet: only the outcome counts */ }
  } else await pullWithProgress(ctx.berth, request.image, ctx.io.stderr)
  request.pull = 'never'
}

/** Follows the container's output until it stops, then answers its exit code (docker run without -d). */
export async function attach (berth: BerthClient, ctx: Ctx, id: string): Promise<number> {
  let stopping = false
  const interrupt = () => {
    // docker forwards Ctrl-C to the container; berth cannot send it a signal, so it stops it: once more leaves.
    if (stopping) process.exit(130)
    stopping = true
    berth.POST('/v1/containers/{idOrName}/stop', { params: { path: { idOrName: id } } }).catch(() => {})
  }
  process.on('SIGINT', interrupt)
  try {
    for await (const entry of berth.logs(id, { follow: true })) {
      const text = `${entry.line}\n`
      if (entry.stream === 'stderr') ctx.io.stderr.write(text)
      else ctx.io.stdout.write(text)
    }
    const result = await ok(berth.POST('/v1/containers/{idOrName}/wait', { params: { path: { idOrName: id } } }))
    return result.exitCode ?? 0
  } finally {
    process.off('SIGINT', interrupt)
  }
}

export const run = command({
  name: 'run',
  usage: '[OPTIONS] IMAGE [COMMAND] [ARG...]',
  summary: 'Create and run a new container from an image',
  options,
  interspersed: false,
  more: 'Without -d berth stays attached to the container\'s output and exits with its exit code.\n' +
    'berth cannot attach your input to a container\'s main process (-i): run it with -d, then\n' +
    '"berth exec -it CONTAINER sh" gives you a terminal in it.\n',
  async run (ctx, { values: raw, positionals }) {
    const values = parsedValues(raw)
    if (values.interactive) {
      throw new UsageError('berth cannot attach your input to a container\'s main process (-i, --interactive): run it with -d, then "berth exec -it CONTAINER sh"')
    }
    if (values.detach && values.rm && values.restart !== undefined && values.restart !== 'no') {
      throw new UsageError('conflicting options: cannot specify both --restart and --rm')
    }
    const [image, ...args] = positionals
    const request = await body(values, image, args, ctx.io.env)
    await pullIfMissing(ctx, request, values.quiet === true)
    const container = await ok(ctx.berth.POST('/v1/containers', { body: request }))
    if (values.detach) {
      ctx.io.stdout.write(`${container.id}\n`)
      return 0
    }
    return await attach(ctx.berth, ctx, container.id)
  }
})
