// The swarm backend's copy of its manager (src/engine/swarm/copy.ts) on the test cluster: services made,
// scaled and removed on the manager behind berth's back, a service outside berth's deployment beside
// them, a node's labels changed, and the connection to the manager cut while a service is removed.
// After each, every read of the copy matches the manager's own answer once it has caught up (the copy
// asked to read the tasks again, and the two agree; task states move on their own, so they are read
// until they agree). Then berth on the copy: ps, inspect and the nodes asked again and again cost the
// manager no read; each of berth's own changes is in what it answers next (read-your-writes); and a
// change behind its back shows once the manager's event (or the task poll) has reached the copy.
import { isDeepStrictEqual } from 'node:util'
import type Docker from 'dockerode'
import t, { type Test } from 'tap'
import { DockerTransport } from '../src/engine/docker/transport.ts'
import { SwarmApi } from '../src/engine/swarm/api.ts'
import { SwarmCopy } from '../src/engine/swarm/copy.ts'
import { HTTPD, RUN, RUN_LABEL, auth, runBody, waitFor } from './helpers.ts'
import { buildSwarm, holdCluster, manager, swarmEnv, type SwarmEnv } from './backends.ts'
import { SocketProxy } from './socket-proxy.ts'

if (manager === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const docker = manager
  const HELD = [`${RUN_LABEL}=${RUN}`, 'berth.test.copy=swarm']
  const NODE_LABEL = `berth.test.copy-${RUN}`

  t.before(async () => { await holdCluster(t) })
  t.teardown(async () => {
    for (const service of await docker.listServices({ filters: { label: [`${RUN_LABEL}=${RUN}`] } })) await docker.getService(service.ID).remove().catch(() => {})
    for (const node of await docker.listNodes()) await setNodeLabel(node.ID, null).catch(() => {})
  })

  /** What the manager answers now, and what the copy holds, side by side in the same words. */
  const views = async (copy: SwarmCopy): Promise<{ copy: unknown, manager: unknown }> => {
    await copy.refreshTasks()
    const services = await docker.listServices({ filters: { label: HELD } })
    const ids = new Set(services.map(service => service.ID))
    const tasks = (await docker.listTasks()).filter(task => ids.has(task.ServiceID as string))
    const nodes = await docker.listNodes()
    const serviceView = (list: Array<{ ID?: string, Version?: { Index?: number }, Spec?: { Name?: string } }>) =>
      list.map(service => [service.ID, service.Version?.Index, service.Spec?.Name]).sort()
    const taskView = (list: Array<{ ID?: string, ServiceID?: string, DesiredState?: string, Status?: { State?: string } }>) =>
      list.map(task => [task.ID, task.ServiceID, task.DesiredState, task.Status?.State]).sort()
    const nodeView = (list: Array<{ ID?: string, Version?: { Index?: number }, Spec?: { Labels?: Record<string, string> } }>) =>
      list.map(node => [node.ID, node.Version?.Index, node.Spec?.Labels?.[NODE_LABEL] ?? null]).sort()
    return {
      copy: { services: serviceView(copy.services({ labels: HELD })), tasks: taskView(copy.tasks(null)), nodes: nodeView(copy.nodes()) },
      manager: { services: serviceView(services), tasks: taskView(tasks as never), nodes: nodeView(nodes as never) }
    }
  }

  const matches = async (t: Test, copy: SwarmCopy, what: string): Promise<void> => {
    const last = await waitFor(`the copy to agree with the manager ${what}`, async () => await views(copy), view => isDeepStrictEqual(view.copy, view.manager), 60_000)
    t.same(last.copy, last.manager, `${what}: the copy reads as the manager answers`)
  }

  const create = async (name: string, labels: Record<string, string>, replicas = 1): Promise<string> => {
    const made = await docker.createService({
      Name: name,
      Labels: labels,
      TaskTemplate: { ContainerSpec: { Image: cluster.image, Command: HTTPD } },
      Mode: { Replicated: { Replicas: replicas } }
    } as Docker.CreateServiceOptions) as unknown as { id?: string, ID?: string }
    return (made.ID ?? made.id) as string
  }

  async function setNodeLabel (id: string, value: string | null): Promise<void> {
    const node = docker.getNode(id)
    const info = await node.inspect() as { Version: { Index: number }, Spec: { Labels?: Record<string, string> } }
    const labels = { ...(info.Spec.Labels ?? {}) }
    if (value === null) {
      if (!(NODE_LABEL in labels)) return
      delete labels[NODE_LABEL]
    } else {
      labels[NODE_LABEL] = value
    }
    await node.update({ version: info.Version.Index, ...info.Spec, Labels: labels })
  }

  t.test('services, tasks and nodes changed on the manager: the copy reads as the manager answers', async t => {
    const proxy = new SocketProxy(cluster.socket)
    await proxy.start()
    t.teardown(() => proxy.close())
    const copy = new SwarmCopy(new SwarmApi(new DockerTransport({ socketPath: proxy.socketPath, timeoutMs: 20_000 })), { labels: HELD, pollMs: 200, retryMs: { first: 100, max: 1000 } })
    copy.start()
    t.teardown(() => copy.stop())
    await copy.ready(60_000)
    await matches(t, copy, 'at the start')

    const web = await create(`${RUN}-swc-web`, { [RUN_LABEL]: RUN, 'berth.test.copy': 'swarm' })
    const theirs = await create(`${RUN}-swc-theirs`, { [RUN_LABEL]: RUN, 'berth.test.copy': 'elsewhere' })
    await matches(t, copy, 'after two services were made')
    t.equal(copy.service(`${RUN}-swc-web`)?.ID, web, 'found by name')
    t.equal(copy.service(web.slice(0, 12))?.ID, web, 'found by an id prefix')
    t.equal(copy.service(`${RUN}-swc-theirs`), undefined, 'a service outside the labels it holds is not in it')
    t.equal(copy.service(theirs), undefined)
    t.same(copy.services({ name: `${RUN}-swc-web` }).map(service => service.ID), [web], 'the services of one name')
    t.same(copy.tasks([theirs]), [], 'nor are its tasks')
    t.ok(copy.tasks([web]).length > 0, 'the tasks of the service it holds')

    const service = docker.getService(web)
    const info = await service.inspect() as { Version: { Index: number }, Spec: Record<string, unknown> }
    await service.update({ version: info.Version.Index, ...info.Spec, Mode: { Replicated: { Replicas: 2 } } })
    await matches(t, copy, 'after it was scaled to 2')

    const node = (await docker.listNodes())[0]?.ID as string
    await setNodeLabel(node, 'yes')
    await matches(t, copy, 'after a node\'s labels changed')
    await setNodeLabel(node, null)
    await matches(t, copy, 'after they changed back')

    // Cut off while a service goes away: nothing it held then is trusted, and it lists again.
    const generation = copy.generation
    proxy.refuse()
    proxy.cut()
    await waitFor('the copy to notice the cut', () => copy.current, current => !current)
    await docker.getService(web).remove()
    proxy.allow()
    await copy.ready(60_000)
    t.ok(copy.generation > generation, 'it listed again')
    await matches(t, copy, 'after the cut')
    t.equal(copy.service(web), undefined, 'the service removed meanwhile is gone')
    t.same(copy.tasks([web]), [], 'and its tasks')

    await docker.getService(theirs).remove()
    const again = await create(`${RUN}-swc-again`, { [RUN_LABEL]: RUN, 'berth.test.copy': 'swarm' })
    await copy.refreshService(again)
    t.equal(copy.service(again)?.Spec.Name, `${RUN}-swc-again`, 'a service asked for is in the copy at once')
    await copy.refreshNodes()
    await docker.getService(again).remove()
    await matches(t, copy, 'at the end')
  })

  t.test('a copy that cannot reach its manager is not current, and says why', async t => {
    const copy = new SwarmCopy(new SwarmApi(new DockerTransport({ socketPath: `${cluster.state}/no-such.sock`, timeoutMs: 1000 })), { retryMs: { first: 50, max: 100 } })
    copy.start()
    t.teardown(() => copy.stop())
    await t.rejects(copy.ready(500), { code: 'engine_unavailable' })
    t.notOk(copy.current)
    await copy.refreshTasks()
    t.same(copy.tasks(null), [], 'nothing is held')
  })

  t.test('berth on the copy: reads cost the manager nothing, its own changes show at once, others\' soon', async t => {
    const proxy = new SocketProxy(cluster.socket)
    await proxy.start()
    t.teardown(() => proxy.close())
    const app = await buildSwarm(t, { socketPath: proxy.socketPath })
    t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'ready: the copy is current')
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.image, name: `${RUN}-swc-berth`, command: HTTPD, stopTimeout: 1 }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    t.teardown(async () => { await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') }) })
    // Its own write: the state it answered with is the state ps shows next.
    const listed = (await app.inject({ method: 'GET', url: '/v1/containers', headers: auth('alice') })).json() as Array<{ id: string, state: string }>
    t.equal(listed.find(container => container.id === id)?.state, 'running', 'ps right after the run shows it running')

    const before = proxy.requests.length
    for (let index = 0; index < 20; index++) {
      t.equal((await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).statusCode, 200)
      t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json().state, 'running')
      t.equal((await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })).statusCode, 200)
    }
    // The copy's own poll of every task goes on meanwhile (no event says a task changed); nothing else may.
    const asked = proxy.requests.slice(before).filter(line => !/^GET \/v[\d.]+\/tasks$/.test(line))
    t.same(asked, [], '60 reads asked the manager nothing but the copy\'s task poll')
    t.notOk(asked.some(line => line.includes('/nodes')), 'not even for the nodes')

    const stop = await app.inject({ method: 'POST', url: `/v1/containers/${id}/stop`, headers: auth('alice') })
    t.equal(stop.statusCode, 200, stop.body)
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json().state, 'exited', 'inspect right after the stop shows it stopped')
    const start = await app.inject({ method: 'POST', url: `/v1/containers/${id}/start`, headers: auth('alice') })
    t.equal(start.statusCode, 200, start.body)
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json().state, 'running', 'and right after the start, running')

    // Behind berth's back: the manager scales it to 2; berth shows both once the event has been read.
    const service = docker.getService(id)
    const info = await service.inspect() as { Version: { Index: number }, Spec: Record<string, unknown> }
    await service.update({ version: info.Version.Index, ...info.Spec, Mode: { Replicated: { Replicas: 2 } } })
    const scaled = await waitFor('berth to show the replicas the manager was asked for behind its back',
      async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json() as { replicas?: { count?: number } },
      container => container.replicas?.count === 2, 30_000)
    t.equal(scaled.replicas?.count, 2)
    // And removed behind its back: gone from ps.
    await service.remove()
    await waitFor('berth to forget the service removed behind its back',
      async () => (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, status => status === 404, 30_000)
    t.notOk(((await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: auth('alice') })).json() as Array<{ id: string }>).some(container => container.id === id), 'nor in ps')
  })
}
