// The Kubernetes backend's pure parts, on objects shaped as the apiserver returned them in a real
// cluster (the run in test/kubernetes.test.ts): a run spec as a Deployment, pods and Deployments in
// berth's words, and why a pod will not run. The apiserver itself is only ever the real one.
import t from 'tap'
import type { V1Deployment, V1Pod } from '@kubernetes/client-node'
import { ApiException } from '@kubernetes/client-node'
import { podFailure } from '../src/engine/kubernetes/failures.ts'
import { LABEL_PULL, digestOf, eligibleNodes, nodePullOf, pullerPodOf } from '../src/engine/kubernetes/node-pulls.ts'
import { heldImages, narrowed, type HeldImage } from '../src/engine/kubernetes/images.ts'
import { isConnectionFailure, mapKubeError, statusOf } from '../src/engine/kubernetes/errors.ts'
import { ANNOTATION_LABELS, ANNOTATION_REPLICAS, LABEL_ID, bytesOf, checkName, checkVolumeName, claimOf, coresOf, deploymentOf, userOf, type Workload } from '../src/engine/kubernetes/mapping.ts'
import { containerOf, podState, summaryOf as summaryOfWorkload, volumeOfClaim } from '../src/engine/kubernetes/reading.ts'
import { failedExitCode, outcomeOf, readingOfMetrics, readingOfSummary, statOf, statsOf, type PodReading } from '../src/engine/kubernetes/pod-readings.ts'
import { tarHeader } from '../src/access/files.ts'
import { parseImage } from '../src/engine/image-ref.ts'
import type { RunSpec } from '../src/engine/types.ts'

const ID = '0123456789abcdef0123456789abcdef'
const spec: RunSpec = {
  image: parseImage('10.251.0.1:5000/berth-test/web:1') as RunSpec['image'],
  name: 'web',
  command: ['httpd', '-f', '-p', '8080'],
  env: { MODE: 'test' },
  labels: { 'io.berth.owner': 'alice', note: 'a value Kubernetes labels could not hold: spaces, and more than 63 characters of it, to be sure' },
  ports: [{ container: 8080, host: 18080, protocol: 'tcp' }, { container: 9090, protocol: 'udp', hostIp: '10.251.0.2' }],
  mounts: [],
  restart: { policy: 'always' },
  memory: 64 * 1024 * 1024,
  cpus: 0.5,
  autoRemove: false,
  pull: 'always',
  user: '1000:100',
  stopTimeout: 3,
  replicas: 2,
  placement: { constraints: ['node.labels.zone==a', 'node.hostname!=n2'], spread: ['node.labels.zone'] },
  reservations: { memory: 32 * 1024 * 1024, cpus: 0.25 },
  shmSize: 256 * 1024 * 1024,
  readOnly: true,
  gpus: 1
}

const service = (object: V1Deployment): Workload => ({ kind: 'service', object })
const summaryOf = (object: V1Deployment, pods: V1Pod[]) => summaryOfWorkload(service(object), pods)
const containerOfDeployment = (object: V1Deployment, pods: V1Pod[]) => containerOf(service(object), pods)

function deployment (replicas = 2, annotations: Record<string, string> = {}): V1Deployment {
  const made = deploymentOf(spec, { id: ID, name: 'web', chosenPorts: new Map([[1, 40000]]) })
  return {
    ...made,
    metadata: { ...made.metadata, uid: 'u-1', creationTimestamp: new Date('2026-12-01T10:00:00Z'), annotations: { ...made.metadata?.annotations, ...annotations } },
    spec: { ...made.spec, replicas } as V1Deployment['spec']
  }
}

function pod (name: string, status: V1Pod['status'], extra: Partial<V1Pod['metadata']> = {}): V1Pod {
  return {
    metadata: { name, uid: `uid-${name}`, labels: { [LABEL_ID]: ID }, annotations: { [ANNOTATION_LABELS]: '{"io.berth.owner":"alice"}' }, creationTimestamp: '2026-12-01T10:00:01Z' as unknown as Date, ...extra },
    spec: { nodeName: 'bk8s-node', containers: [{ name: 'main', image: 'x' }] },
    status
  }
}

const running = (name: string) => pod(name, {
  phase: 'Running',
  hostIP: '10.251.0.2',
  containerStatuses: [{ name: 'main', ready: true, restartCount: 0, image: 'x', imageID: '10.251.0.1:5000/berth-test/web@sha256:e693', state: { running: { startedAt: '2026-12-01T10:00:02Z' as unknown as Date } } }]
})

t.test('a run spec as a Deployment', async t => {
  const made = deploymentOf(spec, { id: ID, name: 'web', chosenPorts: new Map([[1, 40000]]), pullSecret: 'web-pull' })
  t.match(made, {
    metadata: { name: 'web', labels: { [LABEL_ID]: ID, 'app.kubernetes.io/managed-by': 'berth' } },
    spec: { replicas: 2, selector: { matchLabels: { [LABEL_ID]: ID } }, strategy: { type: 'Recreate' } }
  })
  t.same(JSON.parse(made.metadata?.annotations?.[ANNOTATION_LABELS] as string), spec.labels, 'berth\'s labels kept whole in an annotation')
  const pod = made.spec?.template.spec
  t.match(pod, {
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    terminationGracePeriodSeconds: 3,
    securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 100, seccompProfile: { type: 'RuntimeDefault' } },
    imagePullSecrets: [{ name: 'web-pull' }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, { key: 'kubernetes.io/hostname', operator: 'NotIn', values: ['n2'] }] }] } } },
    topologySpreadConstraints: [{ topologyKey: 'zone', maxSkew: 1, whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { [LABEL_ID]: ID } } }],
    volumes: [{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: String(256 * 1024 * 1024) } }]
  })
  t.same(pod?.containers[0], {
    name: 'main',
    image: '10.251.0.1:5000/berth-test/web:1',
    imagePullPolicy: 'Always',
    args: ['httpd', '-f', '-p', '8080'],
    env: [{ name: 'MODE', value: 'test' }],
    ports: [{ containerPort: 8080, protocol: 'TCP', hostPort: 18080 }, { containerPort: 9090, protocol: 'UDP', hostPort: 40000, hostIP: '10.251.0.2' }],
    resources: { limits: { memory: String(64 * 1024 * 1024), cpu: '500m', 'nvidia.com/gpu': '1' }, requests: { memory: String(32 * 1024 * 1024), cpu: '250m' } },
    securityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true },
    volumeMounts: [{ name: 'dshm', mountPath: '/dev/shm' }]
  })
  const plain = deploymentOf({ ...spec, pull: 'never', tty: true, entrypoint: ['/bin/sh'], user: undefined, placement: undefined, shmSize: undefined, gpus: undefined, memory: undefined, cpus: undefined, reservations: undefined, hostname: 'box', workingDir: '/w' } as RunSpec,
    { id: ID, name: 'web', chosenPorts: new Map([[1, 40000]]) })
  t.match(plain.spec?.template.spec, { hostname: 'box', securityContext: { runAsNonRoot: true }, containers: [{ imagePullPolicy: 'Never', tty: true, stdin: true, command: ['/bin/sh'], workingDir: '/w', resources: {} }] })
  t.notOk(plain.spec?.template.spec?.affinity)
  t.throws(() => deploymentOf({ ...spec, placement: { constraints: ['engine.labels.x==y'], spread: [] } }, { id: ID, name: 'web', chosenPorts: new Map() }), { code: 'validation_failed', message: /node\.labels\.KEY/ })
  t.throws(() => deploymentOf({ ...spec, placement: { constraints: [], spread: ['node.role'] } }, { id: ID, name: 'web', chosenPorts: new Map() }), { code: 'validation_failed' })
  t.throws(() => deploymentOf({ ...spec, image: { kind: 'id', id: 'sha256:abc' } }, { id: ID, name: 'web', chosenPorts: new Map() }), { code: 'validation_failed' })
})

t.test('names and users as Kubernetes takes them', async t => {
  t.doesNotThrow(() => checkName('web-1'))
  for (const bad of ['Web', 'web_1', '-web', 'a'.repeat(64), 'web.1']) t.throws(() => checkName(bad), { code: 'validation_failed' }, bad)
  t.same(userOf(undefined), {})
  t.same(userOf('1000'), { uid: 1000 })
  t.same(userOf('1000:100'), { uid: 1000, gid: 100 })
  t.throws(() => userOf('jovyan'), { code: 'validation_failed' })
  t.throws(() => userOf('0:0'), { code: 'policy_denied' })
})

t.test('quantities', async t => {
  t.equal(bytesOf('67108864'), 67108864)
  t.equal(bytesOf('64Mi'), 64 * 1024 * 1024)
  t.equal(bytesOf('1G'), 1e9)
  t.equal(bytesOf('lots'), null)
  t.equal(bytesOf(undefined), null)
  t.equal(coresOf('500m'), 0.5)
  t.equal(coresOf('2'), 2)
  t.equal(coresOf('x'), null)
})

t.test('Deployments and pods in berth\'s words', async t => {
  const other = running('other')
  other.metadata = { ...other.metadata, labels: { [LABEL_ID]: 'another container' } }
  const up = summaryOf(deployment(), [running('web-a'), running('web-b'), other])
  t.match(up, { id: ID, name: 'web', state: 'running', status: 'Up: 2/2 running', imageId: 'sha256:e693', replicas: { count: 2, running: 2 }, command: ['httpd', '-f', '-p', '8080'], labels: spec.labels })
  t.equal(up.tasks?.length, 2, 'only its own pods')
  t.same(up.ports, [{ container: 8080, host: 18080, protocol: 'tcp', hostIp: '10.251.0.2' }, { container: 9090, host: 40000, protocol: 'udp', hostIp: '10.251.0.2' }], 'where each runs')

  const stopped = containerOfDeployment(deployment(0, { [ANNOTATION_REPLICAS]: '3' }), [])
  t.match(stopped, { state: 'exited', running: false, status: undefined, replicas: { count: 3, running: 0 }, startedAt: null, restart: { policy: 'always' } })
  t.match(summaryOf(deployment(0, { [ANNOTATION_REPLICAS]: '3' }), []), { status: 'Exited (3 replicas when started)' })
  t.same(stopped.ports, [], 'stopped: no port is bound, as on one host')
  t.match(stopped, { resources: { memory: 64 * 1024 * 1024, cpus: 0.5 }, reservations: { memory: 32 * 1024 * 1024, cpus: 0.25 }, gpus: 1, placement: { constraints: ['node.labels.zone==a', 'node.hostname!=n2'], spread: ['node.labels.zone'] } })

  const pending = pod('web-c', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available: 1 Insufficient memory.' }] })
  pending.spec = { containers: [{ name: 'main', image: 'x' }] }
  t.match(summaryOf(deployment(1), [pending]), { state: 'created', status: 'Starting: 0/1 running; Unschedulable: 0/1 nodes are available: 1 Insufficient memory.', tasks: [{ state: 'pending', node: null, error: /Insufficient memory/ }] })
  const crashing = pod('web-d', { phase: 'Running', containerStatuses: [{ name: 'main', ready: false, restartCount: 3, image: 'x', imageID: '', state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } }, lastState: { terminated: { exitCode: 2, finishedAt: '2026-12-01T10:00:09Z' as unknown as Date } } }] })
  t.match(summaryOf(deployment(1), [crashing]), { state: 'restarting', tasks: [{ state: 'starting', exitCode: 2, error: 'CrashLoopBackOff: back-off 40s' }] })
  t.equal(podState(pod('gone', { phase: 'Running' }, { deletionTimestamp: new Date() })), 'shutdown')
  t.equal(podState(pod('done', { phase: 'Succeeded' })), 'complete')
  t.equal(podState(pod('failed', { phase: 'Failed' })), 'failed')
  t.equal(podState(pod('creating', { phase: 'Pending' })), 'preparing', 'placed on a node, not started yet')
})

t.test('why a pod will not run, in berth\'s codes', async t => {
  const unschedulable = (message: string) => pod('p', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }] })
  const waiting = (reason: string, message: string) => pod('p', { phase: 'Pending', containerStatuses: [{ name: 'main', ready: false, restartCount: 0, image: 'x', imageID: '', state: { waiting: { reason, message } } }] })
  t.match(podFailure(unschedulable('0/1 nodes are available: 1 node(s) didn\'t have free ports for the requested pod ports.'), [18080]), { code: 'port_conflict', port: 18080, message: /host port 18080 is already allocated on every node/ })
  t.match(podFailure(unschedulable('0/1 nodes are available: 1 node(s) didn\'t have free ports for the requested pod ports.'), [1, 2]), { code: 'port_conflict', message: /one of the host ports 1, 2/ })
  t.match(podFailure(unschedulable('0/1 nodes are available: 1 Insufficient nvidia.com/gpu.'), []), { code: 'gpu_unavailable' })
  t.match(podFailure(unschedulable('0/1 nodes are available: 1 Insufficient cpu.'), []), { code: 'placement_failed', extensions: { reason: 'resources' } })
  t.match(podFailure(unschedulable('0/1 nodes are available: 1 node(s) didn\'t match Pod\'s node affinity/selector.'), []), { code: 'placement_failed', extensions: { reason: 'constraints' } })
  t.match(podFailure(unschedulable('0/0 nodes are available'), []), { code: 'placement_failed', extensions: { reason: 'no_node' } })
  t.match(podFailure(waiting('ErrImagePull', 'rpc error: code = NotFound desc = failed to pull and unpack image "x": not found'), []), { code: 'image_not_found' })
  t.match(podFailure(waiting('ErrImagePull', 'failed to authorize: 401 Unauthorized'), []), { code: 'pull_failed', extensions: { reason: 'registry_auth' } })
  t.match(podFailure(waiting('ImagePullBackOff', 'Back-off pulling image "x"'), []), { code: 'pull_failed', extensions: { reason: 'registry_unreachable' } })
  t.match(podFailure(waiting('ErrImageNeverPull', 'Container image "x" is not present with pull policy of Never'), []), { code: 'image_not_found' })
  t.match(podFailure(waiting('CreateContainerConfigError', 'container has runAsNonRoot and image will run as root'), []), { code: 'policy_denied', message: /runs as root/ })
  t.match(podFailure(waiting('CreateContainerError', 'no such file'), []), { code: 'placement_failed', extensions: { reason: 'rejected' } })
  t.equal(podFailure(waiting('ContainerCreating', ''), []), null, 'still coming')
  t.equal(podFailure(unschedulable('0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available'), []), null, 'a volume being provisioned: the scheduler tries again')
  t.match(podFailure(unschedulable('0/2 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims, 1 Insufficient cpu.'), []), { code: 'placement_failed', extensions: { reason: 'resources' } }, 'unless something else stands in the way too')
  t.equal(podFailure(running('ok'), []), null)
})

t.test('apiserver answers and connection failures as berth errors', async t => {
  const context = { timedOut: false, timeoutMs: 1000, server: 'https://10.251.0.1:6443' }
  const status = (code: number, reason: string, message: string) => new ApiException(code, message, JSON.stringify({ kind: 'Status', code, reason, message }), {})
  t.match(mapKubeError(status(404, 'NotFound', 'deployments.apps "x" not found'), 'container', 'x', context), { code: 'not_found', message: 'container x was not found' })
  t.match(mapKubeError(status(409, 'AlreadyExists', 'already exists'), 'container', 'web', context), { code: 'name_conflict', extensions: { name: 'web' } })
  t.match(mapKubeError(status(409, 'Conflict', 'the object has been modified'), 'container', 'web', context), { code: 'engine_error' })
  t.match(mapKubeError(status(403, 'Forbidden', 'cannot list nodes'), 'nodes', 'nodes', context), { code: 'engine_error', message: /ServiceAccount and Role/ })
  t.match(mapKubeError(status(422, 'Invalid', 'spec.template: invalid'), 'container', 'web', context), { code: 'validation_failed' })
  t.match(mapKubeError(status(503, 'ServiceUnavailable', ''), 'engine', 'x', context), { code: 'engine_unavailable' })
  t.match(mapKubeError(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }), 'engine', 'x', context), { code: 'engine_unavailable', message: /cannot reach the Kubernetes apiserver at https:\/\/10\.251\.0\.1:6443/ })
  t.match(mapKubeError(new Error('late'), 'engine', 'x', { ...context, timedOut: true }), { code: 'engine_unavailable', message: /within 1000 ms/ })
  t.match(mapKubeError(new Error('odd'), 'engine', 'x', context), { code: 'engine_error' })
  t.same(statusOf(new ApiException(500, 'm', 'not json', {})), { message: 'not json' })
  t.same(statusOf(new Error('x')), {})
  t.ok(isConnectionFailure(Object.assign(new Error('reset'), { code: 'ECONNRESET' })))
  t.notOk(isConnectionFailure(status(500, 'InternalError', 'x')))
})

t.test('how an exec ended, from the status channel', async t => {
  t.same(outcomeOf(JSON.stringify({ status: 'Success' })), { kind: 'exited', exitCode: 0 })
  t.same(outcomeOf(JSON.stringify({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '5' }] } })), { kind: 'exited', exitCode: 5 })
  const notFound = 'failed to exec in container: exec: "nope": executable file not found in $PATH'
  t.same(outcomeOf(JSON.stringify({ status: 'Failure', message: notFound })), { kind: 'failed', message: notFound })
  t.same(outcomeOf(JSON.stringify({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: 'x' }] } })), { kind: 'failed', message: '{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}' })
  t.same(outcomeOf('not json'), { kind: 'failed', message: 'not json' })
  t.equal(failedExitCode(notFound), 127, 'no such executable: 127, as docker')
  t.equal(failedExitCode('permission denied'), 126)
})

t.test('what a path is, from the first entry of tar\'s archive', async t => {
  const directory = tarHeader({ name: 'data/', size: 0, mode: 0o755, type: '5', mtime: 1_700_000_000 })
  t.equal(statOf(directory.subarray(0, 100), '/srv/data'), 'more', 'not before a whole header came')
  t.equal(statOf(Buffer.alloc(1024), '/gone'), 'empty', 'an archive that ends at once: tar found nothing')
  t.same(statOf(directory, '/srv/data'), { name: 'data', size: 0, mode: 2 ** 31 + 0o755, mtime: new Date(1_700_000_000_000).toISOString(), linkTarget: '' })
  const file = tarHeader({ name: 'a.txt', size: 6, mode: 0o644 })
  t.match(statOf(file, '/a.txt'), { name: 'a.txt', size: 6, mode: 0o644 })
  t.match(statOf(directory, '/'), { name: '/' }, 'the root is named /')
  const link = tarHeader({ name: 'lib', size: 0, type: '2', linkname: '/usr/lib' })
  t.match(statOf(link, '/lib'), { mode: 2 ** 27 + 0o644, linkTarget: '/usr/lib' })
  // A link target too long for the header comes first, in a GNU 'K' entry.
  const target = '/very/long/'.repeat(20) + 'target'
  const longLink = Buffer.concat([tarHeader({ name: '././@LongLink', size: target.length, type: 'K' }), Buffer.from(target), Buffer.alloc(512 - target.length % 512), link])
  t.equal(statOf(longLink.subarray(0, 600), '/lib'), 'more', 'not before the long target came')
  t.match(statOf(longLink, '/lib'), { linkTarget: target })
  const pax = Buffer.concat([tarHeader({ name: 'PaxHeader', size: 20, type: 'x' }), Buffer.alloc(512), file])
  t.match(statOf(pax, '/a.txt'), { name: 'a.txt', size: 6 }, 'a pax record before the entry is skipped')
})

t.test('stats readings from a kubelet summary and the metrics API, summed over replicas', async t => {
  const pod = (name: string, limits: Record<string, string> = {}) => ({ metadata: { name, uid: `uid-${name}` }, spec: { containers: [{ name: 'main', resources: { limits } }] }, status: { startTime: new Date(1_000) } }) as unknown as V1Pod
  const summary = {
    node: { memory: { availableBytes: 3000, workingSetBytes: 1000 } },
    pods: [{
      podRef: { name: 'p1', namespace: 'ns' },
      containers: [{ name: 'main', cpu: { time: '2026-01-01T00:00:10Z', usageNanoCores: 500_000_000, usageCoreNanoSeconds: 4_000_000_000 }, memory: { workingSetBytes: 200 } }],
      network: { rxBytes: 10, txBytes: 20 },
      process_stats: { process_count: 3 }
    }]
  }
  const one = readingOfSummary(summary, pod('p1'), 'ns')
  t.same(one, { at: Date.parse('2026-01-01T00:00:10Z'), cpuSeconds: 4, cores: 0.5, memory: 200, nodeMemory: 4000, rxBytes: 10, txBytes: 20, pids: 3 })
  t.match(readingOfSummary({}, pod('p1'), 'other'), { cpuSeconds: 0, memory: 0, nodeMemory: null, pids: 0 }, 'a pod the summary does not have reads as nothing')

  const integrals = new Map<string, { seconds: number, at: number }>()
  const first = readingOfMetrics({ timestamp: new Date(11_000).toISOString(), containers: [{ name: 'main', usage: { cpu: '500m', memory: '64Mi' } }] }, pod('p2'), integrals)
  t.same(first, { at: 11_000, cpuSeconds: 5, cores: 0.5, memory: 64 * 1024 * 1024, nodeMemory: null, rxBytes: 0, txBytes: 0, pids: 0 }, 'first seen: as if at this rate since it started')
  const second = readingOfMetrics({ timestamp: new Date(13_000).toISOString(), containers: [{ name: 'main', usage: { cpu: '1', memory: '1Mi' } }] }, pod('p2'), integrals)
  t.equal(second.cpuSeconds, 7, 'then the rate summed over the time between readings')
  t.match(readingOfMetrics({}, pod('p3'), integrals), { cores: 0, memory: 0 })

  const reading = (at: number, cpuSeconds: number, extra: Partial<PodReading> = {}): PodReading => ({ at, cpuSeconds, cores: 0.25, memory: 100, nodeMemory: 5000, rxBytes: 1, txBytes: 2, pids: 1, ...extra })
  const limited = [pod('a', { memory: '1Ki', cpu: '500m' }), pod('b', { memory: '1Ki', cpu: '500m' })]
  const now = { pods: limited, readings: [reading(2000, 3), reading(2000, 3)] }
  const first2 = statsOf(now, null, 4)
  t.match(first2, { time: new Date(2000).toISOString(), cpuPercent: 50, onlineCpus: 4, cpuSeconds: 6, memory: { used: 200, limit: 2048, percent: 9.77 }, network: { rxBytes: 2, txBytes: 4 }, pids: 2 }, 'without a previous reading: the source\'s rate')
  const later = statsOf({ pods: limited, readings: [reading(4000, 4), reading(4000, 4)] }, now, null)
  t.match(later, { cpuPercent: 100, onlineCpus: 1 }, 'with one: the CPU time used between them (2 s over 2 s); CPUs from the limit without nodes')
  const unlimited = statsOf({ pods: [pod('c')], readings: [reading(1000, 1)] }, null, null)
  t.match(unlimited, { memory: { limit: 5000, percent: 2 }, onlineCpus: 1 }, 'no limit: the node\'s memory')
  t.match(statsOf({ pods: [pod('d')], readings: [reading(1000, 1, { nodeMemory: null })] }, null, null), { memory: { limit: 0, percent: 0 } })
  t.match(statsOf({ pods: [pod('e')], readings: [reading(1000, 0)] }, { readings: [reading(1000, 1)] }, null), { cpuPercent: 25 }, 'counters that went back (a restart): the rate')
})

t.test('a named volume as a PersistentVolumeClaim, and read back', async t => {
  const labels = { 'io.berth.owner': 'alice', note: 'spaces and all' }
  const claim = claimOf('data', labels, 64 * 1024 * 1024, { storageClass: 'fast', defaultBytes: 1, maxBytes: 2, accessMode: 'ReadWriteOncePod' })
  t.same(claim.spec, { accessModes: ['ReadWriteOncePod'], storageClassName: 'fast', resources: { requests: { storage: '67108864' } } })
  t.same(claim.metadata?.labels, { 'app.kubernetes.io/managed-by': 'berth' })
  t.notOk('storageClassName' in (claimOf('data', {}, 1, { storageClass: null, defaultBytes: 1, maxBytes: 2, accessMode: 'ReadWriteOnce' }).spec ?? {}), 'no class named: the cluster\'s default')
  const user = { id: ID, name: 'web', state: 'running' }
  t.same(volumeOfClaim(claim, [user]), { name: 'data', driver: 'fast', labels, createdAt: null, size: null, usedBy: [user], capacity: 64 * 1024 * 1024, accessModes: ['ReadWriteOncePod'], phase: 'Pending' })
  // As the apiserver returns a bound one (its capacity the volume's, which may be more than asked), and one being deleted.
  const bound = { ...claim, metadata: { ...claim.metadata, creationTimestamp: new Date('2026-12-07T18:00:00Z') }, status: { phase: 'Bound', capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'] } }
  t.match(volumeOfClaim(bound, []), { createdAt: '2026-12-07T18:00:00.000Z', capacity: 1024 ** 3, accessModes: ['ReadWriteOnce'], phase: 'Bound' })
  t.match(volumeOfClaim({ ...bound, metadata: { ...bound.metadata, deletionTimestamp: new Date() } }, []), { phase: 'Terminating' })
  t.same(volumeOfClaim({ metadata: { name: 'bare' } }, []), { name: 'bare', driver: '', labels: {}, createdAt: null, size: null, usedBy: [], accessModes: [], phase: 'Pending' })
  t.doesNotThrow(() => { checkVolumeName('ada-datasets.v2') })
  for (const name of ['Data', 'data_1', '-data', 'x'.repeat(254)]) t.throws(() => { checkVolumeName(name) }, { code: 'validation_failed' }, name.slice(0, 20))
})

t.test('an image pulled onto the nodes: which nodes, the puller pod, and how each node\'s pull went', async t => {
  const ready = (name: string, extra: object = {}) => ({ metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'True' }] }, ...extra })
  t.same(eligibleNodes([
    ready('a'),
    { metadata: { name: 'b' }, status: { conditions: [{ type: 'Ready', status: 'False', message: 'kubelet stopped posting node status' }] } },
    ready('c', { spec: { unschedulable: true } }),
    ready('d', { spec: { taints: [{ key: 'gpu', value: 'only', effect: 'NoSchedule' }] } }),
    ready('e', { spec: { taints: [{ key: 'soft', effect: 'PreferNoSchedule' }] } }),
    { metadata: { name: 'f' } }
  ]), {
    eligible: ['a', 'e'],
    skipped: [
      { node: 'b', reason: 'node not ready (kubelet stopped posting node status)', down: true },
      { node: 'c', reason: 'node cordoned: it takes no new pods', down: false },
      { node: 'd', reason: 'node tainted gpu=only:NoSchedule: it takes no pods of berth\'s', down: false },
      { node: 'f', reason: 'node not ready', down: true }
    ]
  })
  const pod = pullerPodOf({ pull: 'p1', image: 'r/x:1', node: 'a', pullSecret: 's' })
  t.match(pod, { metadata: { name: /^pull-p1-[0-9a-f]{8}$/, labels: { [LABEL_PULL]: 'p1' } }, spec: { nodeName: 'a', restartPolicy: 'Never', imagePullSecrets: [{ name: 's' }], securityContext: { runAsNonRoot: true }, containers: [{ image: 'r/x:1', imagePullPolicy: 'Always' }] } })
  t.not(pod.metadata?.name, pullerPodOf({ pull: 'p1', image: 'r/x:1', node: 'b' }).metadata?.name, 'a pod per node')
  t.notOk(pullerPodOf({ pull: 'p1', image: 'r/x:1', node: 'a' }).spec?.imagePullSecrets)

  const digest = `sha256:${'a'.repeat(64)}`
  const withStatus = (state: object, imageID = '') => ({ status: { phase: 'Pending', containerStatuses: [{ name: 'pull', image: 'r/x:1', imageID, ready: false, restartCount: 0, state }] } })
  t.same(nodePullOf({ status: { phase: 'Pending' } }, 'r/x:1'), { state: 'pulling' })
  t.same(nodePullOf(withStatus({ waiting: { reason: 'ContainerCreating' } }), 'r/x:1'), { state: 'pulling' })
  t.same(nodePullOf(withStatus({ terminated: { exitCode: 0 } }, `r/x@${digest}`), 'r/x:1'), { state: 'pulled', digest })
  t.same(nodePullOf(withStatus({ running: {} }), 'r/x:1'), { state: 'pulled', digest: null })
  t.same(nodePullOf(withStatus({ waiting: { reason: 'CreateContainerConfigError', message: 'image will run as root' } }, `docker-pullable://r/x@${digest}`), 'r/x:1'), { state: 'pulled', digest }, 'the image is there, whatever became of the command')
  t.match(nodePullOf(withStatus({ waiting: { reason: 'ErrImagePull', message: 'failed to resolve reference: r/x:1: not found' } }), 'r/x:1'), { state: 'failed', error: { code: 'image_not_found' } })
  t.match(nodePullOf(withStatus({ waiting: { reason: 'ImagePullBackOff', message: 'pull access denied, authentication required' } }), 'r/x:1'), { state: 'failed', error: { code: 'pull_failed', extensions: { reason: 'registry_auth' } } })
  t.match(nodePullOf(withStatus({ waiting: { reason: 'ErrImagePull', message: 'dial tcp: connection refused' } }), 'r/x:1'), { state: 'failed', error: { code: 'pull_failed', extensions: { reason: 'registry_unreachable' } } })
  t.match(nodePullOf(withStatus({ waiting: { reason: 'InvalidImageName' } }), 'r/x:1'), { state: 'failed', error: { code: 'image_not_found' } })
  t.match(nodePullOf(withStatus({ waiting: { reason: 'ErrImagePull' } }), 'r/x:1'), { state: 'failed', error: { code: 'pull_failed', message: /ErrImagePull/ } })
  t.match(nodePullOf({ status: { phase: 'Failed', reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' } }, 'r/x:1'), { state: 'failed', error: { code: 'pull_failed', extensions: { reason: 'node' } } })
  t.match(nodePullOf({ status: { phase: 'Failed' } }, 'r/x:1'), { state: 'failed', error: { message: 'the node gave up on the pull:' } })
  t.equal(digestOf(undefined), null)
  t.equal(digestOf('sha256:abc'), null)
})

t.test('the nodes\' images: one per manifest digest, named as docker names them, narrowed by a reference pattern', async t => {
  const digest = `sha256:${'a'.repeat(64)}`
  const node = (name: string, images: Array<{ names: string[], sizeBytes: number }>) => ({ metadata: { name }, status: { images, nodeInfo: { operatingSystem: 'linux', architecture: 'arm64' } } })
  const held = heldImages([
    node('b', [{ names: [`docker.io/library/busybox@${digest}`, 'docker.io/library/busybox:1.36'], sizeBytes: 10 }, { names: ['k8s.local/pause:1'], sizeBytes: 1 }]),
    node('a', [{ names: [`docker.io/library/busybox@${digest}`, 'docker.io/library/busybox:latest'], sizeBytes: 12 }])
  ] as never)
  t.same(held.map(image => ({ ...image, source: image.source.reference })), [{
    digest, source: `busybox@${digest}`, tags: ['busybox:1.36', 'busybox:latest'], digests: [`busybox@${digest}`], size: 12, nodes: ['a', 'b'], platform: { os: 'linux', architecture: 'arm64' }
  }], 'an image held without a registry digest (imported by hand) has no id and is left out')
  const image = held[0] as HeldImage
  t.same(narrowed(image, undefined), { tags: image.tags, digests: image.digests })
  t.same(narrowed(image, 'busybox:1.*'), { tags: ['busybox:1.36'], digests: [] }, 'only the names that match')
  t.same(narrowed(image, 'busy*'), { tags: image.tags, digests: image.digests }, 'a repository pattern keeps every tag and digest of it')
  t.equal(narrowed(image, 'library/*'), null, '* stops at /')
  t.equal(narrowed(image, 'other'), null)
})
