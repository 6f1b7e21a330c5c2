// The seed's story, end to end on real components: an environment built through a docker berth,
// pushed to the registry the Swarm nodes pull from, reproduced on a Swarm berth from its spec (the
// same digest, env, ports, limits and command, serving the same content on its published port), and
// back from the cluster to a docker berth. The docker berth drives node1's engine: like a workstation
// set up to push to the team's registry, it reaches the registry the cluster pulls from. The same
// story between the test engine and the Kubernetes cluster runs where BERTH_TEST_KUBECONFIG names one.
import t from 'tap'
import { HTTPD, RUN, RUN_LABEL, build, docker, freePort, runBody } from './helpers.ts'
import { builderAuth, tarOf, withBuilders } from './build-helpers.ts'
import { dockerBackend, fetchFrom, holdCluster, nodeEngine, swarmBackend, swarmEnv, type SwarmEnv } from './backends.ts'
import { KUBE_SKIP, buildKube, kubeEnv, namespaceFor, type KubeEnv } from './kubernetes-env.ts'

interface Spec { run: Record<string, unknown> & { image: string }, image: { id: string, digest: string | null, pinned: boolean } }

if (swarmBackend === null) {
  t.comment('no test cluster (.swarm-env/env): run scripts/swarm-env.sh up, or npm test')
} else {
  const cluster = swarmEnv as SwarmEnv
  const backend = swarmBackend
  const deployment = `story-${RUN}`
  const workstation = cluster.nodeSockets.node1 as string
  const workstationEngine = nodeEngine('node1')
  const path = `${deployment}/maker/env`
  const repository = `${cluster.registry}/${path}`
  const tokens = withBuilders({ config: { deployment } })

  t.before(async () => { await holdCluster(t) })
  t.teardown(async () => {
    await backend.cleanup()
    for (const info of await workstationEngine.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })) {
      await workstationEngine.getContainer(info.Id).remove({ force: true }).catch(() => {})
    }
    for (const image of await workstationEngine.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })) {
      for (const tag of image.RepoTags ?? []) await workstationEngine.getImage(tag).remove().catch(() => {})
      await workstationEngine.getImage(image.Id).remove().catch(() => {})
    }
  })

  t.test('built on one machine, reproduced on the cluster by digest, and back', async t => {
    const laptop = await build(t, { ...tokens, socketPath: workstation })
    const swarm = await backend.build(t, tokens)
    const page = `an environment built by ${RUN}`

    // 1. Build and share: the tag is in maker's push namespace, and the push answers the digest.
    const built = await laptop.inject({
      method: 'POST',
      url: `/v1/images/build?tag=${encodeURIComponent(`${repository}:1`)}`,
      headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' },
      payload: tarOf({ Dockerfile: `FROM ${cluster.image}\nLABEL ${RUN_LABEL}=${RUN}\nCOPY index.html /www/index.html\n`, 'index.html': page })
    })
    t.equal(built.statusCode, 200, built.body)
    const pushed = await laptop.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: `${repository}:1` } })
    t.equal(pushed.statusCode, 200, pushed.body)
    const digest = pushed.json().digest as string
    t.match(digest, /^sha256:[0-9a-f]{64}$/)

    // 2. Run it on the machine, with what makes it this environment.
    const port = await freePort()
    const request = {
      image: `${repository}:1`,
      command: HTTPD,
      env: { MODEL: 'small', SEED: '42' },
      ports: [{ container: 80, host: port }],
      resources: { memory: 64 * 1024 * 1024, cpus: 0.5 },
      stopTimeout: 1
    }
    const here = await laptop.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: runBody(request) })
    t.equal(here.statusCode, 201, here.body)
    t.equal((await fetchFrom(cluster.nodes.node1 as string, port)).trim(), page, 'it serves the page on the machine')
    const fromLaptop = await laptop.inject({ method: 'GET', url: `/v1/containers/${here.json().id}/spec`, headers: builderAuth('maker') })
    t.equal(fromLaptop.statusCode, 200, fromLaptop.body)
    const laptopSpec = fromLaptop.json() as Spec
    t.same(laptopSpec.image, { id: laptopSpec.image.id, digest, pinned: true }, 'the spec pins the pushed digest')
    t.equal(laptopSpec.run.image, `${repository}@${digest}`)
    // The machine's port is given back before the cluster publishes the same one.
    t.equal((await laptop.inject({ method: 'DELETE', url: `/v1/containers/${here.json().id}?force=true`, headers: builderAuth('maker') })).statusCode, 204)

    // 3. The same environment on the cluster: the spec as it is.
    const there = await swarm.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: laptopSpec.run })
    t.equal(there.statusCode, 201, there.body)
    const service = there.json()
    t.equal(service.imageDigest, digest, 'the cluster runs the digest built on the machine')
    const task = service.tasks[0] as { address: string }
    t.equal((await fetchFrom(task.address, port)).trim(), page, 'and serves the same content on the published port')
    const fromCluster = await swarm.inject({ method: 'GET', url: `/v1/containers/${service.id}/spec`, headers: builderAuth('maker') })
    t.equal(fromCluster.statusCode, 200, fromCluster.body)
    const clusterSpec = fromCluster.json() as Spec
    t.equal(clusterSpec.image.digest, digest, 'the cluster\'s spec pins the same digest')
    t.same(clusterSpec.run, laptopSpec.run, 'and is the same run request: image, env, ports, limits, command')

    // 4. Back from the cluster to a machine.
    t.equal((await swarm.inject({ method: 'DELETE', url: `/v1/containers/${service.id}?force=true`, headers: builderAuth('maker') })).statusCode, 204)
    const back = await laptop.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: clusterSpec.run })
    t.equal(back.statusCode, 201, back.body)
    t.equal(back.json().imageDigest, digest, 'the machine runs the cluster\'s digest')
    t.equal((await fetchFrom(cluster.nodes.node1 as string, port)).trim(), page, 'serving the same content')

    // What the machine cannot honour is refused naming it, never dropped.
    const scaled = await laptop.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: { ...clusterSpec.run, replicas: 3 } })
    t.equal(scaled.statusCode, 501, scaled.body)
    t.match(scaled.json(), { code: 'not_supported', detail: /replicas/ })
  })
}

if (kubeEnv === null) {
  t.test('built on one machine, reproduced on Kubernetes by digest, and back', { skip: KUBE_SKIP }, () => {})
} else {
  const kube = kubeEnv as KubeEnv
  const deployment = `story-k-${RUN}`
  // The cluster's registry, as the test engine (127.0.0.0/8 is plain HTTP to it) and the node reach it.
  const registry = kube.image.slice(0, kube.image.indexOf('/'))
  const repository = `${registry}/${deployment}/maker/env`
  const tokens = withBuilders({ config: { deployment } })

  t.teardown(async () => {
    await dockerBackend.cleanup()
    for (const image of await docker.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })) {
      for (const tag of image.RepoTags ?? []) await docker.getImage(tag).remove().catch(() => {})
      await docker.getImage(image.Id).remove().catch(() => {})
    }
  })

  t.test('built on one machine, reproduced on Kubernetes by digest, and back', async t => {
    const laptop = await build(t, tokens)
    const cluster = await buildKube(t, { namespace: await namespaceFor(t, 'story'), ...tokens })
    const page = `an environment built by ${RUN} for Kubernetes`
    const built = await laptop.inject({
      method: 'POST',
      url: `/v1/images/build?tag=${encodeURIComponent(`${repository}:1`)}`,
      headers: { ...builderAuth('maker'), 'content-type': 'application/x-tar' },
      payload: tarOf({ Dockerfile: `FROM ${kube.image}\nLABEL ${RUN_LABEL}=${RUN}\nCOPY index.html /www/index.html\n`, 'index.html': page })
    })
    t.equal(built.statusCode, 200, built.body)
    const pushed = await laptop.inject({ method: 'POST', url: '/v1/images/push', headers: builderAuth('maker'), payload: { image: `${repository}:1` } })
    t.equal(pushed.statusCode, 200, pushed.body)
    const digest = pushed.json().digest as string

    const port = await freePort()
    const request = { image: `${repository}:1`, command: kube.httpd, env: { MODEL: 'small', SEED: '42' }, ports: [{ container: kube.port, host: port }], resources: { memory: 64 * 1024 * 1024, cpus: 0.5 }, stopTimeout: 1 }
    const here = await laptop.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: runBody(request) })
    t.equal(here.statusCode, 201, here.body)
    t.equal((await fetchFrom('127.0.0.1', port)).trim(), page, 'it serves the page on the machine')
    const laptopSpec = (await laptop.inject({ method: 'GET', url: `/v1/containers/${here.json().id}/spec`, headers: builderAuth('maker') })).json() as Spec
    t.equal(laptopSpec.image.digest, digest, 'the spec pins the pushed digest')
    t.equal((await laptop.inject({ method: 'DELETE', url: `/v1/containers/${here.json().id}?force=true`, headers: builderAuth('maker') })).statusCode, 204)

    const there = await cluster.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: laptopSpec.run })
    t.equal(there.statusCode, 201, there.body)
    const deploymentMade = there.json()
    t.equal(deploymentMade.imageDigest, digest, 'the cluster runs the digest built on the machine')
    const published = (deploymentMade.ports as Array<{ host: number | null, hostIp: string }>).find(each => each.host === port)
    t.ok(published, 'on the port the spec names')
    t.equal((await fetchFrom(published?.hostIp ?? '', port)).trim(), page, 'and serves the same content there')
    const clusterSpec = (await cluster.inject({ method: 'GET', url: `/v1/containers/${deploymentMade.id}/spec`, headers: builderAuth('maker') })).json() as Spec
    t.equal(clusterSpec.image.digest, digest, 'the cluster\'s spec pins the same digest')
    // A run that may finish (docker's default, restart no) is a Job there: nothing in the request changed on the way.
    t.same(clusterSpec.run, laptopSpec.run, 'the same run request: image, env, ports, limits, command, restart')

    t.equal((await cluster.inject({ method: 'DELETE', url: `/v1/containers/${deploymentMade.id}?force=true`, headers: builderAuth('maker') })).statusCode, 204)
    const back = await laptop.inject({ method: 'POST', url: '/v1/containers', headers: builderAuth('maker'), payload: clusterSpec.run })
    t.equal(back.statusCode, 201, back.body)
    t.equal(back.json().imageDigest, digest, 'the machine runs the cluster\'s digest')
    t.equal((await fetchFrom('127.0.0.1', port)).trim(), page, 'serving the same content')
  })
}
