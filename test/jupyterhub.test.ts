// JupyterHub with the berth spawner (clients/jupyterhub), end to end: Debian's hub and its
// configurable-http-proxy, berth as its own process on the real engine, every user's notebook server
// (Debian's, in the image scripts/singleuser-image.sh makes) run through berth with the hub's one token,
// and people who log in with a real browser. Also runs the spawner's own pytest suite.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { liveBerth } from './live-berth.ts'
import { RUN, RUN_LABEL, cleanupAfter, docker, freePort } from './helpers.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SPAWNER_DIR = join(ROOT, 'clients/jupyterhub')
const ARTIFACTS = join(ROOT, 'test-artifacts')
// Debian's python3, which its jupyterhub and pytest are installed for (another may come first on the PATH).
const PYTHON = '/usr/bin/python3'
const JUPYTERHUB = '/usr/bin/jupyterhub'
const LABEL_USER = 'hub.jupyter.org/username'
// A spawn here is a container start and a Python notebook server importing itself on a shared 2-core
// machine: the hub's own patience, and ours, are set for that, not for a laptop.
const SPAWN_WAIT_MS = 120_000
const PASSWORD = `pw-${RUN}`
/** The idle timeout berth keeps for cy's server (a look every half second). */
const IDLE_TIMEOUT_S = 3

// Four notebook servers started one after another, each a Python server importing itself, take minutes
// on a 2-core machine shared with other test runs: this file asks tap for more than its default.
t.setTimeout(600_000)

interface Run { code: number | null, stdout: string, output: string }

/** Runs a program to its end, keeping what it printed: its stdout, and all of it. */
async function run (file: string, args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return await new Promise(resolve => {
    execFile(file, args, { ...options, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
      resolve({ code, stdout, output: `${stdout}${stderr}` })
    })
  })
}

t.test('the spawner\'s own tests (pytest, against a berth stand-in)', async t => {
  const { code, output } = await run(PYTHON, ['-m', 'pytest', '-q'], { cwd: SPAWNER_DIR, env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: '1' } })
  t.equal(code, 0, 'pytest passes')
  t.match(output, /\n\d+ passed in /, output.trim().split('\n').at(-1) ?? '')
})

/** A process of ours whose output can be waited on. */
function follow (child: ReturnType<typeof spawn>) {
  let output = ''
  let ended = false
  const seen = new EventTarget()
  const keep = (chunk: Buffer) => { output += chunk; seen.dispatchEvent(new Event('output')) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  child.once('close', () => { ended = true; seen.dispatchEvent(new Event('output')) })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  /** Resolves with the first match of `pattern` in the output from `from` on; fails when the process ends first or at the deadline. */
  const waitFor = async (pattern: RegExp, timeoutMs: number, from = 0) => await new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(output.slice(from))
      if (match === null && !ended) return
      clearTimeout(timer)
      seen.removeEventListener('output', check)
      if (match !== null) resolve(match)
      else reject(new Error(`never saw ${pattern}: the process ended\n${output.slice(-4000)}`))
    }
    const timer = setTimeout(() => { seen.removeEventListener('output', check); reject(new Error(`never saw ${pattern} within ${timeoutMs} ms\n${output.slice(-4000)}`)) }, timeoutMs)
    seen.addEventListener('output', check)
    check()
  })
  return { child, exited, waitFor, get output () { return output }, get ended () { return ended } }
}

/** Polls `probe` every quarter second until `done` accepts its answer; fails naming `what` at the deadline. */
async function until<T> (what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (done(value)) return value
      last = value
    } catch (error) {
      last = error
    }
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  const shown = last instanceof Error ? last.message : JSON.stringify(last)
  throw new Error(`timed out waiting for ${what} (last: ${shown.length > 500 ? `…${shown.slice(-500)}` : shown})`)
}

// Within the file's limit, so that a stuck step fails here and the teardowns still run.
t.test('a hub whose users\' notebook servers run through berth', { timeout: 540_000 }, async t => {
  // Teardowns run last-registered first: the browser, the hub (whose shutdown stops the servers through
  // berth), berth, then whatever of this run is still on the engine.
  cleanupAfter(t)
  const image = (await run('bash', [join(ROOT, 'scripts/singleuser-image.sh')])).stdout.trim()
  const present = await docker.getImage(image).inspect().then(() => true, () => false)
  if (!present || !existsSync(JUPYTERHUB)) throw new Error(`the single-user image (${image}) or Debian's jupyterhub is missing: run bash scripts/test-env.sh up`)

  // berth's sweeper looks every half second, so an idle server is stopped soon after its timeout, and
  // only at this run's containers (a deployment of its own); the hub's token may hold two containers;
  // the test's own reads of berth must not use up the hub's rate; the shared engine, busy with other
  // runs, has been seen to take more than berth's default 10 s to create a container.
  const berth = await liveBerth(t, {
    BERTH_DEPLOYMENT: RUN, BERTH_SWEEP_INTERVAL_MS: '500', BERTH_QUOTA_CONTAINERS: '2', BERTH_RATE_LIMIT: '100000', BERTH_ENGINE_TIMEOUT_MS: '60000'
  })
  const asHub = { authorization: `Bearer ${berth.token}` }
  const berthGet = async (path: string) => await fetch(`${berth.url}${path}`, { headers: asHub })
  const containerOf = async (user: string) => {
    const listed = await (await berthGet(`/v1/containers?all=true&label=${encodeURIComponent(`${LABEL_USER}=${user}`)}`)).json() as Array<{ id: string, name: string, state: string, labels: Record<string, string> }>
    return listed
  }

  // The hub reaches berth on loopback and the servers reach the hub on the engine's bridge: the hub
  // listens on the bridge's gateway address, which containers on the default network reach.
  // The engine's default network often names no gateway; its bridge interface has the address (read with
  // ip: Node lists only interfaces that are up, and a bridge with no container attached is down).
  const bridge = await docker.getNetwork('bridge').inspect() as { IPAM: { Config: Array<{ Gateway?: string }> }, Options: Record<string, string> }
  const bridgeName = bridge.Options['com.docker.network.bridge.name'] ?? 'docker0'
  const gateway = bridge.IPAM.Config.find(config => config.Gateway !== undefined && !config.Gateway.includes(':'))?.Gateway ??
    /\binet (\d+\.\d+\.\d+\.\d+)\//.exec((await run('ip', ['-4', '-o', 'addr', 'show', 'dev', bridgeName])).stdout)?.[1]
  if (gateway === undefined) throw new Error(`cannot tell the address of the engine's bridge network (${bridgeName}) on this host`)
  const [publicPort, apiPort, hubPort] = [await freePort(), await freePort(), await freePort()]
  const hubUrl = `http://127.0.0.1:${publicPort}`
  const proxyToken = `proxy-${RUN}`
  const operatorToken = `operator-${RUN}-0123456789`
  const dir = mkdtempSync(join(tmpdir(), 'berth-jupyterhub-'))
  writeFileSync(join(dir, 'jupyterhub_config.py'), `# Written by test/jupyterhub.test.ts.
c = get_config()
c.JupyterHub.bind_url = 'http://127.0.0.1:${publicPort}'
c.JupyterHub.hub_ip = '${gateway}'
c.JupyterHub.hub_port = ${hubPort}
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:${apiPort}'
c.ConfigurableHTTPProxy.auth_token = '${proxyToken}'
c.JupyterHub.db_url = 'sqlite:///${dir}/jupyterhub.sqlite'
c.JupyterHub.cookie_secret_file = '${dir}/jupyterhub_cookie_secret'
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = '${PASSWORD}'
c.Authenticator.allowed_users = {'ada', 'bob', 'cy', 'eve'}

c.JupyterHub.spawner_class = 'berthspawner.BerthSpawner'
c.BerthSpawner.berth_url = '${berth.url}'
c.BerthSpawner.berth_token = '${berth.token}'
c.BerthSpawner.image = '${image}'
# The hub runs on berth's host: servers' ports are bound on loopback only.
c.BerthSpawner.host_ip = '127.0.0.1'
c.BerthSpawner.name_template = '${RUN}-{username}{servername}'
c.BerthSpawner.extra_labels = {'${RUN_LABEL}': '${RUN}'}
c.BerthSpawner.stop_timeout = 5
c.BerthSpawner.poll_interval = 1
c.BerthSpawner.start_timeout = 120
c.BerthSpawner.http_timeout = 120

# Only cy's server is culled by berth; the others must live through the test. It is busy (a tenth of a
# core, ten times berth's idle threshold) until the test lets it go (a file /tmp/go), so berth cannot take it for idle before the hub
# has seen it up and cy's browser has landed on it; then it idles, and berth removes it.
BUSY_UNTIL_LET_GO = """
import os, time
while not os.path.exists('/tmp/go'):
    start = time.monotonic()
    while time.monotonic() - start < 0.01:
        pass
    time.sleep(0.09)
"""
def for_cy(spawner):
    spawner.idle_timeout = 0
    if spawner.user.name == 'cy':
        spawner.idle_timeout = ${IDLE_TIMEOUT_S}
        spawner.cmd = ['sh', '-c', 'python3 -c "$0" & exec jupyterhub-singleuser "$@"', BUSY_UNTIL_LET_GO]
c.BerthSpawner.pre_spawn_hook = for_cy

# The hub leaves with the test: when the test's process goes away (even killed), its end of the hub's
# stdin closes, and the hub shuts down as on SIGTERM, stopping its servers through berth and its proxy.
import os, signal, sys, threading
def leave_with_the_test():
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=leave_with_the_test, daemon=True).start()

# An operator service with the scopes jupyterhub-idle-culler holds, to stop servers through the hub,
# and admin:server_state, for the test to read the container id each server's state keeps.
c.JupyterHub.services = [{'name': 'operator', 'api_token': '${operatorToken}'}]
c.JupyterHub.load_roles = [{'name': 'operator', 'services': ['operator'],
                            'scopes': ['list:users', 'read:users:activity', 'read:servers', 'delete:servers', 'admin:server_state']}]
`)
  const hub = follow(spawn(JUPYTERHUB, ['-f', join(dir, 'jupyterhub_config.py')], {
    cwd: dir,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      PYTHONPATH: SPAWNER_DIR,
      PYTHONDONTWRITEBYTECODE: '1',
      // Debian's configurable-http-proxy finds its modules where Debian's node looks; a node from
      // elsewhere (this machine's NodeSource build) looks there only when told.
      NODE_PATH: '/usr/lib/nodejs:/usr/share/nodejs'
    }
  }))
  t.teardown(async () => {
    if (!hub.ended) {
      // SIGTERM: the hub stops every server it runs (through berth) and its proxy, then exits.
      hub.child.kill('SIGTERM')
      const stopped = await Promise.race([hub.exited.then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), 60_000))])
      if (!stopped && hub.child.pid !== undefined) process.kill(-hub.child.pid, 'SIGKILL')
    }
    // The proxy runs in a session of its own; the hub removes its pid file once it has stopped it.
    const pidFile = join(dir, 'jupyterhub-proxy.pid')
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'))
      const command = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : ''
      if (command.includes('configurable-http-proxy')) process.kill(pid, 'SIGKILL')
    }
    if (t.passing()) rmSync(dir, { recursive: true, force: true })
    else t.comment(`the hub's directory (config, database, log) is kept: ${dir}`)
  })
  await hub.waitFor(/JupyterHub is now running at/, 120_000)
  t.teardown(() => { if (!t.passing()) writeFileSync(join(dir, 'hub.log'), hub.output) })

  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())

  const operator = { authorization: `token ${operatorToken}` }
  const hubApi = async (path: string, init: RequestInit = {}) => await fetch(`${hubUrl}/hub/api${path}`, { ...init, headers: { ...operator, ...init.headers } })
  const serversOf = async (user: string) => ((await (await hubApi(`/users/${user}`)).json()) as { servers: Record<string, { ready: boolean, state?: { container_id?: string } }> }).servers
  // The proxy's routing table, as the paths it routes (it keeps them without their last "/").
  const routes = async () => Object.keys(await (await fetch(`http://127.0.0.1:${apiPort}/api/routes`, { headers: { authorization: `token ${proxyToken}` } })).json() as Record<string, unknown>)
    .map(path => path.endsWith('/') ? path : `${path}/`)

  /** A person opens the hub in a browser of their own and logs in; the hub then spawns their server. */
  async function logIn (user: string): Promise<{ context: BrowserContext, page: Page }> {
    const context = await browser.newContext()
    const page = await context.newPage()
    page.setDefaultTimeout(60_000)
    await page.goto(`${hubUrl}/hub/login`)
    await page.fill('#username_input', user)
    await page.fill('#password_input', PASSWORD)
    await page.click('#login_submit')
    return { context, page }
  }

  /** Waits until the browser shows the user's own notebook server (the notebook's file list), reached through the hub's proxy. */
  async function landsOnServer (t: Test, page: Page, user: string): Promise<void> {
    await page.waitForURL(new RegExp(`/user/${user}/tree`), { timeout: SPAWN_WAIT_MS })
    // Served by the notebook server (its scripts then fill the list in, which on a busy machine takes a while).
    await page.locator('#notebook_list').waitFor({ state: 'attached' })
    t.match(await page.title(), /Home Page - Select or create a notebook/, `${user}'s browser shows the notebook server's page`)
  }

  /**
   * Waits until the hub's page script has bound its handler to `selector`'s element: the hub's pages load
   * their scripts with RequireJS after the page itself, and a click before that does nothing.
   */
  async function bound (page: Page, selector: string, event: 'click' | 'submit'): Promise<void> {
    // Evaluated in the page (a string: this project's TypeScript has no DOM types).
    const check = `(() => { const element = document.querySelector(${JSON.stringify(selector)}); const events = element && window.jQuery && window.jQuery._data(element, 'events'); return Boolean(events && events[${JSON.stringify(event)}]) })()`
    await page.waitForFunction(check)
  }

  async function keepScreenshot (page: Page, file: string): Promise<void> {
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, file) })
  }

  const people: Record<string, { context: BrowserContext, page: Page }> = {}
  const ids: Record<string, string> = {}
  /** The container berth runs for the user, as the first subtest found it. */
  const idOf = (user: string): string => {
    const id = ids[user]
    if (id === undefined) throw new Error(`${user} has no server from the first subtest`)
    return id
  }

  await t.test('ada and bob log in and land on their own servers, run by berth', async t => {
    people.ada = await logIn('ada')
    people.bob = await logIn('bob')
    await Promise.all([landsOnServer(t, people.ada.page, 'ada'), landsOnServer(t, people.bob.page, 'bob')])
    await keepScreenshot(people.ada.page, 'jupyterhub-ada.png')
    for (const user of ['ada', 'bob']) {
      const [container, ...more] = await containerOf(user)
      t.same(more, [], `berth holds one container for ${user}`)
      t.equal(container?.name, `${RUN}-${user}`, `named after ${user}`)
      t.equal(container?.state, 'running')
      t.equal((await serversOf(user))['']?.state?.container_id, container?.id, 'the hub keeps that container\'s id as the server\'s state')
      if (container !== undefined) ids[user] = container.id
      t.ok((await routes()).includes(`/user/${user}/`), `the proxy routes /user/${user}/ to it`)
    }
    t.match(hub.output, /berth runs ada's server as \S+ \([0-9a-f]{12}\), reached at 127\.0\.0\.1:\d+/, 'the hub\'s log says where berth runs it')
  })

  await t.test('a second user sees nothing of the first', async t => {
    // Each server is told only its own user's hub token; none is told the hub's berth token.
    const [ada, bob] = await Promise.all([docker.getContainer(idOf('ada')).inspect(), docker.getContainer(idOf('bob')).inspect()])
    const envOf = (env: string[]) => Object.fromEntries(env.map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
    const adaEnv = envOf(ada.Config.Env)
    const bobEnv = envOf(bob.Config.Env)
    t.equal(bobEnv.JUPYTERHUB_USER, 'bob')
    t.not(bobEnv.JUPYTERHUB_API_TOKEN, adaEnv.JUPYTERHUB_API_TOKEN, 'each server has its own hub token')
    t.notOk([...ada.Config.Env, ...bob.Config.Env].some(line => line.includes(berth.token)), 'no server is given the hub\'s berth token')
    t.same(Object.keys(ada.HostConfig.PortBindings ?? {}).map(port => ada.HostConfig.PortBindings?.[port]?.[0]?.HostIp), ['127.0.0.1'], 'ports bound on loopback only')

    // Through the hub, bob can neither reach ada's server nor stop it.
    const { page } = people.bob ?? { page: undefined }
    if (page === undefined) throw new Error('bob has no browser')
    const answer = await page.goto(`${hubUrl}/user/ada/tree`)
    t.equal(answer?.status(), 403, 'bob asking for ada\'s server gets 403 from the hub')
    t.notMatch(page.url(), /\/user\/ada\/tree/, 'and is not on ada\'s server')
    await page.goto(`${hubUrl}/hub/token`)
    await bound(page, '#request-token-form', 'submit')
    await page.click('#request-token-form button[type="submit"]')
    await page.locator('#token-area').waitFor()
    const bobToken = (await page.locator('#token-result').textContent())?.trim() ?? ''
    t.match(bobToken, /^[0-9a-f]{32}$/, 'bob makes himself an API token on the hub\'s token page')
    const stopAda = await fetch(`${hubUrl}/hub/api/users/ada/server`, { method: 'DELETE', headers: { authorization: `token ${bobToken}` } })
    t.ok([403, 404].includes(stopAda.status), `bob's token cannot stop ada's server (${stopAda.status})`)
    const ownServer = await fetch(`${hubUrl}/hub/api/users/bob`, { headers: { authorization: `token ${bobToken}` } })
    t.equal(ownServer.status, 200, 'while it reads his own')
    t.equal((await containerOf('ada'))[0]?.state, 'running', 'ada\'s server runs on')
    await page.goto(`${hubUrl}/user/bob/tree`)
    await page.locator('#notebook_list').waitFor({ state: 'attached' })

    // berth sees both under the hub's one token; the labels tell them apart, and each spawner acted on its own id only.
    t.same((await containerOf('bob')).map(container => container.id), [idOf('bob')], 'by its label, berth lists only bob\'s container for bob')
    t.notMatch(hub.output, new RegExp(`(stop|remove)[^\\n]*${idOf('ada').slice(0, 12)}`), 'nothing was done to ada\'s container')
  })

  await t.test('berth\'s refusal is on the user\'s spawn page and in the hub\'s log', async t => {
    // ada and bob hold the token's two containers.
    const eve = await logIn('eve')
    people.eve = eve
    // On the spawn page ("Spawn failed: …"), or on the error page of a spawn that failed at once.
    const shown = eve.page.getByText(/The hub has reached its berth quota of containers \(2 of 2 in use\)/).first()
    await shown.waitFor({ timeout: SPAWN_WAIT_MS })
    await keepScreenshot(eve.page, 'jupyterhub-quota.png')
    t.ok(await shown.isVisible(), 'eve reads why her server did not start')
    t.match(hub.output, /berth refused to run eve's server \(\S+-eve, image [^)]+\): 403 quota_exceeded: [^\n]+"limit": "containers"[^\n]+\(request [0-9a-f-]+\)/,
      'the hub\'s log has berth\'s problem, with its request id')
    t.same(await containerOf('eve'), [], 'and berth left nothing behind')
  })

  await t.test('ada stops her server from the hub\'s home page: berth stops and removes it', async t => {
    const { page } = people.ada ?? { page: undefined }
    if (page === undefined) throw new Error('ada has no browser')
    await page.goto(`${hubUrl}/hub/home`)
    await bound(page, '#stop', 'click')
    await page.click('#stop')
    await page.locator('#stop').waitFor({ state: 'hidden', timeout: 60_000 })
    const gone = await until('ada\'s container to be removed', async () => (await berthGet(`/v1/containers/${idOf('ada')}`)).status, status => status === 404)
    t.equal(gone, 404, 'berth no longer has it')
    t.same(await serversOf('ada'), {}, 'the hub has no server for ada')
    t.notOk((await routes()).includes('/user/ada/'), 'nor the proxy a route')
    t.match(hub.output, new RegExp(`berth removed ada's server ${idOf('ada').slice(0, 12)}`))
  })

  await t.test('cy leaves her server idle: berth removes it, and the hub notices at its next poll', async t => {
    const cy = await logIn('cy')
    await landsOnServer(t, cy.page, 'cy')
    const [container] = await containerOf('cy')
    if (container === undefined) throw new Error('berth has no container for cy')
    t.same(container.labels['io.berth.idle-timeout'], String(IDLE_TIMEOUT_S), 'run with berth\'s idle timeout')
    t.equal(container.labels['io.berth.expiry-action'], 'remove')
    // cy closes her browser, and her server's last work ends: nothing goes on in it any more.
    await cy.context.close()
    const letGo = await fetch(`${berth.url}/v1/containers/${container.id}/files?path=/tmp/go`, { method: 'PUT', headers: { ...asHub, 'content-type': 'application/octet-stream' }, body: 'go' })
    t.equal(letGo.status, 204, 'the test lets the server go idle')
    const culled = new RegExp(`"lifecycle":\\{"action":"remove","reason":"idle","container":\\{"id":"${container.id}"`)
    await until('berth to remove cy\'s idle server', async () => berth.output(), output => culled.test(output), 60_000)
    t.pass('berth removed it for sitting idle')
    await until('the hub to see cy\'s server gone', async () => await serversOf('cy'), servers => Object.keys(servers).length === 0)
    t.pass('the hub has no server for cy')
    await until('the proxy to drop cy\'s route', routes, list => !list.includes('/user/cy/'))
    t.pass('nor the proxy a route')
    t.match(hub.output, /User cy server stopped, with exit code: 0/, 'the hub learned it from its poll')
  })

  await t.test('the operator service stops bob\'s server as jupyterhub-idle-culler would: through the hub, then berth', async t => {
    const stopped = await hubApi('/users/bob/server', { method: 'DELETE' })
    t.ok([202, 204].includes(stopped.status), `the hub takes the stop (${stopped.status})`)
    await until('bob\'s container to be removed', async () => (await berthGet(`/v1/containers/${idOf('bob')}`)).status, status => status === 404)
    t.pass('berth removed bob\'s container')
    await until('the hub to see bob\'s server gone', async () => await serversOf('bob'), servers => Object.keys(servers).length === 0)
    t.same(await containerOf('bob'), [])
  })
})
