// docker network create / ls / inspect / rm / connect / disconnect through berth, and `network` and
// `aliases` on run, on the real engine: a hub reaches a notebook by name; another token's network
// does not exist; a network with containers attached stays.
import t from 'tap'
import { HTTPD, LogCapture, RUN, RUN_LABEL, auth, build, cleanupAfter, containersOfRun, docker, name, runBody, waitFor } from './helpers.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>
type Who = 'admin' | 'alice' | 'bob' | 'reader'

async function run (app: App, body: Record<string, unknown>, who: Who = 'alice') {
  return await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
}

async function createNetwork (app: App, payload: object, who: Who = 'alice') {
  return await app.inject({ method: 'POST', url: '/v1/networks', headers: auth(who), payload })
}

async function networkExists (idOrName: string): Promise<boolean> {
  return await docker.getNetwork(idOrName).inspect().then(() => true, () => false)
}

t.test('a hub reaches a notebook by name and alias on the token\'s network', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  // A label of this run's: other test runs on the engine make alice's networks too, and the list below filters by it.
  const team = `ml-${RUN}`
  const created = await createNetwork(app, { name: name('lab'), labels: { team } })
  t.equal(created.statusCode, 201, created.body)
  const network = created.json()
  t.equal(created.headers.location, `/v1/networks/${network.id}`)
  t.match(network, { name: name('lab'), driver: 'bridge', internal: false, subnet: /^\d+\.\d+\.\d+\.\d+\/\d+$/, containers: [], labels: { team, 'io.berth.owner': 'alice', 'io.berth.deployment': 'default' } })

  const notebook = await run(app, { name: name('notebook'), command: HTTPD, network: name('lab'), aliases: ['jupyter'] })
  t.equal(notebook.statusCode, 201, notebook.body)
  t.match(notebook.json().networks, [{ name: name('lab'), ipAddress: /^\d+\./, aliases: ['jupyter'] }], 'the run reply says where it is reached')
  const hub = await run(app, {
    name: name('hub'),
    network: network.id.slice(0, 12),
    command: ['sh', '-c', `until wget -q -O- http://jupyter/ && wget -q -O- http://${name('notebook')}/; do sleep 0.2; done; echo END; sleep 300`]
  })
  t.equal(hub.statusCode, 201, hub.body)
  const output = await waitFor('the hub to reach the notebook', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${name('hub')}/logs`, headers: auth('alice') })).body, body => body.includes('END'))
  t.equal(output, 'hello from berth-test\nhello from berth-test\nEND\n', 'by its alias and by its name')

  const inspect = await app.inject({ method: 'GET', url: `/v1/networks/${name('lab')}`, headers: auth('alice') })
  t.equal(inspect.statusCode, 200)
  t.same(inspect.json().containers.map((c: { name: string }) => c.name).sort(), [name('hub'), name('notebook')].sort())
  t.ok(inspect.json().containers.every((c: { ipAddress: string }) => /^\d+\./.test(c.ipAddress)), 'with their addresses')
  const list = await app.inject({ method: 'GET', url: `/v1/networks?label=team=${team}`, headers: auth('alice') })
  t.same(list.json().map((n: { name: string }) => n.name), [name('lab')])
  t.same(list.json()[0].containers.length, 2)

  // Attached containers, running or stopped, keep it.
  const busy = await app.inject({ method: 'DELETE', url: `/v1/networks/${name('lab')}`, headers: auth('alice') })
  t.equal(busy.statusCode, 409)
  t.match(busy.json(), { code: 'network_in_use', network: name('lab'), detail: /has containers attached: / })
  t.equal(busy.json().containers.length, 2)
  await app.inject({ method: 'DELETE', url: `/v1/containers/${name('hub')}?force=true`, headers: auth('alice') })
  await app.inject({ method: 'POST', url: `/v1/containers/${name('notebook')}/stop?timeout=0`, headers: auth('alice') })
  const stopped = await app.inject({ method: 'DELETE', url: `/v1/networks/${name('lab')}`, headers: auth('alice') })
  t.equal(stopped.statusCode, 409, 'a stopped container attached keeps it too')
  t.same(stopped.json().containers.map((c: { name: string }) => c.name), [name('notebook')])
  await app.inject({ method: 'DELETE', url: `/v1/containers/${name('notebook')}`, headers: auth('alice') })
  const removed = await app.inject({ method: 'DELETE', url: `/v1/networks/${name('lab')}`, headers: { ...auth('alice'), 'x-request-id': 'net-rm' } })
  t.equal(removed.statusCode, 204, removed.body)
  t.notOk(await networkExists(network.id))
  t.same(logs.lines.find(line => line.requestId === 'net-rm' && line.msg === 'audit')?.audit,
    { actor: 'alice', action: 'DELETE /v1/networks/:network', target: { network: { requested: name('lab'), id: network.id, name: name('lab') } }, status: 204 })
})

t.test('connect and disconnect are idempotent, and an internal network is made internal', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const created = await createNetwork(app, { name: name('internal'), internal: true })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.json().internal, true)
  t.equal((await docker.getNetwork(created.json().id).inspect()).Internal, true)
  const container = await run(app, { name: name('joiner') })
  t.equal(container.statusCode, 201, container.body)
  t.same(container.json().networks.map((n: { name: string }) => n.name), ['bridge'])

  const connect = async () => await app.inject({ method: 'POST', url: `/v1/networks/${name('internal')}/connect`, headers: { ...auth('alice'), 'x-request-id': 'net-connect' }, payload: { container: name('joiner'), aliases: ['worker'] } })
  const first = await connect()
  t.equal(first.statusCode, 200, first.body)
  t.equal(first.json().changed, true)
  t.same(first.json().network.containers.map((c: { name: string }) => c.name), [name('joiner')])
  t.same(logs.lines.find(line => line.requestId === 'net-connect' && line.msg === 'audit')?.audit, {
    actor: 'alice',
    action: 'POST /v1/networks/:network/connect',
    target: { network: { requested: name('internal'), id: created.json().id, name: name('internal') }, container: { requested: name('joiner'), id: container.json().id, name: name('joiner') } },
    status: 200
  })
  t.equal((await connect()).json().changed, false, 'already connected')
  const inspect = await app.inject({ method: 'GET', url: `/v1/containers/${name('joiner')}`, headers: auth('alice') })
  t.match(inspect.json().networks.find((n: { name: string }) => n.name === name('internal')), { aliases: ['worker'] })

  const disconnect = async () => await app.inject({ method: 'POST', url: `/v1/networks/${name('internal')}/disconnect`, headers: auth('alice'), payload: { container: name('joiner') } })
  t.equal((await disconnect()).json().changed, true)
  const again = await disconnect()
  t.equal(again.statusCode, 200)
  t.equal(again.json().changed, false, 'not connected any more')
  t.same(again.json().network.containers, [])
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/networks/${name('internal')}`, headers: auth('alice') })).statusCode, 204)
})

t.test('ownership: another token\'s network does not exist for bob', async t => {
  const app = await build(t)
  // Both carry this run's label, for the list below: other test runs on the engine make bob's networks too.
  const labels = { [RUN_LABEL]: RUN }
  const created = await createNetwork(app, { name: name('hers'), labels })
  t.equal(created.statusCode, 201, created.body)
  const alicesContainer = await run(app, { name: name('her-box') })
  const bobsContainer = await run(app, { name: name('his-box') }, 'bob')
  t.equal(bobsContainer.statusCode, 201)
  const forBob = [
    ['inspect', await app.inject({ method: 'GET', url: `/v1/networks/${name('hers')}`, headers: auth('bob') })],
    ['inspect by id prefix', await app.inject({ method: 'GET', url: `/v1/networks/${created.json().id.slice(0, 10)}`, headers: auth('bob') })],
    ['remove', await app.inject({ method: 'DELETE', url: `/v1/networks/${name('hers')}`, headers: auth('bob') })],
    ['connect his container', await app.inject({ method: 'POST', url: `/v1/networks/${name('hers')}/connect`, headers: auth('bob'), payload: { container: name('his-box') } })],
    ['run on it', await run(app, { name: name('his-intruder'), network: name('hers') }, 'bob')]
  ] as const
  for (const [what, response] of forBob) {
    t.equal(response.statusCode, 404, what)
    t.match(response.json(), { code: 'not_found', detail: `network ${what === 'inspect by id prefix' ? created.json().id.slice(0, 10) : name('hers')} was not found` }, what)
  }
  const bobsNetwork = await createNetwork(app, { name: name('his'), labels }, 'bob')
  t.equal(bobsNetwork.statusCode, 201)
  const crossConnect = await app.inject({ method: 'POST', url: `/v1/networks/${name('his')}/connect`, headers: auth('bob'), payload: { container: name('her-box') } })
  t.equal(crossConnect.statusCode, 404, 'nor can he connect her container to his network')
  t.equal(crossConnect.json().detail, `container ${name('her-box')} was not found`)
  t.same((await app.inject({ method: 'GET', url: `/v1/networks?label=${RUN_LABEL}=${RUN}`, headers: auth('bob') })).json().map((n: { name: string }) => n.name), [name('his')])
  const taken = await createNetwork(app, { name: name('hers') }, 'bob')
  t.equal(taken.statusCode, 409)
  t.match(taken.json(), { code: 'name_conflict', detail: `the network name ${name('hers')} is already in use` })

  // The admin joins her network; she sees it in use, but not by whom.
  const adminsView = await app.inject({ method: 'GET', url: `/v1/networks/${name('hers')}`, headers: auth('admin') })
  t.equal(adminsView.statusCode, 200)
  t.equal((await run(app, { name: name('admins-box'), network: name('hers') }, 'admin')).statusCode, 201)
  const hers = await app.inject({ method: 'GET', url: `/v1/networks/${name('hers')}`, headers: auth('alice') })
  t.same(hers.json().containers, [])
  const refused = await app.inject({ method: 'DELETE', url: `/v1/networks/${name('hers')}`, headers: auth('alice') })
  t.equal(refused.statusCode, 409)
  t.match(refused.json(), { code: 'network_in_use', detail: `network ${name('hers')} has containers attached`, containers: [] })
  t.equal(alicesContainer.statusCode, 201)
})

t.test('bad input: clear problems, and nothing is created', async t => {
  const app = await build(t)
  const cases: Array<[string, object, number, RegExp]> = [
    ['a name with a space', { name: 'a b' }, 400, /body\/name must match pattern/],
    ['the engine\'s bridge', { name: 'bridge' }, 400, /body\/name is the engine's own network bridge/],
    ['host', { name: 'host' }, 400, /body\/name is the engine's own network host/],
    ['a reserved label', { name: name('reserved'), labels: { 'io.berth.owner': 'bob' } }, 400, /is reserved/],
    ['a driver', { name: name('macvlan'), driver: 'macvlan' }, 400, /body\/driver is not a known field/],
    ['IPAM options', { name: name('ipam'), ipam: { subnet: '10.0.0.0/8' } }, 400, /body\/ipam is not a known field/]
  ]
  for (const [what, payload, status, detail] of cases) {
    const response = await createNetwork(app, payload)
    t.equal(response.statusCode, status, what)
    t.match(response.json(), { detail }, what)
  }
  const runs: Array<[string, Record<string, unknown>, number, object]> = [
    ['the host\'s network', { network: 'host' }, 403, { code: 'policy_denied', rule: 'network' }],
    ['aliases without a network', { aliases: ['x'] }, 400, { code: 'validation_failed', detail: /body\/aliases need a user-defined network/ }],
    ['aliases on the default bridge', { network: 'bridge', aliases: ['x'] }, 400, { code: 'validation_failed' }],
    ['a container\'s network', { network: 'container:abc' }, 400, { code: 'validation_failed', detail: /body\/network must match pattern/ }],
    ['a network that does not exist', { network: name('nowhere') }, 404, { code: 'not_found', detail: `network ${name('nowhere')} was not found` }],
    ['a bad alias', { network: 'bridge', aliases: ['-x'] }, 400, { code: 'validation_failed', detail: /aliases\/0 must match pattern/ }]
  ]
  for (const [what, body, status, problem] of runs) {
    const response = await run(app, { name: name('bad-net'), ...body })
    t.equal(response.statusCode, status, what)
    t.match(response.json(), problem, what)
  }
  const connect = await app.inject({ method: 'POST', url: `/v1/networks/${name('nowhere')}/connect`, headers: auth('alice'), payload: { container: name('x'), extra: 1 } })
  t.equal(connect.statusCode, 400)
  const reader = await createNetwork(app, { name: name('by-reader') }, 'reader')
  t.equal(reader.statusCode, 403)
  t.same(await docker.listNetworks({ filters: { name: [name('')] } }).then(list => list.filter(n => /macvlan|ipam|reserved|by-reader/.test(n.Name))), [], 'no network was created')
  t.same((await containersOfRun()).filter(c => c.Names.some(n => n.includes('bad-net'))), [], 'no container either')

  const none = await run(app, { name: name('isolated'), network: 'none' })
  t.equal(none.statusCode, 201, none.body)
  t.same(none.json().networks.map((n: { name: string, ipAddress: string | null }) => [n.name, n.ipAddress]), [['none', null]], 'no network at all')
})
