// The kubernetes backend: one namespace of a cluster, through its apiserver. A container is a
// Deployment (a service) or a Job (a run that finishes) whose replicas are pods. The Kubernetes
// client (~27 MB of generated API models, tens of MB of memory once imported) is loaded only when
// this backend is opened, never by the others.
import type { Config } from '../../config.ts'
import { builderBuilds, builderDisk } from '../builder.ts'
import { absent, defineBackend, type ContainersPart } from '../parts.ts'
import type { KubeShared, KubernetesEngineOptions } from './shared.ts'

/** What the parts share: the apiserver and the namespace's copies, and the containers made on them. */
export interface KubeOpened {
  shared: KubeShared
  containers: ContainersPart
}

/** Opens the cluster: the client, the watch-fed copies, and the containers part on them (tests tune the options). */
export async function openKube (options: KubernetesEngineOptions): Promise<KubeOpened> {
  const [{ KubeShared }, { KubeContainers }] = await Promise.all([import('./shared.ts'), import('./containers.ts')])
  const shared = new KubeShared(options)
  return { shared, containers: new KubeContainers(shared) }
}

const NODE_GARBAGE = 'the kubelet removes images from its node by itself when the node runs short of disk (image garbage collection); nothing outside the node may'

export const kubernetes = defineBackend<KubeOpened>({
  kind: 'kubernetes',
  summary: 'a container is a Deployment (restart always or unless-stopped) or a Job (a run that finishes) whose replicas are pods',
  open: async (config: Config) => {
    const engine = config.engine
    if (engine.kind !== 'kubernetes') throw new Error(`the kubernetes backend was opened with a ${engine.kind} config`)
    return await openKube({
      kubeconfig: engine.kubeconfig,
      ...(engine.context === undefined ? {} : { context: engine.context }),
      namespace: engine.namespace,
      timeoutMs: engine.timeoutMs,
      placementTimeoutMs: engine.placementTimeoutMs,
      volumes: engine.volumes,
      registryAuth: config.registryAuth
    })
  },
  core: ({ shared }) => ({
    info: async () => await shared.info(),
    events: async options => await (await import('./events.ts')).kubeEvents(shared, options),
    close: async () => await shared.close()
  }),
  parts: {
    containers: opened => opened.containers,
    images: async ({ shared }, config) => new (await import('./images.ts')).KubeImages(shared, config.engine.kind === 'kubernetes' ? config.engine.insecureRegistries ?? [] : []),
    imageRemoval: absent(NODE_GARBAGE),
    builds: builderBuilds,
    disk: builderDisk,
    volumes: async ({ shared }) => new (await import('./volumes.ts')).KubeVolumes(shared),
    networks: absent('networks through berth are single-host; on Kubernetes every pod is on the cluster network'),
    exec: async ({ shared }) => (await import('./exec.ts')).kubeExec(shared),
    stats: async ({ shared }) => (await import('./stats.ts')).kubeStats(shared),
    files: async ({ shared }) => (await import('./files.ts')).kubeFiles(shared),
    wait: async ({ shared }) => (await import('./lifecycle.ts')).kubeWait(shared),
    nodes: async ({ shared }) => (await import('./nodes.ts')).kubeNodes(shared),
    expiry: async ({ shared }) => (await import('./lifecycle.ts')).kubeExpiry(shared),
    specs: async ({ shared }) => (await import('./specs.ts')).kubernetesSpecs(shared)
  }
})
