// What berth reads of an image from its registry (src/engine/registry.ts: the details and history a
// cluster's nodes do not report), against the test environment's real registries: the open one, and
// the one that wants Basic credentials. Checked against what the engine itself says of the image.
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import t from 'tap'
import { parseImage, type ImageRef } from '../src/engine/image-ref.ts'
import { RegistryReader } from '../src/engine/registry.ts'
import { docker, env, pushImage } from './helpers.ts'

const LINUX = { os: 'linux', architecture: 'amd64' }
const refOf = (reference: string): ImageRef => (parseImage(reference) as { kind: 'ref', ref: ImageRef }).ref
const reader = (auth = {}): RegistryReader => new RegistryReader({ auth, insecure: [], timeoutMs: 10_000 })

t.test('an image as its registry describes it: the same digest, platform, labels and history the engine has', async t => {
  const pushed = await pushImage('registry-read')
  const image = await reader().read(refOf(pushed.reference), LINUX)
  const local = await docker.getImage(env.image).inspect()
  const history = await docker.getImage(env.image).history() as Array<{ CreatedBy: string, Comment: string }>
  t.equal(image.digest, pushed.digest, 'the manifest digest the push reported')
  t.match(image, { architecture: local.Architecture, os: local.Os, labels: local.Config.Labels ?? {} })
  t.equal(Date.parse(image.createdAt ?? ''), Date.parse(local.Created), 'when it was made')
  t.same(image.history.map(step => step.createdBy), history.map(step => step.CreatedBy), 'docker history, step by step, newest first')
  t.ok(image.size > 0)

  const byDigest = refOf(`${pushed.reference.replace(/:[^:/]+$/, '')}@${pushed.digest}`)
  t.same(await reader().read(byDigest, LINUX), image, 'by digest: the same image')
})

t.test('a registry that wants credentials: read with them, refused without', async t => {
  const pushed = await pushImage('registry-auth', { registry: env.authRegistry })
  const ref = refOf(pushed.reference)
  const image = await reader({ [env.authRegistry]: { username: env.authUser, password: env.authPassword } }).read(ref, LINUX)
  t.equal(image.digest, pushed.digest)
  const refused = await reader().read(ref, LINUX).then(() => null, (error: unknown) => error)
  t.match(refused, { code: 'engine_error', message: /answered 401/ })
})

t.test('what a registry cannot give: an image it does not have, and nothing listening', async t => {
  const missing = await reader().read(refOf(`${env.registry}/nothing-here/web:1`), LINUX).then(() => null, (error: unknown) => error)
  t.match(missing, { code: 'image_not_found' })
  // A port that was just free: nothing answers there.
  const port = await new Promise<number>(resolve => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => { resolve(port) })
    })
  })
  const away = await reader().read(refOf(`127.0.0.1:${port}/x/web:1`), LINUX).then(() => null, (error: unknown) => error)
  t.match(away, { code: 'engine_unavailable', message: /could not reach 127\.0\.0\.1:\d+/ })
})

// A hostile registry, which the real ones cannot be made into on demand: a stand-in server, said so here.
t.test('a hostile registry (a stand-in server): its token realm, an endless answer, an answer of the wrong shape', async t => {
  const realmHits: string[] = []
  let mode: 'metadata-realm' | 'own-realm' | 'endless' | 'array' = 'metadata-realm'
  const server = createHttpServer((request, response) => {
    if (request.url?.startsWith('/token')) {
      realmHits.push(request.url)
      response.end('{}')
      return
    }
    if (mode === 'metadata-realm') {
      response.writeHead(401, { 'www-authenticate': 'Bearer realm="http://169.254.169.254/latest/meta-data",service="x"' }).end()
    } else if (mode === 'own-realm') {
      response.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token-elsewhere",service="x"` }).end()
    } else if (mode === 'endless') {
      // No length, and more than any manifest: chunk after chunk until berth stops reading.
      response.writeHead(200, { 'content-type': 'application/json', 'docker-content-digest': `sha256:${'0'.repeat(64)}` })
      const chunk = Buffer.alloc(256 * 1024, 0x20)
      const more = (): void => { while (response.write(chunk)) { if (response.destroyed) return } }
      response.on('drain', more)
      more()
    } else {
      response.writeHead(200, { 'content-type': 'application/json', 'docker-content-digest': `sha256:${'0'.repeat(64)}` }).end('[1, 2]')
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const ref = refOf(`127.0.0.1:${port}/x/web:1`)
  const credentials = reader({ [`127.0.0.1:${port}`]: { username: 'u', password: 'secret' } })

  t.match(await credentials.read(ref, LINUX).then(() => null, (error: unknown) => error), { code: 'engine_error', message: /answered 401/ }, 'a link-local realm is not asked')
  mode = 'own-realm'
  t.match(await credentials.read(ref, LINUX).then(() => null, (error: unknown) => error), { code: 'engine_error', message: /answered 401/ })
  t.same(realmHits.map(hit => hit.split('?')[0]), ['/token-elsewhere'], 'a plain-HTTP registry may name a plain-HTTP realm on its own machine; nothing else was asked')
  mode = 'endless'
  t.match(await reader().read(ref, LINUX).then(() => null, (error: unknown) => error), { code: 'engine_error', message: /more than berth reads/ }, 'an endless answer is cut off, not buffered')
  mode = 'array'
  t.match(await reader().read(ref, LINUX).then(() => null, (error: unknown) => error), { code: 'engine_error', message: /not a JSON object/ })
})
