#!/usr/bin/env node
// The berth command: docker's verbs against a remote berth (BERTH_URL, BERTH_TOKEN), printed as docker
// prints them, with docker's exit statuses: 125 for a command line berth cannot take and for a refused
// run, 1 for other refusals, and the container's own code for `run` (without -d) and `wait`.
import { readFileSync } from 'node:fs'
import { UsageError, optionsHelp, parseArgs } from './args.ts'
import { BerthProblem, BerthResponseError, createBerthClient } from './index.ts'
import { REFUSED, type Command, type Ctx, type Io } from './cli/command.ts'
import * as containers from './cli/containers.ts'
import * as imageVerbs from './cli/images.ts'
import * as resources from './cli/resources.ts'
import { flagOf, run } from './cli/run.ts'

const VERBS: Command[] = [
  run, containers.exec, containers.ps, containers.inspect, containers.logs, containers.start, containers.stop, containers.restart,
  containers.kill, containers.rm, containers.wait, containers.port, containers.stats, containers.cp, containers.scale, containers.spec,
  imageVerbs.pull, imageVerbs.images, imageVerbs.build, imageVerbs.tag, imageVerbs.push, imageVerbs.rmi,
  resources.volumeLs, resources.volumeCreate, resources.volumeInspect, resources.volumeRm,
  resources.networkLs, resources.networkCreate, resources.networkInspect, resources.networkRm, resources.networkConnect, resources.networkDisconnect,
  resources.nodes, resources.systemDf
]
/** Groups of verbs (`berth volume ls`), and the names docker also accepts for them. */
const GROUPS: Record<string, string> = { volume: 'Manage volumes', network: 'Manage networks', system: 'Manage berth' }
const ALIASES: Record<string, string> = { 'volume list': 'volume ls', 'network list': 'network ls', 'volume remove': 'volume rm', 'network remove': 'network rm', 'image ls': 'images', 'container ls': 'ps', 'node ls': 'nodes' }

function version (): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return manifest.version
}

const USAGE = `
Usage:  berth [OPTIONS] COMMAND

docker's commands against a berth: a typed, secure HTTP API in front of a Docker Engine, a Swarm or
Kubernetes cluster.

Options:
      --url string     berth's address (default $BERTH_URL, else http://127.0.0.1:8080)
      --token string   the secret part of a berth token (default $BERTH_TOKEN)
  -v, --version        Print version information and quit
  -h, --help           Print usage

Commands:
${VERBS.filter(verb => !verb.name.includes(' ')).map(verb => `  ${verb.name.padEnd(10)} ${verb.summary}\n`).join('')}
Groups:
${Object.entries(GROUPS).map(([group, summary]) => `  ${group.padEnd(10)} ${summary}: ${VERBS.filter(verb => verb.name.startsWith(`${group} `)).map(verb => verb.name.slice(group.length + 1)).join(', ')}\n`).join('')}
Run 'berth COMMAND --help' for more information on a command.

Exit status: 0 done; 1 berth refused (the reason on stderr); 125 a command line berth cannot take, or
a run berth refused; a container's own exit code for run (without -d) and wait.
`

function verbHelp (verb: Command): string {
  const options = optionsHelp(verb.options)
  return `\nUsage:  berth ${verb.name} ${verb.usage}\n\n${verb.summary}\n${options ? `\nOptions:\n${options}` : ''}${verb.more ? `\n${verb.more}` : ''}`
}

function groupHelp (group: string): string {
  return `\nUsage:  berth ${group} COMMAND\n\n${GROUPS[group]}\n\nCommands:\n${VERBS.filter(verb => verb.name.startsWith(`${group} `)).map(verb => `  ${verb.name.slice(group.length + 1).padEnd(12)} ${verb.summary}\n`).join('')}\nRun 'berth ${group} COMMAND --help' for more information on a command.\n`
}

/** A problem's one line; a validation problem of a run names the flag that set the field, not the field. */
function oneLine (error: unknown, url: string, token: string | undefined): string {
  if (error instanceof BerthProblem) {
    const errors = error.problem.errors as Array<{ location?: string, path?: string, message?: string }> | undefined
    const first = errors?.[0]
    const flag = error.code === 'validation_failed' && first?.location === 'body' && first.path ? flagOf(first.path) : undefined
    if (flag !== undefined) {
      const why = (first?.message ?? error.detail).replace(/must match pattern "[^"]*"/, 'is not in the form it takes')
      return `berth: invalid argument for "${flag}" flag: ${why} (400 validation_failed)`
    }
    const hint = error.code === 'unauthorized' && !token ? ' (set BERTH_TOKEN to the secret part of a berth token)' : ''
    return `Error response from berth: ${error.detail} (${error.status} ${error.code})${hint}`
  }
  if (error instanceof BerthResponseError) return `Error: berth at ${url} answered ${error.message}`
  const cause = (error as { cause?: { code?: string } }).cause
  if (error instanceof TypeError && cause?.code) return `Cannot connect to berth at ${url} (${cause.code}): is it running, and is BERTH_URL right?`
  return `Error: ${(error as Error).message}`
}

/** BERTH_URL as people write it: with http(s)://, or host:port alone (then http://). */
function berthUrl (text: string): string {
  if (/^https?:\/\//i.test(text)) return text
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]
  if (scheme !== undefined) throw new UsageError(`BERTH_URL ${text}: berth speaks http:// or https://, not ${scheme}://`)
  if (!/^[A-Za-z0-9.[\]:-]+(\/.*)?$/.test(text)) throw new UsageError(`BERTH_URL ${JSON.stringify(text)} is not an address: http://HOST:PORT`)
  return `http://${text}`
}

export async function main (argv: string[], io: Io): Promise<number> {
  let url = io.env.BERTH_URL || 'http://127.0.0.1:8080'
  let token = io.env.BERTH_TOKEN || undefined
  let verb: Command | undefined
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
      } else if (flag === '-v' || flag === '--version') {
        io.stdout.write(`berth version ${version()}\n`)
        return 0
      } else if (flag === '--url') url = value()
      else if (flag === '--token') token = value()
      else throw new UsageError(`unknown flag: ${flag}`)
    }
    let rest = argv.slice(i)
    if (rest[0] === 'help' || rest[0] === 'version') {
      if (rest[0] === 'version') { io.stdout.write(`berth version ${version()}\n`); return 0 }
      rest = [...rest.slice(1), '--help']
      if (rest.length === 1) { io.stdout.write(USAGE); return 0 }
    }
    const [first, second] = rest
    if (first === undefined) {
      io.stderr.write(USAGE)
      return 1
    }
    const pair = `${first} ${second ?? ''}`
    const name = ALIASES[pair] ?? (first in GROUPS ? pair : ALIASES[first] ?? first)
    verb = VERBS.find(candidate => candidate.name === name)
    if (verb === undefined) {
      if (first in GROUPS) {
        const help = second === undefined || second === '--help' || second === '-h'
        ;(help ? io.stdout : io.stderr).write(help ? groupHelp(first) : `berth: unknown command: berth ${first} ${second}\n\nRun 'berth ${first} --help' for more information\n`)
        return help ? 0 : 1
      }
      io.stderr.write(`berth: unknown command: berth ${first}\n\nRun 'berth --help' for more information\n`)
      return 1
    }
    const args = rest.slice(verb.name.split(' ').length)
    if (args.includes('--help') && (verb.interspersed !== false || args.indexOf('--help') === 0)) {
      io.stdout.write(verbHelp(verb))
      return 0
    }
    const parsed = parseArgs(args, verb.options, { interspersed: verb.interspersed !== false })
    const count = parsed.positionals.length
    if (verb.min !== undefined && count < verb.min) {
      throw new UsageError(`'berth ${verb.name}' requires ${verb.min === verb.max ? 'exactly' : 'at least'} ${verb.min} argument${verb.min === 1 ? '' : 's'}`, 1)
    }
    if (verb.max !== undefined && count > verb.max) {
      throw new UsageError(verb.max === 0 ? `'berth ${verb.name}' accepts no arguments` : `'berth ${verb.name}' requires ${verb.min === verb.max ? 'exactly' : 'at most'} ${verb.max} argument${verb.max === 1 ? '' : 's'}`, 1)
    }
    url = berthUrl(url)
    const berth = createBerthClient({ url, ...(token ? { token } : {}) })
    const ctx: Ctx = { berth, io, url, token, describe }
    return await verb.run(ctx, parsed)
  } catch (error) {
    if (error instanceof UsageError) {
      const usage = verb ? `\nUsage:  berth ${verb.name} ${verb.usage}\n\nRun 'berth ${verb.name} --help' for more information\n` : '\nRun \'berth --help\' for more information\n'
      io.stderr.write(`berth: ${error.message}\n${usage}`)
      return error.status
    }
    io.stderr.write(`${describe(error)}\n`)
    // docker run: a refusal of the run itself is 125, not a code the container could have exited with.
    return verb?.name === 'run' ? 125 : REFUSED
  }
}

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env })
