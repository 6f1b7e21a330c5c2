// A container's spec on a cluster, read back from the service or Deployment berth made: the run
// request it was made from, pinned by the digest the cluster ran. Pure, so CI (no cluster) runs it;
// the round trips through real clusters are test/anywhere-story.test.ts's.
import t from 'tap'
import type { V1Deployment, V1Pod } from '@kubernetes/client-node'
import { containerSpecOf } from '../src/access/container-spec.ts'
import type { Principal } from '../src/access/ownership.ts'
import { configOfWorkload, kubernetesSpecs } from '../src/engine/kubernetes/specs.ts'
import { deploymentOf, jobOf } from '../src/engine/kubernetes/mapping.ts'
import { configOfService, swarmSpecs } from '../src/engine/swarm/specs.ts'
import { serviceSpecOf, type SwarmService } from '../src/engine/swarm/mapping.ts'
import type { RunSpec } from '../src/engine/types.ts'
import { parseImage } from '../src/engine/image-ref.ts'

const DIGEST = `sha256:${'a'.repeat(64)}`
const owner = { name: 'maker' } as unknown as Principal

function runSpec (extra: Partial<RunSpec> = {}): RunSpec {
  const parsed = parseImage('registry.test:5000/team/site:1')
  if (typeof parsed === 'string' || parsed.kind !== 'ref') throw new Error('not a reference')
  return {
    image: parsed,
    env: { GREETING: 'hello', EMPTY: '' },
    labels: { 'io.berth.owner': 'maker', team: 'data' },
    ports: [{ container: 80, protocol: 'tcp', host: 20080 }],
    mounts: [],
    restart: { policy: 'on-failure', maxRetries: 3 },
    memory: 64 * 1024 * 1024,
    cpus: 0.5,
    autoRemove: false,
    pull: 'missing',
    command: ['httpd', '-f'],
    ...extra
  } as RunSpec
}

t.test('a service berth made is its run request again, pinned by the digest it runs', async t => {
  const spec = runSpec({
    entrypoint: ['/bin/sh', '-c'],
    workingDir: '/www',
    user: '1000',
    tty: true,
    stopTimeout: 5,
    replicas: 3,
    placement: { constraints: ['node.role==worker'], spread: ['node.labels.zone'] },
    reservations: { memory: 8 * 1024 * 1024, cpus: 0.25 },
    mounts: [{ type: 'bind', source: '/srv/data', target: '/data', readOnly: true }]
  })
  const service: SwarmService = {
    ID: 'svc',
    Version: { Index: 1 },
    CreatedAt: '',
    UpdatedAt: '',
    Spec: serviceSpecOf(spec, { publishMode: 'ingress', image: `registry.test:5000/team/site:1@${DIGEST}` })
  }
  const config = configOfService(service)
  t.equal(config.imageId, DIGEST)
  t.same(config.imageDigests, [`registry.test:5000/team/site@${DIGEST}`])
  const { run, image } = containerSpecOf(config, owner)
  t.same(image, { id: DIGEST, digest: DIGEST, pinned: true })
  t.same(run, {
    image: `registry.test:5000/team/site@${DIGEST}`,
    command: ['httpd', '-f'],
    entrypoint: ['/bin/sh', '-c'],
    env: { EMPTY: '', GREETING: 'hello' },
    workingDir: '/www',
    user: '1000',
    labels: { team: 'data' },
    ports: [{ container: 80, protocol: 'tcp', host: 20080 }],
    volumes: [{ source: '/srv/data', target: '/data', readOnly: true }],
    restart: { policy: 'on-failure', maxRetries: 3 },
    resources: { memory: 64 * 1024 * 1024, cpus: 0.5, reservations: { memory: 8 * 1024 * 1024, cpus: 0.25 } },
    replicas: 3,
    placement: { constraints: ['node.role==worker'], spread: ['node.labels.zone'] },
    tty: true,
    stopTimeout: 5
  })

  const stopped = { ...service, Spec: { ...service.Spec, Labels: { ...service.Spec.Labels, 'io.berth.replicas': '2' }, Mode: { Replicated: { Replicas: 0 } } } }
  t.equal(containerSpecOf(configOfService(stopped), owner).run.replicas, 2, 'a stopped service is run with the replicas it returns to')
  t.notOk('io.berth.replicas' in (configOfService(stopped).labels), 'berth\'s memory of the count is not a label of the run')

  const plain = runSpec({ restart: { policy: 'no' }, command: undefined, memory: undefined, cpus: undefined, ports: [{ container: 80, protocol: 'udp' }] })
  const unpinned: SwarmService = { ...service, Spec: serviceSpecOf(plain, { publishMode: 'host', image: 'site' }) }
  const read = containerSpecOf(configOfService(unpinned), owner)
  t.same(read.image, { id: '', digest: null, pinned: false }, 'an image berth could not pin stays as it was named')
  t.same(read.run, { image: 'site', env: { EMPTY: '', GREETING: 'hello' }, labels: { team: 'data' }, ports: [{ container: 80, protocol: 'udp' }] })
  const always = { ...unpinned, Spec: { ...unpinned.Spec, TaskTemplate: { ...unpinned.Spec.TaskTemplate, RestartPolicy: undefined, ContainerSpec: { ...unpinned.Spec.TaskTemplate.ContainerSpec, Env: undefined, Mounts: [{ Type: 'tmpfs', Target: '/tmp' }] } }, EndpointSpec: undefined } }
  t.same(containerSpecOf(configOfService(always), owner).run, { image: 'site', labels: { team: 'data' }, restart: { policy: 'always' } })

  const part = swarmSpecs({ service: async () => service })
  t.equal((await part.of('svc')).imageId, DIGEST, 'the part reads the service the cluster keeps')
})

t.test('a Deployment berth made is its run request again, pinned by the digest its pods pulled', async t => {
  const spec = runSpec({
    restart: { policy: 'always' },
    entrypoint: ['/bin/sh', '-c'],
    workingDir: '/www',
    user: '1000:100',
    tty: true,
    stopTimeout: 30,
    replicas: 2,
    hostname: 'site',
    readOnly: true,
    shmSize: 128 * 1024 * 1024,
    gpus: 1,
    placement: { constraints: ['node.hostname==n1', 'node.labels.zone!=b', 'node.platform.os==linux', 'node.platform.arch==amd64'], spread: ['node.hostname'] },
    reservations: { memory: 8 * 1024 * 1024, cpus: 0.25 },
    ports: [{ container: 80, protocol: 'tcp', host: 20080, hostIp: '127.0.0.1' }]
  })
  const deployment = deploymentOf(spec, { id: 'abc123', name: 'site', chosenPorts: new Map() })
  const pod = (imageID: string): V1Pod => ({
    metadata: { labels: { 'io.berth/id': 'abc123' }, creationTimestamp: new Date(0) },
    status: { containerStatuses: [{ name: 'main', image: 'x', imageID, ready: true, restartCount: 0 }] }
  })
  const config = configOfWorkload({ kind: 'service', object: deployment }, [pod(''), pod(`registry.test:5000/team/site@${DIGEST}`)])
  const { run, image } = containerSpecOf(config, owner)
  t.same(image, { id: DIGEST, digest: DIGEST, pinned: true })
  t.same(run, {
    image: `registry.test:5000/team/site@${DIGEST}`,
    command: ['httpd', '-f'],
    entrypoint: ['/bin/sh', '-c'],
    env: { EMPTY: '', GREETING: 'hello' },
    workingDir: '/www',
    user: '1000:100',
    labels: { team: 'data' },
    ports: [{ container: 80, protocol: 'tcp', host: 20080, hostIp: '127.0.0.1' }],
    restart: { policy: 'always' },
    resources: { memory: 64 * 1024 * 1024, cpus: 0.5, reservations: { memory: 8 * 1024 * 1024, cpus: 0.25 } },
    replicas: 2,
    placement: { constraints: ['node.hostname==n1', 'node.labels.zone!=b', 'node.platform.os==linux', 'node.platform.arch==amd64'], spread: ['node.hostname'] },
    tty: true,
    shmSize: 128 * 1024 * 1024,
    hostname: 'site',
    readOnly: true,
    stopTimeout: 30,
    gpus: 1
  })
  t.same(containerSpecOf(configOfWorkload({ kind: 'service', object: deployment }, [pod(`docker-pullable://registry.test:5000/team/site@${DIGEST}`)]), owner).image.digest, DIGEST, 'the docker runtime\'s form too')

  const plain = deploymentOf(runSpec({ restart: { policy: 'always' }, command: undefined, memory: undefined, cpus: undefined, ports: [], env: {} }), { id: 'def', name: 'plain', chosenPorts: new Map() })
  const read = containerSpecOf(configOfWorkload({ kind: 'service', object: plain }, []), owner)
  t.same(read.image, { id: '', digest: null, pinned: false }, 'no pod yet: nothing to pin it by')
  t.same(read.run, { image: 'registry.test:5000/team/site:1', labels: { team: 'data' }, restart: { policy: 'always' } })
  const stopped: V1Deployment = { ...plain, metadata: { ...plain.metadata, annotations: { ...plain.metadata?.annotations, 'io.berth/replicas': '4' } }, spec: { ...plain.spec!, replicas: 0 } }
  t.equal(containerSpecOf(configOfWorkload({ kind: 'service', object: stopped }, []), owner).run.replicas, 4, 'a stopped Deployment is run with the replicas it returns to')
  const bare: V1Deployment = { metadata: { name: 'bare' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'other', image: '' }] } } } }
  t.same(containerSpecOf(configOfWorkload({ kind: 'service', object: bare }, []), owner).run, { image: '', restart: { policy: 'always' } })

  const part = kubernetesSpecs({ workload: async () => ({ kind: 'service', object: deployment }), podsOf: () => [pod(`r/site@${DIGEST}`)] })
  t.equal((await part.of('site')).imageId, DIGEST, 'the part reads the Deployment and pods the cluster keeps')

  // A run that finishes is a Job: its restart policy, autoRemove and named volumes come back as asked.
  const finishing = runSpec({
    restart: { policy: 'on-failure', maxRetries: 3 },
    autoRemove: true,
    labels: { team: 'data', 'io.berth.auto-remove': 'true' },
    mounts: [{ type: 'volume', source: 'datasets', target: '/data', readOnly: true }, { type: 'volume', source: 'out', target: '/out', readOnly: false }],
    ports: [],
    env: {}
  })
  const job = jobOf(finishing, { id: 'job1', name: 'train', chosenPorts: new Map() })
  const trained = containerSpecOf(configOfWorkload({ kind: 'job', object: job }, []), owner).run
  t.same(trained.restart, { policy: 'on-failure', maxRetries: 3 })
  t.equal(trained.autoRemove, true)
  t.same(trained.volumes, [{ source: 'datasets', target: '/data', readOnly: true }, { source: 'out', target: '/out' }])
  const once = jobOf(runSpec({ restart: { policy: 'no' }, ports: [], env: {} }), { id: 'job2', name: 'once', chosenPorts: new Map() })
  t.same(containerSpecOf(configOfWorkload({ kind: 'job', object: once }, []), owner).run.restart, undefined, 'restart no: docker\'s default, so the run request leaves it out')
  const unannotated = { ...once, metadata: { ...once.metadata, annotations: {} } }
  t.same(containerSpecOf(configOfWorkload({ kind: 'job', object: unannotated }, []), owner).run.restart, undefined, 'a Job without the annotation: it finishes (no)')
})
