// The entry point of berth in its agent role (`berth-entrypoint agent`, deploy/swarm/agent.yml): on every
// node of a Swarm cluster, the node's Docker socket behind the authenticated channel, for the berth that
// holds the cluster's agent secret. Configuration from the environment; JSON log lines as berth writes them.
//   BERTH_AGENT_SECRET_FILE  the per-cluster secret (default /run/secrets/berth-agent-secret, a Swarm secret)
//   BERTH_AGENT_PORT         where it listens (default 7988), on every address of its container
//   BERTH_DOCKER_SOCKET      the node's engine (default /var/run/docker.sock)
// Node built-ins only, so the agent needs nothing of berth's dependencies to run.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'
import type { Socket } from 'node:net'
import { ChannelKeyError, DEFAULT_AGENT_PORT, channelKey, serverOptions } from './channel.ts'
import { AgentProxy } from './proxy.ts'

const LEVELS = { info: 30, warn: 40, fatal: 60 } as const
function log (level: keyof typeof LEVELS, fields: object, msg: string): void {
  process.stdout.write(JSON.stringify({ level: LEVELS[level], time: Date.now(), role: 'agent', ...fields, msg }) + '\n')
}

// Exit 78 (EX_CONFIG) as berth does for a setting that cannot work: restarting will not fix it.
function refuse (message: string): never {
  log('fatal', {}, message)
  process.exit(78)
}

const secretFile = process.env.BERTH_AGENT_SECRET_FILE || '/run/secrets/berth-agent-secret'
const port = Number(process.env.BERTH_AGENT_PORT || DEFAULT_AGENT_PORT)
const socketPath = process.env.BERTH_DOCKER_SOCKET || '/var/run/docker.sock'
if (!Number.isInteger(port) || port < 1 || port > 65_535) refuse(`BERTH_AGENT_PORT must be a port number, not ${process.env.BERTH_AGENT_PORT}`)

let key: Buffer
try {
  key = channelKey(readFileSync(secretFile, 'utf8'))
} catch (error) {
  if (error instanceof ChannelKeyError) refuse(`${secretFile}: ${error.message}`)
  refuse(`cannot read the agent secret ${secretFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): ` +
    'create the Swarm secret berth-agent-secret and deploy deploy/swarm/agent.yml, which gives it to the agent')
}

const proxy = new AgentProxy({ socketPath, timeoutMs: 10_000, log: { info: (fields, msg) => log('info', fields, msg), warn: (fields, msg) => log('warn', fields, msg) } })
// Half-open: berth closing an exec's stdin (EOF) must leave the way back open for the output that follows.
const server = createServer({ ...serverOptions(key), allowHalfOpen: true }, (req, res) => { proxy.handle(req, res) })
server.on('upgrade', (req, socket, head) => { proxy.upgrade(req, socket, head) })
// A handshake without the key: somebody reached the port who is not berth. Said once per connection, without what they sent.
// (A connection closed before any handshake, as the healthcheck's, offered nothing to refuse.)
server.on('tlsClientError', (error: Error & { code?: string }, socket: Socket) => {
  if (error.code === 'ECONNRESET') return
  log('warn', { remote: socket.remoteAddress, reason: error.code ?? error.message }, 'refused a connection that did not hold the key')
})
const open = new Set<Socket>()
server.on('secureConnection', (socket: Socket) => {
  open.add(socket)
  socket.once('close', () => open.delete(socket))
})

server.listen(port, process.env.BERTH_AGENT_HOST || '0.0.0.0', () => {
  log('info', { port, socket: socketPath }, 'agent listening')
})

// A stop ends what is under way after a moment: berth sees the connection break and says so.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log('info', { signal }, 'agent closing')
    server.close(() => process.exit(0))
    setTimeout(() => { for (const socket of open) socket.destroy() }, 2000).unref()
  })
}
