// Watching berth talk to the engine from inside the test process: the connections it holds to the
// engine's socket (as the kernel sees them), the requests it sends there, and an engine socket that
// pins what one request answers.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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

/**
 * The test engine behind a socket of the test's own that answers one container's stats with one
 * fixed raw reading, and passes every other request through. Two readers of stats (berth, and the
 * Docker CLI) then compute from the same moment's counters, so their results can be compared exactly.
 */
export class PinnedStats {
  readonly dir = mkdtempSync(join(tmpdir(), 'berth-stats-'))
  readonly socketPath = join(this.dir, 'docker.sock')
  /** The stats requests answered with the pinned reading: method and path with its query. */
  readonly served: string[] = []
  readonly #server: http.Server

  constructor (containerId: string, reading: unknown) {
    const stats = new RegExp(`^(/v[\\d.]+)?/containers/(${containerId}|${containerId.slice(0, 12)})/stats(\\?|$)`)
    this.#server = http.createServer((request, response) => {
      if (request.method === 'GET' && stats.test(request.url ?? '')) {
        this.served.push(`${request.method} ${request.url}`)
        response.writeHead(200, { 'content-type': 'application/json' })
        response.end(JSON.stringify(reading) + '\n')
        return
      }
      const upstream = http.request({ socketPath: env.socket, method: request.method, path: request.url, headers: request.headers }, answer => {
        response.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(response)
      })
      upstream.on('error', error => { response.destroy(error) })
      // A client that goes away ends its request to the engine too (a followed event stream never ends by itself).
      response.on('close', () => { upstream.destroy() })
      request.pipe(upstream)
    })
  }

  async listen (t: Test): Promise<string> {
    await new Promise<void>(resolve => this.#server.listen(this.socketPath, resolve))
    t.teardown(async () => {
      this.#server.closeAllConnections()
      await new Promise(resolve => this.#server.close(resolve))
      rmSync(this.dir, { recursive: true, force: true })
    })
    return this.socketPath
  }
}
