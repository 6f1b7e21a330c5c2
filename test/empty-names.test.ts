// An empty id or name names nothing. No route sends one (every id and name parameter has a pattern
// that needs a character), so this is the docker parts' own guard: the engine answers a path with an
// empty segment (GET /containers//json) with a redirect that docker-modem follows to a URL it cannot
// parse, thrown where no caller catches it, and the process went down (seen once in the copy's soak).
import t from 'tap'
import { openDocker } from './copy-compare.ts'
import { env } from './helpers.ts'
import { SocketProxy } from './socket-proxy.ts'

t.test('docker parts: an empty id or name is not_found, and the engine is not asked', async t => {
  const proxy = new SocketProxy(env.socket)
  await proxy.start()
  t.teardown(() => proxy.close())
  // Without the copy, so that every read would go to the engine.
  const { backend } = await openDocker(t, proxy.socketPath, { copy: false })
  await backend.info()
  const asked = proxy.requests.length
  const images = backend.part('images')
  const volumes = backend.part('volumes')
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['containers.inspect', async () => await backend.containers.inspect('')],
    ['containers.start', async () => await backend.containers.start('')],
    ['containers.stop', async () => await backend.containers.stop('', {})],
    ['containers.restart', async () => await backend.containers.restart('', {})],
    ['containers.remove', async () => await backend.containers.remove('', { force: true, volumes: false })],
    ['containers.logs', async () => await backend.containers.logs('', { follow: false, timestamps: false })],
    ['images.inspect', async () => await images.inspect('')],
    ['images.history', async () => await images.history('')],
    ['volumes.inspect', async () => await volumes.inspect('')]
  ]
  // An image's is image_not_found, as the engine's own 404 for an image is.
  for (const [what, call] of calls) await t.rejects(call(), { code: what.startsWith('images.') ? 'image_not_found' : 'not_found', statusCode: 404 }, what)
  t.same(proxy.requests.slice(asked), [], 'no request reached the engine')
  // Still answering: nothing was thrown where nobody caught it.
  t.ok((await backend.info()).version, 'the backend still answers')
})
