// An image pulled onto the nodes of a real Kubernetes cluster (BERTH_TEST_KUBECONFIG; skipped without
// one): a short-lived puller pod per eligible node, each node's outcome reported as it comes (and why
// it failed: not found, credentials, out of reach), nothing left in the namespace once it answers —
// also when the pull failed. POST /v1/images/pull goes through it (kubernetes-images.test.ts).
import t from 'tap'
import { KubeConfig } from '@kubernetes/client-node'
import type { NodePull } from '../src/engine/kubernetes/puller.ts'
import { pullOntoNodes } from '../src/engine/kubernetes/puller.ts'
import { openKube } from '../src/engine/kubernetes/backend.ts'
import { KUBE_SKIP, admin, adminConfig, berthIdentity, kubeEnv, leftoversIn, type KubeEnv } from './kubernetes-env.ts'

if (kubeEnv === null) {
  t.test('kubernetes pulls onto the nodes', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const { core } = admin as NonNullable<typeof admin>

  t.test('a pull onto every eligible node: each node says how it went, and nothing is left', async t => {
    // berth's own identity, as deploy/kubernetes/ makes it with the node reader: what it may do is what it needs.
    const identity = await berthIdentity(t, 'pull', ['nodes-reader.yaml'])
    const namespace = identity.tenants
    const { shared } = await openKube({ kubeconfig: asToken(identity.token), namespace, timeoutMs: 10_000, placementTimeoutMs: 60_000, pollMs: 50 })
    t.teardown(async () => { await shared.close() })
    const nodes = (await core.listNode()).items.map(node => node.metadata?.name ?? '')

    const seen: NodePull[] = []
    const pulled = await pullOntoNodes(shared, cluster.image, { onNode: pull => seen.push(pull) })
    t.match(pulled.digest, /^sha256:[0-9a-f]{64}$/, 'the digest the registry served')
    t.same(pulled.nodes.map(node => [node.node, node.state]), nodes.map(node => [node, 'pulled']), 'every node has it')
    for (const node of nodes) t.same(seen.filter(pull => pull.node === node).map(pull => pull.state), ['pulling', 'pulled'], `${node}: pulling, then pulled`)
    t.same(await leftoversIn(namespace), [], 'no puller pod left')

    const missing = cluster.image.replace(/:[^:/]+$/, '-missing:1')
    const failed = await pullOntoNodes(shared, missing).then(() => null, (error: unknown) => error)
    t.match(failed, { code: 'image_not_found', extensions: { image: missing, nodes: nodes.map(node => ({ node, state: 'failed', reason: 'not_found' })) } })
    t.same(await leftoversIn(namespace), [], 'no puller pod left after a failed pull')
  })

  t.test('without the node reader a pull onto the nodes is 501 saying which ClusterRole to grant, and makes nothing', async t => {
    const identity = await berthIdentity(t, 'nopull')
    const { shared } = await openKube({ kubeconfig: asToken(identity.token), namespace: identity.tenants, timeoutMs: 10_000, placementTimeoutMs: 60_000, pollMs: 50 })
    t.teardown(async () => { await shared.close() })
    const refused = await pullOntoNodes(shared, cluster.image).then(() => null, (error: unknown) => error)
    t.match(refused, { code: 'not_supported', message: /nodes-reader\.yaml/ })
    t.same(await leftoversIn(identity.tenants), [])
  })

  /** The test kubeconfig's cluster, with a ServiceAccount's token instead of cluster-admin. */
  function asToken (token: string): KubeConfig {
    const admin = adminConfig()
    const server = admin.getCurrentCluster()
    if (server === null) throw new Error('the test kubeconfig has no current cluster')
    const config = new KubeConfig()
    config.loadFromOptions({ clusters: [server], users: [{ name: 'berth', token }], contexts: [{ name: 'berth', cluster: server.name, user: 'berth' }], currentContext: 'berth' })
    return config
  }
}
