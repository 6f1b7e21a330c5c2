// The berth command run as people run it — its own process, against a berth listening for real and the
// real engine: docker's verbs and tables, exit statuses, one line per refusal, and a pull's progress
// as lines in a pipe and as bars at a terminal (a pseudo-terminal made by util-linux's script).
import { spawn } from 'node:child_process'
import t from 'tap'
import { CLI, liveBerth, pushWebImage } from './live-berth.ts'
import { RegistryProxy } from './pull-fixtures.ts'
import { RUN_LABEL, RUN, cleanupAfter, docker, env, fetchFromContainer, freePort, name } from './helpers.ts'

cleanupAfter(t)
const live = await liveBerth(t)

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs `berth ARGS` to its end; BERTH_URL and BERTH_TOKEN name the live berth unless `vars` say otherwise. */
async function berth (args: string[], vars: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token, ...vars },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk })
  const code = await new Promise<number | null>(resolve => child.once('close', resolve))
  return { code, stdout, stderr }
}

/** A docker-style table as rows of cells, cut where the header's titles start. */
function parseTable (text: string): Array<Record<string, string>> {
  const [header = '', ...lines] = text.trimEnd().split('\n')
  const titles = header.split(/ {3,}/)
  const starts = titles.map(title => header.indexOf(title))
  return lines.map(line => Object.fromEntries(titles.map((title, i) => [title, line.slice(starts[i], starts[i + 1]).trim()])))
}

const labelled = ['-l', `${RUN_LABEL}=${RUN}`]

t.test('help, --version, and a wrong command line: docker\'s statuses and what is wrong', async t => {
  const help = await berth(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^\nUsage: {2}berth \[OPTIONS\] COMMAND\n/)
  const verbs = ['run', 'exec', 'ps', 'inspect', 'logs', 'start', 'stop', 'restart', 'kill', 'rm', 'wait', 'port', 'stats', 'cp', 'scale', 'spec', 'pull', 'images', 'build', 'tag', 'push', 'rmi', 'nodes']
  for (const verb of verbs) {
    t.match(help.stdout, new RegExp(`\\n  ${verb} +\\S`), `help names ${verb}`)
    const own = await berth([verb, '--help'])
    t.equal(own.code, 0)
    t.match(own.stdout, new RegExp(`^\\nUsage: {2}berth ${verb} `), `berth ${verb} --help`)
  }
  for (const [group, verb] of [['volume', 'ls'], ['volume', 'create'], ['volume', 'inspect'], ['volume', 'rm'], ['network', 'ls'], ['network', 'create'], ['network', 'connect'], ['network', 'disconnect'], ['system', 'df']]) {
    t.match((await berth(['help', group as string, verb as string])).stdout, new RegExp(`^\\nUsage: {2}berth ${group} ${verb} `), `berth help ${group} ${verb}`)
  }
  t.same(await berth(['--version']), { code: 0, stdout: 'berth version 0.1.0\n', stderr: '' })

  // docker: a flag it cannot read is 125; a missing argument or an unknown command 1.
  const usage = (verb: string, line: string) => `\nUsage:  berth ${verb} ${line}\n\nRun 'berth ${verb} --help' for more information\n`
  const mistakes: Array<[string[], number, string]> = [
    [['frobnicate'], 1, 'berth: unknown command: berth frobnicate\n\nRun \'berth --help\' for more information\n'],
    [['--frob', 'ps'], 125, 'berth: unknown flag: --frob\n\nRun \'berth --help\' for more information\n'],
    [['ps', '--bogus'], 125, `berth: unknown flag: --bogus\n${usage('ps', '[OPTIONS]')}`],
    [['run', '-dz', env.image], 125, `berth: unknown shorthand flag: 'z' in -dz\n${usage('run', '[OPTIONS] IMAGE [COMMAND] [ARG...]')}`],
    [['run', '-d'], 1, `berth: 'berth run' requires at least 1 argument\n${usage('run', '[OPTIONS] IMAGE [COMMAND] [ARG...]')}`],
    [['run', '-d', '--memory', 'lots', env.image], 125, `berth: invalid argument "lots" for "-m, --memory" flag: invalid size: 'lots'\n${usage('run', '[OPTIONS] IMAGE [COMMAND] [ARG...]')}`],
    [['run', '-d', '--restart', 'sometimes', env.image], 125, `berth: invalid argument "sometimes" for "--restart" flag: expected no, always, unless-stopped or on-failure[:max-retries]\n${usage('run', '[OPTIONS] IMAGE [COMMAND] [ARG...]')}`],
    [['run', '-it', env.image, 'sh'], 125, `berth: berth cannot attach your input to a container's main process (-i, --interactive): run it with -d, then "berth exec -it CONTAINER sh"\n${usage('run', '[OPTIONS] IMAGE [COMMAND] [ARG...]')}`],
    [['pull'], 1, `berth: 'berth pull' requires exactly 1 argument\n${usage('pull', '[OPTIONS] NAME[:TAG|@DIGEST]')}`],
    [['logs', 'a', 'b'], 1, `berth: 'berth logs' requires exactly 1 argument\n${usage('logs', '[OPTIONS] CONTAINER')}`],
    [['stop'], 1, `berth: 'berth stop' requires at least 1 argument\n${usage('stop', '[OPTIONS] CONTAINER [CONTAINER...]')}`],
    [['stop', '-t', 'soon', 'x'], 125, `berth: invalid argument "soon" for "-t, --time" flag: seconds, as a whole number\n${usage('stop', '[OPTIONS] CONTAINER [CONTAINER...]')}`],
    [['kill', '-s', 'HUP', 'x'], 125, `berth: berth cannot send HUP (-s, --signal): its API has no kill, only a stop; berth kill stops at once (KILL)\n${usage('kill', '[OPTIONS] CONTAINER [CONTAINER...]')}`]
  ]
  for (const [args, code, stderr] of mistakes) t.same(await berth(args), { code, stdout: '', stderr }, `berth ${args.join(' ')}`)

  // BERTH_URL as people write it: host:port is taken as http://; another scheme is refused by name.
  t.equal((await berth(['ps'], { BERTH_URL: live.url.replace('http://', '') })).code, 0, 'BERTH_URL without a scheme')
  const tcp = await berth(['ps'], { BERTH_URL: 'tcp://127.0.0.1:2375' })
  t.equal(tcp.code, 125)
  t.match(tcp.stderr, /^berth: BERTH_URL tcp:\/\/127\.0\.0\.1:2375: berth speaks http:\/\/ or https:\/\/, not tcp:\/\/\n/)
})

t.test('pull prints docker\'s lines when stdout is not a terminal', async t => {
  const { reference, digest } = await pushWebImage('cli-pull')
  const first = await berth(['pull', reference])
  t.equal(first.code, 0)
  t.equal(first.stderr, '')
  const lines = first.stdout.trimEnd().split('\n')
  t.equal(lines[0], `1: Pulling from ${RUN}-cli-pull/web`)
  const layer = /^([0-9a-f]{12}): Downloading$/.exec(lines.find(line => line.endsWith(': Downloading')) ?? '')?.[1]
  t.ok(layer, 'its layer downloading')
  t.ok(lines.includes(`${layer}: Pull complete`), 'then complete')
  t.same(new Set(lines.slice(1, -3)).size, lines.length - 4, 'a line only when a layer changes state')
  t.same(lines.slice(-3), [`Digest: ${digest}`, `Status: Downloaded newer image for ${reference}`, reference])

  const again = await berth(['pull', reference])
  t.equal(again.code, 0)
  t.same(again.stdout.trimEnd().split('\n').slice(-2), [`Status: Image is up to date for ${reference}`, reference])

  const images = await berth(['images'])
  t.equal(images.code, 0)
  t.match(images.stdout, /^REPOSITORY {3,}TAG {3,}IMAGE ID {3,}CREATED {3,}SIZE\n/)
  const id = (await docker.getImage(reference).inspect()).Id.slice('sha256:'.length, 'sha256:'.length + 12)
  const row = parseTable(images.stdout).find(image => image.REPOSITORY === reference.slice(0, -2))
  t.match(row, { TAG: '1', 'IMAGE ID': id, CREATED: /^(\d+ (seconds|minutes)|Less than a second|About a minute) ago$/, SIZE: /^\d(\.\d\d)?MB$/ })
  const quiet = await berth(['images', '-q'])
  t.ok(quiet.stdout.split('\n').includes(id), 'images -q: the ids')
})

t.test('run -d, reach it, ps, logs, stop, start, rm — and the refusals', async t => {
  const port = await freePort()
  const web = name('cli-web')
  const run = await berth(['run', '-d', '-p', `${port}:80`, '--name', web, ...labelled, env.image, 'httpd', '-f', '-p', '80', '-h', '/www'])
  t.equal(run.stderr, '', 'the image is there: nothing to pull')
  t.equal(run.code, 0)
  t.match(run.stdout, /^[0-9a-f]{64}\n$/, 'the container id, as docker run -d prints it')
  const id = run.stdout.trim()
  t.equal((await docker.getContainer(id).inspect()).Name, `/${web}`)
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n')

  const ps = await berth(['ps'])
  t.equal(ps.code, 0)
  t.equal(ps.stdout.split('\n')[0]?.split(/ {3,}/).join('|'), 'CONTAINER ID|IMAGE|COMMAND|CREATED|STATUS|PORTS|NAMES', 'docker ps\'s columns')
  t.match(parseTable(ps.stdout), [{
    'CONTAINER ID': id.slice(0, 12),
    IMAGE: env.image,
    COMMAND: '"httpd -f -p 80 -h /…"',
    CREATED: /^(\d+ seconds|Less than a second|1 second) ago$/,
    STATUS: /^Up /,
    PORTS: `0.0.0.0:${port}->80/tcp`,
    NAMES: web
  }])
  t.equal(parseTable(ps.stdout).length, 1, 'the token sees its one container')
  t.equal((await berth(['ps', '-q'])).stdout, `${id.slice(0, 12)}\n`)

  const taken = await berth(['run', '-d', '-p', `${port}:80`, '--name', name('cli-taken'), ...labelled, env.image])
  t.equal(taken.code, 125, 'a refused run: docker run\'s 125')
  t.equal(taken.stdout, '')
  t.match(taken.stderr, new RegExp(`^Error response from berth: host port ${port} is already allocated[^\\n]* \\(409 port_conflict\\)\\n$`), 'one line on stderr')

  // An image the engine lacks is pulled first, as docker run does, its progress on stderr.
  const { reference } = await pushWebImage('cli-run', 500_000)
  const talker = name('cli-logs')
  const logged = await berth(['run', '-d', '--name', talker, ...labelled, '-e', 'WHO=berth', reference, 'sh', '-c', 'echo "out $WHO"; echo err >&2'])
  t.equal(logged.code, 0)
  t.match(logged.stderr, new RegExp(`^Unable to find image '${reference.replaceAll('.', '\\.')}' locally\\n1: Pulling from `))
  t.match(logged.stderr, /: Pull complete\n/)
  t.match(logged.stdout, /^[0-9a-f]{64}\n$/)
  const followed = await berth(['logs', '-f', talker])
  t.same(followed, { code: 0, stdout: 'out berth\n', stderr: 'err\n' }, 'logs -f: each stream to its own, ending when the container does')
  const stamped = await berth(['logs', '-t', '--tail', '1', talker])
  t.match(stamped.stdout + stamped.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (out berth|err)\n$/, 'logs -t --tail 1: the last line, with its time')

  t.same(await berth(['stop', '-t', '1', web]), { code: 0, stdout: `${web}\n`, stderr: '' })
  const all = parseTable((await berth(['ps', '-a'])).stdout)
  t.match(all.find(row => row.NAMES === web), { STATUS: /^Exited \(\d+\) /, PORTS: '' }, 'ps -a: exited, no port bound')
  t.equal(all.length, 2)
  t.same(await berth(['start', web]), { code: 0, stdout: `${web}\n`, stderr: '' })
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n', 'reachable again')

  const refused = await berth(['rm', web])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /^Error response from berth: [^\n]* \(409 container_running\)\n$/)
  const removed = await berth(['rm', '-f', web, talker, name('nobody')])
  t.same(removed, {
    code: 1,
    stdout: `${web}\n${talker}\n`,
    stderr: `Error response from berth: container ${name('nobody')} was not found (404 not_found)\n`
  }, 'rm -f: each removed, the unknown one refused, status 1')
  t.same(parseTable((await berth(['ps', '-a'])).stdout), [], 'nothing left')
})

t.test('without a token, or without a berth, one line says what to do', async t => {
  const noToken = await berth(['ps'], { BERTH_TOKEN: '' })
  t.equal(noToken.code, 1)
  t.match(noToken.stderr, /^Error response from berth: [^\n]+ \(401 unauthorized\) \(set BERTH_TOKEN to the secret part of a berth token\)\n$/)
  const nowhere = `http://127.0.0.1:${await freePort()}`
  t.same(await berth(['ps'], { BERTH_URL: nowhere }), {
    code: 1,
    stdout: '',
    stderr: `Cannot connect to berth at ${nowhere} (ECONNREFUSED): is it running, and is BERTH_URL right?\n`
  })
  // The registry is an HTTP server that is not berth: its answer is named, not taken for a problem.
  t.same(await berth(['ps'], { BERTH_URL: `http://${env.registry}` }), {
    code: 1,
    stdout: '',
    stderr: `Error: berth at http://${env.registry} answered HTTP 404: 404 page not found\n`
  })
  const flags = await berth([`--url=${live.url}`, '--token', live.token, 'ps'], { BERTH_URL: nowhere, BERTH_TOKEN: 'wrong' })
  t.equal(flags.code, 0, '--url and --token win over the environment')
})

t.test('at a terminal a pull draws bars: overall and per layer', async t => {
  const { reference: pushed } = await pushWebImage('cli-tty', 2_000_000)
  // Through a registry proxy passing 1 MB/s, so the bars are drawn while the layer downloads.
  const registry = new RegistryProxy(1_000_000)
  t.teardown(() => registry.close())
  const reference = pushed.replace(env.registry, await registry.listen())
  const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`
  // script runs the command on a pseudo-terminal and copies what it draws to its own stdout.
  const child = spawn('script', ['-qec', [process.execPath, CLI, 'pull', reference].map(quote).join(' '), '/dev/null'], {
    env: { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let screen = ''
  child.stdout.on('data', (chunk: Buffer) => { screen += chunk })
  const code = await new Promise<number | null>(resolve => child.once('close', resolve))
  t.equal(code, 0)
  t.match(screen, new RegExp(`^1: Pulling from ${RUN}-cli-tty/web\r\n`), 'docker\'s first line, above the bars')
  t.match(screen, '\u001b[?25l', 'the cursor is hidden while drawing')
  t.match(screen, '\u001b[?25h', 'and shown again')
  t.match(screen, /total {8}█*░+ +\d+% \d\/2 layers/, 'the overall bar part-way')
  t.match(screen, /total {8}█{30} 100% 2\/2 layers/, 'and full')
  t.match(screen, /[0-9a-f]{12} █*░+ Downloading [\d.]+[kM]?B\/2MB/, 'a layer\'s bar part-way, with its bytes')
  t.match(screen, /[0-9a-f]{12} █{30} Pull complete/, 'and complete')
  t.match(screen, /[0-9a-f]{12} █{30} Already exists/, 'the layer the engine had')
  t.match(screen, new RegExp(`\r\nStatus: Downloaded newer image for ${reference.replaceAll('.', '\\.')}\r\n`), 'docker\'s closing lines under the bars')
})
