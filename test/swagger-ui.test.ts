// Swagger UI as a person uses it: a real headless Chromium reads /docs from a listening berth, authorizes, and runs and lists containers on the real engine.
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Locator, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { RUN, RUN_LABEL, TOKENS, build, cleanupAfter, docker, env, name, runBody } from './helpers.ts'

// Every browser step is bounded and the whole walk-through has a budget, so a stuck browser fails
// the walk-through rather than hanging; unlike tap's file timeout, which kills the process, this
// still runs the teardowns that close the browser and remove the container.
// Deadlines tell a stuck browser from a busy machine (a loaded CI host renders the 49 operations in
// well over 10 s): a step may take a minute, the walk-through five.
const STEP_TIMEOUT = 60_000
const BUDGET = 300_000
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts', import.meta.url))
// A host name that is not loopback, so the browser treats the page as a plain-HTTP site on a network.
const LAN_NAME = 'berth.test'

interface Operation { id: string, method: string, path: string, summary: string }
interface Shown { status: number, body: unknown, curl: string, requestUrl: string }

// Teardowns run last-registered first: the browser, its profile, the app, then the engine cleanup.
cleanupAfter(t)
const app = await build(t)
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as AddressInfo).port
const base = `http://127.0.0.1:${port}`

const profile = mkdtempSync(join(tmpdir(), 'berth-chromium-'))
t.teardown(() => rmSync(profile, { recursive: true, force: true }))
// Playwright owns --user-data-dir: a persistent context is how a fresh profile of our own is passed.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 60_000,
  viewport: { width: 1280, height: 900 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=MAP ${LAN_NAME} 127.0.0.1`
  ]
})
t.teardown(() => browser.close())

/** Everything that went wrong in a page: console errors (CSP violations among them), uncaught errors, failed requests. */
function watch (page: Page): Array<{ what: string, url: string }> {
  const problems: Array<{ what: string, url: string }> = []
  page.on('console', message => { if (message.type() === 'error') problems.push({ what: message.text(), url: message.location().url }) })
  page.on('pageerror', error => problems.push({ what: `uncaught: ${error.message}`, url: page.url() }))
  page.on('requestfailed', request => problems.push({ what: `request failed: ${request.failure()?.errorText}`, url: request.url() }))
  return problems
}

const page = browser.pages()[0] ?? await browser.newPage()
page.setDefaultTimeout(STEP_TIMEOUT)
const problems = watch(page)

const doc = await (await fetch(`${base}/openapi.json`)).json() as {
  paths: Record<string, Record<string, { operationId: string, summary: string, tags: string[] }>>
  components: { schemas: Record<string, unknown> }
}
// Swagger UI shows an operation once under each of its tags, as operations-TAG-OPERATIONID.
const operations: Operation[] = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).flatMap(([method, operation]) =>
  operation.tags.map(tag => ({ id: `operations-${tag}-${operation.operationId}`, method, path, summary: operation.summary }))))

/** The block of one operation, by the id Swagger UI gives it. */
function operation (id: string): Locator {
  return page.locator(`[id="${id}"]`)
}

/** Opens an operation and presses "Try it out", as a person would before filling it in. */
async function tryItOut (block: Locator): Promise<void> {
  if (!(await block.getAttribute('class') ?? '').split(' ').includes('is-open')) await block.locator('.opblock-summary-control').click()
  const button = block.locator('.try-out__btn')
  if ((await button.textContent())?.trim() === 'Try it out') await button.click()
  await block.locator('.execute').waitFor()
}

/** Presses "Execute" and reads back what the page shows: the status, the response body, the curl line and the URL. */
async function execute (block: Locator): Promise<Shown> {
  // A previous answer stays on screen until cleared; clearing it makes the next wait see only the new one.
  const clear = block.locator('.btn-clear')
  if (await clear.count() > 0) await clear.click()
  await block.locator('.execute').click()
  const row = block.locator('.live-responses-table tr.response')
  await row.waitFor()
  return {
    status: Number(await row.locator('.response-col_status').textContent()),
    body: JSON.parse(await row.locator('.highlight-code pre').textContent() ?? 'null'),
    curl: await block.locator('.curl-command pre').textContent() ?? '',
    requestUrl: await block.locator('.request-url pre').textContent() ?? ''
  }
}

/** Keeps a picture of what a person sees in test-artifacts/ (git-ignored), to look at after the run. */
async function keepScreenshot (t: Test, what: Page | Locator, file: string): Promise<void> {
  const path = join(ARTIFACTS, file)
  mkdirSync(ARTIFACTS, { recursive: true })
  await what.screenshot({ path })
  t.ok(statSync(path).size > 10_000, `screenshot at ${path}`)
}

/** The part of an operation that shows the last call: curl line, request URL, status and body. */
function lastCall (block: Locator): Locator {
  return block.locator('.responses-inner > div > div').first()
}

t.test('Swagger UI in a real browser, as a person uses it', { timeout: BUDGET }, async t => {
  t.test('the page loads without console errors and shows every operation with its summary, and the schemas', async t => {
    await page.goto(`${base}/docs/`)
    await page.locator('.opblock').first().waitFor()
    await page.locator('section.models').waitFor()

    t.ok(operations.length >= 12, `${operations.length} operations in /openapi.json`)
    // One read of every block the page shows: its id, method, path and summary line.
    const shown = await page.locator('.opblock').evaluateAll(blocks => blocks.map(block => ({
      id: block.id,
      method: block.querySelector('.opblock-summary-method')?.textContent?.toLowerCase(),
      path: block.querySelector('.opblock-summary-path')?.getAttribute('data-path'),
      summary: block.querySelector('.opblock-summary-description')?.textContent
    })))
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id)
    t.same(shown.toSorted(byId), operations.toSorted(byId), 'every operation, under each of its tags, with its method, path and summary; nothing else')

    // OpenAPI 3.1 schemas render as JSON Schema 2020-12 articles; the top level is one per component.
    const models = await page.locator('section.models article[data-json-schema-level="0"] > .json-schema-2020-12-head .json-schema-2020-12__title').allTextContents()
    t.same(models.toSorted(), Object.keys(doc.components.schemas).toSorted(), 'every schema in the models section')

    t.same(problems, [], 'no console error, CSP violation, uncaught error or failed request')
    await keepScreenshot(t, page, 'swagger-ui.png')
  })

  t.test('without Authorize, Try it out on list containers shows 401', async t => {
    const block = operation('operations-containers-listContainers')
    await tryItOut(block)
    const seen = problems.length
    const shown = await execute(block)
    t.equal(shown.status, 401)
    t.match(shown.body, { status: 401, code: 'unauthorized' })
    t.notMatch(shown.curl, /authorization/i, 'no token was sent')
    // The browser logs every 4xx fetch as a console error; this one, and only it, is expected.
    t.same(problems.slice(seen), [{ what: 'Failed to load resource: the server responded with a status of 401 (Unauthorized)', url: shown.requestUrl }])
  })

  t.test('Authorize, then Try it out on run: 201 with the container the engine runs', async t => {
    await page.locator('.auth-wrapper .authorize').click()
    await page.locator('#auth-bearer-value').fill(TOKENS.admin.token)
    await page.locator('.modal-ux button[type=submit]').click()
    await page.locator('.modal-ux h6', { hasText: 'Authorized' }).waitFor()
    await page.locator('.modal-ux .btn-done').click()
    await page.locator('.modal-ux').waitFor({ state: 'detached' })

    const seen = problems.length
    const containerName = name('swagger')
    const block = operation('operations-containers-runContainer')
    await tryItOut(block)
    await block.locator('.body-param__text').fill(JSON.stringify(runBody({ name: containerName }), null, 2))
    const shown = await execute(block)
    t.equal(shown.status, 201, 'the page shows 201 Created', { body: shown.body })
    t.match(shown.curl, `Authorization: Bearer ${TOKENS.admin.token}`, 'the token from Authorize was sent')
    const container = shown.body as { id: string, name: string, image: string, state: string }
    t.match(container, { name: containerName, image: env.image, state: 'running' })

    const inspected = await docker.getContainer(container.id).inspect()
    t.equal(inspected.Id, container.id, 'the id shown is the engine\'s')
    t.equal(inspected.Name, `/${containerName}`)
    t.equal(inspected.State.Running, true)
    t.equal(inspected.Config.Labels[RUN_LABEL], RUN)
    t.same(inspected.Config.Cmd, ['sleep', '300'])
    t.same(problems.slice(seen), [])
    await keepScreenshot(t, lastCall(block), 'swagger-ui-run.png')
  })

  t.test('Try it out on list containers, by name: 200 with what the engine lists', async t => {
    const seen = problems.length
    const containerName = name('swagger')
    const block = operation('operations-containers-listContainers')
    await tryItOut(block)
    // The field passes its value on after a pause or on leaving it; leave it, as a person tabbing on would.
    await block.locator('tr[data-param-name="name"] input').fill(containerName)
    await block.locator('tr[data-param-name="name"] input').press('Tab')
    const shown = await execute(block)
    t.equal(shown.status, 200, 'the page shows 200 OK', { body: shown.body })
    t.match(shown.requestUrl, `name=${containerName}`)

    const engine = await docker.listContainers({ filters: { name: [`^/${containerName}$`] } })
    t.equal(engine.length, 1, 'the engine runs exactly that container')
    t.same((shown.body as Array<{ id: string, name: string, image: string, state: string }>).map(({ id, name, image, state }) => ({ id, name, image, state })),
      engine.map(info => ({ id: info.Id, name: info.Names[0]?.slice(1), image: info.Image, state: info.State })))
    t.same(problems.slice(seen), [])

    await keepScreenshot(t, lastCall(block), 'swagger-ui-list.png')
  })

  t.test('reached over plain HTTP by a non-loopback name, the page loads its own assets over HTTP and renders', async t => {
    const lan = await browser.newPage()
    lan.setDefaultTimeout(STEP_TIMEOUT)
    t.teardown(() => lan.close())
    const lanProblems = watch(lan)
    const requested: string[] = []
    lan.on('request', request => { requested.push(request.url()) })
    const origin = `http://${LAN_NAME}:${port}`
    await lan.goto(`${origin}/docs/`)
    // By the load event the page has asked for all its assets: each from where the page came, over plain HTTP.
    const strayed = requested.filter(url => !url.startsWith(`${origin}/`))
    t.same(strayed, [], 'every asset is fetched from the origin the page came from')
    if (strayed.length > 0) return
    await lan.locator('.opblock').first().waitFor()
    t.equal(await lan.locator('.opblock').count(), operations.length, 'every operation is shown')
    t.same(requested.filter(url => !url.startsWith(`${origin}/`)), [], 'the document, too, comes from that origin')
    // Chromium says the Cross-Origin-Opener-Policy header is ignored on a non-HTTPS origin; that is a notice about plain HTTP, not a failure of the page.
    t.same(lanProblems.filter(problem => !problem.what.startsWith('The Cross-Origin-Opener-Policy header has been ignored')), [])
  })
})
