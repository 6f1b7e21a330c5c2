// Watching berth talk to the engine from inside the test process: the connections it holds to the
// engine's socket (as the kernel sees them) and the requests it sends there.
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import type { Test } from 'tap'
import { env } from './helpers.ts'

/**
 * The connections this process holds to the engine now. A client end of a unix socket has no path,
 * so it is found through its peer: the engine's end, whose address is the engine socket (`ss -xpn`).
 */
export function engineConnections (socketPath: string = env.socket): number {
  const engineSidePeers = new Set<string>()
  const ours: string[] = []
  for (const line of execFileSync('ss', ['-xpn'], { encoding: 'utf8' }).split('\n')) {
    // u_str ESTAB <recv-q> <send-q> <local> <inode> <peer> <peer inode> users:((…))
    const [netid, state, , , local, inode, , peerInode] = line.trim().split(/\s+/)
    if (netid !== 'u_str' || state !== 'ESTAB') continue
    if (local === socketPath && peerInode !== undefined) engineSidePeers.add(peerInode)
    if (line.includes(`pid=${process.pid},`) && inode !== undefined) ours.push(inode)
  }
  return ours.filter(inode => engineSidePeers.has(inode)).length
}

/**
 * The paths (with their query) of the requests this process sends to the engine's socket from now
 * until the test ends, those that `only` accepts, as docker-modem hands them to http.request:
 * observed, never changed.
 */
export function engineRequests (t: Test, only: (path: string) => boolean = () => true): string[] {
  const paths: string[] = []
  const original = http.request
  http.request = ((...args: Parameters<typeof http.request>) => {
    const options = args[0] as { path?: string, socketPath?: string }
    if (typeof options === 'object' && options.socketPath === env.socket && options.path !== undefined && only(options.path)) paths.push(options.path)
    return original(...args)
  }) as typeof http.request
  t.teardown(() => { http.request = original })
  return paths
}
