// berth's run spec as Kubernetes objects: pure functions, no I/O. A berth container on Kubernetes is
// a workload of one container — a Deployment when it is a service (restart always or unless-stopped),
// a Job when it is a run that finishes (restart no or on-failure) — whose replicas are pods. Reading
// them back in berth's words is reading.ts.
import type { V1Container, V1Deployment, V1Job, V1PersistentVolumeClaim, V1NodeSelectorRequirement, V1ObjectMeta, V1PodSpec, V1PodTemplateSpec, V1TopologySpreadConstraint, V1Volume, V1VolumeMount } from '@kubernetes/client-node'
import type { KubeVolumeSettings } from '../../config.ts'
import { BerthError } from '../../errors.ts'
import type { RunSpec } from '../types.ts'

/** berth's id of the container: on the workload, its selector and its pods. */
export const LABEL_ID = 'io.berth/id'
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by'
/** berth's labels (ownership and the client's), kept whole: label values on Kubernetes are too narrow for them. */
export const ANNOTATION_LABELS = 'io.berth/labels'
/** The replicas a stopped container returns to when started. */
export const ANNOTATION_REPLICAS = 'io.berth/replicas'
/** What berth last did to it (start, stop, scale, restart), for the event the change becomes… */
export const ANNOTATION_ACTION = 'io.berth/action'
/** …and when: a change of this is one event (a Deployment's generation also moves with annotations). */
export const ANNOTATION_ACTION_AT = 'io.berth/action-at'
/** Changed on the pod template by a restart: a new revision replaces every pod. */
export const ANNOTATION_RESTARTED = 'io.berth/restarted-at'
/** The restart policy as the run asked for it (`always`, `unless-stopped`, `no`, `on-failure:N`). */
export const ANNOTATION_RESTART = 'io.berth/restart'
/** How its replicas ended when berth stopped it (JSON: exitCode, oomKilled, finishedAt): the pods that knew are gone. */
export const ANNOTATION_EXIT = 'io.berth/exit'
/** The end of its time to live once moved (PUT …/expiry); its labels keep the end it was run with. */
export const ANNOTATION_EXPIRES_AT = 'io.berth/expires-at'
export const CONTAINER_NAME = 'main'

/** The annotations that record an action berth took, for its event. */
export function acted (action: string): Record<string, string> {
  return { [ANNOTATION_ACTION]: action, [ANNOTATION_ACTION_AT]: new Date().toISOString() }
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A claim's name is a DNS subdomain, narrower than a Docker volume name. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/

export function checkVolumeName (name: string): void {
  if (!DNS_SUBDOMAIN.test(name)) {
    throw new BerthError('validation_failed', `on Kubernetes a volume name must be a DNS subdomain (lower-case letters, digits, "-" and ".", at most 253, starting and ending with a letter or digit): ${name} is not one`, { field: 'body/name' })
  }
}

/** The claim berth makes for a named volume: pure, for the mapping tests. */
export function claimOf (name: string, labels: Record<string, string>, bytes: number, settings: KubeVolumeSettings): V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, labels: { [LABEL_MANAGED_BY]: 'berth' }, annotations: { [ANNOTATION_LABELS]: JSON.stringify(labels) } },
    spec: {
      accessModes: [settings.accessMode],
      ...(settings.storageClass === null ? {} : { storageClassName: settings.storageClass }),
      resources: { requests: { storage: String(bytes) } }
    }
  }
}

/** A workload's name must be a DNS label, which is narrower than a Docker container name. */
export function checkName (name: string): void {
  if (!DNS_LABEL.test(name)) {
    throw new BerthError('validation_failed', `on Kubernetes a container name must be a DNS label (lower-case letters, digits and "-", at most 63, starting and ending with a letter or digit): ${name} is not one`, { field: 'body/name' })
  }
}

/** A berth container on Kubernetes: a service (Deployment) or a run that finishes (Job). */
export type Workload = { kind: 'service', object: V1Deployment } | { kind: 'job', object: V1Job }

/** Whether a run is a service (restarted whenever it exits) or a run that finishes. */
export function isService (spec: Pick<RunSpec, 'restart'>): boolean {
  return spec.restart.policy === 'always' || spec.restart.policy === 'unless-stopped'
}

export interface WorkloadOptions {
  id: string
  name: string
  /** Host ports berth chose for the ports that name none, by index into spec.ports. */
  chosenPorts: Map<number, number>
  pullSecret?: string
}

function restartText (spec: RunSpec): string {
  return spec.restart.policy === 'on-failure' ? `on-failure:${spec.restart.maxRetries ?? 0}` : spec.restart.policy
}

function metadataOf (spec: RunSpec, options: WorkloadOptions): { metadata: V1ObjectMeta, template: V1PodTemplateSpec, selector: Record<string, string> } {
  if (spec.image.kind !== 'ref') throw new BerthError('validation_failed', 'on Kubernetes a container runs an image reference, not a local image id', { field: 'body/image' })
  const selector = { [LABEL_ID]: options.id, [LABEL_MANAGED_BY]: 'berth' }
  const annotations = { [ANNOTATION_LABELS]: JSON.stringify(spec.labels) }
  return {
    selector,
    metadata: { name: options.name, labels: selector, annotations: { ...annotations, [ANNOTATION_RESTART]: restartText(spec) } },
    template: { metadata: { labels: selector, annotations }, spec: podSpecOf(spec, spec.image.ref.reference, options) }
  }
}

export function deploymentOf (spec: RunSpec, options: WorkloadOptions): V1Deployment {
  const { metadata, template } = metadataOf(spec, options)
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      replicas: spec.replicas ?? 1,
      selector: { matchLabels: { [LABEL_ID]: options.id } },
      // Like `docker restart`: the old replicas stop before new ones start (they hold the same host ports).
      strategy: { type: 'Recreate' },
      revisionHistoryLimit: 2,
      template
    }
  }
}

/** Retries of on-failure without a count: docker's "for ever", as far as a Job can count. */
export const UNLIMITED_RETRIES = 2_147_483_647

/**
 * A run that finishes as a Job: each replica once (completions and parallelism), its pods never
 * restarted in place (restartPolicy Never: every attempt is a pod of its own, whose exit code and
 * logs stay readable), retried as on-failure says by the Job controller, not by berth.
 */
export function jobOf (spec: RunSpec, options: WorkloadOptions): V1Job {
  const { metadata, template } = metadataOf(spec, options)
  const replicas = spec.replicas ?? 1
  const retries = spec.restart.policy === 'on-failure' ? (spec.restart.maxRetries === undefined || spec.restart.maxRetries === 0 ? UNLIMITED_RETRIES : spec.restart.maxRetries) : 0
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata,
    spec: {
      completions: replicas,
      parallelism: replicas,
      backoffLimit: retries,
      template: { ...template, spec: { ...template.spec as V1PodSpec, restartPolicy: 'Never' } }
    }
  }
}

/**
 * The same Job again for `docker start` of a finished one: what the run asked for, without what
 * the Job controller added (its selector and the labels it puts on the template) or what berth
 * recorded of the last run.
 */
export function jobAgain (job: V1Job): V1Job {
  const generated = new Set(['controller-uid', 'job-name', 'batch.kubernetes.io/controller-uid', 'batch.kubernetes.io/job-name'])
  const keep = (labels: Record<string, string> | undefined): Record<string, string> => Object.fromEntries(Object.entries(labels ?? {}).filter(([key]) => !generated.has(key)))
  const annotations = { ...job.metadata?.annotations }
  for (const key of [ANNOTATION_EXIT, ANNOTATION_ACTION, ANNOTATION_ACTION_AT]) delete annotations[key]
  const spec = job.spec as NonNullable<V1Job['spec']>
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: job.metadata?.name ?? '', labels: keep(job.metadata?.labels), annotations: { ...annotations, ...acted('start') } },
    spec: {
      ...(spec.completions === undefined ? {} : { completions: spec.completions }),
      ...(spec.parallelism === undefined ? {} : { parallelism: spec.parallelism }),
      ...(spec.backoffLimit === undefined ? {} : { backoffLimit: spec.backoffLimit }),
      template: { metadata: { ...spec.template.metadata, labels: keep(spec.template.metadata?.labels) }, spec: spec.template.spec as V1PodSpec }
    }
  }
}

function podSpecOf (spec: RunSpec, image: string, options: WorkloadOptions): V1PodSpec {
  const user = userOf(spec.user)
  const affinity = affinityOf(spec.placement?.constraints ?? [])
  const spread = spreadOf(spec.placement?.spread ?? [])
  const volumes = volumesOf(spec)
  const claims = volumes.some(volume => volume.persistentVolumeClaim !== undefined)
  // A fresh volume's root is the provisioner's (often root's): the run's group is given it, so the
  // non-root user can write there. Without a group asked for there is none to give.
  const fsGroup = claims ? user.gid ?? user.uid : undefined
  return {
    // A tenant's container gets no credentials to the cluster, and no view of its services.
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    terminationGracePeriodSeconds: spec.stopTimeout ?? 10,
    ...(spec.hostname === undefined ? {} : { hostname: spec.hostname }),
    // What Kubernetes' "restricted" pod security profile asks for.
    securityContext: {
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
      ...(user.uid === undefined ? {} : { runAsUser: user.uid }),
      ...(user.gid === undefined ? {} : { runAsGroup: user.gid }),
      ...(fsGroup === undefined ? {} : { fsGroup, fsGroupChangePolicy: 'OnRootMismatch' })
    },
    ...(options.pullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.pullSecret }] }),
    ...(affinity === undefined ? {} : { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: affinity }] } } } }),
    ...(spread.length === 0 ? {} : { topologySpreadConstraints: spread.map(constraint => ({ ...constraint, labelSelector: { matchLabels: { [LABEL_ID]: options.id } } })) }),
    ...(volumes.length === 0 ? {} : { volumes }),
    containers: [containerOf(spec, image, options)]
  }
}

/** /dev/shm and the named volumes (PersistentVolumeClaims of the same name), never a host path. */
function volumesOf (spec: RunSpec): V1Volume[] {
  const claims = spec.mounts.filter(mount => mount.type === 'volume')
  return [
    ...(spec.shmSize === undefined ? [] : [{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: String(spec.shmSize) } }]),
    ...[...new Set(claims.map(mount => mount.source))].map((claim, index) => ({ name: `v${index}`, persistentVolumeClaim: { claimName: claim } }))
  ]
}

function mountsOf (spec: RunSpec): V1VolumeMount[] {
  const claims = [...new Set(spec.mounts.filter(mount => mount.type === 'volume').map(mount => mount.source))]
  return [
    ...(spec.shmSize === undefined ? [] : [{ name: 'dshm', mountPath: '/dev/shm' }]),
    ...spec.mounts.filter(mount => mount.type === 'volume').map(mount => ({ name: `v${claims.indexOf(mount.source)}`, mountPath: mount.target, ...(mount.readOnly ? { readOnly: true } : {}) }))
  ]
}

function containerOf (spec: RunSpec, image: string, options: WorkloadOptions): V1Container {
  const limits: Record<string, string> = {
    ...(spec.memory === undefined ? {} : { memory: String(spec.memory) }),
    ...(spec.cpus === undefined ? {} : { cpu: millicores(spec.cpus) }),
    ...(typeof spec.gpus === 'number' ? { 'nvidia.com/gpu': String(spec.gpus) } : {})
  }
  const requests: Record<string, string> = {
    ...(spec.reservations?.memory === undefined ? {} : { memory: String(spec.reservations.memory) }),
    ...(spec.reservations?.cpus === undefined ? {} : { cpu: millicores(spec.reservations.cpus) })
  }
  const mounts = mountsOf(spec)
  return {
    name: CONTAINER_NAME,
    image,
    imagePullPolicy: spec.pull === 'always' ? 'Always' : spec.pull === 'never' ? 'Never' : 'IfNotPresent',
    ...(spec.entrypoint === undefined ? {} : { command: spec.entrypoint }),
    ...(spec.command === undefined ? {} : { args: spec.command }),
    env: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
    ...(spec.workingDir === undefined ? {} : { workingDir: spec.workingDir }),
    ...(spec.tty === true ? { tty: true, stdin: true } : {}),
    ports: spec.ports.map((port, index) => ({
      containerPort: port.container,
      protocol: port.protocol.toUpperCase(),
      hostPort: port.host ?? options.chosenPorts.get(index) as number,
      ...(port.hostIp === undefined || port.hostIp === '0.0.0.0' ? {} : { hostIP: port.hostIp })
    })),
    resources: {
      ...(Object.keys(limits).length === 0 ? {} : { limits }),
      ...(Object.keys(requests).length === 0 ? {} : { requests })
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      ...(spec.readOnly === true ? { readOnlyRootFilesystem: true } : {})
    },
    ...(mounts.length === 0 ? {} : { volumeMounts: mounts })
  }
}

function millicores (cpus: number): string {
  return `${Math.max(1, Math.round(cpus * 1000))}m`
}

/** `-u 1000` or `-u 1000:100`: Kubernetes runs as numeric ids, and never as root here. */
export function userOf (user: string | undefined): { uid?: number, gid?: number } {
  if (user === undefined) return {}
  const match = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(user)
  if (match === null) {
    throw new BerthError('validation_failed', `on Kubernetes the user must be a numeric uid, or uid:gid (${user} is not): the cluster does not look names up in the image`, { field: 'body/user' })
  }
  const uid = Number(match[1])
  if (uid === 0) throw new BerthError('policy_denied', 'containers on Kubernetes run as a non-root user (the restricted pod security profile): user 0 is refused')
  return { uid, ...(match[2] === undefined ? {} : { gid: Number(match[2]) }) }
}

/** Swarm's constraint words, which berth's API speaks, as node affinity. */
function affinityOf (constraints: string[]): V1NodeSelectorRequirement[] | undefined {
  if (constraints.length === 0) return undefined
  return constraints.map(constraint => {
    const match = /^([^=!\s]+) ?(==|!=) ?(.+)$/.exec(constraint)
    const key = match === null ? null : nodeKey(match[1] as string)
    if (match === null || key === null) {
      throw new BerthError('validation_failed', `on Kubernetes a constraint is node.labels.KEY, node.hostname, node.platform.os or node.platform.arch compared with == or != (${constraint} is not)`, { field: 'body/placement/constraints' })
    }
    return { key, operator: match[2] === '==' ? 'In' : 'NotIn', values: [match[3] as string] }
  })
}

function spreadOf (spread: string[]): V1TopologySpreadConstraint[] {
  return spread.map(attribute => {
    const key = nodeKey(attribute)
    if (key === null) throw new BerthError('validation_failed', `on Kubernetes replicas spread over node.labels.KEY or node.hostname (${attribute} is not one)`, { field: 'body/placement/spread' })
    return { maxSkew: 1, topologyKey: key, whenUnsatisfiable: 'DoNotSchedule' }
  })
}

function nodeKey (attribute: string): string | null {
  if (attribute.startsWith('node.labels.')) return attribute.slice('node.labels.'.length)
  switch (attribute) {
    case 'node.hostname': return 'kubernetes.io/hostname'
    case 'node.platform.os': return 'kubernetes.io/os'
    case 'node.platform.arch': return 'kubernetes.io/arch'
    default: return null
  }
}

export function constraintOf (requirement: V1NodeSelectorRequirement): string {
  const attribute = requirement.key === 'kubernetes.io/hostname'
    ? 'node.hostname'
    : requirement.key === 'kubernetes.io/os' ? 'node.platform.os' : requirement.key === 'kubernetes.io/arch' ? 'node.platform.arch' : `node.labels.${requirement.key}`
  return `${attribute}${requirement.operator === 'NotIn' ? '!=' : '=='}${requirement.values?.[0] ?? ''}`
}

const SUFFIXES: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, Pi: 1024 ** 5 }

/** A Kubernetes quantity of bytes ("67108864", "64Mi"). */
export function bytesOf (quantity: string | undefined): number | null {
  const match = quantity === undefined ? null : /^(\d+(?:\.\d+)?)(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$/.exec(quantity)
  if (match === null) return null
  return Math.round(Number(match[1]) * (SUFFIXES[match[2] ?? ''] as number))
}

/** A Kubernetes quantity of CPU ("500m", "2", "1234567n" as the metrics API reports usage). */
export function coresOf (quantity: string | undefined): number | null {
  const match = quantity === undefined ? null : /^(\d+(?:\.\d+)?)(m|u|n)?$/.exec(quantity)
  if (match === null) return null
  const scale = { '': 1, m: 1e-3, u: 1e-6, n: 1e-9 }[match[2] ?? ''] as number
  return Number(match[1]) * scale
}
