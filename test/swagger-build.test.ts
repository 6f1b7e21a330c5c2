// Swagger UI can upload a build context: in a real headless Chromium, the build operation offers a
// file for its binary body, and executing it builds the image on the real engine.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import t from 'tap'
import { RUN, TOKENS, build, cleanupAfter, docker } from './helpers.ts'
import { cleanupBuilds, imageName, tarOf } from './build-helpers.ts'

cleanupAfter(t)
cleanupBuilds(t)
const app = await build(t)
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

const dir = mkdtempSync(join(tmpdir(), 'berth-swagger-build-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const browser = await chromium.launchPersistentContext(join(dir, 'profile'), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 60_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
t.teardown(() => browser.close())

t.test('the build operation takes a tar file and builds it', { timeout: 300_000 }, async t => {
  const page = browser.pages()[0] ?? await browser.newPage()
  // A minute a step: a loaded machine renders Swagger UI slowly; a stuck browser still fails.
  page.setDefaultTimeout(60_000)
  const context = join(dir, 'context.tar')
  writeFileSync(context, tarOf({ Dockerfile: `FROM berth-test/busybox:1\nLABEL uploaded-with=swagger-${RUN}\n` }))
  await page.goto(`${base}/docs/`)
  await page.locator('.auth-wrapper .authorize').click()
  await page.locator('#auth-bearer-value').fill(TOKENS.admin.token)
  await page.locator('.modal-ux button[type=submit]').click()
  await page.locator('.modal-ux .btn-done').click()

  const block = page.locator('[id="operations-builds-buildImage"]')
  await block.locator('.opblock-summary-control').click()
  await block.locator('.try-out__btn').click()
  const file = block.locator('input[type=file]')
  t.equal(await file.count(), 1, 'the request body is a file to choose')
  await file.setInputFiles(context)
  const tag = imageName('swagger')
  // An array parameter starts empty: "Add string item", as a person would.
  await block.locator('tr[data-param-name="tag"] button', { hasText: 'Add' }).click()
  await block.locator('tr[data-param-name="tag"] input').first().fill(tag)
  await block.locator('tr[data-param-name="tag"] input').first().press('Tab')
  await block.locator('.execute').click()
  const row = block.locator('.live-responses-table tr.response')
  await row.waitFor()
  const status = Number(await row.locator('.response-col_status').textContent())
  const body = JSON.parse(await row.locator('.highlight-code pre').textContent() ?? 'null')
  t.equal(status, 200, 'the page shows 200', { body })
  t.match(body, { id: /^sha256:/, tags: [tag] })
  const image = await docker.getImage(tag).inspect()
  t.equal(image.Config.Labels['uploaded-with'], `swagger-${RUN}`, 'the engine built what was uploaded')
})
