// What the client, berth command and example suites share: a berth listening for real (its own
// process) with a token of this run, an image in the test registry with a layer of its own (so a pull
// has bytes to show), and a TCP proxy in front of berth that can drop its connections.
import { randomBytes } from 'node:crypto'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import type { Test } from 'tap'
import { start } from './berth-process.ts'
import { tarOf } from './build-helpers.ts'
import { RUN, docker, env, freePort } from './helpers.ts'

export interface LiveBerth {
  url: string
  /** The secret of a `write,build` token named after this run: it sees only what this run makes. */
  token: string
  port: number
  /** What berth has logged so far. */
  output: () => string
}

export const CLIENT_DIR = new URL('../clients/typescript/', import.meta.url).pathname
export const CLI = new URL('src/cli.ts', `file://${CLIENT_DIR}`).pathname

/** Starts berth (src/server.ts) on a free port; it is killed when `t` ends. */
export async function liveBerth (t: Test, vars: Record<string, string> = {}): Promise<LiveBerth> {
  const port = await freePort()
  const token = `live-${randomBytes(16).toString('hex')}`
  const server = start({ BERTH_TOKENS: `${RUN}:write,build:${token}`, BERTH_PORT: String(port), ...vars })
  t.teardown(async () => {
    server.child.kill('SIGKILL')
    await server.exited
  })
  await server.waitFor(/Server listening at/)
  return { url: `http://127.0.0.1:${port}`, token, port, output: () => server.output }
}

/**
 * Builds berth-test/busybox:1 plus one layer of `bytes` random bytes, pushes it to the test registry
 * as `registry/RUN-suffix/web:1` and removes it from the engine: pulling it downloads that layer
 * (the busybox one is already there), and it still serves HTTP with the busybox httpd.
 */
export async function pushWebImage (suffix: string, bytes = 2_000_000): Promise<{ reference: string, digest: string }> {
  const reference = `${env.registry}/${RUN}-${suffix}/web:1`
  const context = tarOf({ Dockerfile: `FROM ${env.image}\nCOPY blob /blob\n`, blob: randomBytes(bytes) })
  const build = await docker.buildImage(Readable.from([context]), { t: reference })
  await follow(build, `build of ${reference}`)
  const push = await docker.getImage(reference).push({ authconfig: {} })
  const output = await follow(push, `push of ${reference}`)
  const digest = output.find(line => line.aux?.Digest)?.aux?.Digest
  if (!digest) throw new Error(`push of ${reference} reported no digest`)
  await docker.getImage(reference).remove()
  return { reference, digest }
}

type Progress = { error?: string, aux?: { Digest?: string } }

async function follow (stream: NodeJS.ReadableStream, what: string): Promise<Progress[]> {
  const output: Progress[] = await new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (error, result) => error ? reject(error) : resolve(result))
  })
  const failed = output.find(line => line.error)
  if (failed) throw new Error(`${what} failed: ${failed.error}`)
  return output
}

/** A TCP proxy in front of berth that can drop every connection and refuse new ones for a while. */
export class DropProxy {
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  #refusing = 0
  /** Connections clients opened through it (refused ones included). */
  connections = 0
  readonly target: number

  constructor (target: number) {
    this.target = target
    this.#server = createServer(client => this.#relay(client))
  }

  async listen (): Promise<string> {
    await new Promise<void>(resolve => this.#server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`
  }

  /** Drops every connection now, and refuses the next `refusals` (every one until open(), by default). */
  drop (refusals = Infinity): void {
    this.#refusing = refusals
    for (const socket of this.#sockets) socket.destroy()
  }

  open (): void {
    this.#refusing = 0
  }

  async close (): Promise<void> {
    this.drop()
    await new Promise<void>(resolve => this.#server.close(() => resolve()))
  }

  #relay (client: Socket): void {
    this.connections++
    if (this.#refusing > 0) {
      this.#refusing--
      client.destroy()
      return
    }
    const upstream = createConnection({ host: '127.0.0.1', port: this.target })
    this.#sockets.add(client).add(upstream)
    const drop = () => { client.destroy(); upstream.destroy(); this.#sockets.delete(client); this.#sockets.delete(upstream) }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
