// Pulls an image onto every eligible node of the cluster (node-pulls.ts says how one node's pull
// goes): a puller pod per node in berth's namespace, followed in the watch-fed copy of its pods,
// each node's outcome reported as it comes. Whatever happens — every node done, a failure, the
// deadline, the caller gone — the puller pods are deleted and berth answers only once they are gone.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RegistryCredentials } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import { parseImage } from '../image-ref.ts'
import type { NodePull as NodeOutcome } from '../types.ts'
import { LABEL_PULL, eligibleNodes, nodePullOf, pullerPodOf } from './node-pulls.ts'
import { deletePullSecret, makePullSecret } from './placement.ts'
import type { KubeShared } from './shared.ts'

/** One node's part of a pull, as it is reported. */
export type NodePull =
  | { node: string, state: 'pulling' }
  | { node: string, state: 'pulled', digest: string | null }
  | { node: string, state: 'failed', code: string, detail: string, reason?: string }
  | { node: string, state: 'skipped', detail: string, down: boolean }

export interface NodesPulled {
  /** The digest the nodes got (the first that said; every node asks the same registry). */
  digest: string | null
  nodes: NodePull[]
}

/**
 * Pulls `image` onto the eligible nodes; resolves when each has it or failed. Fails itself when no
 * node got it (with the first node's failure, and every node's outcome in `nodes`).
 */
export async function pullOntoNodes (shared: KubeShared, image: string, options: PullOntoNodesOptions = {}): Promise<NodesPulled> {
  const { eligible, skipped } = eligibleNodes(await shared.nodes(options.signal))
  const outcomes = new Map<string, NodePull>()
  const report = (pull: NodePull): void => {
    outcomes.set(pull.node, pull)
    options.onNode?.(pull)
  }
  for (const { node, reason, down } of skipped) report({ node, state: 'skipped', detail: reason, down })
  const pull = randomBytes(4).toString('hex')
  const made: string[] = []
  const namespace = shared.namespace
  const failures = new Map<string, BerthError>()
  let secret: string | null = null
  try {
    // The caller's credentials (or berth's own for that registry) go to the nodes as a pull secret of this pull's.
    const parsed = parseImage(image)
    if (eligible.length > 0 && typeof parsed !== 'string') secret = await makePullSecret(shared, { image: parsed, ...(options.auth === undefined ? {} : { auth: options.auth }) }, 'pull', pull)
    for (const node of eligible) {
      const pod = pullerPodOf({ pull, image, node, ...(secret === null ? {} : { pullSecret: secret }) })
      const created = await shared.client.call({ subject: 'image', target: image, ...(options.signal === undefined ? {} : { signal: options.signal }) }, async call =>
        await shared.client.core.createNamespacedPod({ namespace, body: pod }, call))
      shared.pods.apply(created)
      made.push(created.metadata?.name ?? '')
      report({ node, state: 'pulling' })
    }
    const deadline = Date.now() + (options.timeoutMs ?? shared.options.placementTimeoutMs)
    while (eligible.some(node => outcomes.get(node)?.state === 'pulling')) {
      options.signal?.throwIfAborted()
      if (Date.now() >= deadline) {
        for (const node of eligible.filter(candidate => outcomes.get(candidate)?.state === 'pulling')) {
          const error = new BerthError('pull_failed', `the node did not finish pulling ${image} within ${options.timeoutMs ?? shared.options.placementTimeoutMs} ms`, { image, reason: 'timeout' })
          failures.set(node, error)
          report({ node, state: 'failed', code: error.code, detail: error.message, reason: 'other' })
        }
        break
      }
      await shared.ready()
      for (const pod of shared.pods.list().filter(candidate => candidate.metadata?.labels?.[LABEL_PULL] === pull)) {
        const node = pod.spec?.nodeName ?? ''
        if (outcomes.get(node)?.state !== 'pulling') continue
        const state = nodePullOf(pod, image)
        if (state.state === 'pulled') report({ node, state: 'pulled', digest: state.digest })
        if (state.state === 'failed') {
          failures.set(node, state.error)
          report({ node, state: 'failed', code: state.error.code, detail: state.error.message, ...reasonField(state.error) })
        }
      }
      await sleep(shared.pollMs)
    }
  } finally {
    try {
      await removePullers(shared, pull, made)
    } finally {
      if (secret !== null) await deletePullSecret(shared, secret)
    }
  }
  const nodes = [...outcomes.values()].sort((a, b) => a.node.localeCompare(b.node))
  const pulled = nodes.filter(node => node.state === 'pulled')
  if (pulled.length === 0) {
    const first = failures.values().next().value
    const said = nodes.flatMap(node => outcomeOf(node) ?? [])
    if (first !== undefined) throw new BerthError(first.code, first.message, { ...first.extensions, nodes: said }, { cause: first })
    throw new BerthError('placement_failed', `no node of the cluster can take ${image} now: ${skipped.map(skip => `${skip.node}: ${skip.reason}`).join('; ') || 'it has no nodes'}`, { reason: 'no_node' })
  }
  return { digest: pulled.map(node => node.digest).find(digest => digest !== null) ?? null, nodes }
}

export interface PullOntoNodesOptions {
  signal?: AbortSignal
  onNode?: (pull: NodePull) => void
  timeoutMs?: number
  /** Credentials for the image's registry; without them, berth's own for it (BERTH_REGISTRY_AUTH_FILE), if any. */
  auth?: RegistryCredentials
}

/**
 * A node's part of a pull as a client reads it (NodePull in the document); null for a node left out
 * on purpose (cordoned, tainted) and one still pulling. A node that is not ready is one that failed.
 */
export function outcomeOf (pull: NodePull): NodeOutcome | null {
  switch (pull.state) {
    case 'pulled': return { node: pull.node, state: 'pulled', reason: null, detail: null }
    case 'failed': return { node: pull.node, state: 'failed', reason: reasonOf(pull.code, pull.reason), detail: pull.detail }
    case 'skipped': return pull.down ? { node: pull.node, state: 'failed', reason: 'node_down', detail: pull.detail } : null
    default: return null
  }
}

function reasonOf (code: string, reason: string | undefined): NodeOutcome['reason'] {
  if (code === 'image_not_found') return 'not_found'
  return reason === 'registry_auth' || reason === 'registry_unreachable' ? reason : 'other'
}

/** Deletes the pull's pods at once and waits until none is left (the deadline of a few apiserver calls). */
async function removePullers (shared: KubeShared, pull: string, names: string[]): Promise<void> {
  const ours = (): string[] => shared.pods.list().filter(pod => pod.metadata?.labels?.[LABEL_PULL] === pull).map(pod => pod.metadata?.name ?? '')
  await shared.ready().catch(() => {})
  const all = [...new Set([...names, ...ours()])]
  await shared.deletePods(all.map(name => ({ metadata: { name } })), 0)
  const waitMs = shared.client.timeoutMs * 3
  const deadline = Date.now() + waitMs
  for (;;) {
    await shared.ready()
    const left = ours()
    if (left.length === 0) return
    if (Date.now() >= deadline) {
      throw new BerthError('engine_unavailable', `the pull's pods are not gone yet after ${waitMs} ms (${left.join(', ')}); the cluster goes on removing them`, {}, { headers: { 'retry-after': '5' } })
    }
    await sleep(shared.pollMs)
  }
}

function reasonField (error: BerthError): { reason?: string } {
  const reason = error.extensions.reason
  return typeof reason === 'string' ? { reason } : {}
}
