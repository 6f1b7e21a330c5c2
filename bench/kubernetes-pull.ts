// `npm run bench:kubernetes`, its pull part: an image pulled onto every node of the cluster by berth's
// puller (a pod per node, followed in the watch-fed copy, removed before it answers) against doing the
// same straight through the apiserver's API — create the same pod on each node, read it until the
// kubelet has the image, delete it and read until it is gone. The image is on the nodes already, so a
// pull is the registry's manifest check and the pods' life: what berth adds is what is measured.
// POST /v1/images/pull does not use the puller yet on Kubernetes: this measures the engine's own call.
import { KubeConfig } from '@kubernetes/client-node'
import { openKube } from '../src/engine/kubernetes/backend.ts'
import { nodePullOf, pullerPodOf } from '../src/engine/kubernetes/node-pulls.ts'
import { pullOntoNodes } from '../src/engine/kubernetes/puller.ts'
import { percentiles, until, type HttpClient, type Percentiles } from './measure.ts'

export async function measureNodePulls (options: { kubeconfig: string, image: string, namespace: string, apiserver: HttpClient, runs: number, log: (message: string) => void }): Promise<{ nodes: number, berth: Percentiles, engine: Percentiles }> {
  const config = new KubeConfig()
  config.loadFromFile(options.kubeconfig)
  const { shared } = await openKube({ kubeconfig: config, namespace: options.namespace, timeoutMs: 10_000, placementTimeoutMs: 120_000 })
  const ns = `/api/v1/namespaces/${options.namespace}/pods`
  try {
    await shared.ready()
    const nodes = (JSON.parse((await options.apiserver.expect(200, 'GET', '/api/v1/nodes')).body) as { items: Array<{ metadata: { name: string } }> }).items.map(node => node.metadata.name)
    const samples = { berth: [] as number[], engine: [] as number[] }
    for (let i = 0; i < options.runs; i++) {
      const t0 = performance.now()
      await pullOntoNodes(shared, options.image)
      samples.berth.push(performance.now() - t0)
      const t1 = performance.now()
      await Promise.all(nodes.map(async node => {
        const pod = pullerPodOf({ pull: `bench${i}`, image: options.image, node })
        const name = pod.metadata?.name ?? ''
        await options.apiserver.expect(201, 'POST', ns, pod)
        await until(`${name} to have the image`, async () => nodePullOf(JSON.parse((await options.apiserver.expect(200, 'GET', `${ns}/${name}`)).body), options.image).state !== 'pulling', 120_000, 20)
        await options.apiserver.request('DELETE', `${ns}/${name}?gracePeriodSeconds=0`)
        await until(`${name} to be gone`, async () => (await options.apiserver.request('GET', `${ns}/${name}`)).status === 404, 60_000, 20)
      }))
      samples.engine.push(performance.now() - t1)
      options.log(`pull onto ${nodes.length} node(s): berth ${Math.round(samples.berth.at(-1) as number)} ms, the apiserver's API ${Math.round(samples.engine.at(-1) as number)} ms`)
    }
    return { nodes: nodes.length, berth: percentiles(samples.berth), engine: percentiles(samples.engine) }
  } finally {
    await shared.close()
  }
}
