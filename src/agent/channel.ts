// The one channel between berth and its agents on a Swarm cluster: TLS 1.2 with a pre-shared key
// (RFC 4279, ECDHE-PSK with ChaCha20-Poly1305), the key derived from a per-cluster secret that only
// berth and the agents are given (a Swarm secret). Each end proves it holds the key before a byte of
// a request flows, and every byte after is encrypted and authenticated, with a fresh ephemeral key
// per connection. No certificates to issue or renew: a tenant's container that reaches the agent's
// port (it can: the port is on the node's address) cannot complete a handshake, nor stand in for an
// agent that berth connects to.
//
// Node built-ins only: the agent runs this module without berth's dependencies.
import { hkdfSync } from 'node:crypto'
import { Agent } from 'node:https'
import type { TlsOptions } from 'node:tls'

/** Who connects: the name berth gives in the handshake; the agent knows no other. */
export const CLIENT_IDENTITY = 'berth'
/** What the agent says it is before the key is checked. */
const SERVER_HINT = 'berth-agent'
/** The port an agent listens on, on every node's address, unless configured otherwise. */
export const DEFAULT_AGENT_PORT = 7988
/** Secrets shorter than this are refused: the handshake must not be guessable offline. */
export const MIN_SECRET_LENGTH = 32

// Forward secrecy (ECDHE) and an AEAD cipher; TLS 1.3 has no PSK without a session in Node.
const TLS = { ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const

export class ChannelKeyError extends Error {}

/** The key both ends use, from the secret as it is kept (a file's content; surrounding whitespace is not part of it). */
export function channelKey (secret: string): Buffer {
  const text = secret.trim()
  if (text.length < MIN_SECRET_LENGTH) {
    throw new ChannelKeyError(`the agent secret is ${text.length} characters long; it needs at least ${MIN_SECRET_LENGTH} (make one with \`openssl rand -hex 32\`)`)
  }
  return Buffer.from(hkdfSync('sha256', text, 'berth-agent-channel', 'tls-psk v1', 32))
}

/** What the agent's TLS server takes: berth's identity with the key, nothing else. */
export function serverOptions (key: Buffer): TlsOptions {
  return {
    ...TLS,
    pskIdentityHint: SERVER_HINT,
    pskCallback: (_socket, identity) => identity === CLIENT_IDENTITY ? key : null
  }
}

/** The connections berth opens to agents: kept alive between calls, each one authenticated by the key. */
export function clientAgent (key: Buffer): Agent {
  return new Agent({
    ...TLS,
    keepAlive: true,
    pskCallback: () => ({ identity: CLIENT_IDENTITY, psk: key }),
    // A PSK handshake has no certificate: the key is what identifies the agent.
    checkServerIdentity: () => undefined
  })
}
