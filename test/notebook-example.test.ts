// examples/notebook.ts run as its users run it, against a berth listening for real whose sweeper looks
// every half second: it pulls with progress, runs the server with its token on the host port, waits
// until it answers, and ends once berth has stopped it for being idle. A second run for the same user
// is refused with the reason.
import { spawn } from 'node:child_process'
import t from 'tap'
import { liveBerth, pushWebImage } from './live-berth.ts'
import { HTTPD, RUN, cleanupAfter, docker, env, fetchFromContainer, freePort, letGo } from './helpers.ts'

const EXAMPLE = new URL('../examples/notebook.ts', import.meta.url).pathname

cleanupAfter(t)
const live = await liveBerth(t, { BERTH_SWEEP_INTERVAL_MS: '500' })

function example (args: string[]) {
  const child = spawn(process.execPath, [EXAMPLE, ...args], {
    env: { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  const printed = new EventTarget()
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; printed.dispatchEvent(new Event('line')) })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk })
  const exited = new Promise<number | null>(resolve => child.once('close', resolve))
  /** Resolves with the first match of `pattern` in what it printed, as soon as it is printed. */
  const line = async (pattern: RegExp): Promise<RegExpExecArray> => await new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(stdout)
      if (match) { printed.removeEventListener('line', check); resolve(match) }
    }
    printed.addEventListener('line', check)
    exited.then(() => reject(new Error(`the example ended without printing ${pattern}:\n${stdout}${stderr}`)), () => {})
    check()
  })
  return { child, exited, line, get stdout () { return stdout }, get stderr () { return stderr } }
}

t.test('a notebook for a user: pulled, run with a token on its port, answering, stopped when idle', async t => {
  const { reference, digest } = await pushWebImage('notebook', 1_000_000)
  const port = await freePort()
  const user = `${RUN}-ada`
  // The server keeps a core busy until the test lets it go, so berth cannot take it for idle while the
  // test looks at it; after letGo() it sits idle, and berth stops it after 2 s of that.
  const busyUntilLetGo = ['sh', '-c', `until [ -e /tmp/go ]; do :; done & exec ${HTTPD.join(' ')}`]
  const run = example([user, '--image', reference, '--port', '80', '--host-port', String(port), '--idle', '2', '--', ...busyUntilLetGo])
  t.teardown(() => { run.child.kill() })

  const ready = await run.line(/^ready: (http:\/\/127\.0\.0\.1:(\d+)\/)\?token=([0-9a-f]{48}) \(HTTP 200 after [\d.]+ s\)$/m)
  t.equal(ready[2], String(port), 'on the host port asked for')
  const token = ready[3]
  const inspected = await docker.getContainer(`nb-${user}`).inspect()
  t.equal(inspected.State.Running, true, 'running while the example waits')
  t.ok(inspected.Config.Env.includes(`JUPYTER_TOKEN=${token}`), 'with the token it printed')
  t.equal(inspected.Config.Labels['io.berth.expiry-action'], 'stop')
  t.equal(await fetchFromContainer(port), 'hello from berth-test\n', 'answering on its port')
  await letGo(inspected.Id)

  t.equal(await run.exited, 0, 'it ends once the notebook is stopped')
  t.equal(run.stderr, '')
  const lines = run.stdout.trimEnd().split('\n')
  const pull = lines.filter(text => text.startsWith('pull: '))
  t.ok(pull.length > 0, 'pull progress was reported')
  t.ok(pull.every(text => /^pull: (0|[1-9]0|100)% \(\d+\/\d+ layers\)$/.test(text)), 'in steps of 10 %')
  t.same(lines.slice(pull.length), [
    `pulled: ${reference} ${digest}`,
    `running: nb-${user} (${inspected.Id.slice(0, 12)}) on http://127.0.0.1:${port}/`,
    ready[0],
    'waiting: berth stops it after 2 s idle',
    lines.at(-1)
  ])
  t.match(lines.at(-1), new RegExp(`^stopped: nb-${user} is exited \\(exit code \\d+\\); start it again with berth start nb-${user}$`))
  const after = await docker.getContainer(`nb-${user}`).inspect()
  t.equal(after.State.Running, false, 'stopped, not removed: its data stays')
  t.match(live.output(), new RegExp(`"lifecycle":\\{"action":"stop","reason":"idle","container":\\{"id":"${inspected.Id}","name":"nb-${user}"\\}`), 'berth stopped it for being idle')

  const again = example([user, '--image', reference, '--port', '80', '--', ...HTTPD])
  t.equal(await again.exited, 1)
  t.equal(again.stderr, `nb-${user} exists already: start it (berth start nb-${user}) or remove it (berth rm -f nb-${user})\n`, 'a second notebook for the same user is refused, saying what to do')
})

t.test('without a user it says how it is run', async t => {
  const run = example([])
  t.equal(await run.exited, 2)
  t.match(run.stderr, /^usage: node examples\/notebook\.ts USER /)
})

t.test('an image berth cannot find is berth\'s refusal, in one line', async t => {
  const missing = `${env.registry}/${RUN}-notebook-missing/web:1`
  const run = example([`${RUN}-bob`, '--image', missing])
  t.equal(await run.exited, 1)
  t.match(run.stderr, /^berth refused: [^\n]*notebook-missing\/web:1[^\n]* \(404 image_not_found\)\n$/)
})
