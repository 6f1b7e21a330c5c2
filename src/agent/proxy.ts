// berth's agent: a proxy in front of one node's Docker socket that forwards the calls src/agent/rules.ts
// allows, after checking what each is about with the engine itself (a container is berth's, an exec
// runs in one of berth's, a volume removed is berth's). Requests arrive over the authenticated channel
// (src/agent/channel.ts) only. A call the engine upgrades (an exec with stdin) is spliced through as
// bytes both ways, so the stdin a shell reads and the output it writes pass as they come.
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import type { Duplex } from 'node:stream'
import { classify, execBodyRefusal, managed, volumeBodyRefusal, type Subject } from './rules.ts'

/** Bodies the agent reads to check (an exec or volume create) are small JSON. */
const MAX_CHECKED_BODY = 64 * 1024

export interface Log {
  info: (fields: object, message: string) => void
  warn: (fields: object, message: string) => void
}

export interface ProxyOptions {
  /** The node's Docker socket. */
  socketPath: string
  /** Bounds each look-up the agent makes itself (forwarded calls are bounded by berth). */
  timeoutMs: number
  log: Log
}

class Refusal extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

export class AgentProxy {
  readonly #options: ProxyOptions

  constructor (options: ProxyOptions) {
    this.#options = options
  }

  /** An ordinary request: checked, then forwarded with its body streamed (or the checked body). */
  handle (req: IncomingMessage, res: ServerResponse): void {
    this.#admit(req).then(body => {
      const upstream = httpRequest({ socketPath: this.#options.socketPath, method: req.method, path: req.url, headers: forwardHeaders(req.headers, body) }, answer => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
        // The engine going away mid-answer (its node lost) breaks berth's response too, rather than ending it as if whole.
        answer.once('error', () => { res.destroy() })
        answer.once('aborted', () => { res.destroy() })
        res.once('close', () => { answer.destroy() })
      })
      // 503, as the engine itself answers when it cannot serve: berth reads it as the node's engine being unavailable.
      upstream.once('error', error => { this.#fail(res, 503, `the node's engine did not answer its agent: ${error.message}`) })
      // A client that goes away takes the engine call with it (a followed stats stream, a wait).
      res.once('close', () => { if (!res.writableFinished) upstream.destroy() })
      if (body === null) req.pipe(upstream)
      else upstream.end(body)
    }).catch((error: unknown) => {
      req.resume()
      const refusal = error instanceof Refusal ? error : new Refusal(503, `the node's engine did not answer its agent: ${(error as Error).message}`)
      if (refusal.status === 403) this.#options.log.warn({ method: req.method, url: req.url, reason: refusal.message }, 'refused a call')
      this.#fail(res, refusal.status, refusal.message)
    })
  }

  /** A request that upgrades the connection (an exec with stdin): checked, then spliced to the engine. */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => { socket.destroy() })
    this.#admit(req, { bodyless: true }).then(() => {
      const engine = connect(this.#options.socketPath)
      engine.on('error', () => { socket.destroy() })
      socket.on('close', () => { engine.destroy() })
      engine.on('close', () => { socket.destroy() })
      engine.once('connect', () => {
        const lines = [`${req.method} ${req.url} HTTP/1.1`]
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
        engine.write(lines.join('\r\n') + '\r\n\r\n')
        if (head.length > 0) engine.write(head)
        // Each way ends on its own: stdin's end (EOF) must not cut the output that follows it.
        socket.pipe(engine)
        engine.pipe(socket)
      })
    }).catch((error: unknown) => {
      const refusal = error instanceof Refusal ? error : new Refusal(503, `the node's engine did not answer its agent: ${(error as Error).message}`)
      this.#options.log.warn({ method: req.method, url: req.url, reason: refusal.message }, 'refused an upgrade')
      const body = JSON.stringify({ message: refusal.message })
      socket.end(`HTTP/1.1 ${refusal.status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    })
  }

  /** Checks what the request is about; answers the body it read to check, or null when the body is still to be streamed. */
  async #admit (req: IncomingMessage, options: { bodyless?: boolean } = {}): Promise<Buffer | null> {
    const subject = classify(req.method ?? 'GET', req.url ?? '/')
    if ('refused' in subject) throw new Refusal(403, subject.refused)
    await this.#check(subject)
    if (subject.kind !== 'new-exec' && subject.kind !== 'new-volume') return null
    if (options.bodyless === true) throw new Refusal(403, 'a create is not an upgrade')
    const body = await readBody(req)
    let parsed: unknown
    try {
      parsed = JSON.parse(body.toString('utf8'))
    } catch {
      throw new Refusal(400, 'the body is not JSON')
    }
    const refusal = subject.kind === 'new-exec' ? execBodyRefusal(parsed) : volumeBodyRefusal(parsed)
    if (refusal !== null) throw new Refusal(403, refusal)
    return body
  }

  async #check (subject: Subject): Promise<void> {
    switch (subject.kind) {
      case 'engine':
      case 'new-volume':
        return
      case 'container':
      case 'new-exec': {
        const found = await this.#get<{ Config?: { Labels?: Record<string, string> } }>(`/containers/${encodeURIComponent(subject.id)}/json`)
        if (found === null) throw new Refusal(404, `No such container: ${subject.id}`)
        if (!managed(found.Config?.Labels)) throw new Refusal(403, `container ${subject.id} is not one berth made`)
        return
      }
      case 'exec': {
        const exec = await this.#get<{ ContainerID?: string }>(`/exec/${encodeURIComponent(subject.id)}/json`)
        if (exec === null) throw new Refusal(404, `No such exec instance: ${subject.id}`)
        await this.#check({ kind: 'container', id: exec.ContainerID ?? '' })
        return
      }
      case 'volume': {
        const volume = await this.#get<{ Labels?: Record<string, string> | null }>(`/volumes/${encodeURIComponent(subject.name)}`)
        if (volume === null) throw new Refusal(404, `get ${subject.name}: no such volume`)
        if (!managed(volume.Labels)) throw new Refusal(403, `volume ${subject.name} is not one berth made`)
      }
    }
  }

  /** A GET the agent makes itself; null on 404. */
  async #get<T> (path: string): Promise<T | null> {
    return await new Promise((resolve, reject) => {
      const call = httpRequest({ socketPath: this.#options.socketPath, path, method: 'GET', signal: AbortSignal.timeout(this.#options.timeoutMs) }, answer => {
        const chunks: Buffer[] = []
        answer.on('data', (chunk: Buffer) => chunks.push(chunk))
        answer.once('error', reject)
        answer.once('end', () => {
          if (answer.statusCode === 404) resolve(null)
          else if (answer.statusCode !== 200) reject(new Error(`the engine answered ${answer.statusCode} to GET ${path}`))
          else resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as T)
        })
      })
      call.once('error', reject)
      call.end()
    })
  }

  #fail (res: ServerResponse, status: number, message: string): void {
    if (res.headersSent) {
      res.destroy()
      return
    }
    // In the engine's own error shape, so berth reads it as it reads the engine's.
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message }))
  }
}

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_CHECKED_BODY) throw new Refusal(413, `the body is larger than ${MAX_CHECKED_BODY} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** The request's headers as the engine gets them: the length of a body the agent read and re-sends is its own. */
function forwardHeaders (headers: IncomingHttpHeaders, body: Buffer | null): IncomingHttpHeaders {
  if (body === null) return headers
  const { 'transfer-encoding': _chunked, ...rest } = headers
  return { ...rest, 'content-length': String(body.length) }
}
