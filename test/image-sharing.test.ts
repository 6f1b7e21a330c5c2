// Issue 15, sharing: tag and untag with names that belong to their builder, push to the local
// registries with and without credentials (digest checked against the registry itself), inspect with
// history and users, list with use counts, and the admin's prune and disk usage.
import t from 'tap'
import { LogCapture, RUN, RUN_LABEL, assertNoFaults, assertProblem, auth, build, cleanupAfter, docker, env, imageExists } from './helpers.ts'
import { builderAuth, cleanupBuilds, imageName, tarOf, withBuilders } from './build-helpers.ts'

cleanupAfter(t)
cleanupBuilds(t)
const LABEL = `label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`

type App = Awaited<ReturnType<typeof build>>

async function buildAs (app: App, who: 'builder' | 'maker', tag: string, dockerfile: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${encodeURIComponent(tag)}&${LABEL}`, headers: { ...builderAuth(who), 'content-type': 'application/x-tar' }, payload: tarOf({ Dockerfile: dockerfile }) })
  if (response.statusCode !== 200) throw new Error(`build of ${tag} answered ${response.statusCode}: ${response.body}`)
  return response.json().id
}

function ndjson (body: string): Array<Record<string, any>> {
  return body.split('\n').filter(Boolean).map(line => JSON.parse(line))
}

/** What the registry itself says the manifest digest of repository:tag is. */
async function registryDigest (registry: string, repository: string, tag: string, credentials?: string): Promise<string | null> {
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json', ...(credentials ? { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } : {}) }
  })
  return response.headers.get('docker-content-digest')
}

t.test('tag and untag: any image may get a free name; a taken name is its builder\'s (or an admin\'s)', async t => {
  const app = await build(t, withBuilders())
  const original = imageName('tagged')
  const id = await buildAs(app, 'builder', original, `FROM berth-test/busybox:1\nRUN echo ${RUN}-tagged > /t\n`)
  const second = imageName('tagged', '2')
  const tagged = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('builder'), payload: { source: original, tag: second } })
  t.equal(tagged.statusCode, 201)
  t.same(tagged.json(), { id, tag: second })
  t.equal((await docker.getImage(second).inspect()).Id, id)
  const byId = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('maker'), payload: { source: id.slice(7, 19), tag: imageName('makers') } })
  t.equal(byId.statusCode, 201, 'another token may give it a free name of its own, naming it by short id')

  const taken = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('maker'), payload: { source: env.image, tag: original } })
  t.equal(taken.statusCode, 403)
  t.match(taken.json(), { code: 'policy_denied', rule: 'imageNames' })
  const shared = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('builder'), payload: { source: original, tag: env.image } })
  t.match(shared.json(), { code: 'policy_denied', rule: 'imageNames' }, 'the shared test image keeps its name')
  t.equal((await docker.getImage(env.image).inspect()).Id === id, false)

  const untagOthers = await app.inject({ method: 'POST', url: '/v1/images/untag', headers: builderAuth('maker'), payload: { image: second } })
  t.equal(untagOthers.statusCode, 403)
  const untagged = await app.inject({ method: 'POST', url: '/v1/images/untag', headers: builderAuth('builder'), payload: { image: second } })
  t.equal(untagged.statusCode, 200)
  t.same(untagged.json(), { untagged: [second], deleted: [] }, 'the image stays: it has other names')
  t.notOk(await imageExists(second))
  t.ok(await imageExists(original))

  const cases: Array<[string, string, Record<string, unknown>, number, string]> = [
    ['a missing source', '/v1/images/tag', { source: imageName('nothere'), tag: imageName('x') }, 404, 'image_not_found'],
    ['a digest as the new name', '/v1/images/tag', { source: original, tag: `busybox@sha256:${'a'.repeat(64)}` }, 400, 'validation_failed'],
    ['an invalid name', '/v1/images/tag', { source: original, tag: 'Not Valid' }, 400, 'validation_failed'],
    ['untag of a name nobody has', '/v1/images/untag', { image: imageName('nothere') }, 404, 'image_not_found'],
    ['untag of an id', '/v1/images/untag', { image: id }, 400, 'validation_failed']
  ]
  for (const [what, url, payload, status, code] of cases) {
    const response = await app.inject({ method: 'POST', url, headers: builderAuth('builder'), payload })
    t.equal(response.statusCode, status, what)
    t.equal(response.json().code, code, what)
  }
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/tag', headers: auth('alice'), payload: { source: original, tag: imageName('y') } })).statusCode, 403, 'write is not build')
})

t.test('push: the digest the registry stored, streamed like a pull; the repository digest is then on the image', async t => {
  const app = await build(t, withBuilders())
  const repository = `default/builder/${RUN}-pushed/app`
  const tag = `${env.registry}/${repository}:1`
  const id = await buildAs(app, 'builder', tag, `FROM berth-test/busybox:1\nRUN echo ${RUN}-pushed > /p\n`)
  const pushed = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag } })
  t.equal(pushed.statusCode, 200)
  const result = pushed.json()
  t.match(result, { reference: tag, digest: /^sha256:[a-f0-9]{64}$/, size: Number })
  t.equal(await registryDigest(env.registry, repository, '1'), result.digest, 'the registry holds exactly that manifest')
  const inspected = await app.inject({ method: 'GET', url: `/v1/images/${encodeURIComponent(tag)}`, headers: auth() })
  t.ok(inspected.json().digests.includes(`${env.registry}/${repository}@${result.digest}`), 'the image now has its repository digest')
  t.equal(inspected.json().id, id)

  const second = `${env.registry}/${repository}:2`
  await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('builder'), payload: { source: tag, tag: second } })
  const streamed = await app.inject({ method: 'POST', url: '/v1/images/push', headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' }, payload: { image: second } })
  t.equal(streamed.statusCode, 200)
  const events = ndjson(streamed.body)
  // The registry has every layer: the engine uploads none again. (It says "Layer already exists"
  // for some, or nothing at all for layers it remembers pushing: that varies with the engine's state.)
  const phases = events.filter(e => e.type === 'progress').map(e => e.layer.phase)
  t.notOk(phases.includes('pushing'), `no layer is uploaded again (phases: ${phases.join(', ') || 'none'})`)
  t.ok(phases.every(phase => ['preparing', 'waiting', 'exists', 'mounted', 'pushed'].includes(phase)), 'every layer reported is one the registry has')
  t.same(events.at(-1), { type: 'pushed', image: { reference: second, digest: result.digest, size: result.size } }, 'the same image, the same digest')
  const sse = await app.inject({ method: 'POST', url: '/v1/images/push', headers: { ...builderAuth('builder'), accept: 'text/event-stream' }, payload: { image: second } })
  t.match(sse.body, /data: \{"type":"pushed"/)
})

t.test('push credentials: none to the auth registry is push_failed registry_auth; per request or from the server file it works', async t => {
  const app = await build(t, withBuilders())
  const repository = `default/builder/${RUN}-private/app`
  const tag = `${env.authRegistry}/${repository}:1`
  await buildAs(app, 'builder', tag, `FROM berth-test/busybox:1\nRUN echo ${RUN}-private > /p\n`)
  const denied = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag } })
  t.equal(denied.statusCode, 502)
  t.match(denied.json(), { code: 'push_failed', reason: 'registry_auth', image: tag, detail: /no basic auth credentials|unauthorized|authentication required/ })
  const streamed = await app.inject({ method: 'POST', url: '/v1/images/push', headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' }, payload: { image: tag } })
  t.match(ndjson(streamed.body).at(-1), { type: 'error', problem: { code: 'push_failed', status: 502, reason: 'registry_auth' } }, 'streamed: the last event')
  const wrong = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag, auth: { username: env.authUser, password: 'not-the-password' } } })
  t.match(wrong.json(), { code: 'push_failed', reason: 'registry_auth' })
  t.notOk(wrong.body.includes('not-the-password'))
  const given = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag, auth: { username: env.authUser, password: env.authPassword } } })
  t.equal(given.statusCode, 200)
  t.equal(await registryDigest(env.authRegistry, repository, '1', `${env.authUser}:${env.authPassword}`), given.json().digest)

  const withFile = await build(t, withBuilders({ config: { registryAuth: { [env.authRegistry]: { username: env.authUser, password: env.authPassword } } } }))
  const server = await withFile.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: tag } })
  t.equal(server.statusCode, 200, 'the server\'s credentials for that registry')
  t.equal(server.json().digest, given.json().digest)
})

t.test('push refusals: a name off the allow-list, a tag the engine does not have, the wrong scope', async t => {
  const app = await build(t, withBuilders({ config: { policy: { images: [`${env.registry}/default/builder/${RUN}-*`, 'docker.io/berth-test/*'] } } }))
  const off = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: `${env.authRegistry}/default/builder/${RUN}-x/app:1` } })
  t.equal(off.statusCode, 403)
  t.match(off.json(), { code: 'policy_denied', rule: 'images' })
  const missing = await app.inject({ method: 'POST', url: '/v1/images/push', headers: { ...builderAuth('builder'), accept: 'application/x-ndjson' }, payload: { image: `${env.registry}/default/builder/${RUN}-missing/app:1` } })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { code: 'image_not_found' })
  const digest = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: `${env.registry}/default/builder/${RUN}-x/app@sha256:${'b'.repeat(64)}` } })
  t.equal(digest.statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/push', headers: auth('alice'), payload: { image: `${env.registry}/default/builder/${RUN}-x/app:1` } })).statusCode, 403)
  const accept = await app.inject({ method: 'POST', url: '/v1/images/push', headers: { ...builderAuth('builder'), accept: 'text/html' }, payload: { image: `${env.registry}/default/builder/${RUN}-x/app:1` } })
  t.equal(accept.statusCode, 406)
})

t.test('push namespaces: a token publishes only under its own, and nobody else names an image there', async t => {
  const logs = new LogCapture()
  const app = await build(t, withBuilders({ logs }))
  // Alice's part in the issue is the builder's, bob's the maker's: both may build and push.
  const repository = `default/builder/${RUN}-ns/app`
  const theirs = `${env.registry}/${repository}:1`
  await buildAs(app, 'builder', theirs, `FROM berth-test/busybox:1\nRUN echo ${RUN}-builders > /b\n`)
  const pushed = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: theirs } })
  t.equal(pushed.statusCode, 200, pushed.body)
  const digest = pushed.json().digest

  const outside = (image: string) => `token "maker" may push only to repositories under default/maker/ (BERTH_PUSH_NAMESPACE); ${image} is outside it`
  const over = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: theirs } })
  assertProblem(t, over, 403, { code: 'policy_denied', rule: 'pushNamespace', detail: outside(theirs) }, 'publishing the builder\'s image under its name')

  // Untagged by its builder, the name is free on the engine: still nobody else's to take.
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/untag', headers: builderAuth('builder'), payload: { image: theirs } })).statusCode, 200)
  const taken = `${theirs} is in the namespace of token "builder" (BERTH_PUSH_NAMESPACE): only that token or an admin names an image there`
  const built = await app.inject({ method: 'POST', url: `/v1/images/build?tag=${encodeURIComponent(theirs)}&${LABEL}`, headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' }, payload: tarOf({ Dockerfile: 'FROM berth-test/busybox:1\nRUN echo makers > /m\n' }) })
  assertProblem(t, built, 403, { code: 'policy_denied', rule: 'pushNamespace', detail: taken }, 'a build under the builder\'s name')
  const tagged = await app.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('maker'), payload: { source: env.image, tag: theirs } })
  assertProblem(t, tagged, 403, { code: 'policy_denied', rule: 'pushNamespace', detail: taken }, 'a tag with the builder\'s name')
  t.notOk(await imageExists(theirs), 'nothing was named')
  const pushedAgain = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: theirs } })
  assertProblem(t, pushedAgain, 403, { code: 'policy_denied', rule: 'pushNamespace', detail: outside(theirs) })

  // Tricks on the name: a neighbour's prefix, the namespace itself, case, dot segments, a digest.
  for (const [image, status, code] of [
    [`${env.registry}/default/builder-${RUN}/app:1`, 403, 'policy_denied'],
    [`${env.registry}/default/builder:1`, 403, 'policy_denied'],
    [`${env.registry}/default/maker2/${RUN}/app:1`, 403, 'policy_denied'],
    [`${env.registry}/default/Maker/${RUN}/app:1`, 400, 'validation_failed'],
    [`${env.registry}/default/maker/../builder/${RUN}/app:1`, 400, 'validation_failed'],
    [`${env.registry}//default/maker/${RUN}/app:1`, 400, 'validation_failed'],
    [`${env.registry}/default/maker/${RUN}/app@sha256:${'c'.repeat(64)}`, 400, 'validation_failed'],
    [`default/maker/${RUN}/app:1`, 404, 'image_not_found']
  ] as const) {
    const response = await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image } })
    t.equal(response.statusCode, status, image)
    t.equal(response.json().code, code, image)
  }
  t.equal(await registryDigest(env.registry, repository, '1'), digest, 'the registry still holds the builder\'s image')

  // In its own namespace it pushes; so may an admin anywhere on the allow-list.
  const own = `${env.registry}/default/maker/${RUN}-ns/app:1`
  await buildAs(app, 'maker', own, `FROM berth-test/busybox:1\nRUN echo ${RUN}-makers > /m\n`)
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: own } })).statusCode, 200, 'its own namespace')
  const shared = `${env.registry}/${RUN}-shared/app:1`
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/tag', headers: auth('admin'), payload: { source: own, tag: shared } })).statusCode, 201)
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/push', headers: auth('admin'), payload: { image: shared } })).statusCode, 200, 'an admin')

  // The same token name in another deployment is another token: its namespace is that deployment's.
  const other = await build(t, withBuilders({ config: { deployment: `${RUN}-other` } }))
  const elsewhere = await other.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image: own } })
  assertProblem(t, elsewhere, 403, { code: 'policy_denied', rule: 'pushNamespace', detail: `token "builder" may push only to repositories under ${RUN}-other/builder/ (BERTH_PUSH_NAMESPACE); ${own} is outside it` })
  const squat = await other.inject({ method: 'POST', url: '/v1/images/tag', headers: builderAuth('builder'), payload: { source: env.image, tag: `${env.registry}/${RUN}-other/maker/app:1` } })
  t.equal(squat.statusCode, 403, 'nor names an image in another token\'s namespace there')
  assertNoFaults(t, logs)
})

t.test('push namespaces are the operator\'s: a template of deployment and token, or anywhere', async t => {
  const team = await build(t, withBuilders({ config: { policy: { pushNamespace: `${RUN}-teams/{token}` } } }))
  const image = `${env.registry}/${RUN}-teams/builder/app:1`
  await buildAs(team, 'builder', image, `FROM berth-test/busybox:1\nRUN echo ${RUN}-team > /t\n`)
  t.equal((await team.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('builder'), payload: { image } })).statusCode, 200)
  const denied = await team.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image } })
  t.match(denied.json(), { code: 'policy_denied', rule: 'pushNamespace', detail: /under .*-teams\/maker\// })
  const anywhere = await build(t, withBuilders({ config: { policy: { pushNamespace: null } } }))
  t.equal((await anywhere.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image } })).statusCode, 200, 'BERTH_PUSH_NAMESPACE=* lets any build token push any name on the allow-list')
})

t.test('inspect shows history, labels, size and the containers using it (those the token may see); list counts them', async t => {
  const app = await build(t, withBuilders())
  const tag = imageName('inspected')
  const id = await buildAs(app, 'builder', tag, `FROM berth-test/busybox:1\nRUN echo ${RUN}-history > /h\nLABEL purpose=inspect\nCMD ["sleep", "300"]\n`)
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: { image: tag, name: `${RUN}-user`, labels: { [RUN_LABEL]: RUN } } })
  t.equal(run.statusCode, 201)
  const inspected = await app.inject({ method: 'GET', url: `/v1/images/${encodeURIComponent(tag)}`, headers: auth('alice') })
  t.equal(inspected.statusCode, 200)
  const image = inspected.json()
  t.match(image, { id, tags: [tag], labels: { purpose: 'inspect', [RUN_LABEL]: RUN }, size: Number, usedBy: [{ name: `${RUN}-user`, state: 'running' }] })
  t.match(image.history[0], { id, createdBy: /LABEL io.berth.built-by/ })
  t.ok(image.history.some((step: { createdBy: string }) => step.createdBy.includes(`echo ${RUN}-history`)), 'the RUN step is in its history')
  t.equal(image.history.at(-1).createdBy, '', 'down to the imported base')
  const bobs = await app.inject({ method: 'GET', url: `/v1/images/${encodeURIComponent(tag)}`, headers: auth('bob') })
  t.same(bobs.json().usedBy, [], "bob does not see alice's container")
  const listed = await app.inject({ method: 'GET', url: `/v1/images?reference=${encodeURIComponent(tag)}`, headers: auth('alice') })
  t.match(listed.json(), [{ id, containers: 1 }])
  const bobsList = await app.inject({ method: 'GET', url: `/v1/images?reference=${encodeURIComponent(tag)}`, headers: auth('bob') })
  t.match(bobsList.json(), [{ id, containers: 0 }])
})

t.test('prune and disk usage are for admins; prune removes dangling images (here only this run\'s)', async t => {
  const app = await build(t, withBuilders())
  const tag = imageName('pruned')
  const first = await buildAs(app, 'builder', tag, `FROM berth-test/busybox:1\nRUN echo ${RUN}-one > /v\n`)
  const second = await buildAs(app, 'builder', tag, `FROM berth-test/busybox:1\nRUN echo ${RUN}-two > /v\n`)
  t.not(first, second)
  const dangling = await app.inject({ method: 'GET', url: `/v1/images?dangling=true&label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`, headers: auth() })
  t.ok(dangling.json().some((image: { id: string }) => image.id === first), 'the first image lost its name to the second')
  t.equal((await app.inject({ method: 'POST', url: '/v1/images/prune', headers: builderAuth('builder'), payload: {} })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url: '/v1/system/df', headers: auth('alice') })).statusCode, 403)
  const pruned = await app.inject({ method: 'POST', url: '/v1/images/prune', headers: auth(), payload: { label: [`${RUN_LABEL}=${RUN}`], buildCache: true } })
  t.equal(pruned.statusCode, 200)
  t.ok(pruned.json().images.includes(first), 'the dangling image is gone')
  t.match(pruned.json(), { buildCache: Array, spaceReclaimed: Number })
  t.notOk(await imageExists(first))
  t.ok(await imageExists(tag), 'the tagged one stays')
  const all = await app.inject({ method: 'POST', url: '/v1/images/prune', headers: auth(), payload: { all: true, label: [`${RUN_LABEL}=${RUN}-nothing-has-this`], buildCache: false } })
  t.same(all.json(), { images: [], buildCache: [], spaceReclaimed: 0 })
  const df = await app.inject({ method: 'GET', url: '/v1/system/df', headers: auth() })
  t.equal(df.statusCode, 200)
  t.match(df.json(), { images: { count: Number, size: Number, reclaimable: Number }, containers: { count: Number }, volumes: { count: Number }, buildCache: { count: Number } })
  t.ok(df.json().images.count >= 2)
})
