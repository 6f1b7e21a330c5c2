// The Swarm backend's pure parts, on the shapes a manager answers with (taken from the test cluster),
// for the cases the cluster cannot be made to show on demand: a manager without a leader, an update
// that raced another, a manager that reports 0.0.0.0 as its address, replicas being restarted.
import t from 'tap'
import { BerthError } from '../src/errors.ts'
import { PortConflictError } from '../src/engine/types.ts'
import { OutOfSequenceError, mapSwarmError } from '../src/engine/swarm/errors.ts'
import { imageParts, nodeAddress, nodeOf, summaryOf, type SwarmService, type SwarmTask } from '../src/engine/swarm/mapping.ts'
import { describeTasks, placementFailure } from '../src/engine/swarm/placement.ts'
import { nanosOf } from '../src/engine/swarm/streams.ts'

/** What docker-modem rejects with when the engine answers an error status. */
function modemError (statusCode: number, message: string): Error {
  return Object.assign(new Error(`(HTTP code ${statusCode}) unexpected - ${message} `), { statusCode, json: { message } })
}

t.test('manager errors in berth\'s codes', async t => {
  const leaderless = mapSwarmError(modemError(500, 'rpc error: code = Unknown desc = The swarm does not have a leader. It\'s possible that too few managers are online.'), 'containers')
  t.match(leaderless, { code: 'engine_unavailable', headers: { 'retry-after': '5' }, message: /does not have a leader/ })
  t.match(mapSwarmError(modemError(409, 'rpc error: code = AlreadyExists desc = name conflicts with an existing object: service web already exists'), 'web'),
    { code: 'name_conflict', message: 'the container name web is already in use', extensions: { name: 'web' } })
  t.type(mapSwarmError(modemError(500, 'rpc error: code = Unknown desc = update out of sequence'), 'x'), OutOfSequenceError)
  const ingress = mapSwarmError(modemError(400, 'rpc error: code = InvalidArgument desc = port \'8090\' is already in use by service \'web\' (skm8kr00ednj3i6hkwp1yedyw) as an ingress port'), 'x')
  t.type(ingress, PortConflictError)
  t.match(ingress, { port: 8090, holder: { id: 'skm8kr00ednj3i6hkwp1yedyw', name: 'web', labels: {} } })
  t.match(mapSwarmError(modemError(400, 'rpc error: code = InvalidArgument desc = name must be 63 characters or fewer'), 'n'), { code: 'validation_failed' })
  t.match(mapSwarmError(modemError(404, 'service nope not found'), 'nope'), { code: 'not_found' }, 'the single-host mapping for the rest')
  const own = new BerthError('policy_denied', 'no')
  t.equal(mapSwarmError(own, 'x'), own, 'berth\'s own errors pass through')
  t.match(mapSwarmError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'x'), { code: 'engine_unavailable' })
})

t.test('task states that cannot run, in berth\'s codes', async t => {
  const task = (state: SwarmTask['Status']['State'], err?: string): SwarmTask => ({
    ID: 't1',
    CreatedAt: '2026-12-01T04:24:57.730922221Z',
    ServiceID: 's1',
    Slot: 1,
    DesiredState: 'running',
    Status: { Timestamp: '2026-12-01T04:24:58.179965762Z', State: state, ...(err === undefined ? {} : { Err: err }) }
  })
  t.match(placementFailure(task('pending', 'no suitable node (host-mode port already in use on 3 nodes)'), [8080, 8081]),
    { code: 'port_conflict', port: 8080, message: /one of the host ports 8080, 8081 is already allocated/ })
  t.match(placementFailure(task('pending', 'no suitable node (1 node not available for new tasks)'), []), { code: 'placement_failed', extensions: { reason: 'no_node' } })
  t.match(placementFailure(task('rejected', 'failed to create shim: OCI runtime create failed'), []), { code: 'placement_failed', extensions: { reason: 'rejected' } })
  t.equal(placementFailure(task('failed', 'task: non-zero exit (1)'), []), null, 'a task that ran and exited is no placement failure')
  t.equal(placementFailure(task('preparing'), []), null)
  t.equal(describeTasks([], () => null), 'no task was created')
  t.equal(describeTasks([{ ...task('pending', 'no suitable node'), Slot: undefined } as unknown as SwarmTask], () => null), '?: pending (no suitable node)')
})

t.test('services, tasks and nodes as berth shows them', async t => {
  const service: SwarmService = {
    ID: 's1',
    Version: { Index: 1 },
    CreatedAt: '2026-12-01T04:24:51.66706316Z',
    UpdatedAt: '2026-12-01T04:24:51.66706316Z',
    Spec: { Name: 'web', TaskTemplate: { ContainerSpec: { Image: 'busybox:1' } }, Mode: { Replicated: { Replicas: 2 } } }
  }
  const failed: SwarmTask = {
    ID: 'old',
    CreatedAt: '2026-12-01T04:24:52Z',
    ServiceID: 's1',
    Slot: 1,
    NodeID: 'n2',
    DesiredState: 'shutdown',
    Status: { Timestamp: '2026-12-01T04:24:53Z', State: 'failed', Err: 'task: non-zero exit (1)', ContainerStatus: { ContainerID: 'c1', ExitCode: 1 } }
  }
  const again: SwarmTask = { ID: 'new', CreatedAt: '2026-12-01T04:24:58Z', ServiceID: 's1', Slot: 1, DesiredState: 'running', Status: { Timestamp: '2026-12-01T04:24:58Z', State: 'starting' } }
  const waiting: SwarmTask = { ID: 'w', CreatedAt: '2026-12-01T04:24:58Z', ServiceID: 's1', Slot: 2, DesiredState: 'running', Status: { Timestamp: '2026-12-01T04:24:58Z', State: 'pending', Err: 'no suitable node (insufficient resources on 3 nodes)' } }
  const summary = summaryOf(service, [failed, again, waiting], new Map())
  t.match(summary, { state: 'restarting', status: 'Restarting: 0/2 running; no suitable node (insufficient resources on 3 nodes)', replicas: { count: 2, running: 0 } })
  t.same(summary.tasks?.map(task => [task.id, task.node]), [['new', null], ['w', null]], 'the latest task of each replica')
  const fresh = summaryOf(service, [{ ...again, ID: 'first' }], new Map())
  t.match(fresh, { state: 'created', status: 'Starting: 0/2 running' })

  t.same(imageParts('reg:5000/app@sha256:abc'), { image: 'reg:5000/app@sha256:abc', digest: 'sha256:abc' }, 'asked by digest: kept as asked')
  t.same(imageParts('reg:5000/app:1@sha256:abc'), { image: 'reg:5000/app:1', digest: 'sha256:abc' }, 'pinned by berth: the tag was asked')
  t.same(imageParts('app:1'), { image: 'app:1', digest: null })

  const manager = { ID: 'm', Spec: { Role: 'manager', Availability: 'pause' }, Status: { State: 'unknown', Addr: '0.0.0.0' }, ManagerStatus: { Leader: true, Addr: '10.0.0.5:2377' } }
  t.equal(nodeAddress(manager), '10.0.0.5', 'a manager that reports 0.0.0.0 is reached where it manages')
  t.equal(nodeAddress({ ID: 'x', Spec: {} }), null)
  t.match(nodeOf(manager), { name: '', role: 'manager', leader: true, state: 'unknown', availability: 'pause', resources: { cpus: 0, memory: 0 }, labels: {} })
})

t.test('RFC 3339 times to nanoseconds, all nine digits kept', async t => {
  t.equal(nanosOf('2026-12-01T04:31:07.005775395Z'), 1796099467005775395n)
  t.equal(nanosOf('2026-12-01T04:31:07Z'), 1796099467000000000n)
  t.equal(nanosOf('2026-12-01T05:31:07.5+01:00'), 1796099467500000000n)
  t.equal(nanosOf('yesterday'), null)
  t.equal(nanosOf('2026-13-45T04:31:07Z'), null)
})
