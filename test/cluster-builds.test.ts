// Builds for a cluster, on the real three-node Swarm: a builder engine (here node1's dockerd, which
// reaches the cluster's registry) builds the image, pushes every tag to the registry the nodes pull
// from, and answers the pushed digest; that digest then runs on the cluster and serves what was
// built. Tag, push and untag act on the builder's store; without a builder they are 501 saying so.
import Docker from 'dockerode'
import t from 'tap'
import { HTTPD, RUN, RUN_LABEL, auth, freePort, runBody } from './helpers.ts'
import { builderAuth, tarOf, withBuilders } from './build-helpers.ts'
import { fetchFrom, holdCluster, swarmBackend, swarmEnv, type SwarmEnv } from './backends.ts'

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const backend = swarmBackend
  const deployment = `builds-${RUN}`
  const builderSocket = cluster.nodeSockets.node1 as string
  const builderEngine = new Docker({ socketPath: builderSocket })
  // maker's push namespace ({deployment}/{token}, the default): on a cluster a build's tags are pushes.
  const path = `${deployment}/maker/site`
  const repository = `${cluster.registry}/${path}`
  const withBuilder = withBuilders({ config: { deployment, builder: { socketPath: builderSocket } } })

  t.before(async () => { await holdCluster(t) })
  t.teardown(async () => {
    await backend.cleanup()
    // What the builds left on the builder: this run's images by their label, and their names.
    for (const image of await builderEngine.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })) {
      for (const tag of image.RepoTags ?? []) await builderEngine.getImage(tag).remove().catch(() => {})
      await builderEngine.getImage(image.Id).remove().catch(() => {})
    }
  })

  const context = (page: string): Buffer => tarOf({
    Dockerfile: `FROM ${cluster.image}\nLABEL ${RUN_LABEL}=${RUN}\nCOPY index.html /www/index.html\n`,
    'index.html': page
  })

  t.test('a build on the cluster pushes its tags and runs by digest on the nodes', async t => {
    const app = await backend.build(t, withBuilder)
    const page = `built for the cluster by ${RUN}`
    const built = await app.inject({
      method: 'POST',
      url: `/v1/images/build?tag=${encodeURIComponent(`${repository}:1`)}&tag=${encodeURIComponent(`${repository}:latest`)}`,
      headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' },
      payload: context(page)
    })
    t.equal(built.statusCode, 200, built.body)
    const image = built.json() as { id: string, tags: string[], pushed: Array<{ reference: string, digest: string }> }
    t.same(image.tags, [`${repository}:1`, `${repository}:latest`])
    t.same(image.pushed.map(pushed => pushed.reference), image.tags, 'every tag was pushed')
    t.match(image.pushed[0]?.digest, /^sha256:[0-9a-f]{64}$/)
    t.equal(image.pushed[0]?.digest, image.pushed[1]?.digest, 'one image, one digest under both tags')
    const digest = image.pushed[0]?.digest as string

    // The registry serves that manifest, as the nodes will ask for it.
    const manifest = await fetch(`http://${cluster.registry}/v2/${path}/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } })
    t.equal(manifest.headers.get('docker-content-digest'), digest, 'the registry stored what berth answered')

    const port = await freePort()
    const run = await app.inject({
      method: 'POST',
      url: '/v1/containers',
      headers: builderAuth('maker'),
      payload: runBody({ image: `${repository}@${digest}`, name: `${RUN}-built`, command: HTTPD, stopTimeout: 1, ports: [{ container: 80, host: port }], placement: { constraints: ['node.hostname!=node1'] } })
    })
    t.equal(run.statusCode, 201, run.body)
    const container = run.json()
    t.equal(container.imageDigest, digest, 'the cluster runs the digest the build answered')
    const task = container.tasks[0] as { node: string, address: string }
    t.not(task.node, 'node1', 'on a node that did not build it: it pulled it from the registry')
    t.equal((await fetchFrom(task.address, port)).trim(), page, 'and it serves what was built')
  })

  t.test('tag, push and untag act on the builder\'s store', async t => {
    const app = await backend.build(t, withBuilder)
    const built = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${encodeURIComponent(`${repository}:2`)}`, headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' }, payload: context('two') })
    t.equal(built.statusCode, 200, built.body)
    const tagged = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('maker'), payload: { source: `${repository}:2`, tag: `${repository}:2b` } })
    t.equal(tagged.statusCode, 201, tagged.body)
    t.equal((await builderEngine.getImage(`${repository}:2b`).inspect()).Id, built.json().id, 'the builder has the new name')
    const pushed = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: `${repository}:2b` } })
    t.equal(pushed.statusCode, 200, pushed.body)
    t.equal(pushed.json().digest, built.json().pushed[0].digest, 'the same image, the same digest')
    const untagged = await app.inject({ method: 'POST', url: '/v1/images/untag', headers: builderAuth('maker'), payload: { image: `${repository}:2b` } })
    t.equal(untagged.statusCode, 200, untagged.body)
    t.same(untagged.json().untagged, [`${repository}:2b`])
    const gone = await builderEngine.getImage(`${repository}:2b`).inspect().then(() => null, (error: { statusCode?: number }) => error.statusCode)
    t.equal(gone, 404, 'the name is gone from the builder')
  })

  t.test('a push the registry refuses fails the build, naming the image it keeps on the builder', async t => {
    const app = await backend.build(t, withBuilder)
    // The cluster's registry with htpasswd: the builder has no credentials for it.
    const refused = `${cluster.authRegistry}/${path}:1`
    const built = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${encodeURIComponent(refused)}`, headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' }, payload: context('refused') })
    t.equal(built.statusCode, 502, built.body)
    t.match(built.json(), { code: 'push_failed', reason: 'registry_auth', imageId: /^sha256:/, detail: /push it again with POST \/v1\/images\/push/ })
  })

  t.test('a build\'s tag on a cluster is a push: outside the token\'s namespace it is refused before anything is built', async t => {
    const app = await backend.build(t, withBuilder)
    const outside = `${cluster.registry}/${RUN}/elsewhere:1`
    const before = await builderEngine.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
    const built = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${encodeURIComponent(outside)}`, headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' }, payload: context('outside') })
    t.equal(built.statusCode, 403, built.body)
    t.match(built.json(), { code: 'policy_denied', rule: 'pushNamespace', detail: /may push only to repositories under builds-.*\/maker\// })
    const after = await builderEngine.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
    t.same(after.map(image => image.Id).sort(), before.map(image => image.Id).sort(), 'nothing was built')
    const manifest = await fetch(`http://${cluster.registry}/v2/${RUN}/elsewhere/manifests/1`, { method: 'HEAD' })
    t.equal(manifest.status, 404, 'nothing was pushed')
  })

  t.test('without a builder, builds, tags and pushes on a cluster are 501 naming the setting', async t => {
    const app = await backend.build(t, withBuilders({ config: { deployment } }))
    for (const [method, url, who] of [['POST', '/v1/images/build', 'maker'], ['POST', '/v1/images/tag', 'maker'], ['POST', '/v1/images/push', 'maker'], ['POST', '/v1/images/prune', 'admin'], ['GET', '/v1/system/df', 'admin']] as const) {
      const response = await app.inject({ method, url, headers: who === 'admin' ? auth('admin') : builderAuth(who) })
      t.equal(response.statusCode, 501, `${method} ${url}`)
      t.match(response.json(), { code: 'not_supported', backend: 'swarm', detail: /BERTH_BUILDER/ }, `${method} ${url} says what to set`)
    }
  })
}
