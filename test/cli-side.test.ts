// The berth command beside the docker CLI on one engine (same operations, same output and statuses), at a
// real terminal (exec -it, stats), and moving files: cp both ways, build with .dockerignore.
import { spawn } from 'node:child_process'
import t from 'tap'
import { CLI, liveBerth } from './live-berth.ts'
import { RUN_LABEL, RUN, cleanupAfter, docker, env, freePort, name } from './helpers.ts'

cleanupAfter(t)
const live = await liveBerth(t)

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs `berth ARGS` to its end against the live berth; `vars` add to its environment. */
async function berth (args: string[], vars: Record<string, string> = {}): Promise<Run> {
  return await runProcess(process.execPath, [CLI, ...args], { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token, ...vars })
}

async function runProcess (file: string, args: string[], environment: NodeJS.ProcessEnv = process.env): Promise<Run> {
  const child = spawn(file, args, { env: environment, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk })
  const code = await new Promise<number | null>(resolve => child.once('close', resolve))
  return { code, stdout, stderr }
}

const labelled = ['-l', `${RUN_LABEL}=${RUN}`]

/** Runs the docker CLI on the same engine, as a person would beside berth. */
async function dockerCli (args: string[]): Promise<Run> {
  return await runProcess('docker', args)
}

t.test('side by side with the docker CLI: output shapes and exit statuses of the same operations', async t => {
  // run without -d: attached to the output, the container's exit code; docker run --rm the same.
  const script = 'echo out; echo err >&2; exit 3'
  const ours = await berth(['run', '--rm', '--name', name('cli-exit'), ...labelled, env.image, 'sh', '-c', script])
  const theirs = await dockerCli(['run', '--rm', '--name', name('cli-exit-docker'), ...labelled, env.image, 'sh', '-c', script])
  t.same(ours, theirs, 'run: same output on each stream, same exit code (3)')
  t.equal(ours.code, 3)

  // wait prints the exit code; then each stops the same way.
  const id = (await berth(['run', '-d', '--name', name('cli-wait'), ...labelled, '-e', 'CODE', env.image, 'sh', '-c', 'exit $CODE'], { CODE: '7' })).stdout.trim()
  t.same(await berth(['wait', id]), { code: 0, stdout: '7\n', stderr: '' }, '-e NAME took CODE from berth\'s environment')
  t.same(await berth(['wait', id]), await dockerCli(['wait', id]), 'wait: the same line')

  // ps --format and -q print what docker prints for the same container.
  const port = await freePort()
  const web = name('cli-side')
  t.equal((await berth(['run', '-dp', `${port}:80`, '--name', web, ...labelled, env.image, 'httpd', '-f', '-p', '80'])).code, 0, '-dp combined')
  const format = '{{.ID}}\\t{{.Names}}\\t{{.Image}}\\t{{.Ports}}\\t{{.State}}'
  // One difference, berth's on purpose: a port bound on every interface is one binding, not IPv4 and IPv6 apart.
  const dockers = await dockerCli(['ps', '--format', format, '--filter', `name=${web}`])
  t.same(await berth(['ps', '--format', format, '--filter', `name=${web}`]), { ...dockers, stdout: dockers.stdout.replace(/, \[::\]:\d+->80\/tcp/, '') }, 'ps --format')
  t.same((await berth(['ps', '-q', '--filter', `name=${web}`])).stdout, (await dockerCli(['ps', '-q', '--filter', `name=${web}`])).stdout, 'ps -q')
  t.same((await berth(['images', '-q', env.image])).stdout, (await dockerCli(['images', '-q', env.image])).stdout, 'images -q')
  t.same((await berth(['port', web])).stdout.split('\n')[0], (await dockerCli(['port', web])).stdout.split('\n')[0], 'port')

  // Errors: a flag neither takes is 125 for both; a container that is not there is 1 for both.
  t.equal((await berth(['ps', '--bogus'])).code, (await dockerCli(['ps', '--bogus'])).code)
  for (const verb of ['rm', 'stop', 'wait', 'logs', 'port', 'inspect']) {
    t.equal((await berth([verb, name('nobody')])).code, (await dockerCli([verb, name('nobody')])).code, `${verb} of nothing`)
  }
  t.equal((await berth(['rm', '-f', web, id])).code, 0)
})

t.test('at a terminal: exec -it in raw mode with the terminal\'s size, and stats drawn in place', async t => {
  const shell = name('cli-tty')
  t.equal((await berth(['run', '-d', '--name', shell, ...labelled, env.image, 'sleep', '300'])).code, 0)
  const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`
  const atTerminal = async (args: string[], input: string) => {
    // The terminal is 30 rows by 100 columns before berth starts; its input is typed once the shell answers.
    const child = spawn('script', ['-qec', `stty rows 30 cols 100; ${[process.execPath, CLI, ...args].map(quote).join(' ')}; echo "status=$?"`, '/dev/null'], {
      env: { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let screen = ''
    child.stdout.on('data', (chunk: Buffer) => {
      screen += chunk
      if (input !== '' && screen.includes('# ')) { child.stdin.write(input); input = '' }
    })
    await new Promise(resolve => child.once('close', resolve))
    return screen
  }
  const screen = await atTerminal(['exec', '-it', shell, 'sh'], 'echo $((6*7)); stty size; exit 5\r')
  // Each line ends in \r\r\n: the container's terminal and the local one each turn \n into \r\n.
  t.match(screen, /\n42\r+\n/, 'what was typed ran')
  t.match(screen, /\n30 100\r+\n/, 'the command\'s terminal has the local terminal\'s size')
  t.match(screen, /status=5/, 'exec -it ends with the command\'s exit code')

  const once = await berth(['stats', '--no-stream', shell])
  t.equal(once.code, 0)
  t.match(once.stdout, /^CONTAINER ID {3}NAME {3,}CPU % {3}MEM USAGE \/ LIMIT {3}MEM % {3}NET I\/O {3,}BLOCK I\/O {3}PIDS\n[0-9a-f]{12} {3}\S+ {3,}\d+\.\d\d% {3,}[\d.]+[KMG]?i?B \/ [\d.]+[KMG]iB/, 'stats --no-stream: docker stats\'s columns')
  t.equal((await berth(['rm', '-f', shell])).code, 0)
})

t.test('cp both ways, and build from a directory honouring .dockerignore', async t => {
  const box = name('cli-cp')
  t.equal((await berth(['run', '-d', '--name', box, ...labelled, env.image, 'sleep', '300'])).code, 0)
  const { mkdtempSync, writeFileSync, mkdirSync, readFileSync, existsSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'berth-cli-'))
  mkdirSync(join(dir, 'ctx/sub'), { recursive: true })
  writeFileSync(join(dir, 'ctx/a.txt'), 'hello\n')
  writeFileSync(join(dir, 'ctx/sub/b.txt'), 'below\n')
  writeFileSync(join(dir, 'ctx/noise.log'), 'left out\n')
  writeFileSync(join(dir, 'ctx/.dockerignore'), '*.log\n')
  writeFileSync(join(dir, 'ctx/Dockerfile'), `FROM ${env.image}\nCOPY . /ctx\nRUN find /ctx -type f | sort\n`)
  t.equal((await berth(['cp', join(dir, 'ctx'), `${box}:/tmp/`])).code, 0, 'cp into a directory')
  t.equal((await berth(['exec', box, 'cat', '/tmp/ctx/sub/b.txt'])).stdout, 'below\n')
  t.equal((await berth(['cp', `${box}:/tmp/ctx/a.txt`, join(dir, 'copy.txt')])).code, 0, 'cp out to a new name')
  t.equal(readFileSync(join(dir, 'copy.txt'), 'utf8'), 'hello\n')
  t.equal((await berth(['cp', `${box}:/tmp/ctx`, join(dir, 'out')])).code, 0, 'cp a directory out')
  t.ok(existsSync(join(dir, 'out/sub/b.txt')))
  t.equal((await berth(['rm', '-f', box])).code, 0)

  const built = await berth(['build', '-q', '--label', `${RUN_LABEL}=${RUN}`, join(dir, 'ctx')])
  t.equal(built.code, 0, built.stderr)
  t.match(built.stdout, /^sha256:[0-9a-f]{64}\n$/, 'build -q: the image id alone')
  const loud = await berth(['build', '--no-cache', '--label', `${RUN_LABEL}=${RUN}`, join(dir, 'ctx')])
  t.match(loud.stdout, /^Sending build context to berth {2}[\d.]+k?B\nStep 1\/\d : FROM /)
  t.match(loud.stdout, /\/ctx\/a\.txt\n/)
  t.notMatch(loud.stdout, /noise\.log/, '.dockerignore left the log out')
  await docker.getImage(built.stdout.trim()).remove({ force: true }).catch(() => {})
})
