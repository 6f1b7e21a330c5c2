// Container verbs besides run: ps, start, stop, restart, kill, rm, logs, inspect, wait, port, exec,
// stats, cp, scale, spec — docker's options, output and exit statuses.
import { readdir, stat } from 'node:fs/promises'
import { basename, dirname, join, posix, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { UsageError, invalidValue } from '../args.ts'
import { ago, commandText, humanSize, portsText, psTable, shortId, table } from '../format.ts'
import { BerthProblem, ok, type Schemas } from '../index.ts'
import { problemOf } from '../problem.ts'
import { ndjson } from '../streams.ts'
import { entryOf, extractTar, tarBlob, type TarEntry } from '../tar.ts'
import { formatRows, type Row } from '../template.ts'
import { command, eachName, type Ctx } from './command.ts'
import { terminal } from './terminal.ts'

const PS_FIELDS = ['ID', 'Image', 'Command', 'CreatedAt', 'RunningFor', 'Ports', 'State', 'Status', 'Names', 'Labels'] as const

function psRow (container: Schemas['ContainerSummary'], noTrunc: boolean): Row {
  return {
    fields: {
      ID: noTrunc ? container.id : shortId(container.id),
      Image: container.image,
      Command: noTrunc ? JSON.stringify(container.command.join(' ')) : commandText(container.command),
      CreatedAt: container.createdAt,
      RunningFor: ago(container.createdAt),
      Ports: portsText(container.ports),
      State: container.state,
      Status: container.status,
      Names: container.name.replace(/^\//, ''),
      Labels: Object.entries(container.labels).map(([key, value]) => `${key}=${value}`).join(',')
    },
    labels: container.labels,
    json: container
  }
}

export const ps = command({
  name: 'ps',
  usage: '[OPTIONS]',
  summary: 'List containers',
  options: {
    all: { type: 'bool', short: 'a', description: 'Show all containers (default shows just running)' },
    quiet: { type: 'bool', short: 'q', description: 'Only display container IDs' },
    filter: { type: 'list', short: 'f', description: 'Filter output: label=KEY[=VALUE], name=NAME, status=STATE' },
    format: { type: 'string', description: 'Format output using a template: \'table\', \'table TEMPLATE\', \'json\', \'TEMPLATE\'' },
    'no-trunc': { type: 'bool', description: 'Don\'t truncate output' }
  },
  max: 0,
  async run (ctx, { values }) {
    const label: string[] = []
    const status: Array<'created' | 'restarting' | 'running' | 'removing' | 'paused' | 'exited' | 'dead'> = []
    let name: string | undefined
    for (const filter of values.filter ?? []) {
      const eq = filter.indexOf('=')
      const [key, value] = [filter.slice(0, eq), filter.slice(eq + 1)]
      if (key === 'label') label.push(value)
      else if (key === 'status') status.push(value as typeof status[number])
      else if (key === 'name') name = value
      else throw invalidValue({ filter: { type: 'list', short: 'f', description: '' } }, 'filter', filter, 'berth filters on label=, name= and status=')
    }
    const query = { all: values.all === true || status.length > 0, ...(label.length ? { label } : {}), ...(status.length ? { status } : {}), ...(name ? { name } : {}) }
    const containers = await ok(ctx.berth.GET('/v1/containers', { params: { query } }))
    const noTrunc = values['no-trunc'] === true
    if (values.quiet) ctx.io.stdout.write(containers.map(container => `${noTrunc ? container.id : shortId(container.id)}\n`).join(''))
    else if (values.format !== undefined && values.format !== 'table') ctx.io.stdout.write(formatRows(values.format, containers.map(container => psRow(container, noTrunc)), PS_FIELDS))
    else ctx.io.stdout.write(psTable(containers))
    return 0
  }
})

const stateVerb = (verb: 'start' | 'stop' | 'restart', summary: string) => command({
  name: verb,
  usage: '[OPTIONS] CONTAINER [CONTAINER...]',
  summary,
  options: verb === 'start' ? {} : { time: { type: 'string', short: 't', value: 'int', description: 'Seconds to wait before killing the container' } },
  min: 1,
  async run (ctx, { values, positionals }) {
    const time = (values as { time?: string }).time
    if (time !== undefined && !/^\d+$/.test(time)) throw new UsageError(`invalid argument ${JSON.stringify(time)} for "-t, --time" flag: seconds, as a whole number`)
    const query = time === undefined ? {} : { timeout: Number(time) }
    return await eachName(ctx, positionals, async idOrName => { await ok(ctx.berth.POST(`/v1/containers/{idOrName}/${verb}`, { params: { path: { idOrName }, query } })) })
  }
})

export const start = stateVerb('start', 'Start one or more stopped containers')
export const stop = stateVerb('stop', 'Stop one or more running containers')
export const restart = stateVerb('restart', 'Restart one or more containers')

export const kill = command({
  name: 'kill',
  usage: '[OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Kill one or more running containers (berth: stop with no grace period)',
  options: { signal: { type: 'string', short: 's', description: 'Signal to send: berth has no kill, only KILL (a stop without waiting)' } },
  min: 1,
  more: 'berth\'s API has no kill: berth kill stops the container without a grace period (stop -t 0),\n' +
    'which ends it with SIGKILL right after its stop signal. Another signal cannot be sent.\n',
  async run (ctx, { values, positionals }) {
    if (values.signal !== undefined && !/^(SIG)?KILL$|^9$/i.test(values.signal)) {
      throw new UsageError(`berth cannot send ${values.signal} (-s, --signal): its API has no kill, only a stop; berth kill stops at once (KILL)`)
    }
    return await eachName(ctx, positionals, async idOrName => {
      const change = await ok(ctx.berth.POST('/v1/containers/{idOrName}/stop', { params: { path: { idOrName }, query: { timeout: 0 } } }))
      if (!change.changed) throw new Error(`Cannot kill container: ${idOrName}: container ${change.container.id} is not running`)
    })
  }
})

export const rm = command({
  name: 'rm',
  usage: '[OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Remove one or more containers',
  options: {
    force: { type: 'bool', short: 'f', description: 'Force the removal of a running container' },
    volumes: { type: 'bool', short: 'v', description: 'Remove anonymous volumes associated with the container' }
  },
  min: 1,
  async run (ctx, { values, positionals }) {
    return await eachName(ctx, positionals, async idOrName => { await ok(ctx.berth.DELETE('/v1/containers/{idOrName}', { params: { path: { idOrName }, query: { force: values.force === true, volumes: values.volumes === true } } })) })
  }
})

export const logs = command({
  name: 'logs',
  usage: '[OPTIONS] CONTAINER',
  summary: 'Fetch the logs of a container',
  options: {
    follow: { type: 'bool', short: 'f', description: 'Follow log output' },
    timestamps: { type: 'bool', short: 't', description: 'Show timestamps' },
    tail: { type: 'string', short: 'n', description: 'Number of lines to show from the end of the logs ("all")' },
    since: { type: 'string', description: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
    until: { type: 'string', description: 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' }
  },
  min: 1,
  max: 1,
  async run (ctx, { values, positionals }) {
    // --until: berth's logs have no end time; lines after it are left out here, and a follow ends there.
    const until = values.until === undefined ? undefined : parseTime(values.until, 'until')
    const query = { follow: values.follow === true && until === undefined, timestamps: true, ...(values.tail ? { tail: values.tail } : {}), ...(values.since ? { since: values.since } : {}) }
    for await (const entry of ctx.berth.logs(positionals[0] as string, query)) {
      if (until !== undefined && entry.time !== undefined && Date.parse(entry.time) > until) break
      const text = `${values.timestamps && entry.time ? `${entry.time} ` : ''}${entry.line}\n`
      if (entry.stream === 'stderr') ctx.io.stderr.write(text)
      else ctx.io.stdout.write(text)
    }
    return 0
  }
})

/** A time as docker's --since/--until take it: RFC 3339, Unix seconds, or a duration before now (42m, 1h30m). */
function parseTime (text: string, flag: string): number {
  const duration = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(text)
  if (duration && text !== '') return Date.now() - ((Number(duration[1] ?? 0) * 60 + Number(duration[2] ?? 0)) * 60 + Number(duration[3] ?? 0)) * 1000
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000
  const time = Date.parse(text)
  if (Number.isNaN(time)) throw new UsageError(`invalid argument ${JSON.stringify(text)} for "--${flag}" flag: a timestamp (2013-01-02T13:23:37Z), Unix seconds or a duration (42m)`)
  return time
}

/** What `inspect` finds for a name: a container, else an image, a volume, a network. */
async function inspectOne (ctx: Ctx, name: string, type: string | undefined): Promise<unknown> {
  const tries: Array<[string, () => Promise<{ data?: unknown, response: Response, error?: unknown }>]> = [
    ['container', async () => await ctx.berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: name } } })],
    ['image', async () => await ctx.berth.GET('/v1/images/{ref}', { params: { path: { ref: name } } })],
    ['volume', async () => await ctx.berth.GET('/v1/volumes/{volume}', { params: { path: { volume: name } } })],
    ['network', async () => await ctx.berth.GET('/v1/networks/{network}', { params: { path: { network: name } } })]
  ]
  for (const [kind, get] of tries) {
    if (type !== undefined && type !== kind) continue
    const { data, error, response } = await get()
    if (response.ok) return data
    // Not this kind (or a kind this backend has not): try the next.
    if (response.status !== 404 && response.status !== 400 && response.status !== 501) throw problemOf(error, response)
  }
  throw new Error(`No such object: ${name}`)
}

export const inspect = command({
  name: 'inspect',
  usage: '[OPTIONS] NAME|ID [NAME|ID...]',
  summary: 'Return low-level information on containers, images, volumes and networks',
  options: {
    format: { type: 'string', short: 'f', description: 'Format output using a template ({{.state}}, {{json .ports}})' },
    type: { type: 'string', description: 'Only this type: container, image, volume, network' }
  },
  min: 1,
  async run (ctx, { values, positionals }) {
    if (values.type !== undefined && !['container', 'image', 'volume', 'network'].includes(values.type)) throw new UsageError(`"${values.type}" is not a valid value for --type`)
    const found: unknown[] = []
    let status = 0
    for (const name of positionals) {
      try {
        found.push(await inspectOne(ctx, name, values.type))
      } catch (error) {
        ctx.io.stderr.write(`${error instanceof BerthProblem ? ctx.describe(error) : `Error: ${(error as Error).message}`}\n`)
        status = 1
      }
    }
    if (values.format !== undefined) {
      ctx.io.stdout.write(found.map(object => `${evaluate(values.format as string, object)}\n`).join(''))
    } else {
      // docker prints a JSON array, four spaces deep, also when nothing was found.
      ctx.io.stdout.write(`${JSON.stringify(found, null, 4)}\n`)
    }
    return status
  }
})

/** `{{.state}}`, `{{.restart.policy}}`, `{{json .ports}}` over an inspected object. */
function evaluate (template: string, object: unknown): string {
  return template.replace(/\\t/g, '\t').replace(/\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}/g, (_whole, json: string | undefined, path: string) => {
    let value: unknown = object
    for (const key of path.split('.').filter(Boolean)) value = (value as Record<string, unknown> | null)?.[key]
    if (json || (typeof value === 'object' && value !== null)) return JSON.stringify(value)
    return value === undefined || value === null ? '<no value>' : String(value)
  })
}

export const wait = command({
  name: 'wait',
  usage: 'CONTAINER [CONTAINER...]',
  summary: 'Block until one or more containers stop, then print their exit codes',
  options: {},
  min: 1,
  async run (ctx, { positionals }) {
    let status = 0
    for (const idOrName of positionals) {
      try {
        const result = await ok(ctx.berth.POST('/v1/containers/{idOrName}/wait', { params: { path: { idOrName } } }))
        ctx.io.stdout.write(`${result.exitCode ?? ''}\n`)
      } catch (error) {
        ctx.io.stderr.write(`${ctx.describe(error)}\n`)
        status = 1
      }
    }
    return status
  }
})

export const port = command({
  name: 'port',
  usage: 'CONTAINER [PRIVATE_PORT[/PROTO]]',
  summary: 'List port mappings or a specific mapping for the container',
  options: {},
  min: 1,
  max: 2,
  async run (ctx, { positionals }) {
    const [idOrName, wanted] = positionals as [string, string | undefined]
    const container = await ok(ctx.berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName } } }))
    const bound = container.ports.filter(binding => binding.host !== null)
    if (wanted !== undefined) {
      const [number, protocol = 'tcp'] = wanted.split('/')
      const matches = bound.filter(binding => String(binding.container) === number && binding.protocol === protocol)
      if (matches.length === 0) {
        ctx.io.stderr.write(`Error: No public port '${number}/${protocol}' published for ${idOrName}\n`)
        return 1
      }
      ctx.io.stdout.write(matches.map(binding => `${binding.hostIp || '0.0.0.0'}:${binding.host}\n`).join(''))
      return 0
    }
    ctx.io.stdout.write(bound.map(binding => `${binding.container}/${binding.protocol} -> ${binding.hostIp || '0.0.0.0'}:${binding.host}\n`).join(''))
    return 0
  }
})

export const exec = command({
  name: 'exec',
  usage: '[OPTIONS] CONTAINER COMMAND [ARG...]',
  summary: 'Execute a command in a running container',
  options: {
    interactive: { type: 'bool', short: 'i', description: 'Keep STDIN open' },
    tty: { type: 'bool', short: 't', description: 'Allocate a pseudo-TTY' },
    user: { type: 'string', short: 'u', description: 'Username or UID (format: "<name|uid>[:<group|gid>]")' },
    workdir: { type: 'string', short: 'w', description: 'Working directory inside the container' },
    detach: { type: 'bool', short: 'd', description: 'Detached mode (berth: not there; exec runs attached)', hidden: true }
  },
  interspersed: false,
  min: 2,
  async run (ctx, { values, positionals }) {
    if (values.detach) throw new UsageError('berth exec runs attached only (-d, --detach): the API follows an exec to its end')
    const [idOrName, ...cmd] = positionals as [string, ...string[]]
    if (values.tty && values.interactive && !ctx.io.stdin.isTTY) {
      // docker: "the input device is not a TTY"; the command still runs, without raw mode.
      ctx.io.stderr.write('the input device is not a TTY: running without raw mode\n')
    }
    return await terminal(ctx, {
      idOrName,
      command: cmd,
      tty: values.tty === true,
      interactive: values.interactive === true,
      ...(values.user !== undefined ? { user: values.user } : {}),
      ...(values.workdir !== undefined ? { workdir: values.workdir } : {})
    })
  }
})

/** docker's units.BytesSize: binary units with up to two decimals ("1.234MiB"). */
function binarySize (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return `${Number(value.toFixed(3)).toString()}${units[unit]}`
}

export function statsTable (rows: Array<{ id: string, name: string, reading: Schemas['ContainerStats'] | null }>): string {
  return table(['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET I/O', 'BLOCK I/O', 'PIDS'], rows.map(({ id, name, reading }) => reading === null
    ? [shortId(id), name, '--', '-- / --', '--', '--', '--', '--']
    : [shortId(id), name, `${reading.cpuPercent.toFixed(2)}%`, `${binarySize(reading.memory.used)} / ${binarySize(reading.memory.limit)}`, `${reading.memory.percent.toFixed(2)}%`,
        `${humanSize(reading.network.rxBytes)} / ${humanSize(reading.network.txBytes)}`, `${humanSize(reading.blockIo.readBytes)} / ${humanSize(reading.blockIo.writeBytes)}`, String(reading.pids)]))
}

export const stats = command({
  name: 'stats',
  usage: '[OPTIONS] [CONTAINER...]',
  summary: 'Display a live stream of container(s) resource usage statistics',
  options: { 'no-stream': { type: 'bool', description: 'Disable streaming stats and only pull the first result' } },
  async run (ctx, { values, positionals }) {
    const named = positionals.length > 0
      ? await Promise.all(positionals.map(async idOrName => await ok(ctx.berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName } } }))))
      : await ok(ctx.berth.GET('/v1/containers'))
    const rows = named.map(container => ({ id: container.id, name: container.name.replace(/^\//, ''), reading: null as Schemas['ContainerStats'] | null }))
    const out = ctx.io.stdout
    if (values['no-stream']) {
      await Promise.all(rows.map(async row => { row.reading = await ok(ctx.berth.GET('/v1/containers/{idOrName}/stats', { params: { path: { idOrName: row.id } } })) as Schemas['ContainerStats'] }))
      out.write(statsTable(rows))
      return 0
    }
    // At a terminal the table is drawn again in place (docker's clear-screen and home); in a pipe each one follows the last.
    const draw = () => out.write(`${out.isTTY ? '\u001b[2J\u001b[H' : ''}${statsTable(rows)}`)
    draw()
    await Promise.all(rows.map(async row => {
      const { data, error, response } = await ctx.berth.GET('/v1/containers/{idOrName}/stats', { params: { path: { idOrName: row.id } }, headers: { accept: 'application/x-ndjson' }, parseAs: 'stream' })
      if (!response.ok || !data) throw problemOf(error, response)
      for await (const reading of ndjson<Schemas['ContainerStats']>(data)) {
        row.reading = reading
        draw()
      }
    }))
    return 0
  }
})

/** CONTAINER:PATH, or a local path (docker cp's two sides). */
function side (text: string): { container: string, path: string } | { local: string } {
  const colon = text.indexOf(':')
  // A local path may hold a colon after a slash (./a:b); a container name cannot hold a slash.
  if (colon > 0 && !text.slice(0, colon).includes('/')) return { container: text.slice(0, colon), path: text.slice(colon + 1) }
  return { local: text }
}

/** What the container's path is, from the archive's X-Berth-Path-Stat; null when it is not there. */
async function containerStat (ctx: Ctx, idOrName: string, path: string): Promise<{ mode: number } | null> {
  const abort = new AbortController()
  const { error, response } = await ctx.berth.GET('/v1/containers/{idOrName}/archive', { params: { path: { idOrName }, query: { path } }, parseAs: 'stream', signal: abort.signal })
  abort.abort()
  if (response.status === 404) return null
  if (!response.ok) throw problemOf(error, response)
  return JSON.parse(response.headers.get('x-berth-path-stat') ?? '{}') as { mode: number }
}

const DIRECTORY_MODE = 0x80000000 // Go's os.ModeDir, as the engine's stat has it

export const cp = command({
  name: 'cp',
  usage: '[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       berth cp [OPTIONS] SRC_PATH CONTAINER:DEST_PATH',
  summary: 'Copy files/folders between a container and the local filesystem',
  options: { archive: { type: 'bool', short: 'a', description: 'Archive mode (copy all uid/gid information): not there in berth', hidden: true } },
  min: 2,
  max: 2,
  async run (ctx, { positionals }) {
    const from = side(positionals[0] as string)
    const to = side(positionals[1] as string)
    if ('container' in from && 'local' in to) {
      const { data, error, response } = await ctx.berth.GET('/v1/containers/{idOrName}/archive', { params: { path: { idOrName: from.container }, query: { path: from.path } }, parseAs: 'stream' })
      if (!response.ok || !data) throw problemOf(error, response)
      const source = Readable.fromWeb(data as import('node:stream/web').ReadableStream<Uint8Array>)
      if (to.local === '-') {
        await pipeline(source, ctx.io.stdout)
        return 0
      }
      const target = resolve(to.local)
      const existing = await stat(target).catch(() => null)
      // Into an existing directory under the source's own name; else as the destination's name.
      if (existing?.isDirectory()) await extractTar(source, target)
      else {
        if (to.local.endsWith('/')) throw new Error(`destination directory ${to.local} must exist`)
        if (!(await stat(dirname(target)).catch(() => null))?.isDirectory()) throw new Error(`destination directory ${dirname(to.local)} does not exist`)
        await extractTar(source, dirname(target), basename(target))
      }
      return 0
    }
    if ('local' in from && 'container' in to) {
      const local = resolve(from.local)
      const top = await entryOf(local, basename(local)).catch(() => null)
      if (top === null) throw new Error(`lstat ${from.local}: no such file or directory`)
      const target = await containerStat(ctx, to.container, to.path)
      const isDirectory = target !== null && (target.mode & DIRECTORY_MODE) !== 0
      const [directory, name] = isDirectory ? [to.path, top.name] : [posix.dirname(to.path), posix.basename(to.path)]
      const entries: Array<TarEntry & { source?: string }> = []
      const walk = async (path: string, inArchive: string): Promise<void> => {
        const entry = await entryOf(path, inArchive)
        if (entry === null) return
        entries.push(entry)
        if (entry.type === 'directory') {
          for (const child of (await readdir(path)).sort()) await walk(join(path, child), `${inArchive}/${child}`)
        }
      }
      await walk(local, name)
      const archive = await tarBlob(entries)
      const { error, response } = await ctx.berth.PUT('/v1/containers/{idOrName}/archive', {
        params: { path: { idOrName: to.container }, query: { path: directory } },
        body: archive as unknown as string,
        bodySerializer: (body: unknown) => body,
        headers: { 'content-type': 'application/x-tar' }
      })
      if (!response.ok) throw problemOf(error, response)
      return 0
    }
    throw new UsageError('copying between containers or between local paths is not supported: one side must be CONTAINER:PATH', 1)
  }
})

export const scale = command({
  name: 'scale',
  usage: 'CONTAINER=REPLICAS [CONTAINER=REPLICAS...]',
  summary: 'Scale one or more containers (docker service scale; replicas need a cluster)',
  options: {},
  min: 1,
  async run (ctx, { positionals }) {
    const pairs = positionals.map(text => {
      const match = /^(.+)=(\d+)$/.exec(text)
      if (!match) throw new UsageError(`invalid scale specifier '${text}': CONTAINER=REPLICAS expected`)
      return [match[1] as string, Number(match[2])] as const
    })
    let status = 0
    for (const [idOrName, replicas] of pairs) {
      try {
        await ok(ctx.berth.POST('/v1/containers/{idOrName}/scale', { params: { path: { idOrName } }, body: { replicas } }))
        ctx.io.stdout.write(`${idOrName} scaled to ${replicas}\n`)
      } catch (error) {
        ctx.io.stderr.write(`${ctx.describe(error)}\n`)
        status = 1
      }
    }
    return status
  }
})

export const spec = command({
  name: 'spec',
  usage: 'CONTAINER',
  summary: 'Print the run body that makes this container again (berth run --from FILE takes it)',
  options: {},
  min: 1,
  max: 1,
  async run (ctx, { positionals }) {
    const body = await ok(ctx.berth.GET('/v1/containers/{idOrName}/spec', { params: { path: { idOrName: positionals[0] as string } } }))
    ctx.io.stdout.write(`${JSON.stringify(body, null, 2)}\n`)
    if (body.redactedEnv.length > 0) ctx.io.stderr.write(`left out (secrets): ${body.redactedEnv.join(', ')}; give them with -e when you run it\n`)
    return 0
  }
})
