// What lives on the nodes of the real three-node test cluster, through berth's agent on each: images
// pulled onto every node with each node's outcome, listed saying where each is; named volumes that live
// on one node and take the runs that mount them there; overlay networks per owner with aliases.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { HTTPD, RUN, auth, runBody, waitFor } from './helpers.ts'
import { holdCluster, nodeEngine, swarmBackend, swarmEnv, type SwarmEnv } from './backends.ts'

interface Task { node: string | null, state: string }
interface NodePull { node: string, state: string, reason: string | null, detail: string | null }

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const backend = swarmBackend
  const nodeNames = Object.keys(cluster.nodes).sort()
  const deployment = `swarm-data-${RUN}`

  t.before(async () => {
    await holdCluster(t)
  })
  t.teardown(() => backend.cleanup())

  const body = (suffix: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-sd-${suffix}`, command: HTTPD, stopTimeout: 1, ...extra })

  /** An image of one layer of its own, in the cluster's registry and on no node: a pull moves bytes on each. */
  async function imageOfItsOwn (suffix: string): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'berth-layer-'))
    try {
      writeFileSync(join(dir, 'data'), randomBytes(512 * 1024))
      execFileSync('tar', ['-C', dir, '-cf', join(dir, 'layer.tar'), 'data'])
      const engine = nodeEngine('node1')
      const repository = `${cluster.registry}/${RUN}-${suffix}/layer`
      const follow = async (stream: NodeJS.ReadableStream): Promise<Array<{ error?: string }>> => await new Promise((resolve, reject) => {
        engine.modem.followProgress(stream, (error, output) => error ? reject(error) : resolve(output))
      })
      await follow(await engine.importImage(createReadStream(join(dir, 'layer.tar')), { repo: repository, tag: '1' }))
      const pushed = await follow(await engine.getImage(`${repository}:1`).push({ authconfig: {} }))
      const failed = pushed.find(line => line.error)
      if (failed) throw new Error(`push of ${repository}:1 failed: ${failed.error}`)
      await engine.getImage(`${repository}:1`).remove()
      return `${repository}:1`
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }

  t.test('a pull goes onto every node, saying how it went on each; the list says where each image is', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const reference = await imageOfItsOwn('pull')
    // First as a job: its layers' progress says on which node each is, and its result how each node went.
    const started = await app.inject({ method: 'POST', url: '/v1/images/pull?async=true', headers: auth('admin'), payload: { image: reference } })
    t.equal(started.statusCode, 202, started.body)
    const job = await waitFor('the pull job to end', async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${started.json().id}`, headers: auth('admin') })).json(),
      (state: { state: string, progress: { layers: Array<{ node: string }> }, result: { nodes: NodePull[] } }) => state.state !== 'queued' && state.state !== 'pulling', 60_000)
    t.equal(job.state, 'succeeded', JSON.stringify(job))
    t.same([...new Set(job.progress.layers.map(layer => layer.node))].sort(), nodeNames, 'layers on each node, each said with its node')
    t.same(job.result.nodes.map(node => [node.node, node.state]).sort(), nodeNames.map(node => [node, 'pulled']), 'the job\'s result: pulled on each node')
    const pulled = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('admin'), payload: { image: reference } })
    t.equal(pulled.statusCode, 200, pulled.body)
    t.same((pulled.json().nodes as NodePull[]).map(node => [node.node, node.state]).sort(), nodeNames.map(node => [node, 'pulled']), 'pulled on each node')
    for (const node of nodeNames) {
      t.ok(await nodeEngine(node).getImage(reference).inspect(), `${node} has it in its own store`)
    }

    const streamed = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: { ...auth('admin'), accept: 'application/x-ndjson' }, payload: { image: reference } })
    t.equal(streamed.statusCode, 200, streamed.body)
    const events = streamed.body.trim().split('\n').map(line => JSON.parse(line) as { type: string, node?: string, state?: string })
    const perNode = events.filter(event => event.type === 'node')
    t.same(perNode.map(event => event.node).sort(), nodeNames, `one outcome per node in the stream: ${JSON.stringify(perNode)}`)
    t.ok(perNode.every(event => event.state === 'pulled'))
    t.equal(events.at(-1)?.type, 'pulled', 'and the pulled image last')

    const missing = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('admin'), payload: { image: `${cluster.registry}/${RUN}-none/web:1` } })
    t.equal(missing.statusCode, 404, missing.body)
    t.match(missing.json(), { code: 'image_not_found' })
    t.same((missing.json().nodes as NodePull[]).map(node => [node.node, node.reason]).sort(), nodeNames.map(node => [node, 'not_found']), 'not found, said for each node')
    const locked = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('admin'), payload: { image: cluster.authImage } })
    t.ok(locked.statusCode >= 400, locked.body)
    t.same((locked.json().nodes as NodePull[]).map(node => [node.node, node.reason]).sort(), nodeNames.map(node => [node, 'registry_auth']), 'credentials wanted, said for each node')
    const withAuth = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('admin'), payload: { image: cluster.authImage, auth: { username: cluster.authUser, password: cluster.authPassword } } })
    t.equal(withAuth.statusCode, 200, withAuth.body)
    t.ok((withAuth.json().nodes as NodePull[]).every(node => node.state === 'pulled'), 'with them, on every node')
    for (const node of nodeNames) await nodeEngine(node).getImage(cluster.authImage).remove().catch(() => {})

    // One node alone has a name for it: the list says so.
    const only = `berth-test/${RUN}-only:1`
    await nodeEngine('node2').getImage(reference).tag({ repo: `berth-test/${RUN}-only`, tag: '1' })
    const list = await app.inject({ method: 'GET', url: '/v1/images', headers: auth('admin') })
    t.equal(list.statusCode, 200, list.body)
    const images = list.json() as Array<{ tags: string[], nodes?: string[] }>
    t.same(images.find(image => image.tags.includes(reference))?.nodes, nodeNames, 'the pulled image: on every node')
    t.ok(images.find(image => image.tags.includes(reference))?.tags.includes(only), 'one image, with the names it has on any node')
    const inspect = await app.inject({ method: 'GET', url: `/v1/images/${encodeURIComponent(only)}`, headers: auth('admin') })
    t.equal(inspect.statusCode, 200, inspect.body)
    t.same(inspect.json().nodes, ['node2'], 'by the name only node2 has: on node2')
    const removed = await app.inject({ method: 'DELETE', url: `/v1/images/${encodeURIComponent(reference)}`, headers: auth('admin') })
    t.equal(removed.statusCode, 200, removed.body)
    for (const node of nodeNames) {
      t.equal(await nodeEngine(node).getImage(reference).inspect().then(() => true, () => false), false, `removed from ${node}`)
    }
  })

  t.test('a named volume lives on one node: its runs go there, one replica; another tenant has none; in use across nodes', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const volume = `${RUN}-data`
    const made = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: volume, node: 'node3' } })
    t.equal(made.statusCode, 201, made.body)
    t.same(made.json().nodes, ['node3'])
    const copy = await nodeEngine('node3').getVolume(volume).inspect()
    t.ok(copy.Labels?.['io.berth.owner'], 'the node\'s copy carries its owner')
    for (const node of ['node1', 'node2']) {
      t.equal(await nodeEngine(node).getVolume(volume).inspect().then(() => true, () => false), false, `none on ${node}`)
    }
    const bobs = await app.inject({ method: 'GET', url: `/v1/volumes/${volume}`, headers: auth('bob') })
    t.equal(bobs.statusCode, 404, 'not there for bob')
    const bobRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: body('bob-vol', { volumes: [{ source: volume, target: '/data' }] }) })
    t.equal(bobRun.statusCode, 404, `nor to mount: ${bobRun.body}`)

    const writer = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('writer', { volumes: [{ source: volume, target: '/data' }], command: ['sh', '-c', 'echo kept > /data/note; exec httpd -f -p 80 -h /www'] }) })
    t.equal(writer.statusCode, 201, writer.body)
    t.same((writer.json().tasks as Task[]).map(task => task.node), ['node3'], 'placed where its volume lives')
    const two = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('two', { replicas: 2, volumes: [{ source: volume, target: '/data' }] }) })
    t.equal(two.statusCode, 409, two.body)
    t.match(two.json(), { code: 'placement_failed', detail: /runs one replica, there/ })
    const scaled = await app.inject({ method: 'POST', url: `/v1/containers/${writer.json().id}/scale`, headers: auth('alice'), payload: { replicas: 2 } })
    t.equal(scaled.statusCode, 409, `nor scaled to two: ${scaled.body}`)

    const inUse = await app.inject({ method: 'DELETE', url: `/v1/volumes/${volume}`, headers: auth('alice') })
    t.equal(inUse.statusCode, 409, inUse.body)
    t.match(inUse.json(), { code: 'volume_in_use', containers: [{ name: `${RUN}-sd-writer` }] }, 'naming the run that mounts it, on node3')
    const read = await app.inject({ method: 'POST', url: `/v1/containers/${writer.json().id}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['cat', '/data/note'] } })
    t.equal(read.json().stdout, 'kept\n', 'its data, on node3')
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${writer.json().id}?force=true`, headers: auth('alice') })).statusCode, 204)
    const reader = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('reader', { volumes: [{ source: volume, target: '/data' }], command: ['cat', '/data/note'] }) })
    t.equal(reader.statusCode, 201, reader.body)
    const waited = await app.inject({ method: 'POST', url: `/v1/containers/${reader.json().id}/wait`, headers: auth('alice') })
    t.match(waited.json(), { exitCode: 0 })
    const logs = await app.inject({ method: 'GET', url: `/v1/containers/${reader.json().id}/logs`, headers: auth('alice') })
    t.equal(logs.body, 'kept\n', 'a later run on the volume reads what the first wrote')
    const stillUsed = await app.inject({ method: 'DELETE', url: `/v1/volumes/${volume}`, headers: auth('alice') })
    t.equal(stillUsed.statusCode, 409, 'an ended run still holds it (it would mount it again when started)')
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${reader.json().id}?force=true`, headers: auth('alice') })).statusCode, 204)
    const gone = await app.inject({ method: 'DELETE', url: `/v1/volumes/${volume}`, headers: auth('alice') })
    t.equal(gone.statusCode, 204, gone.body)
    t.equal(await nodeEngine('node3').getVolume(volume).inspect().then(() => true, () => false), false, 'gone from node3')
  })

  t.test('an overlay network per owner: replicas on different nodes reach each other by alias; in use while attached', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const network = `${RUN}-net`
    const made = await app.inject({ method: 'POST', url: '/v1/networks', headers: auth('alice'), payload: { name: network } })
    t.equal(made.statusCode, 201, made.body)
    t.match(made.json(), { name: network, driver: 'overlay' })
    t.equal((await app.inject({ method: 'GET', url: `/v1/networks/${network}`, headers: auth('bob') })).statusCode, 404, 'not there for bob')
    const bobRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: body('bob-net', { network }) })
    t.equal(bobRun.statusCode, 404, `nor to join: ${bobRun.body}`)

    const server = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('server', { network, aliases: ['web'], placement: { constraints: ['node.hostname==node2'] } }) })
    t.equal(server.statusCode, 201, server.body)
    const client = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('client', { network, command: ['sleep', '300'], placement: { constraints: ['node.hostname==node3'] } }) })
    t.equal(client.statusCode, 201, client.body)
    // The server listens a moment after its task runs: ask until it answers.
    const answer = await waitFor('the server, by its alias', async () => (await app.inject({
      method: 'POST', url: `/v1/containers/${client.json().id}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['wget', '-q', '-O', '-', 'http://web/'] }
    })).json(), (result: { exitCode: number }) => result.exitCode === 0, 30_000)
    t.match(answer, { exitCode: 0, stdout: /hello from berth-test/ }, 'node3 reaches node2 by the alias')
    const inUse = await app.inject({ method: 'DELETE', url: `/v1/networks/${network}`, headers: auth('alice') })
    t.equal(inUse.statusCode, 409, inUse.body)
    t.match(inUse.json(), { code: 'network_in_use' })
    for (const id of [server.json().id, client.json().id]) {
      t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
    }
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/networks/${network}`, headers: auth('alice') })).statusCode, 204)
  })
  t.test('a replica by slot or task id: exec, files and stats in the one asked for; what is not there says so; a wrong key says so', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('pair', { replicas: 2, placement: { constraints: ['node.role==worker'] } }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    const tasks = run.json().tasks as Array<{ id: string, slot: number }>
    const exec = async (replica: string, command: string[]) => await app.inject({ method: 'POST', url: `/v1/containers/${id}/exec?replica=${replica}`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command } })
    t.equal((await exec('1', ['sh', '-c', 'echo one > /tmp/one'])).json().exitCode, 0)
    t.equal((await exec('2', ['sh', '-c', 'test -f /tmp/one'])).json().exitCode, 1, 'replica 2 is another container')
    const second = tasks.find(task => task.slot === 2) as { id: string }
    t.equal((await exec(second.id.slice(0, 10), ['sh', '-c', 'test -f /tmp/one'])).json().exitCode, 1, 'named by a prefix of its task id, the same')
    const file = await app.inject({ method: 'GET', url: `/v1/containers/${id}/archive?path=/tmp/one&replica=1`, headers: auth('alice') })
    t.equal(file.statusCode, 200, 'the file, from replica 1')
    const none = await app.inject({ method: 'GET', url: `/v1/containers/${id}/archive?path=/tmp/one&replica=2`, headers: auth('alice') })
    t.equal(none.statusCode, 404, 'not in replica 2')
    t.match((await exec('7', ['true'])).json(), { status: 404, code: 'not_found', detail: /no replica 7/ })
    t.match((await exec('zzzz', ['true'])).json(), { status: 404, code: 'not_found', detail: /task id starts with zzzz/ })
    const stats = await app.inject({ method: 'GET', url: `/v1/containers/${id}/stats`, headers: { ...auth('alice'), accept: 'application/json' } })
    t.equal(stats.statusCode, 200, stats.body)
    t.ok(stats.json().pids >= 2, `both replicas' readings, added up: ${stats.body}`)
    const stop = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })
    t.equal(stop.statusCode, 200, stop.body)
    t.match((await exec('1', ['true'])).json(), { status: 409, code: 'container_not_running' }, 'a stopped one has nothing to exec in')

    const anywhere = await app.inject({ method: 'POST', url: '/v1/volumes', headers: auth('alice'), payload: { name: `${RUN}-anywhere` } })
    t.equal(anywhere.statusCode, 201, anywhere.body)
    t.equal(anywhere.json().nodes.length, 1, `made on one node berth chose: ${anywhere.body}`)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/volumes/${RUN}-anywhere`, headers: auth('alice') })).statusCode, 204)

    const wrong = await backend.build(t, { config: { deployment }, agentSecret: randomBytes(32).toString('hex') })
    const refused = await wrong.inject({ method: 'GET', url: '/v1/volumes', headers: auth('admin') })
    t.equal(refused.statusCode, 503, refused.body)
    t.match(refused.json(), { code: 'engine_unavailable', detail: /did not accept berth's key/ }, 'an agent that holds another secret: berth says which setting to fix')
  })
}
