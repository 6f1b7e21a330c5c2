// The swarm backend: a Docker Swarm driven through one manager. A container is a service of
// replicas the manager places over the nodes; the nodes have no single image store, volume or
// network berth can reach from the manager, so those parts are absent here, each saying why.
import type { Config } from '../../config.ts'
import { builderBuilds, builderDisk } from '../builder.ts'
import { absent, defineBackend } from '../parts.ts'
import { SwarmCluster, type SwarmEngineOptions } from './cluster.ts'

const IMAGE_STORE = 'a Swarm cluster has no single image store: each node pulls a container\'s image when a task of it starts there'
const ON_EACH_NODE = 'a task\'s container is on its node\'s engine, which the manager\'s API does not reach'

/** The cluster's options from berth's config. */
export function swarmOptions (config: Config): SwarmEngineOptions {
  const engine = config.engine
  if (engine.kind !== 'swarm') throw new Error(`the swarm backend was opened with a ${engine.kind} config`)
  return {
    socketPath: engine.socketPath,
    timeoutMs: engine.timeoutMs,
    publishMode: engine.publishMode,
    placementTimeoutMs: engine.placementTimeoutMs,
    registryAuth: config.registryAuth
  }
}

export const swarm = defineBackend<SwarmCluster>({
  kind: 'swarm',
  summary: 'a container is a service whose replicas are tasks placed over the nodes',
  open: config => new SwarmCluster(swarmOptions(config)),
  core: cluster => ({ info: async () => await cluster.info(), events: async options => await cluster.events(options) }),
  parts: {
    containers: cluster => cluster,
    images: absent(IMAGE_STORE),
    builds: builderBuilds,
    disk: builderDisk,
    volumes: absent('each node has its own named volumes: a replica would see different data, and their ownership cannot be checked on every node'),
    networks: absent('networks through berth are single-host for now; on a Swarm cluster they would be overlay networks'),
    exec: absent(ON_EACH_NODE),
    stats: absent(ON_EACH_NODE),
    files: absent(ON_EACH_NODE),
    wait: absent('a service has no single exit to wait for on a Swarm cluster; follow its tasks in ps or events'),
    nodes: cluster => ({ list: async () => await cluster.listNodes() }),
    expiry: absent('nothing on a Swarm cluster would stop or remove the service when it expires'),
    specs: absent('a service\'s spec as a run request is not there yet on a Swarm cluster')
  }
})
