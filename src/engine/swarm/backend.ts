// The swarm backend: a Docker Swarm driven through one manager. A container is a service of replicas
// the manager places over the nodes. What lives on a node — a replica's container (exec, stats, files),
// the node's images and named volumes — is reached through berth's agent on that node
// (deploy/swarm/agent.yml); without an agent secret configured, those parts are absent and say so.
import type { Config } from '../../config.ts'
import { builderBuilds, builderDisk } from '../builder.ts'
import { absent, configured, defineBackend, type Absent, type OptionalPart, type PartFactory, type Parts } from '../parts.ts'
import type { Agents } from './agents.ts'
import { SwarmCluster, swarmOptions, type SwarmEngineOptions } from './cluster.ts'
import { SwarmContainers } from './containers.ts'
import { SwarmExpiry } from './expiry.ts'
import { SwarmImages } from './images.ts'
import { nodeOf } from './mapping.ts'
import { SwarmNetworks } from './networks.ts'
import { swarmSpecs } from './specs.ts'
import { swarmExec, swarmFiles, swarmStats } from './processes.ts'
import { SwarmVolumes } from './volumes.ts'
import { swarmWait } from './wait.ts'

const NO_AGENT = 'it is on the nodes, which berth reaches through its agent on each (deploy/swarm/agent.yml): ' +
  'set BERTH_SWARM_AGENT_SECRET_FILE to the secret the agents hold'

/** What the swarm backend's parts share: the cluster, and the parts others build on (expiry, volumes). */
export class SwarmHost {
  readonly cluster: SwarmCluster
  readonly expiry: SwarmExpiry
  readonly volumes: SwarmVolumes | null

  constructor (options: SwarmEngineOptions) {
    this.cluster = new SwarmCluster(options)
    this.expiry = new SwarmExpiry(this.cluster)
    this.volumes = this.cluster.agents === null ? null : new SwarmVolumes(this.cluster, this.cluster.agents)
  }
}

const REQUIRES = 'berth\'s agent on every node (deploy/swarm/agent.yml, BERTH_SWARM_AGENT_SECRET_FILE)'

/** A part made through the agents, or absent saying how to configure them (the document says it needs them). */
function throughAgents<N extends OptionalPart> (make: (host: SwarmHost, agents: Agents) => Parts[N]): PartFactory<SwarmHost, N> {
  return configured<SwarmHost, N>(REQUIRES, (host): Parts[N] | Absent => host.cluster.agents === null ? absent(NO_AGENT) : make(host, host.cluster.agents))
}

/** One view of the nodes' images serves listing, pulls and removal (it keeps a store per node). */
const nodeImages = new WeakMap<SwarmHost, SwarmImages>()
function imagesOf (host: SwarmHost, agents: Agents): SwarmImages {
  let images = nodeImages.get(host)
  if (images === undefined) {
    images = new SwarmImages(host.cluster, agents)
    nodeImages.set(host, images)
  }
  return images
}

export const swarm = defineBackend<SwarmHost>({
  kind: 'swarm',
  summary: 'a container is a service whose replicas are tasks placed over the nodes',
  open: (config: Config) => new SwarmHost(swarmOptions(config)),
  core: host => ({
    info: async () => await host.cluster.info(),
    events: async options => await host.cluster.events(options),
    close: async () => { await host.cluster.close() }
  }),
  parts: {
    containers: host => new SwarmContainers(host.cluster, host.expiry, host.volumes),
    images: throughAgents<'images'>(imagesOf),
    imageRemoval: throughAgents<'imageRemoval'>(imagesOf),
    builds: builderBuilds,
    disk: builderDisk,
    volumes: throughAgents<'volumes'>(host => host.volumes as SwarmVolumes),
    networks: host => new SwarmNetworks(host.cluster),
    exec: throughAgents<'exec'>((host, agents) => swarmExec(host.cluster, agents)),
    stats: throughAgents<'stats'>((host, agents) => swarmStats(host.cluster, agents)),
    files: throughAgents<'files'>((host, agents) => swarmFiles(host.cluster, agents)),
    wait: host => swarmWait(host.cluster, host.cluster.agents),
    nodes: host => ({ list: async () => (await host.cluster.reads.nodes()).map(nodeOf).sort((a, b) => a.name.localeCompare(b.name)) }),
    expiry: host => host.expiry,
    specs: host => swarmSpecs(host.cluster.reads)
  }
})
