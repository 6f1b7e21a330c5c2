// An image pulled onto a cluster's nodes, as JupyterHub's image puller does it: one short-lived pod
// per eligible node, pinned there (nodeName), whose only work is to make the kubelet pull the image
// (pull policy Always, as `docker pull` asks the registry each time). Once the kubelet got past the
// pull (the container was created, ran, or failed to start for a reason of its own) the image is on
// the node; a pull failure says why, node by node. Pure functions, no I/O: puller.ts runs them.
import type { V1Node, V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { LABEL_MANAGED_BY } from './mapping.ts'

/** Marks a puller pod, with the pull it belongs to. */
export const LABEL_PULL = 'io.berth/pull'
/** Seconds a puller pod may live at all (the kubelet ends it past this even if berth is gone). */
export const PULLER_DEADLINE_SECONDS = 600

/** Where an image goes: the nodes a pod may be placed on now, and the others with why not. */
export function eligibleNodes (nodes: V1Node[]): { eligible: string[], skipped: Array<{ node: string, reason: string, down: boolean }> } {
  const eligible: string[] = []
  // `down`: the node is not ready (a pull for it failed); else it was left out on purpose (cordoned, tainted).
  const skipped: Array<{ node: string, reason: string, down: boolean }> = []
  for (const node of nodes) {
    const name = node.metadata?.name ?? ''
    const ready = node.status?.conditions?.find(condition => condition.type === 'Ready')
    const taint = node.spec?.taints?.find(candidate => candidate.effect === 'NoSchedule' || candidate.effect === 'NoExecute')
    if (ready?.status !== 'True') skipped.push({ node: name, reason: `node not ready${ready?.message === undefined ? '' : ` (${ready.message})`}`, down: true })
    else if (node.spec?.unschedulable === true) skipped.push({ node: name, reason: 'node cordoned: it takes no new pods', down: false })
    else if (taint !== undefined) skipped.push({ node: name, reason: `node tainted ${taint.key}${taint.value === undefined ? '' : `=${taint.value}`}:${taint.effect}: it takes no pods of berth's`, down: false })
    else eligible.push(name)
  }
  return { eligible, skipped }
}

/** The puller pod for one node: pinned there, the restricted profile, nothing mounted, gone by its deadline. */
export function pullerPodOf (options: { pull: string, image: string, node: string, pullSecret?: string }): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pull-${options.pull}-${shortHash(options.node)}`, labels: { [LABEL_MANAGED_BY]: 'berth', [LABEL_PULL]: options.pull } },
    spec: {
      nodeName: options.node,
      restartPolicy: 'Never',
      activeDeadlineSeconds: PULLER_DEADLINE_SECONDS,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 0,
      // Pinned to its node by name, past the scheduler: every taint is tolerated only because the node was chosen.
      securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: { type: 'RuntimeDefault' } },
      ...(options.pullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.pullSecret }] }),
      containers: [{
        name: 'pull',
        image: options.image,
        imagePullPolicy: 'Always',
        // Whether the image has `true` does not matter: the pull happens before the command is looked for.
        command: ['true'],
        resources: { limits: { cpu: '10m', memory: '16Mi' }, requests: { cpu: '1m', memory: '1Mi' } },
        securityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true }
      }]
    }
  }
}

/** How one node's pull went, as its puller pod shows it. */
export type NodePullState =
  | { state: 'pulling' }
  | { state: 'pulled', digest: string | null }
  | { state: 'failed', error: BerthError }

/** Reasons the kubelet gives while it keeps trying to pull, which mean it will not succeed by itself. */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'ErrImageNeverPull', 'InvalidImageName'])
/** Reasons that come after the pull: the image is on the node, whatever became of the command. */
const AFTER_PULL = new Set(['CreateContainerError', 'CreateContainerConfigError', 'RunContainerError', 'CrashLoopBackOff', 'StartError'])

export function nodePullOf (pod: V1Pod, image: string): NodePullState {
  const status = pod.status?.containerStatuses?.[0]
  const waiting = status?.state?.waiting
  if (waiting?.reason !== undefined && PULL_FAILURES.has(waiting.reason)) return { state: 'failed', error: pullError(image, waiting.reason, waiting.message ?? '') }
  const digest = digestOf(status?.imageID)
  if (status?.state?.running !== undefined || status?.state?.terminated !== undefined) return { state: 'pulled', digest }
  if (waiting?.reason !== undefined && AFTER_PULL.has(waiting.reason)) return { state: 'pulled', digest }
  if (pod.status?.phase === 'Failed' && status === undefined) {
    return { state: 'failed', error: new BerthError('pull_failed', `the node gave up on the pull: ${pod.status.reason ?? ''} ${pod.status.message ?? ''}`.trimEnd(), { image, reason: 'node' }) }
  }
  return { state: 'pulling' }
}

/** A node's pull failure in berth's codes: the registry wants credentials, the image is not there, or the registry is out of reach. */
export function pullError (image: string, reason: string, message: string): BerthError {
  if (/unauthorized|authentication required|denied|401|403/i.test(message)) {
    return new BerthError('pull_failed', `the node could not pull ${image}: the registry wants credentials (auth, or BERTH_REGISTRY_AUTH_FILE): ${message}`, { image, reason: 'registry_auth' })
  }
  if (reason === 'InvalidImageName') return new BerthError('image_not_found', `the node cannot pull ${image}: ${message}`, { image })
  if (/not found|manifest unknown|does not exist/i.test(message)) return new BerthError('image_not_found', `image ${image} was not found: ${message}`, { image })
  return new BerthError('pull_failed', `the node could not pull ${image}: ${message || reason}`, { image, reason: 'registry_unreachable' })
}

/** `registry/repo@sha256:…` (containerd's imageID) → the digest; docker-shim's `docker-pullable://` too. */
export function digestOf (imageId: string | undefined): string | null {
  const match = imageId === undefined ? null : /@(sha256:[0-9a-f]{64})$/.exec(imageId)
  return match === null ? null : match[1] as string
}

/** A stable short name part for a node (node names can be long and hold dots). */
function shortHash (text: string): string {
  let hash = 0x811c9dc5
  for (const char of text) hash = Math.imul(hash ^ (char.codePointAt(0) as number), 0x01000193) >>> 0
  return hash.toString(16).padStart(8, '0')
}
