// A node's Docker engine, as berth reaches it on a Swarm cluster: through the berth agent running on
// that node (deploy/swarm/agent.yml), over the channel keyed by the cluster's agent secret
// (src/agent/channel.ts). Each node gets one transport, kept while its address stays the same, so the
// docker backend's parts — exec, stats, files, images, volumes — work on it as on a single host.
import type { Agent } from 'node:https'
import { BerthError } from '../../errors.ts'
import { channelKey, clientAgent } from '../../agent/channel.ts'
import { DockerTransport } from '../docker/transport.ts'
import { isNodeLost, type NodeRef } from './mapping.ts'

export interface AgentsOptions {
  /** The per-cluster secret the agents hold (the content of BERTH_SWARM_AGENT_SECRET_FILE). */
  secret: string
  port: number
  timeoutMs: number
}

/** Failures of the channel itself, as Node's TLS reports them: the agent holds another key, or speaks no TLS. */
const HANDSHAKE = /^(EPROTO|ERR_SSL_|ERR_TLS_)/

export class Agents {
  readonly #agent: Agent
  readonly #options: AgentsOptions
  readonly #transports = new Map<string, DockerTransport>()

  constructor (options: AgentsOptions) {
    this.#options = options
    this.#agent = clientAgent(channelKey(options.secret))
  }

  get port (): number {
    return this.#options.port
  }

  /** The node's engine through its agent; a node the manager has lost, or one without an address, cannot be reached. */
  engine (node: NodeRef): DockerTransport {
    if (isNodeLost(node)) {
      throw new BerthError('engine_unavailable', `node ${node.name} is ${node.state}: what is on it cannot be reached until it is back`, { node: node.name }, { headers: { 'retry-after': '5' } })
    }
    if (node.address === null) throw new BerthError('engine_unavailable', `node ${node.name} reports no address to reach its agent at`, { node: node.name })
    let transport = this.#transports.get(node.address)
    if (transport === undefined) {
      transport = new DockerTransport({ through: { host: node.address, port: this.#options.port, agent: this.#agent }, timeoutMs: this.#options.timeoutMs })
      this.#transports.set(node.address, transport)
    }
    return transport
  }

  /** Runs `call` on the node's engine, saying in berth's words when it is the agent that could not be reached. */
  async on<T> (node: NodeRef, call: (engine: DockerTransport) => Promise<T>): Promise<T> {
    try {
      return await call(this.engine(node))
    } catch (error) {
      throw this.#explained(error, node)
    }
  }

  #explained (error: unknown, node: NodeRef): unknown {
    if (!(error instanceof BerthError)) return error
    const code = (error.cause as { code?: unknown } | undefined)?.code
    const where = `berth's agent on node ${node.name} (${node.address}:${this.#options.port})`
    if (typeof code === 'string' && HANDSHAKE.test(code)) {
      return new BerthError('engine_unavailable', `${where} did not accept berth's key (${code}): give berth the secret the agents hold (BERTH_SWARM_AGENT_SECRET_FILE)`,
        { node: node.name }, { cause: error, headers: { 'retry-after': '30' } })
    }
    if (error.code === 'engine_unavailable' && /^the engine cannot serve now/.test(error.message)) {
      return new BerthError('engine_unavailable', `the engine of node ${node.name} does not answer (its agent says: ${error.message.replace(/^the engine cannot serve now: /, '')})`,
        { node: node.name }, { cause: error, headers: { 'retry-after': '5' } })
    }
    if (error.code === 'engine_unavailable' && /cannot reach/.test(error.message)) {
      return new BerthError('engine_unavailable', `cannot reach ${where} (${String(code)}): is deploy/swarm/agent.yml deployed, and the node up?`,
        { node: node.name }, { cause: error, headers: { 'retry-after': '5' } })
    }
    return error
  }

  close (): void {
    this.#agent.destroy()
  }
}
