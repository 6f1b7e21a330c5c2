// The Swarm backend on the real three-node test cluster (scripts/swarm-env.sh): replicas over nodes,
// placement, host-mode port conflicts answered instead of left pending, a lost node, scaling, logs and
// events of all tasks, ownership across services, and the policy holding on a cluster.
import { mkdirSync, rmSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import t from 'tap'
import { HTTPD, RUN, RUN_LABEL, auth, freePort, runBody, waitFor } from './helpers.ts'
import { fetchFrom, holdCluster, manager, nodeEngine, swarmBackend, swarmEnv, swarmNode, type SwarmEnv } from './backends.ts'
import { StreamClient, listen, type SseMessage } from './stream-client.ts'

interface Task { id: string, slot: number | null, node: string | null, address: string | null, state: string, error: string | null, ports: Array<{ host: number | null, hostIp: string }> }

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const backend = swarmBackend
  const nodeNames = Object.keys(cluster.nodes)
  const deployment = `swarm-${RUN}`

  t.before(async () => {
    await holdCluster(t)
  })
  t.teardown(() => backend.cleanup())

  const body = (suffix: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-sw-${suffix}`, command: HTTPD, stopTimeout: 1, ...extra })

  t.test('replicas spread over the nodes, and each answers on its node', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const port = await freePort()
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('spread', { replicas: 3, ports: [{ container: 80, host: port }] }) })
    t.equal(run.statusCode, 201, run.body)
    const container = run.json()
    t.match(container, { state: 'running', replicas: { count: 3, running: 3 } })
    const tasks = container.tasks as Task[]
    t.same(tasks.map(task => task.node).sort(), nodeNames, 'one replica on each node (host-mode ports cannot share one)')
    for (const task of tasks) {
      t.equal(task.address, cluster.nodes[task.node as string])
      t.same(task.ports, [{ container: 80, host: port, protocol: 'tcp', hostIp: task.address }])
      t.equal((await fetchFrom(task.address as string, port)).trim(), 'hello from berth-test', `${task.node} answers on ${task.address}:${port}`)
    }
    const ps = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })
    t.match(ps.json(), [{ id: container.id, state: 'running', status: 'Up: 3/3 running', replicas: { count: 3, running: 3 } }])
    t.equal(ps.json()[0].tasks.length, 3)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}?force=true`, headers: auth('alice') })).statusCode, 204)
  })

  t.test('placement: node.labels.gpu==true runs every replica on node2', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('gpu', { replicas: 2, placement: { constraints: ['node.labels.gpu==true'] } }) })
    t.equal(run.statusCode, 201, run.body)
    t.same(run.json().tasks.map((task: Task) => task.node), ['node2', 'node2'])
    t.same(run.json().placement, { constraints: ['node.labels.gpu==true'], spread: [] })
    const spread = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('zones', { replicas: 3, placement: { spread: ['node.hostname'] } }) })
    t.equal(spread.statusCode, 201, spread.body)
    t.same(spread.json().tasks.map((task: Task) => task.node).sort(), nodeNames, 'spread over node.hostname: one on each')
    const nodes = await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })
    t.equal(nodes.statusCode, 200)
    t.match(nodes.json(), nodeNames.map(name => ({ name, address: cluster.nodes[name], state: 'ready', availability: 'active' })))
    t.match(nodes.json(), [{ role: 'manager', leader: true }, { role: 'worker', labels: { gpu: 'true' } }, { role: 'worker', labels: {} }])
    t.ok(nodes.json().every((node: { resources: { cpus: number, memory: number } }) => node.resources.cpus > 0 && node.resources.memory > 0), 'resources')
  })

  t.test('a host-mode port taken on every eligible node is 409 at once, not a task pending forever; nothing is left', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const port = await freePort()
    const gpu = { placement: { constraints: ['node.labels.gpu==true'] } }
    const holder = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('only-gpu', { ...gpu, ports: [{ container: 80, host: port }] }) })
    t.equal(holder.statusCode, 201, holder.body)
    const before = await backend.leftovers()
    const started = performance.now()
    const clash = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('gpu-clash', { ...gpu, ports: [{ container: 80, host: port }] }) })
    t.comment(`answered in ${(performance.now() - started).toFixed(0)} ms`)
    t.equal(clash.statusCode, 409, clash.body)
    t.match(clash.json(), { code: 'port_conflict', port, holder: { id: holder.json().id, name: holder.json().name }, detail: `host port ${port} is already allocated by container ${holder.json().name}` })
    t.same((await backend.leftovers()).sort(), before.sort(), 'the refused service was removed')
    // Without the constraint another node has the port free: a second service on it is fine.
    const elsewhere = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('elsewhere', { ports: [{ container: 80, host: port }], placement: { constraints: ['node.labels.gpu!=true'] } }) })
    t.equal(elsewhere.statusCode, 201, elsewhere.body)
    t.not(elsewhere.json().tasks[0].node, 'node2')
  })

  t.test('placement that no node can meet says why: 409 placement_failed, nothing left', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const before = await backend.leftovers()
    const nowhere = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('nowhere', { placement: { constraints: ['node.labels.zone==mars'] } }) })
    t.equal(nowhere.statusCode, 409, nowhere.body)
    t.match(nowhere.json(), { code: 'placement_failed', reason: 'constraints', detail: /scheduling constraints not satisfied on 3 nodes/ })
    const huge = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('huge', { resources: { reservations: { memory: 2 ** 45 } } }) })
    t.equal(huge.statusCode, 409, huge.body)
    t.match(huge.json(), { code: 'placement_failed', reason: 'resources', detail: /insufficient resources on 3 nodes/ })
    const missing = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('missing', { image: `${cluster.registry}/berth-test/nope:1` }) })
    t.equal(missing.statusCode, 404, missing.body)
    t.equal(missing.json().code, 'image_not_found')
    const badName = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('dotted.name') })
    t.equal(badName.statusCode, 400, badName.body)
    t.match(badName.json(), { code: 'validation_failed', detail: /must be a DNS name component/, errors: [{ path: '/name' }] })
    const badConstraint = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('bad', { placement: { constraints: ['node.labels.gpu=true'] } }) })
    t.equal(badConstraint.statusCode, 400, 'a malformed constraint never reaches the manager')
    t.equal(badConstraint.json().code, 'validation_failed')
    t.same((await backend.leftovers()).sort(), before.sort())
  })

  t.test('a replica that cannot start in time is 504 placement_timeout, and removed', async t => {
    // A "registry" that accepts connections and never answers: the node's pull hangs in preparing.
    const held: Socket[] = []
    const silent: Server = createServer(socket => { held.push(socket) })
    await new Promise<void>(resolve => silent.listen(0, '10.250.0.254', resolve))
    t.teardown(() => {
      for (const socket of held) socket.destroy()
      silent.close()
    })
    const { port } = silent.address() as { port: number }
    const app = await backend.build(t, { config: { deployment, engine: { placementTimeoutMs: 1500 } } })
    const before = await backend.leftovers()
    const stuck = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('stuck', { image: `10.250.0.254:${port}/berth-test/hang:1`, pull: 'never' }) })
    t.equal(stuck.statusCode, 504, stuck.body)
    t.match(stuck.json(), { code: 'placement_timeout', detail: /did not run 1 replica within 1500 ms: 1: (preparing|assigned|accepted|pending)/ })
    t.same((await backend.leftovers()).sort(), before.sort())
  })

  t.test('scale: more replicas, the same count, fewer; a stopped container keeps its count for start', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('scale') })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    const scale = async (replicas: number) => await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('alice'), payload: { replicas } })
    const up = await scale(3)
    t.equal(up.statusCode, 200, up.body)
    t.match(up.json(), { changed: true, container: { replicas: { count: 3, running: 3 }, state: 'running' } })
    t.match((await scale(3)).json(), { changed: false })
    const down = await scale(1)
    t.match(down.json(), { changed: true, container: { replicas: { count: 1 } } })
    await waitFor('one replica left', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(), c => c.replicas.running === 1)
    t.match((await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })).json(), { changed: true, container: { state: 'exited', replicas: { count: 1, running: 0 } } })
    t.match((await scale(2)).json(), { changed: true, container: { state: 'exited', replicas: { count: 2, running: 0 } } }, 'stopped: the count is kept for start')
    const start = await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })
    t.match(start.json(), { changed: true, container: { state: 'running', replicas: { count: 2, running: 2 } } })
    const restart = await app.inject({ method: 'POST', url: `/v1/containers/${id}/restart`, headers: auth('alice') })
    t.equal(restart.statusCode, 200, restart.body)
    const oldTasks = start.json().container.tasks.map((task: Task) => task.id)
    t.match(restart.json(), { changed: true, container: { state: 'running', replicas: { count: 2, running: 2 } } })
    t.notOk(restart.json().container.tasks.some((task: Task) => oldTasks.includes(task.id)), 'restart replaced every replica')
    const timeout = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop?timeout=3`, headers: auth('alice') })
    t.equal(timeout.statusCode, 501)
    t.match(timeout.json(), { code: 'not_supported', backend: 'swarm', detail: /stopTimeout/ })
    const bobs = await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('bob'), payload: { replicas: 5 } })
    t.equal(bobs.statusCode, 404, 'bob cannot scale alice\'s container')
    const invalid = await scale(0)
    t.equal(invalid.statusCode, 400, 'zero replicas is a stop, not a scale')
  })

  t.test('a node lost: /v1/nodes says down, and its replica runs again on another node', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const port = await freePort()
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('survive', { restart: { policy: 'always' }, ports: [{ container: 80, host: port }], placement: { constraints: ['node.role==worker'] } }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    const lost = run.json().tasks[0].node as string
    t.teardown(() => swarmNode('start-node', lost))
    const base = await listen(app)
    const events = await StreamClient.open(`${base}/v1/events`, { headers: auth('reader') })
    t.teardown(() => events.close())
    t.equal((await events.sse())?.retry, 2000)
    const started = performance.now()
    await swarmNode('kill-node', lost)
    const nodes = await waitFor(`${lost} reported down`, async () => (await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })).json(),
      (list: Array<{ name: string, state: string }>) => list.some(node => node.name === lost && node.state === 'down'), 30_000)
    t.match(nodes.find((node: { name: string }) => node.name === lost), { state: 'down' })
    t.comment(`${lost} down after ${(performance.now() - started).toFixed(0)} ms`)
    for (;;) {
      const message = await events.sseData(20_000)
      if (message === null) throw new Error('the event stream ended')
      const event = message.data as { type: string, name: string, detail?: string }
      if (event.type !== 'node' || event.name !== lost || !/→ down/.test(event.detail ?? '')) continue
      t.match(event, { type: 'node', action: 'update', name: lost, detail: 'state ready → down' }, 'the node event, to any token that can read')
      break
    }
    const moved = await waitFor('the replica running on another node', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(),
      c => c.tasks.some((task: Task) => task.state === 'running' && task.node !== lost), 60_000)
    t.comment(`rescheduled after ${(performance.now() - started).toFixed(0)} ms`)
    const task = (moved.tasks as Task[]).find(task => task.state === 'running' && task.node !== lost) as Task
    t.ok(task.node !== 'node1' && task.node !== lost, `on the other worker (${task.node})`)
    t.equal((await fetchFrom(task.address as string, port)).trim(), 'hello from berth-test', `answers on ${task.address}:${port}`)
    await swarmNode('start-node', lost)
    await waitFor(`${lost} ready again`, async () => (await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })).json(),
      (list: Array<{ name: string, state: string }>) => list.every(node => node.state === 'ready'), 30_000)
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
  })

  t.test('the policy holds on a cluster: ports, images, binds, quotas', async t => {
    const root = `/tmp/berth-binds-${RUN}`
    // A deployment of its own, so the quota counts only what this test runs.
    const policyDeployment = `${deployment}-policy`
    mkdirSync(`${root}/${policyDeployment}/alice`, { recursive: true })
    t.teardown(() => rmSync(root, { recursive: true, force: true }))
    const app = await backend.build(t, {
      config: {
        deployment: policyDeployment,
        policy: {
          hostPortMin: 31100,
          hostPortMax: 31120,
          images: [`${cluster.registry}/berth-test/*`],
          bindPaths: [root],
          quota: { containers: 3 }
        }
      }
    })
    const outside = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('p1', { ports: [{ container: 80, host: 8080 }] }) })
    t.equal(outside.statusCode, 403)
    t.match(outside.json(), { code: 'policy_denied', rule: 'hostPorts' })
    const ranged = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('ranged', { ports: [{ container: 80 }] }) })
    t.equal(ranged.statusCode, 201, ranged.body)
    const [binding] = ranged.json().ports
    t.ok(binding.host >= 31100 && binding.host <= 31120, `a port from the allowed range: ${binding.host}`)
    t.equal((await fetchFrom(binding.hostIp, binding.host)).trim(), 'hello from berth-test')
    const image = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('img', { image: `${cluster.registry}/other/busybox:1` }) })
    t.equal(image.statusCode, 403)
    t.match(image.json(), { code: 'policy_denied', rule: 'images' })
    const foreign = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('bind', { volumes: [{ source: '/etc', target: '/x' }] }) })
    t.equal(foreign.statusCode, 403)
    t.match(foreign.json(), { code: 'policy_denied', rule: 'bindPaths' })
    const own = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('own', { command: ['sh', '-c', 'echo from-the-node > /data/out; sleep 300'], volumes: [{ source: `${root}/${policyDeployment}/alice`, target: '/data' }] }) })
    t.equal(own.statusCode, 201, own.body)
    const quota = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('many', { replicas: 2 }) })
    t.equal(quota.statusCode, 403, 'two running and two more replicas would be four of three')
    t.match(quota.json(), { code: 'quota_exceeded', limit: 'containers', used: 2 })
    const scale = await app.inject({ method: 'POST', url: `/v1/containers/${ranged.json().id}/scale`, headers: auth('alice'), payload: { replicas: 3 } })
    t.equal(scale.statusCode, 403, 'nor can a scale go around the quota')
    t.equal(scale.json().code, 'quota_exceeded')
  })

  t.test('logs of every replica: tail, timestamps, since, and follow', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('logs', { replicas: 2, command: ['sh', '-c', 'echo hello from $(hostname); echo oops >&2; while true; do sleep 0.2; echo tick; done'] }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    const taskIds = (run.json().tasks as Task[]).map(task => task.id).sort()
    const logs = await waitFor('both replicas\' first lines', async () => {
      const response = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?timestamps=true`, headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
      return response.body.trim().split('\n').filter(Boolean).map(line => JSON.parse(line))
    }, (entries: Array<{ line: string }>) => entries.filter(entry => entry.line.startsWith('hello from')).length === 2)
    const hello = logs.filter((entry: { line: string }) => entry.line.startsWith('hello from'))
    t.same(hello.map((entry: { task: string }) => entry.task).sort(), taskIds, 'a line from each replica, with its task')
    t.ok(hello.every((entry: { node: string, time: string }) => nodeNames.includes(entry.node) && /^\d{4}-\d\d-\d\dT/.test(entry.time)), 'and its node and time')
    t.ok(logs.some((entry: { stream: string, line: string }) => entry.stream === 'stderr' && entry.line === 'oops'), 'stderr apart')
    const tail = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?tail=1`, headers: auth('alice') })
    t.equal(tail.statusCode, 200)
    t.ok(tail.body.trim().split('\n').length <= 2, 'tail=1: the last line of each replica')
    const future = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?since=${Math.floor(Date.now() / 1000) + 3600}`, headers: auth('alice') })
    t.equal(future.body, '', 'nothing since an hour from now')
    const until = await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs?until=${Math.floor(Date.now() / 1000) - 3600}`, headers: auth('alice') })
    t.equal(until.body, '', 'nothing until an hour ago')

    const base = await listen(app)
    const follow = await StreamClient.open(`${base}/v1/containers/${id}/logs?follow=true&tail=0`, { headers: auth('alice') })
    t.equal(follow.status, 200)
    const line = await follow.line()
    t.equal(line, 'tick', 'follow brings new lines as they come')
    follow.close()
  })

  t.test('events: services as containers, their tasks, nodes; only the token\'s own; resumable', async t => {
    const app = await backend.build(t, { config: { deployment, streams: { heartbeatMs: 500 } } })
    const base = await listen(app)
    const open = async (who: 'alice' | 'bob' | 'reader', headers: Record<string, string> = {}) => {
      const client = await StreamClient.open(`${base}/v1/events`, { headers: { ...auth(who), ...headers } })
      t.equal(client.status, 200)
      t.equal((await client.sse())?.retry, 2000)
      return client
    }
    const alice = await open('alice')
    const bob = await open('bob')
    t.teardown(() => { alice.close(); bob.close() })
    const aliceRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('ev-a') })
    t.equal(aliceRun.statusCode, 201, aliceRun.body)
    const id = aliceRun.json().id as string
    const bobRun = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: body('ev-b') })
    t.equal(bobRun.statusCode, 201, bobRun.body)
    await app.inject({ method: 'POST', url: `/v1/containers/${id}/scale`, headers: auth('alice'), payload: { replicas: 2 } })
    await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })
    await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })
    await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })

    const read = async (client: StreamClient, until: (events: SseMessage[]) => boolean): Promise<SseMessage[]> => {
      const kept: SseMessage[] = []
      while (!until(kept)) {
        const message = await client.sseData(20_000)
        if (message === null) throw new Error(`the stream ended after ${JSON.stringify(kept)}`)
        kept.push(message)
      }
      return kept
    }
    type Event = { type: string, action: string, id: string, service?: string, node?: string }
    const has = (type: string, action: string, of: string) => (kept: SseMessage[]) => kept.some(m => {
      const event = m.data as Event
      return event.type === type && event.action === action && (event.id === of || event.service === of)
    })
    const forAlice = await read(alice, has('container', 'destroy', id))
    const events = forAlice.map(message => message.data as Event)
    const mine = events.filter(event => event.id === id || event.service === id)
    const containerActions = mine.filter(event => event.type === 'container').map(event => event.action)
    t.ok(['create', 'scale', 'stop', 'start', 'destroy'].every(action => containerActions.includes(action)), `the service's lifecycle: ${containerActions.join(' ')}`)
    t.ok(mine.some(event => event.type === 'task' && event.action === 'running' && nodeNames.includes(event.node as string)), 'its task ran, on a node')
    t.notOk(events.some(event => event.id === bobRun.json().id || event.service === bobRun.json().id), 'nothing of bob\'s service')
    const forBob = await read(bob, has('task', 'running', bobRun.json().id))
    t.notOk(forBob.some(message => (message.data as Event).id === id || (message.data as Event).service === id), 'bob sees nothing of alice\'s')

    // Resume from the first event: the rest comes again, and not that one. Task events interleave
    // with the manager's by when berth read them, so the order may differ; and the tasks of a removed
    // service are gone with it (the manager deletes them), so only the service's own events return.
    const key = (message: SseMessage) => { const event = message.data as Event & { time: string }; return `${event.type}/${event.action}/${event.id}/${event.time}` }
    const about = (of: string, type?: string) => (messages: SseMessage[]) => messages
      .filter(m => ((m.data as Event).id === of || (m.data as Event).service === of) && (type === undefined || (m.data as Event).type === type)).map(key).sort()
    const first = forAlice[0] as SseMessage
    t.equal((first.data as Event).id, id, 'the first event is the service\'s create')
    const resumed = await open('alice', { 'last-event-id': first.id as string })
    t.teardown(() => resumed.close())
    const again = await read(resumed, has('container', 'destroy', id))
    t.same(about(id, 'container')(again), about(id, 'container')(forAlice.slice(1)), 'resumed right after the event, nothing repeated')
    const bobFirst = forBob[0] as SseMessage
    const bobResumed = await open('bob', { 'last-event-id': bobFirst.id as string })
    t.teardown(() => bobResumed.close())
    const bobId = bobRun.json().id as string
    const bobAgain = await read(bobResumed, has('task', 'running', bobId))
    t.same(about(bobId, 'task')(bobAgain), about(bobId, 'task')(forBob.filter(m => m !== bobFirst)), 'a live service\'s task events come again on resume')
    const bad = await app.inject({ method: 'GET', url: '/v1/events', headers: { ...auth('alice'), 'last-event-id': 'nope' } })
    t.equal(bad.statusCode, 400)
  })

  t.test('ingress publishing: a cluster-wide port a second service cannot have', async t => {
    const app = await backend.build(t, { config: { deployment, engine: { publishMode: 'ingress' } } })
    const port = await freePort()
    const first = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('ingress', { ports: [{ container: 80, host: port }] }) })
    t.equal(first.statusCode, 201, first.body)
    t.match(first.json().ports, [{ container: 80, host: port, hostIp: '' }], 'published on every node (no task address)')
    const second = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('ingress2', { ports: [{ container: 80, host: port }] }) })
    t.equal(second.statusCode, 409, second.body)
    t.match(second.json(), { code: 'port_conflict', port, holder: { id: first.json().id, name: first.json().name } })
    const bobs = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('bob'), payload: body('ingress3', { ports: [{ container: 80, host: port }] }) })
    t.equal(bobs.statusCode, 409)
    t.notOk('holder' in bobs.json(), 'redacted for bob')
    const chosen = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('ingress4', { ports: [{ container: 80 }] }) })
    t.equal(chosen.statusCode, 201, chosen.body)
    const host = chosen.json().ports[0].host as number
    t.ok(host >= 32768 && host <= 60999, `berth chose ${host}, in the range a single engine hands out, not the manager's 30000-32767`)
  })

  t.test('what a cluster does not have is 501 not_supported, never imitated; without agents, what is on the nodes', async t => {
    const app = await backend.build(t, { config: { deployment } })
    for (const [method, url, payload, why] of [
      ['POST', '/v1/images/build', undefined, /no builder engine is configured/],
      ['GET', '/v1/system/df', undefined, /no builder engine is configured/]
    ] as const) {
      const response = await app.inject({ method, url, headers: auth('admin'), ...(payload ? { payload } : {}) })
      t.equal(response.statusCode, 501, `${method} ${url}`)
      t.match(response.json(), { code: 'not_supported', backend: 'swarm', detail: why })
    }
    const bare = await backend.build(t, { config: { deployment }, noAgents: true })
    for (const [method, url, payload] of [
      ['GET', '/v1/images', undefined], ['POST', '/v1/images/pull', { image: 'busybox' }], ['GET', '/v1/volumes', undefined],
      ['POST', '/v1/containers/x/exec', { command: ['sh'] }], ['GET', '/v1/containers/x/stats', undefined], ['GET', '/v1/containers/x/archive?path=/', undefined]
    ] as const) {
      const response = await bare.inject({ method, url, headers: auth('admin'), ...(payload ? { payload } : {}) })
      t.equal(response.statusCode, 501, `without agents: ${method} ${url}`)
      t.match(response.json(), { code: 'not_supported', backend: 'swarm', detail: /reaches through its agent on each \(deploy\/swarm\/agent\.yml\): set BERTH_SWARM_AGENT_SECRET_FILE/ })
    }
    const volume = await bare.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('vol', { volumes: [{ source: 'data', target: '/data' }] }) })
    t.match(volume.json(), { status: 501, code: 'not_supported', detail: /named volumes/ }, 'a run that mounts a volume, before anything is made')
    const anonymous = await app.inject({ method: 'GET', url: '/v1/images' })
    t.equal(anonymous.statusCode, 401, 'authentication comes first')
    const pinned = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('pinned', { ports: [{ container: 80, hostIp: '127.0.0.1' }] }) })
    t.match(pinned.json(), { status: 501, code: 'not_supported', detail: /every address of a node/ })
    const agentPort = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('agent-port', { ports: [{ container: 80, host: cluster.agentPort }] }) })
    t.equal(agentPort.statusCode, 403, 'nor the port berth\'s agents listen on, which policy allows')
    t.match(agentPort.json(), { code: 'policy_denied', rule: 'hostPorts', detail: /berth's agent listens/ })
    const gpus = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('gpus', { gpus: 1 }) })
    t.match(gpus.json(), { status: 501, code: 'not_supported', detail: /generic resources/ })
    t.same(await (manager as NonNullable<typeof manager>).listServices({ filters: { name: [`${RUN}-sw-vol`, `${RUN}-sw-pinned`, `${RUN}-sw-gpus`, `${RUN}-sw-agent-port`] } }), [], 'refused before anything was made')
  })

  t.test('a node that refuses what it was given says why: image, bind source, a port held outside the swarm', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const before = await backend.leftovers()
    // pull "never": berth does not ask the registry, so the node is the one to find the image missing.
    const absent = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('absent', { image: `${cluster.registry}/berth-test/absent:1`, pull: 'never' }) })
    t.equal(absent.statusCode, 404, absent.body)
    t.match(absent.json(), { code: 'image_not_found', detail: /the node could not get the container's image/ })
    const binds = await backend.build(t, { config: { deployment, policy: { bindPaths: ['/tmp'] } } })
    const noSource = await binds.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('nobind', { volumes: [{ source: `/tmp/${deployment}/alice`, target: '/data' }] }) })
    t.equal(noSource.statusCode, 409, noSource.body)
    t.match(noSource.json(), { code: 'placement_failed', reason: 'mount', detail: /bind source must exist on the node/ })
    // A container the swarm does not know of holds the port on node2: the scheduler places the task
    // there, and the node fails to start it.
    const port = await freePort()
    const node2 = nodeEngine('node2')
    const squatter = await node2.createContainer({
      Image: cluster.image, Cmd: HTTPD, Labels: { [RUN_LABEL]: RUN }, ExposedPorts: { '80/tcp': {} }, HostConfig: { PortBindings: { '80/tcp': [{ HostPort: String(port) }] } }
    })
    await squatter.start()
    t.teardown(() => squatter.remove({ force: true }).catch(() => {}))
    const clash = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('squat', { ports: [{ container: 80, host: port }], placement: { constraints: ['node.hostname==node2'] } }) })
    t.equal(clash.statusCode, 409, clash.body)
    t.match(clash.json(), { code: 'port_conflict', port, detail: /already allocated on the node the container was placed on/ })
    t.notOk('holder' in clash.json(), 'the holder is no container berth knows')
    await squatter.remove({ force: true })
    t.same((await backend.leftovers()).sort(), before.sort())
  })

  t.test('what a run body names reaches every replica; the manager names an unnamed one', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({
      method: 'POST',
      url: '/v1/containers',
      headers: auth('alice'),
      payload: runBody({
        image: cluster.image,
        entrypoint: ['sh', '-c'],
        command: ['echo "$GREETING from $(pwd) as $(id -u)"; sleep 300'],
        env: { GREETING: 'hi' },
        workingDir: '/www',
        user: '1000',
        tty: true,
        stopTimeout: 1,
        labels: { team: 'ml' },
        restart: { policy: 'on-failure', maxRetries: 3 },
        resources: { memory: 64 * 1024 * 1024, cpus: 0.5, reservations: { memory: 32 * 1024 * 1024, cpus: 0.25 } }
      })
    })
    t.equal(run.statusCode, 201, run.body)
    const container = run.json()
    t.match(container, {
      name: /^[a-z]+_[a-z]+$/,
      command: ['sh', '-c', 'echo "$GREETING from $(pwd) as $(id -u)"; sleep 300'],
      labels: { team: 'ml', 'io.berth.owner': 'alice' },
      restart: { policy: 'on-failure', maxRetries: 3 },
      resources: { memory: 64 * 1024 * 1024, cpus: 0.5 },
      reservations: { memory: 32 * 1024 * 1024, cpus: 0.25 },
      imageDigest: cluster.imageDigest.split('@')[1],
      image: cluster.image
    })
    const logs = await waitFor('its first line', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${container.id}/logs`, headers: auth('alice') })).body, body => body.includes('hi'))
    t.equal(logs.trim(), 'hi from /www as 1000', 'env, working dir and user reached the task (a TTY: one stream)')
    const inspected = await (manager as NonNullable<typeof manager>).getService(container.id).inspect()
    t.notOk(JSON.stringify(inspected).includes('hi from'), 'sanity: the command is in the spec, not its output')
    t.equal(inspected.Spec.TaskTemplate.ContainerSpec.Env[0], 'GREETING=hi')
  })

  t.test('a command that ends: run answers once it ran, ps -a shows it exited, start runs it again', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('once', { command: ['sh', '-c', 'echo done; exit 3'] }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    const exited = await waitFor('it to exit', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(), c => c.state === 'exited')
    t.match(exited, { state: 'exited', running: false, exitCode: 3, finishedAt: /Z$/, replicas: { count: 1, running: 0 } })
    const running = await app.inject({ method: 'GET', url: `/v1/containers?name=${RUN}-sw-once`, headers: auth('alice') })
    t.same(running.json(), [], 'ps lists only what runs')
    const byStatus = await app.inject({ method: 'GET', url: `/v1/containers?all=true&status=exited&label=${RUN_LABEL}=${RUN}`, headers: auth('alice') })
    t.ok(byStatus.json().some((c: { id: string, status: string }) => c.id === id && /^Exited \(3\)/.test(c.status)), 'ps -a --filter status=exited shows it, with its exit code')
    const none = await app.inject({ method: 'GET', url: '/v1/containers?all=true&label=no-such-label', headers: auth('alice') })
    t.same(none.json(), [])
    const start = await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })
    t.equal(start.statusCode, 200, start.body)
    t.equal(start.json().changed, true, 'start runs the command again')
    const logs = await waitFor('two runs in the logs', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}/logs`, headers: auth('alice') })).body, body => body.split('done').length === 3)
    t.equal(logs, 'done\ndone\n')
    await waitFor('the second run to exit', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(),
      c => c.state === 'exited' && !c.tasks.some((task: Task) => task.id === exited.tasks[0].id))
    const stop = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })
    t.match(stop.json(), { changed: false, container: { state: 'exited' } }, 'stopping what already ended changes nothing')
    const before = stop.json().container.tasks.map((task: Task) => task.id)
    const restart = await app.inject({ method: 'POST', url: `/v1/containers/${id}/restart`, headers: auth('alice') })
    t.equal(restart.statusCode, 200, 'restart of a stopped container runs it')
    const after = await waitFor('a new task of it to exit', async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json(),
      c => c.state === 'exited' && c.tasks.some((task: Task) => !before.includes(task.id)))
    t.equal(after.exitCode, 3)
    const rm = await app.inject({ method: 'DELETE', url: `/v1/containers/${id}`, headers: auth('alice') })
    t.equal(rm.statusCode, 204, 'an ended container is removed without force')
  })

  t.test('an image only on the nodes runs unpinned; a host port range with none free is 409', async t => {
    const app = await backend.build(t, { config: { deployment: `${deployment}-range`, policy: { hostPortMin: 31140, hostPortMax: 31140 } } })
    const local = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('local', { image: 'berth-test/busybox:1', ports: [{ container: 80 }] }) })
    t.equal(local.statusCode, 201, local.body)
    t.match(local.json(), { image: 'berth-test/busybox:1', imageDigest: null, ports: [{ host: 31140 }] }, 'no registry to pin it from: it runs as named')
    const full = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('full', { ports: [{ container: 80 }] }) })
    t.equal(full.statusCode, 409, full.body)
    t.match(full.json(), { code: 'port_conflict', detail: 'no host port is free in the allowed range' })
  })

  t.test('registry credentials reach the nodes that pull, and stay out of what berth shows', async t => {
    const app = await backend.build(t, { config: { deployment } })
    const credentials = { username: cluster.authUser, password: cluster.authPassword }
    const on = (node: string) => ({ placement: { constraints: [`node.hostname==${node}`] } })
    const refused = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('private-none', { image: cluster.authImage, command: ['sleep', '300'] }) })
    t.equal(refused.statusCode, 502, refused.body)
    t.match(refused.json(), { code: 'pull_failed', reason: 'registry_auth', detail: /wants credentials|refused access/ })
    const nodeRefused = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('private-node', { image: cluster.authImage, pull: 'never', command: ['sleep', '300'], ...on('node3') }) })
    // Without credentials the node's pull fails, and all it reports is that it has no such image.
    t.equal(nodeRefused.statusCode, 404, nodeRefused.body)
    t.match(nodeRefused.json(), { code: 'image_not_found', detail: /the node could not get the container's image: No such image/ })
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('private', { image: cluster.authImage, auth: credentials, command: ['sleep', '300'], replicas: 2, ...on('node3') }) })
    t.equal(run.statusCode, 201, run.body)
    t.match(run.json(), { imageDigest: /^sha256:/, replicas: { running: 2 } }, 'pinned with the credentials, pulled by node3 with them')
    t.notOk(run.body.includes(cluster.authPassword), 'the password is in no reply')
    const raw = await (manager as NonNullable<typeof manager>).getService(run.json().id).inspect()
    t.notOk(JSON.stringify(raw).includes(cluster.authPassword), 'nor in what the manager shows of the service')
    const serverSide = await backend.build(t, { config: { deployment, registryAuth: { [cluster.authRegistry]: credentials } } })
    const configured = await serverSide.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('private-cfg', { image: cluster.authImage, command: ['sleep', '300'], ...on('node2') }) })
    t.equal(configured.statusCode, 201, `BERTH_REGISTRY_AUTH_FILE credentials too: ${configured.body}`)
  })

  t.test('berth pointed at a worker instead of a manager: 503, saying so', async t => {
    const app = await backend.build(t, { socketPath: cluster.nodeSockets.node2 as string, config: { deployment } })
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503)
    t.match(ready.json(), { code: 'engine_unavailable', detail: /not a swarm manager/ })
    t.equal(ready.headers['retry-after'], '5')
    const list = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })
    t.equal(list.statusCode, 503)
  })

  t.test('what berth left on the nodes: only what this run still holds, all labelled', async t => {
    for (const node of nodeNames) {
      const containers = await nodeEngine(node).listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
      t.ok(containers.every(container => container.Labels['io.berth.deployment']?.startsWith(deployment) && container.Labels['io.berth.owner'] !== undefined), `${node}: task containers carry berth's labels`)
    }
  })
}
