// A unix socket in front of the engine's, for tests that cut berth off from its engine: every
// connection through it can be cut at once (the event stream berth's copy follows among them), and
// new ones refused for a while, as a restarting or unreachable engine would — while the test keeps
// changing the engine through its own socket.
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export class SocketProxy {
  readonly #dir = mkdtempSync(join(tmpdir(), 'berth-proxy-'))
  readonly socketPath = join(this.#dir, 'docker.sock')
  readonly #target: string
  readonly #open = new Set<Socket>()
  /** The engine's side of each connection that asked for the event stream. */
  readonly #events = new Map<Socket, Socket>()
  #server: Server | null = null
  #refusing = false
  #holding = false
  /** Requests whose answers are held back (the request line matches), and the connections held for it. */
  #withheld: RegExp | null = null
  readonly #withholding = new Map<Socket, Socket>()
  /** How many connections it has cut. */
  cuts = 0
  /** The request lines that went through it (method and path), as a client began each request in a chunk of its own. */
  readonly requests: string[] = []

  constructor (target: string) {
    this.#target = target
  }

  async start (): Promise<void> {
    const server = createServer(client => {
      if (this.#refusing) {
        client.destroy()
        return
      }
      const engine = createConnection(this.#target)
      for (const [from, to] of [[client, engine], [engine, client]] as const) {
        this.#open.add(from)
        from.on('error', () => to.destroy())
        from.on('close', () => {
          this.#open.delete(from)
          this.#events.delete(from)
          this.#withholding.delete(from)
          to.destroy()
        })
      }
      client.pipe(engine)
      // A request for the event stream (on a new connection or one kept alive) is told by its first
      // line; the answer never ends, so the connection carries the stream from then on.
      client.on('data', (chunk: Buffer) => {
        const line = /^([A-Z]+ \S+) HTTP\/1/.exec(chunk.toString('latin1', 0, 512))
        if (line !== null) this.requests.push(line[1] as string)
        if (this.#withheld?.test(chunk.toString('latin1', 0, 256)) === true && !this.#withholding.has(engine)) {
          this.#withholding.set(engine, client)
          stall(engine, client)
        }
        if (this.#events.has(engine) || !/^GET [^ ]*\/events[? ]/.test(chunk.toString('latin1', 0, 256))) return
        this.#events.set(engine, client)
        if (this.#holding) stall(engine, client)
      })
      engine.pipe(client)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.socketPath, () => resolve())
    })
    this.#server = server
  }

  /** Cuts every connection through it now. */
  cut (): void {
    for (const socket of this.#open) {
      this.cuts++
      socket.destroy()
    }
  }

  /** Holds back what the engine sends on its event streams (the connections stay open) until `release`. */
  hold (): void {
    this.#holding = true
    for (const [engine, client] of this.#events) stall(engine, client)
  }

  release (): void {
    this.#holding = false
    for (const [engine, client] of this.#events) engine.pipe(client)
  }

  /**
   * Holds back the engine's answers to requests whose request line matches `request` (the engine
   * answers everything else) until `answer`: the engine is up, but one kind of call hangs.
   */
  withhold (request: RegExp): void {
    this.#withheld = request
  }

  answer (): void {
    this.#withheld = null
    for (const [engine, client] of this.#withholding) engine.pipe(client)
    this.#withholding.clear()
  }

  /** Refuses new connections (they are closed at once) until `allow`. */
  refuse (): void {
    this.#refusing = true
  }

  allow (): void {
    this.#refusing = false
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>(resolve => { this.#server?.close(() => resolve()) ?? resolve() })
    rmSync(this.#dir, { recursive: true, force: true })
  }
}

/** What the engine sends stays with it, unread, until it is piped again. */
function stall (engine: Socket, client: Socket): void {
  engine.unpipe(client)
  engine.pause()
}
