// A node of the real three-node test cluster lost (its engine killed) while berth has work on it, for
// each restart policy at once: what should stay up comes back on another node, on-failure too (a lost
// node is a failure), `no` stays lost and says so; a run that may finish, lost mid-run, is over for wait
// and ps -a; an exec streaming in it ends with the node's engine unavailable; a pull meanwhile goes onto
// the nodes that answer, saying node3 is down.
import type { Test } from 'tap'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { HTTPD, RUN, auth, runBody, waitFor } from './helpers.ts'
import { holdCluster, nodeEngine, swarmBackend, swarmEnv, swarmNode, type SwarmEnv } from './backends.ts'

interface Task { slot: number | null, node: string | null, state: string, error: string | null }
interface Container { id: string, state: string, status: string, tasks: Task[] }

const LOST = 'node3'

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const backend = swarmBackend
  const deployment = `swarm-loss-${RUN}`

  t.before(async () => {
    await holdCluster(t)
  })
  t.teardown(() => backend.cleanup())

  const body = (suffix: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-sl-${suffix}`, command: HTTPD, stopTimeout: 1, ...extra })

  async function get (app: FastifyInstance, id: string): Promise<Container> {
    return (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).json()
  }

  /** Runs one on each worker (two replicas of one service are placed apart), and says so. */
  async function onEachWorker (t: Test, app: FastifyInstance, suffix: string, policy: string): Promise<string> {
    const run = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body(suffix, { replicas: 2, restart: { policy }, placement: { constraints: ['node.role==worker'] } }) })
    t.equal(run.statusCode, 201, run.body)
    t.same((run.json().tasks as Task[]).map(task => task.node).sort(), ['node2', LOST], `${policy}: a replica on each worker`)
    return run.json().id as string
  }

  t.test(`${LOST} lost: each restart policy, a run that may finish, an exec in it and a pull meanwhile`, async t => {
    const app = await backend.build(t, { config: { deployment } })
    const always = await onEachWorker(t, app, 'always', 'always')
    const onFailure = await onEachWorker(t, app, 'on-failure', 'on-failure')
    const no = await onEachWorker(t, app, 'no', 'no')
    const job = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('job', { command: ['sleep', '600'], placement: { constraints: [`node.hostname==${LOST}`] } }) })
    t.equal(job.statusCode, 201, job.body)
    const jobId = job.json().id as string

    // An exec streaming in the run on the node about to be lost; known to run once its process shows on the node.
    const exec = app.inject({ method: 'POST', url: `/v1/containers/${jobId}/exec`, headers: auth('alice'), payload: { command: ['sh', '-c', 'echo begun; exec sleep 987'] } })
    const node = nodeEngine(LOST)
    const [container] = await node.listContainers({ filters: { label: [`com.docker.swarm.service.id=${jobId}`] } })
    await waitFor('the exec running on the node', async () => (await node.getContainer((container as { Id: string }).Id).top()).Processes ?? [],
      (processes: string[][]) => processes.some(process => process.join(' ').includes('sleep 987')))

    t.teardown(() => swarmNode('start-node', LOST))
    await swarmNode('kill-node', LOST)

    const ended = await exec
    const lines = ended.body.trim().split('\n').map(line => JSON.parse(line) as { type: string, line?: string, problem?: { code: string, detail: string } })
    t.match(lines[0], { type: 'output', line: 'begun' }, 'the exec said what it said')
    t.match(lines.at(-1), { type: 'error', problem: { code: 'engine_unavailable' } }, `and ends with the node's engine unavailable, not an exit: ${ended.body}`)

    await waitFor(`${LOST} reported down`, async () => (await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })).json(),
      (list: Array<{ name: string, state: string }>) => list.some(node => node.name === LOST && node.state === 'down'), 30_000)

    const pulled = await app.inject({ method: 'POST', url: '/v1/images/pull', headers: auth('admin'), payload: { image: cluster.image } })
    t.equal(pulled.statusCode, 200, `a pull succeeds on the nodes that answer: ${pulled.body}`)
    t.match(Object.fromEntries((pulled.json().nodes as Array<{ node: string, state: string, reason: string | null }>).map(node => [node.node, [node.state, node.reason]])),
      { node1: ['pulled', null], node2: ['pulled', null], [LOST]: ['failed', 'node_down'] }, 'and says node3 is down')

    for (const [id, policy] of [[always, 'always'], [onFailure, 'on-failure']] as const) {
      const back = await waitFor(`${policy}: its second replica running on node2`, async () => await get(app, id),
        c => c.tasks.filter(task => task.state === 'running' && task.node === 'node2').length === 2, 60_000)
      t.equal(back.state, 'running', `${policy}: ${back.status}`)
      t.notOk(back.tasks.some(task => task.node === LOST && task.state === 'running'), `${policy}: nothing shown running on ${LOST}`)
    }

    const stays = await get(app, no)
    t.equal(stays.state, 'running', 'no: the replica on node2 runs on')
    const listed = await app.inject({ method: 'GET', url: `/v1/containers?name=${RUN}-sl-no`, headers: auth('alice') })
    t.match(listed.json(), [{ id: no, status: /^Up: 1\/2 running; lost with node3 \(down\)/ }], 'ps says which is lost')
    t.same(stays.tasks.map(task => [task.node, task.state]).sort(), [['node2', 'running'], [LOST, 'lost']], 'no: the one on node3 is lost, not replaced, never running')

    const waited = await app.inject({ method: 'POST', url: `/v1/containers/${jobId}/wait`, headers: auth('alice') })
    t.equal(waited.statusCode, 200, waited.body)
    t.match(waited.json(), { stopped: true, exitCode: null, error: /lost with node3/, replicas: [{ slot: 1, node: LOST, state: 'lost', exitCode: null }] }, 'a run that may finish, lost mid-run: wait is over')
    const ps = await app.inject({ method: 'GET', url: `/v1/containers?all=true&name=${RUN}-sl-job`, headers: auth('alice') })
    t.match(ps.json(), [{ id: jobId, state: 'exited', status: 'Lost with node3 (down)' }], 'ps -a: lost with its node')

    await swarmNode('start-node', LOST)
    await waitFor(`${LOST} ready again`, async () => (await app.inject({ method: 'GET', url: '/v1/nodes', headers: auth('reader') })).json(),
      (list: Array<{ name: string, state: string }>) => list.every(node => node.state === 'ready'), 30_000)
    // berth's agent there answers again before the cluster is handed on (the next suite reaches the nodes through it).
    await waitFor(`the agent on ${LOST}`, async () => (await app.inject({ method: 'GET', url: '/v1/volumes', headers: auth('admin') })).statusCode, status => status === 200, 90_000)
  })
  t.test('autoRemove on a cluster: a run that ended under one berth is removed by the next', async t => {
    const first = await backend.build(t, { config: { deployment } })
    const run = await first.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: body('auto', { command: ['sh', '-c', 'echo bye'], autoRemove: true }) })
    t.equal(run.statusCode, 201, run.body)
    const id = run.json().id as string
    await waitFor('it to end', async () => await get(first, id), c => c.state === 'exited')
    await first.close()
    // berth restarted: it knows the run from the cluster alone, and removes what nobody waited for.
    const later = await backend.build(t, { config: { deployment, lifecycle: { sweepIntervalMs: 200, autoRemoveGraceMs: 0 } } })
    await later.ready()
    await waitFor('the later berth to remove it', async () => (await later.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: auth('alice') })).statusCode, status => status === 404, 30_000)
    t.pass('removed')
  })
}
