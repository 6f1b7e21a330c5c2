// Issue 15, reproducing: a container as a run request, pinned by digest; runs by digest that say so,
// and a clear 404 for a digest the registry does not have; and the round trip — build, push, remove
// locally, run from the spec on a second berth with another engine — to the same digest and behaviour.
import t from 'tap'
import { RUN, RUN_LABEL, auth, build, cleanupAfter, docker, env, fetchFromContainer, waitFor } from './helpers.ts'
import { builderAuth, cleanupBuilds, tarOf, withBuilders } from './build-helpers.ts'
import { PrivateEngine } from './private-engine.ts'

cleanupAfter(t)
cleanupBuilds(t)

// dockerd 20.10 may bind an engine-chosen port on IPv4 and IPv6 as two different ports.
function ipv4Port (ports: Array<{ host: number, hostIp: string }>): number {
  return (ports.find(port => !port.hostIp.includes(':')) as { host: number }).host
}

t.test('build, push, remove locally, run from the spec on another berth with another engine: same digest, same behaviour', async t => {
  const here = await build(t, withBuilders())
  const repository = `${env.registry}/default/builder/${RUN}-trip/app`
  const tag = `${repository}:1`
  const built = await here.inject({
    method: 'POST',
    url: `/v1/images/build?tag=${encodeURIComponent(tag)}&label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`,
    headers: { ...builderAuth('builder'), 'content-type': 'application/x-tar' },
    payload: tarOf({
      Dockerfile: 'FROM berth-test/busybox:1\nCOPY site /srv\nRUN echo "built for $RUN_ID" >> /srv/index.html\nENV GREETING=hello\n' +
        'CMD ["sh", "-c", "echo $GREETING $MODE; exec httpd -f -p 80 -h /srv"]\n',
      'site/index.html': `trip ${RUN}\n`
    }).subarray(0)
  })
  t.equal(built.statusCode, 200)
  const pushed = await here.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag } })
  t.equal(pushed.statusCode, 200)
  const digest = pushed.json().digest as string

  const run = await here.inject({
    method: 'POST',
    url: '/v1/containers',
    headers: auth('alice'),
    payload: {
      image: tag,
      name: `${RUN}-original`,
      env: { MODE: 'reproduced', API_TOKEN: 'alice-only-secret' },
      ports: [{ container: 80 }],
      labels: { team: 'ml', [RUN_LABEL]: RUN },
      resources: { memory: 64 * 1024 * 1024 },
      restart: { policy: 'on-failure', maxRetries: 2 }
    }
  })
  t.equal(run.statusCode, 201)
  t.equal(run.json().imageDigest, digest, 'a pushed image is run with its digest known')
  const original = await fetchFromContainer(ipv4Port(run.json().ports))

  const specResponse = await here.inject({ method: 'GET', url: `/v1/containers/${RUN}-original/spec`, headers: auth('alice') })
  t.equal(specResponse.statusCode, 200)
  const spec = specResponse.json()
  t.same(spec, {
    run: {
      image: `${repository}@${digest}`,
      env: { API_TOKEN: 'alice-only-secret', MODE: 'reproduced' },
      // The run label came with the image (the build set it): left to the image.
      labels: { team: 'ml' },
      ports: [{ container: 80, protocol: 'tcp' }],
      restart: { policy: 'on-failure', maxRetries: 2 },
      resources: { memory: 64 * 1024 * 1024 },
      // The run body's defaults, spelled out by the schema.
      replicas: 1,
      autoRemove: false,
      tty: false,
      pull: 'missing'
    },
    image: { id: built.json().id, digest, pinned: true },
    redactedEnv: []
  }, 'only what the run set, the image pinned, none of berth\'s labels nor the image\'s own')
  const admins = await here.inject({ method: 'GET', url: `/v1/containers/${RUN}-original/spec`, headers: auth('admin') })
  t.same(admins.json().run.env, { API_TOKEN: '', MODE: '' }, 'an admin sees the names, not the values')
  t.same(admins.json().redactedEnv, ['API_TOKEN', 'MODE'])
  t.equal((await here.inject({ method: 'GET', url: `/v1/containers/${RUN}-original/spec`, headers: auth('bob') })).statusCode, 404, "bob does not see alice's container")

  // Nothing of it is left on this engine, and the second berth's engine never had it.
  await docker.getContainer(run.json().id).remove({ force: true })
  await docker.getImage(tag).remove({ force: true })
  await t.rejects(docker.getImage(`${repository}@${digest}`).inspect(), 'the image is gone from this engine')

  const engine = new PrivateEngine()
  t.teardown(() => engine.dispose())
  await engine.start()
  const elsewhere = await build(t, { ...withBuilders(), socketPath: engine.socketPath })
  const again = await elsewhere.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: spec.run })
  t.equal(again.statusCode, 201, again.body)
  const reproduced = again.json()
  t.equal(reproduced.image, `${repository}@${digest}`)
  t.equal(reproduced.imageDigest, digest, 'it says it runs exactly that image')
  t.equal(reproduced.imageId, built.json().id, 'the very image: the same id on another engine')
  t.same(reproduced.resources, { memory: 64 * 1024 * 1024, cpus: null })
  t.same(reproduced.restart, { policy: 'on-failure', maxRetries: 2 })
  t.equal(await fetchFromContainer(ipv4Port(reproduced.ports)), original, 'it serves the same content')
  t.match(original, `trip ${RUN}`)
  const logs = await waitFor('the greeting', async () => (await elsewhere.inject({ method: 'GET', url: `/v1/containers/${reproduced.id}/logs`, headers: auth('alice') })).body, body => body.includes('hello'))
  t.match(logs, 'hello reproduced', 'the same environment: the image\'s own and the run\'s')
  const respec = await elsewhere.inject({ method: 'GET', url: `/v1/containers/${reproduced.id}/spec`, headers: auth('alice') })
  t.same(respec.json().run, spec.run, 'and its spec is the same spec')

  const gone = `${repository}@sha256:${'0'.repeat(64)}`
  const missing = await elsewhere.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: { image: gone } })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { code: 'image_not_found', digest: `sha256:${'0'.repeat(64)}`, detail: /has no image .*@sha256:0{64} \(it may have been deleted\); nothing else is run in its place/ })
  await elsewhere.inject({ method: 'DELETE', url: `/v1/containers/${reproduced.id}?force=true`, headers: auth('alice') })
})

t.test('a spec of an image never pushed is not pinned, and says so; volumes, command, user and tty come along', async t => {
  const app = await build(t, withBuilders())
  // Not the shared test image: other suites push it, and the spec would then pin it to one of those digests.
  const local = `berth-test/${RUN}-local:1`
  const built = await app.inject({
    method: 'POST',
    url: `/v1/images/build?tag=${encodeURIComponent(local)}&label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`,
    headers: { ...builderAuth('builder'), 'content-type': 'application/x-tar' },
    payload: tarOf({ Dockerfile: `FROM berth-test/busybox:1\nLABEL never-pushed=${RUN}\n` })
  })
  t.equal(built.statusCode, 200)
  const run = await app.inject({
    method: 'POST',
    url: '/v1/containers',
    headers: auth('alice'),
    payload: {
      image: local,
      name: `${RUN}-local`,
      command: ['sleep', '300'],
      entrypoint: ['/bin/sh', '-c', 'exec "$@"', 'sh'],
      workingDir: '/tmp',
      user: '1000:1000',
      tty: true,
      autoRemove: true,
      volumes: [{ source: `${RUN}-data`, target: '/data', readOnly: true }],
      ports: [{ container: 8080, host: 20000 + Math.floor(Math.random() * 9000), hostIp: '127.0.0.1', protocol: 'udp' }],
      labels: { [RUN_LABEL]: RUN }
    }
  })
  t.equal(run.statusCode, 201, run.body)
  const spec = (await app.inject({ method: 'GET', url: `/v1/containers/${RUN}-local/spec`, headers: auth('alice') })).json()
  t.match(spec, {
    run: {
      image: local,
      command: ['sleep', '300'],
      entrypoint: ['/bin/sh', '-c', 'exec "$@"', 'sh'],
      workingDir: '/tmp',
      user: '1000:1000',
      tty: true,
      autoRemove: true,
      volumes: [{ source: `${RUN}-data`, target: '/data', readOnly: true }],
      ports: [{ container: 8080, protocol: 'udp', hostIp: '127.0.0.1', host: run.json().ports[0].host }]
    },
    image: { digest: null, pinned: false },
    redactedEnv: []
  })
  t.notOk('env' in spec.run)
  t.notOk('restart' in spec.run)
  await app.inject({ method: 'DELETE', url: `/v1/containers/${RUN}-local?force=true`, headers: auth('alice') })
  await docker.getVolume(`${RUN}-data`).remove().catch(() => {})
})
