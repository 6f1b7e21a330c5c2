// A client for berth's streaming responses over a real socket: reads NDJSON lines and server-sent
// events as they arrive, and can hang up mid-stream the way a real client does.
import http from 'node:http'
import type { FastifyInstance } from 'fastify'

export interface SseMessage {
  id?: string
  data?: unknown
  comments: string[]
  retry?: number
}

/** Makes the app listen on a free loopback port (streams need a real connection) and answers its base URL. */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address() as { port: number }
  return `http://127.0.0.1:${address.port}`
}

export interface StreamRequest {
  method?: string
  headers?: Record<string, string>
  body?: string
}

/**
 * One request on its own connection (no pooling, no keep-alive), so that hanging up closes exactly
 * that connection, as a client that goes away does.
 */
export class StreamClient {
  readonly response: http.IncomingMessage
  readonly #request: http.ClientRequest
  readonly #chunks: string[] = []
  #wake: (() => void) | null = null
  #buffer = ''
  #done = false

  private constructor (request: http.ClientRequest, response: http.IncomingMessage) {
    this.#request = request
    this.response = response
    response.setEncoding('utf8')
    const wake = (): void => { this.#wake?.(); this.#wake = null }
    response.on('data', (chunk: string) => { this.#chunks.push(chunk); wake() })
    response.on('end', () => { this.#done = true; wake() })
    response.on('close', () => { this.#done = true; wake() })
    response.on('error', () => { this.#done = true; wake() })
  }

  static async open (url: string, init: StreamRequest = {}): Promise<StreamClient> {
    const request = http.request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: false })
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      request.once('response', resolve)
      request.once('error', reject)
      request.end(init.body)
    })
    return new StreamClient(request, response)
  }

  get status (): number {
    return this.response.statusCode ?? 0
  }

  header (name: string): string | undefined {
    const value = this.response.headers[name.toLowerCase()]
    return Array.isArray(value) ? value.join(', ') : value
  }

  /** Hangs up, as a client that goes away does. */
  close (): void {
    this.#request.destroy()
  }

  async #more (timeoutMs: number): Promise<boolean> {
    if (this.#chunks.length === 0 && !this.#done) {
      let timer: NodeJS.Timeout | undefined
      try {
        await new Promise<void>((resolve, reject) => {
          this.#wake = resolve
          timer = setTimeout(() => reject(new Error(`nothing arrived within ${timeoutMs} ms; so far: ${JSON.stringify(this.#buffer.slice(0, 300))}`)), timeoutMs)
        })
      } finally {
        clearTimeout(timer)
      }
    }
    if (this.#chunks.length === 0) return false
    this.#buffer += this.#chunks.splice(0).join('')
    return true
  }

  /** The next line, or null at the end of the body. */
  async line (timeoutMs = 20_000): Promise<string | null> {
    for (;;) {
      const newline = this.#buffer.indexOf('\n')
      if (newline !== -1) {
        const line = this.#buffer.slice(0, newline)
        this.#buffer = this.#buffer.slice(newline + 1)
        return line
      }
      if (!await this.#more(timeoutMs)) {
        const rest = this.#buffer
        this.#buffer = ''
        return rest === '' ? null : rest
      }
    }
  }

  /** The next NDJSON value, or null at the end. */
  async json<T = Record<string, unknown>> (timeoutMs?: number): Promise<T | null> {
    const line = await this.line(timeoutMs)
    return line === null ? null : JSON.parse(line) as T
  }

  /** Every NDJSON value up to the end of the body. */
  async allJson<T = Record<string, unknown>> (timeoutMs?: number): Promise<T[]> {
    const values: T[] = []
    for (let value = await this.json<T>(timeoutMs); value !== null; value = await this.json<T>(timeoutMs)) values.push(value)
    return values
  }

  /** The next server-sent event block (data, comments or both), or null at the end. */
  async sse (timeoutMs?: number): Promise<SseMessage | null> {
    const message: SseMessage = { comments: [] }
    let any = false
    for (;;) {
      const line = await this.line(timeoutMs)
      if (line === null) return any ? message : null
      if (line === '') {
        if (any) return message
        continue
      }
      any = true
      if (line.startsWith(':')) message.comments.push(line.slice(1).trim())
      else if (line.startsWith('id: ')) message.id = line.slice(4)
      else if (line.startsWith('data: ')) message.data = JSON.parse(line.slice(6))
      else if (line.startsWith('retry: ')) message.retry = Number(line.slice(7))
      else throw new Error(`not a server-sent event line: ${line}`)
    }
  }

  /** The next SSE message that carries data, skipping heartbeats and other comments. */
  async sseData (timeoutMs?: number): Promise<SseMessage | null> {
    for (let message = await this.sse(timeoutMs); message !== null; message = await this.sse(timeoutMs)) {
      if (message.data !== undefined) return message
    }
    return null
  }
}
