// docker volume create / ls / inspect / rm through berth, on the real engine: sizes, the containers
// that mount a volume, removal while in use, and ownership (another token's volume does not exist).
import t from 'tap'
import { LogCapture, RUN, RUN_LABEL, assertNoFaults, assertProblem, auth, build, cleanupAfter, docker, dockerEngine, env, name, runBody, waitFor, withParts } from './helpers.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function volumeExists (volume: string): Promise<boolean> {
  return await docker.getVolume(volume).inspect().then(() => true, () => false)
}

async function create (app: App, who: 'admin' | 'alice' | 'bob' | 'reader', payload: object) {
  return await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth(who), payload })
}

t.test('create → ls → mount → size → rm: a volume through its life', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const vol = name('data')
  // A label of this run's: other test runs on the engine make alice's volumes too, and the lists below filter by it.
  const project = `imagenet-${RUN}`
  const created = await create(app, 'alice', { name: vol, labels: { project } })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.headers.location, `/v1/volumes/${vol}`)
  t.match(created.json(), { name: vol, driver: 'local', size: null, usedBy: [], labels: { project, 'io.berth.owner': 'alice', 'io.berth.managed': 'true', 'io.berth.deployment': 'default' } })
  t.ok(created.json().createdAt, 'the engine says when')
  t.notOk('mountpoint' in created.json(), 'the host path is not shown')

  const again = await create(app, 'alice', { name: vol })
  t.equal(again.statusCode, 200, 'creating a volume the token has answers it, as the CLI does')
  t.same(again.json().labels, created.json().labels, 'unchanged')

  // A container writes 100 KiB into it.
  const run = await app.inject({
    method: 'POST',
    url: '/v1/containers',
    headers: auth('alice'),
    payload: runBody({ name: name('writer'), volumes: [{ source: vol, target: '/data' }], command: ['sh', '-c', 'head -c 102400 /dev/zero > /data/blob; sleep 300'] })
  })
  t.equal(run.statusCode, 201, run.body)
  const list = await app.inject({ method: 'GET', url: `/v1/volumes?label=project=${project}`, headers: auth('alice') })
  t.equal(list.statusCode, 200)
  t.same(list.json().map((v: { name: string }) => v.name), [vol])
  t.same(list.json()[0].usedBy, [{ id: run.json().id, name: name('writer'), state: 'running' }], 'the container that mounts it')
  t.equal(list.json()[0].size, null, 'no size unless asked')

  const size = await waitFor('the size to count what the container wrote', async () => {
    const sized = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}?size=true`, headers: auth('alice') })
    if (sized.statusCode !== 200) throw new Error(sized.body)
    return sized.json().size as number
  }, size => size >= 102400)
  t.ok(size >= 102400, `the size counts what was written (${size})`)
  const listedSize = await app.inject({ method: 'GET', url: `/v1/volumes?size=true&label=project=${project}`, headers: auth('alice') })
  t.equal(listedSize.json()[0].size, size, 'the list reports the same size')

  const busy = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}`, headers: auth('alice') })
  t.equal(busy.statusCode, 409)
  t.match(busy.json(), { code: 'volume_in_use', volume: vol, containers: [{ id: run.json().id, name: name('writer') }], detail: new RegExp(`in use by container ${name('writer')}`) })
  t.ok(await volumeExists(vol), 'still there')

  // A stopped container keeps it in use too.
  await app.inject({ method: 'POST', url: `/v1/containers/${name('writer')}/stop?timeout=0`, headers: auth('alice') })
  const stillBusy = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}`, headers: auth('alice') })
  t.equal(stillBusy.statusCode, 409)
  t.equal(stillBusy.json().containers[0].name, name('writer'))

  const forced = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}?force=true`, headers: { ...auth('alice'), 'x-request-id': 'vol-force' } })
  t.equal(forced.statusCode, 204, forced.body)
  t.notOk(await volumeExists(vol), 'the volume is gone')
  t.equal(await docker.getContainer(run.json().id).inspect().then(() => 'there', () => 'gone'), 'gone', 'and the container that mounted it')
  const audit = logs.lines.find(line => line.requestId === 'vol-force' && line.msg === 'audit')?.audit
  t.same(audit, { actor: 'alice', action: 'DELETE /v1/volumes/:volume', target: { volume: vol, removed: [run.json().id] }, status: 204 })

  const gone = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('alice') })
  t.equal(gone.statusCode, 404)
  t.equal(gone.json().code, 'not_found')
})

t.test('a volume a run created is the token\'s own', async t => {
  const app = await build(t)
  const vol = name('by-run')
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: runBody({ name: name('runner'), volumes: [{ source: vol, target: '/data' }] }) })
  t.equal(run.statusCode, 201, run.body)
  const inspect = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('bob') })
  t.equal(inspect.statusCode, 200, inspect.body)
  t.equal(inspect.json().labels['io.berth.owner'], 'bob')
  t.same(inspect.json().usedBy.map((u: { name: string }) => u.name), [name('runner')])
  const removeContainer = await app.inject({ method: 'DELETE', url: `/v1/containers/${name('runner')}?force=true`, headers: auth('bob') })
  t.equal(removeContainer.statusCode, 204)
  t.ok(await volumeExists(vol), 'the data outlives the container')
  const remove = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}`, headers: auth('bob') })
  t.equal(remove.statusCode, 204)
  t.notOk(await volumeExists(vol))
})

t.test('ownership: another token\'s volume does not exist for bob, its name is taken, and its users are not named', async t => {
  const app = await build(t)
  const vol = name('hers')
  t.equal((await create(app, 'alice', { name: vol })).statusCode, 201)
  const forBob = [
    await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('bob') }),
    await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}?force=true`, headers: auth('bob') })
  ]
  for (const response of forBob) {
    t.equal(response.statusCode, 404)
    t.match(response.json(), { code: 'not_found', detail: `volume ${vol} was not found` })
  }
  const bobsList = await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth('bob') })
  t.notOk(bobsList.json().some((v: { name: string }) => v.name === vol), 'not in bob\'s list')
  const taken = await create(app, 'bob', { name: vol })
  t.equal(taken.statusCode, 409)
  t.match(taken.json(), { code: 'name_conflict', name: vol, detail: `the volume name ${vol} is already in use` })
  t.notOk(JSON.stringify(taken.json()).includes('alice'), 'whose it is is not said')
  const mount = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: runBody({ volumes: [{ source: vol, target: '/data' }] }) })
  t.equal(mount.statusCode, 404, 'nor can bob mount it')

  // The admin sees it, and mounts it; alice then sees her volume in use, but not by whom.
  const adminsView = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('admin') })
  t.equal(adminsView.statusCode, 200)
  const adminRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('admin'), payload: runBody({ name: name('admins-reader'), volumes: [{ source: vol, target: '/data' }] }) })
  t.equal(adminRun.statusCode, 201, adminRun.body)
  const alicesView = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('alice') })
  t.same(alicesView.json().usedBy, [], 'the admin\'s container is not alice\'s to see')
  const adminSees = await app.inject({ method: 'GET', url: `/v1/volumes/${vol}`, headers: auth('admin') })
  t.same(adminSees.json().usedBy.map((u: { name: string }) => u.name), [name('admins-reader')])
  for (const force of [false, true]) {
    const refused = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}?force=${force}`, headers: auth('alice') })
    t.equal(refused.statusCode, 409, `force=${force}`)
    t.match(refused.json(), { code: 'volume_in_use', detail: force ? `volume ${vol} is in use by a container token "alice" may not remove: nothing was removed` : `volume ${vol} is in use by a container`, containers: [] })
  }
  t.equal((await docker.getContainer(adminRun.json().id).inspect()).State.Running, true, 'alice\'s force did not touch the admin\'s container')
  t.ok(await volumeExists(vol))
})

t.test('a refused force removes nothing: every user is checked before any is removed', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const state = async (id: string) => await docker.getContainer(id).inspect().then(info => info.State.Status, () => 'gone')
  for (const [key, what, arrange] of [
    ['admin', 'an admin\'s container', async (vol: string) => {
      const admins = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('admin'), payload: runBody({ name: name('admins-user'), volumes: [{ source: vol, target: '/data' }] }) })
      t.equal(admins.statusCode, 201, admins.body)
      return admins.json().id as string
    }],
    ['raw', 'a container berth did not make', async (vol: string) => {
      const raw = await docker.createContainer({ name: name('raw-user'), Image: env.image, Cmd: ['sleep', '300'], Labels: { [RUN_LABEL]: RUN }, HostConfig: { Binds: [`${vol}:/data`] } })
      return raw.id
    }]
  ] as const) {
    const vol = name(`shared-${key}`)
    t.equal((await create(app, 'alice', { name: vol })).statusCode, 201)
    const hers = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name(`hers-${key}`), volumes: [{ source: vol, target: '/data' }] }) })
    t.equal(hers.statusCode, 201, hers.body)
    const other = await arrange(vol)
    const refused = await app.inject({ method: 'DELETE', url: `/v1/volumes/${vol}?force=true`, headers: { ...auth('alice'), 'x-request-id': `refused-${key}` } })
    assertProblem(t, refused, 409, {
      code: 'volume_in_use',
      detail: `volume ${vol} is also in use by a container token "alice" may not remove: nothing was removed`,
      volume: vol,
      containers: [{ id: hers.json().id, name: name(`hers-${key}`) }]
    }, what)
    t.equal(await state(hers.json().id), 'running', `${what}: alice's own container is still there`)
    t.not(await state(other), 'gone', `${what}: so is the other`)
    t.ok(await volumeExists(vol), `${what}: and the volume`)
    t.same(logs.lines.find(line => line.requestId === `refused-${key}` && line.msg === 'audit')?.audit,
      { actor: 'alice', action: 'DELETE /v1/volumes/:volume', target: { volume: vol }, status: 409 }, `${what}: the audit names nothing removed`)
  }
  assertNoFaults(t, logs)
})

t.test('bad input: clear problems, and nothing is created', async t => {
  const app = await build(t)
  // Only this run's: other test runs on the engine make and remove volumes meanwhile.
  const ours = async () => ((await docker.listVolumes({ filters: { name: [RUN] } })).Volumes ?? []).map(volume => volume.Name).sort()
  const before = await ours()
  const cases: Array<[string, object, RegExp]> = [
    ['a name with a space', { name: 'a b' }, /body\/name must match pattern/],
    ['a name starting with a dot', { name: '.hidden' }, /body\/name/],
    ['a reserved label', { name: name('reserved'), labels: { 'io.berth.owner': 'bob' } }, /body\/labels\/io\.berth\.owner is reserved/],
    ['a driver', { name: name('drv'), driver: 'local' }, /body\/driver is not a known field/],
    ['driver options (a host path through the local driver)', { name: name('opts'), driverOpts: { type: 'none', o: 'bind', device: '/etc' } }, /body\/driverOpts is not a known field/]
  ]
  for (const [what, payload, detail] of cases) {
    const response = await create(app, 'alice', payload)
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  const badQuery = await app.inject({ method: 'GET', url: '/v1/volumes?size=maybe', headers: auth('alice') })
  t.equal(badQuery.statusCode, 400)
  const badName = await app.inject({ method: 'GET', url: '/v1/volumes/a%20b', headers: auth('alice') })
  t.equal(badName.statusCode, 400)
  const reader = await create(app, 'reader', { name: name('by-reader') })
  t.equal(reader.statusCode, 403)
  t.equal(reader.json().code, 'forbidden')
  const readerList = await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth('reader') })
  t.equal(readerList.statusCode, 200, 'a reader lists (its own, which are none)')
  t.same(readerList.json(), [])
  t.same(await ours(), before, 'no volume was created')
})

t.test('a volume without a name gets the engine\'s kind of name', async t => {
  const app = await build(t)
  const created = await create(app, 'alice', { labels: { purpose: RUN } })
  t.equal(created.statusCode, 201, created.body)
  const generated = created.json().name as string
  t.teardown(async () => { await docker.getVolume(generated).remove().catch(() => {}) })
  t.match(generated, /^[0-9a-f]{64}$/)
  const removed = await app.inject({ method: 'DELETE', url: `/v1/volumes/${generated}`, headers: auth('alice') })
  t.equal(removed.statusCode, 204)
  t.notOk(await volumeExists(generated))
})

t.test('docker\'s local volumes have no size: size is 501, and a storage quota counts them as nothing', async t => {
  const app = await build(t, { config: { policy: { quota: { storageBytes: 1024 } } } })
  const sized = await create(app, 'alice', { name: name('sized'), size: 1024 })
  t.equal(sized.statusCode, 501, sized.body)
  t.match(sized.json(), { code: 'not_supported', detail: /a local volume has no size/ })
  t.notOk(await volumeExists(name('sized')), 'nothing was created')
  for (const suffix of ['q1', 'q2']) {
    const made = await create(app, 'alice', { name: name(suffix) })
    t.equal(made.statusCode, 201, made.body)
    t.notOk('capacity' in made.json(), 'no capacity on docker')
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name(`${suffix}-run`), volumes: [`${name(`${suffix}-new`)}:/data`] }) })
    t.equal(run.statusCode, 201, run.body)
  }
})

t.test('a storage quota counts the sizes of the token\'s volumes where the backend gives them one, runs\' new volumes too, one admission at a time', async t => {
  // docker's volumes have no size: this backend is docker's with a size kept beside each volume, as Kubernetes' claims have one.
  const real = await dockerEngine()
  const volumes = real.part('volumes')
  const sizes = new Map<string, number>()
  const sized = <V extends { name: string }>(volume: V): V & { capacity?: number } => sizes.has(volume.name) ? { ...volume, capacity: sizes.get(volume.name) as number } : volume
  const engine = withParts(real, {
    volumes: {
      capacityFor: size => size ?? 100,
      create: async (volumeName, labels, options = {}) => {
        sizes.set(volumeName, options.size ?? 100)
        return sized(await volumes.create(volumeName, labels))
      },
      list: async options => (await volumes.list(options)).map(sized),
      inspect: async (volumeName, details) => sized(await volumes.inspect(volumeName, details))
    }
  })
  const app = await build(t, { engine, config: { policy: { quota: { storageBytes: 250 } } } })
  t.equal((await create(app, 'alice', { name: name('s200'), size: 200 })).statusCode, 201)
  const over = await create(app, 'alice', { name: name('s100'), size: 100 })
  t.equal(over.statusCode, 403, over.body)
  t.match(over.json(), { code: 'quota_exceeded', limit: 'storage', quota: 250, used: 200, detail: /a volume of 100 bytes on top of the 200 the token's volumes hold exceeds its storage quota of 250/ })
  t.notOk(await volumeExists(name('s100')), 'nothing was created')
  const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ name: name('s-run'), volumes: [`${name('s-new')}:/data`] }) })
  t.equal(run.statusCode, 403, run.body)
  t.match(run.json(), { code: 'quota_exceeded', limit: 'storage' })
  t.notOk(await volumeExists(name('s-new')), 'the run made no volume')
  t.equal((await create(app, 'bob', { name: name('s-bob'), size: 200 })).statusCode, 201, 'the quota is per token')
  const racing = await Promise.all(['r1', 'r2'].map(async suffix => await create(app, 'admin', { name: name(suffix), size: 150 })))
  t.same(racing.map(response => response.statusCode).sort(), [201, 403], 'two at once: one fits, the other is refused')
})
