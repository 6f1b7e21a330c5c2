// What berth reads of an image from its registry (src/engine/registry.ts: the details and history a
// cluster's nodes do not report), against the test environment's real registries: the open one, and
// the one that wants Basic credentials. Checked against what the engine itself says of the image.
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
