// The swarm backend: a Docker Swarm driven through one manager. A container is a service of replicas
// the manager places over the nodes. What lives on a node — a replica's container (exec, stats, files),
// the node's images and named volumes — is reached through berth's agent on that node
// (deploy/swarm/agent.yml); without an agent secret configured, those parts are absent and say so.
// Swarm's modules (host.ts and what it builds on) are loaded when this backend is opened, never by the others.
import type { Config } from '../../config.ts'
import { builderBuilds, builderDisk } from '../builder.ts'
import { absent, configured, defineBackend, type Absent, type OptionalPart, type PartFactory, type Parts } from '../parts.ts'
import type { Agents } from './agents.ts'
import type { SwarmHost } from './host.ts'

const NO_AGENT = 'it is on the nodes, which berth reaches through its agent on each (deploy/swarm/agent.yml): ' +
  'set BERTH_SWARM_AGENT_SECRET_FILE to the secret the agents hold'

const REQUIRES = 'berth\'s agent on every node (deploy/swarm/agent.yml, BERTH_SWARM_AGENT_SECRET_FILE)'

/** A part made through the agents, or absent saying how to configure them (the document says it needs them). */
function throughAgents<N extends OptionalPart> (make: (host: SwarmHost, agents: Agents) => Parts[N]): PartFactory<SwarmHost, N> {
  return configured<SwarmHost, N>(REQUIRES, (host): Parts[N] | Absent => host.cluster.agents === null ? absent(NO_AGENT) : make(host, host.cluster.agents))
}

export const swarm = defineBackend<SwarmHost>({
  kind: 'swarm',
  summary: 'a container is a service whose replicas are tasks placed over the nodes',
  open: async (config: Config) => {
    const { SwarmHost, swarmOptions } = await import('./host.ts')
    return new SwarmHost(swarmOptions(config))
  },
  core: host => ({
    info: async () => await host.cluster.info(),
    events: async options => await host.cluster.events(options),
    close: async () => { await host.cluster.close() }
  }),
  parts: {
    containers: host => host.containers(),
    images: throughAgents<'images'>((host, agents) => host.images(agents)),
    imageRemoval: throughAgents<'imageRemoval'>((host, agents) => host.images(agents)),
    builds: builderBuilds,
    disk: builderDisk,
    volumes: throughAgents<'volumes'>(host => host.volumes as NonNullable<SwarmHost['volumes']>),
    networks: host => host.networks(),
    exec: throughAgents<'exec'>((host, agents) => host.exec(agents)),
    stats: throughAgents<'stats'>((host, agents) => host.stats(agents)),
    files: throughAgents<'files'>((host, agents) => host.files(agents)),
    wait: host => host.wait(),
    nodes: host => host.nodes(),
    expiry: host => host.expiry,
    specs: host => host.specs()
  }
})
