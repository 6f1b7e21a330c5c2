// docker pull / images / image inspect / rmi through berth, against the real engine and registry.
import t from 'tap'
import { RUN, assertProblem, auth, build, cleanupAfter, docker, env, imageExists, name, pushImage, runContainer } from './helpers.ts'

cleanupAfter(t)

const enc = encodeURIComponent

t.test('pull by tag: a real pull over the registry protocol, answering id, digest and tags', async t => {
  const app = await build(t)
  const { reference, digest } = await pushImage('bytag')
  const pull = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  t.equal(pull.statusCode, 200, pull.body)
  const engineImage = await docker.getImage(reference).inspect()
  const { tags, ...pulled } = pull.json() as { tags: string[] }
  t.same(pulled, { id: engineImage.Id, reference, digest })
  // The test image's id also carries the tags of other suites and runs, which come and go as they
  // run: of this run's tags, the reply holds exactly the one pulled.
  t.same(tags.filter(tag => tag.includes(RUN)), [reference], 'the tags of the image include the one pulled')
})

t.test('pull without a tag means latest, never every tag', async t => {
  const app = await build(t)
  const { reference } = await pushImage('notag', { tag: 'latest' })
  const other = await pushImage('notag', { tag: 'other' })
  const repository = reference.slice(0, reference.lastIndexOf(':'))
  const pull = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: repository } })
  t.equal(pull.statusCode, 200, pull.body)
  t.equal(pull.json().reference, `${repository}:latest`)
  t.ok(await imageExists(`${repository}:latest`))
  t.notOk(await imageExists(other.reference), 'the other tag was not pulled')
})

t.test('pull by digest', async t => {
  const app = await build(t)
  const { reference, digest } = await pushImage('bydigest')
  const repository = reference.slice(0, reference.lastIndexOf(':'))
  const pull = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: `${repository}@${digest}` } })
  t.equal(pull.statusCode, 200, pull.body)
  t.equal(pull.json().digest, digest)
  t.equal(pull.json().reference, `${repository}@${digest}`)
})

t.test('pull failures: unknown repository or tag is 404 image_not_found; an unreachable registry is pull_failed', async t => {
  const app = await build(t)
  const missingRepo = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: `${env.registry}/${RUN}-nothing/web:1` } })
  assertProblem(t, missingRepo, 404, { code: 'image_not_found', detail: `image ${env.registry}/${RUN}-nothing/web:1 was not found`, image: `${env.registry}/${RUN}-nothing/web:1` }, 'an unknown repository')
  const { reference } = await pushImage('tags')
  const missingTag = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference.replace(/:1$/, ':2') } })
  assertProblem(t, missingTag, 404, { code: 'image_not_found', detail: `image ${reference.replace(/:1$/, ':2')} was not found`, image: reference.replace(/:1$/, ':2') }, 'an unknown tag')
  const unreachable = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: `127.0.0.1:1/${RUN}/web:1` } })
  assertProblem(t, unreachable, 502, { code: 'pull_failed', detail: `pulling 127.0.0.1:1/${RUN}/web:1 failed: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`, reason: 'registry_unreachable', image: `127.0.0.1:1/${RUN}/web:1` }, 'an unreachable registry')
  const byId = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: 'sha256:' + 'a'.repeat(64) } })
  assertProblem(t, byId, 400, {
    code: 'validation_failed',
    detail: 'body/image must be a reference (repo[:tag] or repo@digest): an image id cannot be pulled',
    errors: [{ location: 'body', path: '/image', message: 'must be a reference (repo[:tag] or repo@digest): an image id cannot be pulled' }]
  }, 'an image id')
  const badPlatform = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference, platform: 'linux' } })
  assertProblem(t, badPlatform, 400, {
    code: 'validation_failed',
    detail: /^body\/platform must match pattern "/,
    errors: [{ location: 'body', path: '/platform', message: /^must match pattern "/ }]
  }, 'a platform without its architecture')
})

t.test('list images with filters, inspect by encoded reference or id', async t => {
  const app = await build(t)
  const { reference, digest } = await pushImage('list')
  const repository = reference.slice(0, reference.lastIndexOf(':'))
  await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth(), payload: { image: reference } })
  const all = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('reader') })
  t.equal(all.statusCode, 200)
  const listed = all.json().find((image: { tags: string[] }) => image.tags.includes(reference))
  t.match(listed, { id: /^sha256:[a-f0-9]{64}$/, size: Number, createdAt: String, labels: {} })
  t.ok(listed.digests.includes(`${repository}@${digest}`), 'the pulled digest is listed')
  // The engine's reference filter narrows the tags and digests shown to those matching the reference.
  const filtered = await app.inject({ method: 'GET', url: `/v1/images?reference=${enc(reference)}`, headers: auth('reader') })
  t.same(filtered.json().map((image: { id: string, tags: string[], digests: string[] }) => [image.id, image.tags, image.digests]), [[listed.id, [reference], []]])
  const noneDangling = await app.inject({ method: 'GET', url: `/v1/images?reference=${enc(reference)}&dangling=true`, headers: auth() })
  t.same(noneDangling.json(), [])
  const byLabel = await app.inject({ method: 'GET', url: `/v1/images?label=${enc('no.such.label=x')}`, headers: auth() })
  t.same(byLabel.json(), [])

  const inspect = await app.inject({ method: 'GET', url: `/v1/images/${enc(reference)}`, headers: auth('reader') })
  t.equal(inspect.statusCode, 200, inspect.body)
  t.match(inspect.json(), { id: filtered.json()[0].id, architecture: String, os: 'linux' })
  const byId = await app.inject({ method: 'GET', url: `/v1/images/${inspect.json().id}`, headers: auth() })
  t.equal(byId.json().id, inspect.json().id)
  const shortId = await app.inject({ method: 'GET', url: `/v1/images/${inspect.json().id.slice(7, 19)}`, headers: auth() })
  t.equal(shortId.json().id, inspect.json().id)
  const missing = await app.inject({ method: 'GET', url: `/v1/images/${enc(`${env.registry}/${RUN}-nope/web:1`)}`, headers: auth() })
  assertProblem(t, missing, 404, { code: 'image_not_found', detail: `image ${env.registry}/${RUN}-nope/web:1 was not found`, image: `${env.registry}/${RUN}-nope/web:1` }, 'inspect of an image the engine does not have')
})

t.test('remove an image: 409 image_in_use while a container uses it, force removes; admin only', async t => {
  const app = await build(t)
  const { reference, digest } = await pushImage('rmi')
  const repository = reference.slice(0, reference.lastIndexOf(':'))
  const run = await runContainer(app, 'admin', { image: reference, name: name('rmi') })
  t.equal(run.statusCode, 201, run.body)
  // The test image id is shared with other tags, so remove by reference: that untags it.
  await docker.getImage(env.image).tag({ repo: `${env.registry}/${RUN}-rmi/web`, tag: 'only' })
  const inUse = await app.inject({ method: 'DELETE', url: `/v1/images/${run.json().imageId}`, headers: auth() })
  assertProblem(t, inUse, 409, { code: 'image_in_use', detail: new RegExp(`^image ${run.json().imageId} is in use: conflict: unable to delete `), image: run.json().imageId }, 'rmi of an image a container uses')
  const untag = await app.inject({ method: 'DELETE', url: `/v1/images/${enc(reference)}`, headers: auth() })
  t.equal(untag.statusCode, 200, untag.body)
  // Another tag of the repository (:only) remains, so the engine keeps its digest reference.
  t.same(untag.json(), { untagged: [reference], deleted: [] })
  t.notOk(await imageExists(reference))
  const again = await app.inject({ method: 'DELETE', url: `/v1/images/${enc(reference)}`, headers: auth() })
  assertProblem(t, again, 404, { code: 'image_not_found', detail: `image ${reference} was not found`, image: reference }, 'rmi of a tag already removed')
  const forced = await app.inject({ method: 'DELETE', url: `/v1/images/${enc(`${env.registry}/${RUN}-rmi/web:only`)}?force=true`, headers: auth() })
  t.equal(forced.statusCode, 200, forced.body)
  t.same(forced.json(), { untagged: [`${repository}:only`, `${repository}@${digest}`], deleted: [] }, 'the last tag of the repository goes with its digest reference; the image, shared, stays')
  t.ok(await imageExists(env.image), 'the shared test image is untouched: only a tag went')
})
