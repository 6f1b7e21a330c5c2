// What the swarm backend's parts share, and each part made on it. backend.ts loads this module when
// a swarm backend is opened, so the docker and kubernetes backends never load Swarm's modules.
import type { ContainersPart, ExecPart, FilesPart, NetworksPart, NodesPart, SpecsPart, StatsPart, WaitPart } from '../parts.ts'
import type { Agents } from './agents.ts'
import { SwarmCluster, type SwarmEngineOptions } from './cluster.ts'
import { SwarmContainers } from './containers.ts'
import { SwarmExpiry } from './expiry.ts'
import { SwarmImages } from './images.ts'
import { nodeOf } from './mapping.ts'
import { SwarmNetworks } from './networks.ts'
import { swarmExec, swarmFiles, swarmStats } from './processes.ts'
import { swarmSpecs } from './specs.ts'
import { SwarmVolumes } from './volumes.ts'
import { swarmWait } from './wait.ts'

export { swarmOptions } from './cluster.ts'

/** The cluster, and the parts others build on (expiry, volumes, the nodes' images). */
export class SwarmHost {
  readonly cluster: SwarmCluster
  readonly expiry: SwarmExpiry
  readonly volumes: SwarmVolumes | null
  #images: SwarmImages | null = null

  constructor (options: SwarmEngineOptions) {
    this.cluster = new SwarmCluster(options)
    this.expiry = new SwarmExpiry(this.cluster)
    this.volumes = this.cluster.agents === null ? null : new SwarmVolumes(this.cluster, this.cluster.agents)
  }

  containers (): ContainersPart {
    return new SwarmContainers(this.cluster, this.expiry, this.volumes)
  }

  /** One view of the nodes' images serves listing, pulls and removal (it keeps a store per node). */
  images (agents: Agents): SwarmImages {
    this.#images ??= new SwarmImages(this.cluster, agents)
    return this.#images
  }

  networks (): NetworksPart {
    return new SwarmNetworks(this.cluster)
  }

  exec (agents: Agents): ExecPart {
    return swarmExec(this.cluster, agents)
  }

  stats (agents: Agents): StatsPart {
    return swarmStats(this.cluster, agents)
  }

  files (agents: Agents): FilesPart {
    return swarmFiles(this.cluster, agents)
  }

  wait (): WaitPart {
    return swarmWait(this.cluster, this.cluster.agents)
  }

  nodes (): NodesPart {
    return { list: async () => (await this.cluster.reads.nodes()).map(nodeOf).sort((a, b) => a.name.localeCompare(b.name)) }
  }

  specs (): SpecsPart {
    return swarmSpecs(this.cluster.reads)
  }
}
