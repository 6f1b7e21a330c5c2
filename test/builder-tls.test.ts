// A cluster's builder reached over TCP with TLS, as on Kubernetes (deploy/kubernetes/builder.yaml):
// a private dockerd listening on 127.0.0.1 with --tlsverify, berth holding a client certificate of
// its CA. A build goes through and is pushed; a certificate of another CA is refused by the engine,
// and berth says the builder cannot be reached rather than failing itself.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { configFromEnv } from '../src/config.ts'
import { RUN, auth, env, freePort } from './helpers.ts'
import { builderAuth, tarOf, withBuilders } from './build-helpers.ts'
import { swarmBackend } from './backends.ts'
import { PrivateEngine, makeCertificates } from './private-engine.ts'

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const backend = swarmBackend

  t.test('builds, tags and pushes through a builder over TLS', async t => {
    const port = await freePort()
    const engine = new PrivateEngine({ tcp: { port, tls: true } })
    t.teardown(() => engine.dispose())
    await engine.start()
    const builder = configFromEnv({ BERTH_TOKENS: 'x:read:0123456789abcdef', BERTH_BUILDER: `tcp://127.0.0.1:${port}`, BERTH_BUILDER_CERT_PATH: engine.certs }).builder
    t.match(builder, { host: '127.0.0.1', port, tls: { ca: Buffer, cert: Buffer, key: Buffer } })
    const app = await backend.build(t, withBuilders({ config: { deployment: `tls-${RUN}`, builder } }))
    // In maker's push namespace ({deployment}/{token}): on a cluster a build's tags are pushes.
    const tag = `${env.registry}/tls-${RUN}/maker/tls:1`
    const built = await app.inject({
      method: 'POST',
      url: `/v1/images/build?tag=${encodeURIComponent(tag)}`,
      headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' },
      payload: tarOf({ Dockerfile: 'FROM scratch\nCOPY hello.txt /hello.txt\n', 'hello.txt': `built over TLS by ${RUN}\n` })
    })
    t.equal(built.statusCode, 200, built.body)
    t.match(built.json(), { id: /^sha256:/, tags: [tag], pushed: [{ reference: tag, digest: /^sha256:[0-9a-f]{64}$/ }] })
    const manifest = await fetch(`http://${env.registry}/v2/tls-${RUN}/maker/tls/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } })
    t.equal(manifest.headers.get('docker-content-digest'), built.json().pushed[0].digest, 'the registry has what the builder pushed')
    const df = await app.inject({ method: 'GET', url: '/v1/system/df', headers: auth('admin') })
    t.equal(df.statusCode, 200, 'disk usage is the builder\'s')
    t.equal(df.json().images.count, 1, 'the private builder holds the one image it built')
  })

  t.test('a client certificate of another CA is refused by the engine: berth answers 503, not a fault', async t => {
    const port = await freePort()
    const engine = new PrivateEngine({ tcp: { port, tls: true } })
    t.teardown(() => engine.dispose())
    await engine.start()
    const stranger = mkdtempSync(join(tmpdir(), 'berth-stranger-'))
    t.teardown(() => rmSync(stranger, { recursive: true, force: true }))
    makeCertificates(stranger)
    const builder = configFromEnv({ BERTH_TOKENS: 'x:read:0123456789abcdef', BERTH_BUILDER: `tcp://127.0.0.1:${port}`, BERTH_BUILDER_CERT_PATH: stranger }).builder
    const app = await backend.build(t, withBuilders({ config: { deployment: `tls-${RUN}`, builder } }))
    const built = await app.inject({
      method: 'POST',
      url: `/v1/images/build?tag=${encodeURIComponent(`${env.registry}/tls-${RUN}/maker/tls:2`)}`,
      headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' },
      payload: tarOf({ Dockerfile: 'FROM scratch\nCOPY hello.txt /hello.txt\n', 'hello.txt': 'never built\n' })
    })
    t.equal(built.statusCode, 503, built.body)
    t.equal(built.json().code, 'engine_unavailable')
  })
}
