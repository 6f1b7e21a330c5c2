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

// The protocol's other paths, which the test registries do not take on demand (a multi-platform
// index, a token realm, answers of odd shapes): a stand-in registry, said so here.
t.test('a stand-in registry: an index by platform, a Bearer token, Basic, and answers berth refuses', async t => {
  const digest = (c: string): string => `sha256:${c.repeat(64)}`
  const config = { created: '2024-05-06T07:08:09Z', architecture: 'amd64', os: 'linux', config: { Labels: null }, history: [null, { created: 12, created_by: 7, empty_layer: true }, { created_by: 'COPY x /x', comment: 'c' }] }
  const manifest = { schemaVersion: 2, config: { digest: digest('c'), size: 'big' }, layers: [{ digest: digest('d'), size: 40 }] }
  const index = { schemaVersion: 2, manifests: [{ digest: digest('e'), platform: { os: 'linux', architecture: 'arm64' } }, { digest: digest('a'), platform: { os: 'linux', architecture: 'amd64' } }] }
  let auth: 'none' | 'bearer' | 'basic' = 'none'
  const seen: string[] = []
  const server = createHttpServer((request, response) => {
    const url = request.url ?? ''
    seen.push(`${url.split('?')[0] as string} ${request.headers.authorization ?? '-'}`)
    if (url.startsWith('/token')) {
      response.end(JSON.stringify({ token: 'tok' }))
      return
    }
    if (auth === 'bearer' && request.headers.authorization !== 'Bearer tok') {
      response.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="stand-in"` }).end()
      return
    }
    if (auth === 'basic' && request.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
      response.writeHead(401, { 'www-authenticate': 'Basic realm="stand-in"' }).end()
      return
    }
    const send = (body: unknown, headers: Record<string, string> = {}): void => { response.writeHead(200, { 'content-type': 'application/json', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body)) }
    if (url === '/v2/x/multi/manifests/1') send(index, { 'docker-content-digest': digest('b') })
    else if (url === '/v2/x/multi/manifests/2') send({ schemaVersion: 2, manifests: [{ digest: digest('e'), platform: { os: 'windows', architecture: 'amd64' } }] }, { 'docker-content-digest': digest('f') })
    else if (url === '/v2/x/multi/manifests/3') send({ manifests: 'none' }, { 'docker-content-digest': digest('f') })
    else if (url === `/v2/x/multi/manifests/${digest('a')}`) send(manifest)
    else if (url === `/v2/x/multi/blobs/${digest('c')}`) send(config)
    else if (url === '/v2/x/plain/manifests/1') send(manifest)
    else if (url === '/v2/x/noconfig/manifests/1') send({ schemaVersion: 2 }, { 'docker-content-digest': digest('f') })
    else if (url === '/v2/x/text/manifests/1') send('not json at all', { 'docker-content-digest': digest('f') })
    else if (url === '/v2/x/huge/manifests/1') send({}, { 'content-length': String(64 * 1024 * 1024) })
    else response.writeHead(500).end()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const at = (path: string): ImageRef => refOf(`127.0.0.1:${port}/${path}`)
  const failure = async (read: Promise<unknown>): Promise<unknown> => await read.then(() => null, (error: unknown) => error)

  const multi = await reader().read(at('x/multi:1'), LINUX)
  t.same(multi, {
    digest: digest('a'),
    createdAt: '2024-05-06T07:08:09Z',
    architecture: 'amd64',
    os: 'linux',
    labels: {},
    size: 40,
    history: [
      { id: null, createdAt: '2024-05-06T07:08:09Z', createdBy: 'COPY x /x', size: 40, comment: 'c', tags: [] },
      { id: null, createdAt: '2024-05-06T07:08:09Z', createdBy: '', size: 0, comment: '', tags: [] }
    ]
  }, 'the platform\'s own image from the index; what is not of the shape the spec gives is left out or read as unknown')
  t.match(await failure(reader().read(at('x/multi:2'), LINUX)), { code: 'image_not_found', message: /no image for linux\/amd64/ })
  t.match(await failure(reader().read(at('x/multi:3'), LINUX)), { code: 'engine_error', message: /no list of manifests/ })
  t.match(await failure(reader().read(at('x/plain:1'), LINUX)), { code: 'engine_error', message: /did not say the manifest's digest/ })
  t.match(await failure(reader().read(at('x/noconfig:1'), LINUX)), { code: 'engine_error', message: /names no config/ })
  t.match(await failure(reader().read(at('x/text:1'), LINUX)), { code: 'engine_error', message: /not JSON/ })
  t.match(await failure(reader().read(at('x/huge:1'), LINUX)), { code: 'engine_error', message: /more than berth reads/ })
  t.match(await failure(reader().read(at('x/other:1'), LINUX)), { code: 'engine_error', message: /answered 500/ })

  auth = 'bearer'
  seen.length = 0
  const tokenReader = reader({ [`127.0.0.1:${port}`]: { username: 'u', password: 'p' } })
  t.equal((await tokenReader.read(at('x/multi:1'), LINUX)).digest, digest('a'), 'with a Bearer token from the realm')
  t.ok(seen.some(line => line.startsWith('/token Basic ')), 'the realm was asked with the registry\'s credentials')
  seen.length = 0
  await tokenReader.read(at('x/multi:1'), LINUX)
  t.notOk(seen.some(line => line.startsWith('/token')), 'the token is kept for the next read')
  seen.length = 0
  t.equal((await reader().read(at('x/multi:1'), LINUX)).digest, digest('a'), 'an anonymous token, as public registries give them')
  t.ok(seen.some(line => line === '/token -'), 'asked for without credentials')

  auth = 'basic'
  t.equal((await reader({ [`127.0.0.1:${port}`]: { username: 'u', password: 'p' } }).read(at('x/multi:1'), LINUX)).digest, digest('a'), 'Basic, with the credentials')
  t.match(await failure(reader().read(at('x/multi:1'), LINUX)), { code: 'engine_error', message: /answered 401/ }, 'Basic without them')
})
