#!/usr/bin/env node
// The berth command: docker's verbs against a remote berth (BERTH_URL, BERTH_TOKEN), printed as docker
// prints them; a refusal is one line on stderr and exit status 1, a wrong command line status 2.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { BerthProblem, BerthResponseError, createBerthClient, ok, type BerthClient, type Schemas } from './index.ts'
import { imagesTable, psTable, shortId } from './format.ts'
import { barRenderer, lineRenderer } from './progress.ts'

const USAGE = `Usage: berth [--url URL] [--token TOKEN] COMMAND

docker's verbs against a berth. URL and TOKEN default to $BERTH_URL (else
http://127.0.0.1:8080) and $BERTH_TOKEN (the secret part of a berth token).

Commands:
  pull IMAGE[:TAG]               Pull an image, showing its progress
  images [-q]                    List images
  ps [-a] [-q]                   List running containers (-a: all of them)
  run -d [OPTIONS] IMAGE[:TAG] [COMMAND [ARG...]]
                                 Run a container in the background; options:
                                 -p [IP:][HOST:]CONTAINER[/PROTO], --name NAME,
                                 -e KEY=VALUE, -v VOLUME:PATH[:ro], -l KEY=VALUE,
                                 -w DIR, -u USER, --rm
  stop [-t SECONDS] CONTAINER... Stop containers
  start CONTAINER...             Start containers
  logs [-f] [-t] [--tail N] [--since TIME] CONTAINER
                                 Print a container's output (-f: follow it)
  rm [-f] CONTAINER...           Remove containers (-f: running ones too)

Exit status: 0 done; 1 berth refused or failed (the reason on stderr); 2 wrong usage.
`

class UsageError extends Error {}

interface Io {
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
  env: NodeJS.ProcessEnv
}

type Options = NonNullable<ParseArgsConfig['options']>

/** parseArgs, with its complaints turned into usage errors. */
function parse<O extends Options> (args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

function oneLine (error: unknown, url: string, token: string | undefined): string {
  if (error instanceof BerthProblem) {
    const hint = error.code === 'unauthorized' && !token ? ' (set BERTH_TOKEN to the secret part of a berth token)' : ''
    return `Error response from berth: ${error.detail} (${error.status} ${error.code})${hint}`
  }
  if (error instanceof BerthResponseError) return `Error: berth at ${url} answered ${error.message}`
  const cause = (error as { cause?: { code?: string } }).cause
  if (error instanceof TypeError && cause?.code) return `Cannot connect to berth at ${url} (${cause.code}): is it running, and is BERTH_URL right?`
  return `Error: ${(error as Error).message}`
}

/** Pulls with a progress display on `out`, then docker's closing lines; answers the pulled image. */
async function pullWithProgress (berth: BerthClient, image: string, out: NodeJS.WriteStream): Promise<Schemas['PulledImage']> {
  const renderer = out.isTTY ? barRenderer(out) : lineRenderer(text => out.write(text))
  let pulled: Schemas['PulledImage'] | undefined
  let downloaded = false
  try {
    for await (const event of berth.pull({ image })) {
      renderer.event(event)
      if (event.type === 'progress' && event.layer.phase !== 'exists') downloaded = true
      if (event.type === 'pulled') pulled = event.image
    }
  } finally {
    renderer.stop()
  }
  // berth.pull ends with `pulled` or throws: this is only for the type checker.
  if (!pulled) throw new Error('the pull ended without its image')
  if (pulled.digest) out.write(`Digest: ${pulled.digest}\n`)
  out.write(`Status: ${downloaded ? 'Downloaded newer image' : 'Image is up to date'} for ${pulled.reference}\n${pulled.reference}\n`)
  return pulled
}

/** Runs `act` for each container named, printing the name as docker does; any failure makes the status 1. */
async function eachContainer (names: string[], io: Io, describe: (error: unknown) => string, act: (name: string) => Promise<unknown>): Promise<number> {
  if (names.length === 0) throw new UsageError('at least one container is needed')
  let status = 0
  for (const name of names) {
    try {
      await act(name)
      io.stdout.write(`${name}\n`)
    } catch (error) {
      io.stderr.write(`${describe(error)}\n`)
      status = 1
    }
  }
  return status
}

/** `run`'s own options end at the image: what follows is the container's command, flags and all. */
function splitRunArgs (args: string[]): [string[], string[]] {
  const takesValue = new Set(['-p', '--publish', '--name', '-e', '--env', '-v', '--volume', '-l', '--label', '-w', '--workdir', '-u', '--user'])
  let i = 0
  while (i < args.length && (args[i] ?? '').startsWith('-')) {
    if (args[i] === '--') return [args.slice(0, i), args.slice(i + 1)]
    i += takesValue.has(args[i] ?? '') ? 2 : 1
  }
  return [args.slice(0, i), args.slice(i)]
}

function keyValues (pairs: string[] | undefined, what: string): Record<string, string> | undefined {
  if (!pairs?.length) return undefined
  return Object.fromEntries(pairs.map(pair => {
    const eq = pair.indexOf('=')
    if (eq < 1) throw new UsageError(`${what} ${JSON.stringify(pair)} is not KEY=VALUE`)
    return [pair.slice(0, eq), pair.slice(eq + 1)]
  }))
}

async function command (berth: BerthClient, verb: string, args: string[], io: Io, describe: (error: unknown) => string): Promise<number> {
  switch (verb) {
    case 'pull': {
      const { positionals } = parse(args, {})
      if (positionals.length !== 1) throw new UsageError('pull takes one image')
      await pullWithProgress(berth, positionals[0] ?? '', io.stdout)
      return 0
    }
    case 'images': {
      const { values } = parse(args, { quiet: { type: 'boolean', short: 'q' } })
      const images = await ok(berth.GET('/v1/images'))
      io.stdout.write(values.quiet ? [...new Set(images.map(image => shortId(image.id)))].map(id => `${id}\n`).join('') : imagesTable(images))
      return 0
    }
    case 'ps': {
      const { values } = parse(args, { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' } })
      const containers = await ok(berth.GET('/v1/containers', { params: { query: { all: values.all === true } } }))
      io.stdout.write(values.quiet ? containers.map(container => `${shortId(container.id)}\n`).join('') : psTable(containers))
      return 0
    }
    case 'run': {
      const [own, rest] = splitRunArgs(args)
      const { values } = parse(own, {
        detach: { type: 'boolean', short: 'd' },
        publish: { type: 'string', short: 'p', multiple: true },
        name: { type: 'string' },
        env: { type: 'string', short: 'e', multiple: true },
        volume: { type: 'string', short: 'v', multiple: true },
        label: { type: 'string', short: 'l', multiple: true },
        workdir: { type: 'string', short: 'w' },
        user: { type: 'string', short: 'u' },
        rm: { type: 'boolean' }
      })
      const [image, ...cmd] = rest
      if (!image) throw new UsageError('run needs an image')
      if (!values.detach) throw new UsageError('berth runs containers in the background only: add -d (as in docker run -d)')
      const body: Schemas['RunRequest'] = { image }
      if (values.name) body.name = values.name
      if (cmd.length) body.command = cmd
      if (values.publish) body.ports = values.publish
      if (values.volume) body.volumes = values.volume
      const env = keyValues(values.env, '-e')
      if (env) body.env = env
      const labels = keyValues(values.label, '-l')
      if (labels) body.labels = labels
      if (values.workdir) body.workingDir = values.workdir
      if (values.user) body.user = values.user
      if (values.rm) body.autoRemove = true
      // Like docker run: an image the engine lacks is pulled first, its progress on stderr (stdout is for the id).
      const { response } = await berth.GET('/v1/images/{ref}', { params: { path: { ref: image } } })
      if (response.status === 404) {
        io.stderr.write(`Unable to find image '${image}' locally\n`)
        await pullWithProgress(berth, image, io.stderr)
      }
      const container = await ok(berth.POST('/v1/containers', { body }))
      io.stdout.write(`${container.id}\n`)
      return 0
    }
    case 'stop': {
      const { values, positionals } = parse(args, { time: { type: 'string', short: 't' } })
      if (values.time !== undefined && !/^\d+$/.test(values.time)) throw new UsageError(`-t ${values.time}: seconds, as a whole number`)
      const query = values.time === undefined ? {} : { timeout: Number(values.time) }
      return await eachContainer(positionals, io, describe, async idOrName => await ok(berth.POST('/v1/containers/{idOrName}/stop', { params: { path: { idOrName }, query } })))
    }
    case 'start': {
      const { positionals } = parse(args, {})
      return await eachContainer(positionals, io, describe, async idOrName => await ok(berth.POST('/v1/containers/{idOrName}/start', { params: { path: { idOrName } } })))
    }
    case 'rm': {
      const { values, positionals } = parse(args, { force: { type: 'boolean', short: 'f' } })
      return await eachContainer(positionals, io, describe, async idOrName => await ok(berth.DELETE('/v1/containers/{idOrName}', { params: { path: { idOrName }, query: { force: values.force === true } } })))
    }
    case 'logs': {
      const { values, positionals } = parse(args, {
        follow: { type: 'boolean', short: 'f' },
        timestamps: { type: 'boolean', short: 't' },
        tail: { type: 'string', short: 'n' },
        since: { type: 'string' }
      })
      if (positionals.length !== 1) throw new UsageError('logs takes one container')
      const query = { follow: values.follow === true, timestamps: values.timestamps === true, ...(values.tail ? { tail: values.tail } : {}), ...(values.since ? { since: values.since } : {}) }
      for await (const entry of berth.logs(positionals[0] ?? '', query)) {
        const text = `${entry.time ? `${entry.time} ` : ''}${entry.line}\n`
        if (entry.stream === 'stderr') io.stderr.write(text)
        else io.stdout.write(text)
      }
      return 0
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(verb)}`)
  }
}

export async function main (argv: string[], io: Io): Promise<number> {
  let url = io.env.BERTH_URL || 'http://127.0.0.1:8080'
  let token = io.env.BERTH_TOKEN || undefined
  const describe = (error: unknown) => oneLine(error, url, token)
  try {
    // Global options come before the command; the command's own after it.
    let i = 0
    for (; i < argv.length && (argv[i] ?? '').startsWith('-'); i++) {
      const [flag, inline] = (argv[i] ?? '').split(/=(.*)/s, 2)
      const value = () => inline ?? argv[++i] ?? ''
      if (flag === '-h' || flag === '--help') {
        io.stdout.write(USAGE)
        return 0
      } else if (flag === '--url') url = value()
      else if (flag === '--token') token = value()
      else throw new UsageError(`unknown option ${flag}`)
    }
    const [verb, ...args] = argv.slice(i)
    if (!verb) throw new UsageError('a command is needed')
    const berth = createBerthClient({ url, ...(token ? { token } : {}) })
    return await command(berth, verb, args, io, describe)
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`berth: ${error.message}\nSee 'berth --help'.\n`)
      return 2
    }
    io.stderr.write(`${describe(error)}\n`)
    return 1
  }
}

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env })
