// docker pull, docker images, docker image inspect and docker history on a real Kubernetes cluster
// (BERTH_TEST_KUBECONFIG; skipped without one), through berth's HTTP API: a pull goes onto every
// eligible node (a short-lived pod per node) and says how each node went, in the answer, the stream
// and a pull job; the list is what the nodes report holding, with what the registry says of each
// (when it was made, its labels), an image's id its manifest digest, as its containers report it.
// rmi is 501 saying why (the kubelet's garbage collection), and nothing is left in the namespace.
import t from 'tap'
import { RUN, auth, runBody, waitFor } from './helpers.ts'
import { KUBE_SKIP, admin, berthIdentity, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'

if (kubeEnv === null) {
  t.test('kubernetes images', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const { core } = admin as NonNullable<typeof admin>
  const encoded = (reference: string): string => encodeURIComponent(reference)

  t.test('docker pull onto the nodes, docker images, inspect and history: each from what the nodes and the registry say', async t => {
    const namespace = await namespaceFor(t, 'img')
    const app = await buildKube(t, { namespace })
    const nodes = (await core.listNode()).items.map(node => node.metadata?.name ?? '').sort()

    const pulled = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: cluster.image } })
    t.equal(pulled.statusCode, 200, pulled.body)
    const image = pulled.json()
    t.match(image, { reference: cluster.image, digest: /^sha256:[0-9a-f]{64}$/ })
    t.equal(image.id, image.digest, 'on Kubernetes an image is known by its manifest digest')
    t.same(image.nodes, nodes.map(node => ({ node, state: 'pulled', reason: null, detail: null })), 'every node has it')
    t.ok(image.tags.includes(cluster.image), 'its tag as the nodes name it')
    t.same(await leftoversIn(namespace), [], 'no puller pod or pull secret is left')

    const listed = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })
    t.equal(listed.statusCode, 200, listed.body)
    const entry = (listed.json() as Array<{ id: string }>).find(candidate => candidate.id === image.id) as Record<string, unknown> | undefined
    t.ok(entry, 'the pulled image is listed')
    t.match(entry, { tags: [cluster.image], digests: [`${cluster.image.replace(/:[^:/]+$/, '')}@${image.digest as string}`], nodes, containers: 0, size: Number })
    t.ok(Date.parse(entry?.createdAt as string) > Date.parse('2000-01-01'), 'when it was made, from the registry')

    const narrowed = await app.inject({ method: 'GET', url: `/v1/images?reference=${encoded(cluster.image.replace(/\/[^/]+:[^:/]+$/, '/*'))}`, headers: auth('alice') })
    t.ok((narrowed.json() as Array<{ id: string }>).some(candidate => candidate.id === image.id), 'a reference pattern finds it')
    const other = await app.inject({ method: 'GET', url: '/v1/images?reference=nothing-like-it%2A', headers: auth('alice') })
    t.same(other.json(), [], 'and one that names nothing finds nothing')
    const dangling = await app.inject({ method: 'GET', url: '/v1/images?dangling=true', headers: auth('alice') })
    t.notOk((dangling.json() as Array<{ id: string }>).some(candidate => candidate.id === image.id), 'a tagged image is not dangling')

    // As docker takes ids: the whole digest, or 12 hex digits of it and more, with or without sha256:.
    for (const reference of [cluster.image, image.id, (image.id as string).slice(7, 19), (image.id as string).slice(0, 20), `${cluster.image.replace(/:[^:/]+$/, '')}@${image.digest as string}`]) {
      const inspected = await app.inject({ method: 'GET', url: `/v1/images/${encoded(reference)}`, headers: auth('alice') })
      t.equal(inspected.statusCode, 200, `${reference}: ${inspected.body}`)
      const details = inspected.json()
      t.match(details, { id: image.id, os: 'linux', architecture: String, nodes, usedBy: [] })
      t.ok(details.history.length > 0, 'its history, from the registry')
      t.match(details.history[0], { id: image.id, tags: [cluster.image], createdBy: String, size: Number })
    }
    const missing = await app.inject({ method: 'GET', url: `/v1/images/${encoded(`${cluster.image}-not-here`)}`, headers: auth('alice') })
    t.equal(missing.statusCode, 404)
    t.equal(missing.json().code, 'image_not_found')

    // A container of it counts as a user, by the same id.
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.image, name: `${RUN}-user`, command: ['sleep', '600'], stopTimeout: 1, restart: { policy: 'always' } }) })
    t.equal(run.statusCode, 201, run.body)
    await waitFor('the container to report its image', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${run.json().id as string}`, headers: auth('alice') })).json().imageId, id => id === image.id, 60_000)
    const used = await app.inject({ method: 'GET', url: `/v1/images/${encoded(cluster.image)}`, headers: auth('alice') })
    t.same(used.json().usedBy.map((user: { name: string }) => user.name), [`${RUN}-user`])
    const counted = (await app.inject({ method: 'GET', url: '/v1/images', headers: auth('alice') })).json() as Array<{ id: string, containers: number }>
    t.equal(counted.find(candidate => candidate.id === image.id)?.containers, 1)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${run.json().id as string}?force=true`, headers: auth('alice') })).statusCode, 204)

    const removed = await app.inject({ method: 'DELETE', url: `/v1/images/${encoded(cluster.image)}`, headers: auth('admin') })
    t.equal(removed.statusCode, 501)
    t.match(removed.json(), { code: 'not_supported', backend: 'kubernetes', detail: /garbage collection/ })
    t.same(await leftoversIn(namespace), [])
  })

  t.test('a pull streamed and as a job says each node as it goes; a failed pull says why on each node and leaves nothing', async t => {
    const namespace = await namespaceFor(t, 'imgs')
    const app = await buildKube(t, { namespace })
    const nodes = (await core.listNode()).items.map(node => node.metadata?.name ?? '').sort()

    const streamed = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('alice'), accept: 'application/x-ndjson' }, payload: { image: cluster.image } })
    t.equal(streamed.statusCode, 200)
    const events = streamed.body.trim().split('\n').map(line => JSON.parse(line) as { type: string, node?: string, state?: string })
    t.same(events.filter(event => event.type === 'node').map(event => [event.node, event.state]), nodes.map(node => [node, 'pulled']), 'each node as it finished')
    t.equal(events.at(-1)?.type, 'pulled', 'then the image')

    const started = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('alice'), payload: { image: cluster.image } })
    t.equal(started.statusCode, 202, started.body)
    const job = await waitFor('the pull job to end', async () => (await app.inject({ method: 'GET', url: started.headers.location as string, headers: auth('alice') })).json(), body => ['succeeded', 'failed', 'cancelled'].includes(body.state), 60_000)
    t.match(job, { state: 'succeeded', result: { nodes: nodes.map(node => ({ node, state: 'pulled' })) } })

    // A node pulls for its own platform: one the nodes all have is honoured, another is refused by name.
    const node = (await core.listNode()).items[0]?.status?.nodeInfo
    const own = `${node?.operatingSystem ?? ''}/${node?.architecture ?? ''}`
    const same = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: cluster.image, platform: own } })
    t.equal(same.statusCode, 200, same.body)
    const other = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: cluster.image, platform: own === 'linux/arm64' ? 'linux/amd64' : 'linux/arm64' } })
    t.equal(other.statusCode, 501, other.body)
    t.match(other.json(), { code: 'not_supported', detail: /^platform: / })

    const missing = cluster.image.replace(/:[^:/]+$/, '-missing:1')
    const failed = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: missing } })
    t.equal(failed.statusCode, 404, failed.body)
    t.match(failed.json(), { code: 'image_not_found', nodes: nodes.map(node => ({ node, state: 'failed', reason: 'not_found' })) })

    // Credentials go to the nodes as a pull secret of the pull's own, gone when it is done.
    const withAuth = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('alice'), payload: { image: cluster.image, auth: { username: 'someone', password: 'not-needed-here' } } })
    t.equal(withAuth.statusCode, 200, withAuth.body)
    t.same(await leftoversIn(namespace), [], 'no puller pod or pull secret is left')
  })

  t.test('without the node reader, images are 501 saying which ClusterRole to grant', async t => {
    const identity = await berthIdentity(t, 'noimg')
    const app = await buildKube(t, { namespace: identity.tenants, token: identity.token })
    for (const request of [{ method: 'GET', url: '/v1/images' }, { method: 'POST', url: '/v1/images/pull', payload: { image: cluster.image } }] as const) {
      const refused = await app.inject({ ...request, headers: auth('alice') })
      t.equal(refused.statusCode, 501, `${request.method} ${request.url}`)
      t.match(refused.json(), { code: 'not_supported', detail: /nodes-reader\.yaml/ })
    }
    t.same(await leftoversIn(identity.tenants), [])
  })
}
