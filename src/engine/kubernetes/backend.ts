// The kubernetes backend: one namespace of a cluster, through its apiserver. A container is a
// Deployment whose replicas are pods. The Kubernetes client (~27 MB of generated API models, tens
// of MB of memory once imported) is loaded only when this backend is opened, never by the others.
import type { Config } from '../../config.ts'
import { builderBuilds, builderDisk } from '../builder.ts'
import { absent, defineBackend } from '../parts.ts'
import type { KubeCluster } from './cluster.ts'

const NO_IMAGE_STORE = 'a Kubernetes cluster has no image store berth can read: each node pulls a container\'s image when a pod of it starts there (run\'s pull policy says when)'
const NOT_YET = (what: string): string => `${what} is not there yet on Kubernetes`

export const kubernetes = defineBackend<KubeCluster>({
  kind: 'kubernetes',
  summary: 'a container is a Deployment whose replicas are pods',
  open: async (config: Config) => {
    const engine = config.engine
    if (engine.kind !== 'kubernetes') throw new Error(`the kubernetes backend was opened with a ${engine.kind} config`)
    const { KubeCluster } = await import('./cluster.ts')
    return new KubeCluster({
      kubeconfig: engine.kubeconfig,
      ...(engine.context === undefined ? {} : { context: engine.context }),
      namespace: engine.namespace,
      timeoutMs: engine.timeoutMs,
      placementTimeoutMs: engine.placementTimeoutMs,
      registryAuth: config.registryAuth
    })
  },
  core: cluster => ({ info: async () => await cluster.info(), events: async options => await cluster.events(options), close: async () => await cluster.close() }),
  parts: {
    containers: cluster => cluster,
    images: absent(NO_IMAGE_STORE),
    builds: builderBuilds,
    disk: builderDisk,
    volumes: absent(NOT_YET('named volumes (they would be PersistentVolumeClaims)')),
    networks: absent('networks through berth are single-host; on Kubernetes every pod is on the cluster network'),
    exec: absent(NOT_YET('exec into a pod')),
    stats: absent(NOT_YET('stats of pods (they need the metrics API)')),
    files: absent(NOT_YET('files in and out of pods')),
    wait: absent('a Deployment\'s replicas are restarted whenever they exit: there is no single exit to wait for; follow its pods in ps or events'),
    nodes: cluster => ({ list: async () => await cluster.listNodes() }),
    expiry: absent(NOT_YET('expiry')),
    specs: absent(NOT_YET('a Deployment\'s spec as a run request'))
  }
})
