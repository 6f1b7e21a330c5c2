// Why a pod will not run, in berth's codes: the scheduler found no node for it (a host port taken on
// every node, resources, GPUs, constraints), or the kubelet cannot start it (the image cannot be
// pulled, it would run as root, its configuration is refused). Pure functions.
import type { V1Pod } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { PortConflictError } from '../types.ts'
import { podProblem } from './reading.ts'

/** Reasons the kubelet gives while it keeps trying, which mean it will not succeed by itself. */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'ErrImageNeverPull', 'InvalidImageName'])

const UNBOUND_CLAIMS = /unbound immediate PersistentVolumeClaims/i
const OTHER_REASONS = /free ports|Insufficient|affinity|selector|topology spread|nvidia\.com\/gpu/i

/** The error a pod shows, or null while it may still run. `ports` are the host ports its container asks for. */
export function podFailure (pod: V1Pod, ports: number[]): BerthError | null {
  const problem = podProblem(pod)
  if (problem === null) return null
  const { reason, message } = problem
  if (reason === 'Unschedulable') {
    // A volume's claim not bound yet: its storage class's provisioner is at work, and the scheduler
    // tries again once it is bound (the placement deadline bounds the wait).
    if (UNBOUND_CLAIMS.test(message) && !OTHER_REASONS.test(message)) return null
    if (/free ports/i.test(message)) {
      return new PortConflictError(ports[0] ?? null, null, ports.length === 1
        ? `host port ${ports[0]} is already allocated on every node the container may run on (${message})`
        : `one of the host ports ${ports.join(', ')} is already allocated on every node the container may run on (${message})`)
    }
    if (/nvidia\.com\/gpu/i.test(message)) {
      return new BerthError('gpu_unavailable', `no node of the cluster has the GPUs asked for free: ${message}`)
    }
    const why = /Insufficient (cpu|memory)/i.test(message) ? 'resources' : /affinity|selector|topology spread/i.test(message) ? 'constraints' : 'no_node'
    return new BerthError('placement_failed', `the cluster has no node for the container: ${message}`, { reason: why })
  }
  if (PULL_FAILURES.has(reason)) {
    if (/unauthorized|authentication required|denied|401|403/i.test(message)) {
      return new BerthError('pull_failed', `the node could not pull the container's image: the registry wants credentials (auth, or BERTH_REGISTRY_AUTH_FILE): ${message}`, { reason: 'registry_auth' })
    }
    if (reason === 'ErrImageNeverPull') return new BerthError('image_not_found', `the image is not on the node and pull is "never": ${message}`)
    if (/not found|manifest unknown|does not exist/i.test(message)) return new BerthError('image_not_found', `the node could not get the container's image: ${message}`)
    return new BerthError('pull_failed', `the node could not pull the container's image: ${message}`, { reason: 'registry_unreachable' })
  }
  if (reason === 'CreateContainerConfigError' && /non-root|runAsNonRoot/i.test(message)) {
    return new BerthError('policy_denied', `the image runs as root, which containers on Kubernetes may not (the restricted pod security profile): give a numeric non-root user, or use an image that has one (${message})`)
  }
  if (reason === 'CreateContainerConfigError' || reason === 'CreateContainerError' || reason === 'RunContainerError') {
    return new BerthError('placement_failed', `the node could not start the container: ${reason}: ${message}`, { reason: 'rejected' })
  }
  return null
}
