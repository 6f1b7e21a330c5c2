// Streaming responses: content negotiation from Accept, and a readable body that writes events as
// NDJSON lines or server-sent events, with heartbeats, and that sheds progress when a client lags.
import { Readable } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { BerthError } from '../errors.ts'

export const NDJSON = 'application/x-ndjson'
export const SSE = 'text/event-stream'

interface MediaRange {
  type: string
  subtype: string
  q: number
  /** Where the client listed it. */
  position: number
}

function parseAccept (header: string): MediaRange[] {
  return header.split(',').flatMap((part, position) => {
    const [range = '', ...params] = part.trim().split(';')
    const [type, subtype] = range.trim().toLowerCase().split('/')
    if (!type || !subtype) return []
    const qParam = params.map(param => param.trim().split('=')).find(([key]) => key?.trim().toLowerCase() === 'q')
    const q = qParam === undefined ? 1 : Number(qParam[1])
    return [{ type, subtype, q: Number.isFinite(q) ? Math.min(1, Math.max(0, q)) : 0, position }]
  })
}

/**
 * The offer the client prefers, or null when it accepts none of them. One rule for every route that
 * answers in more than one media type:
 *  1. the highest q wins (a type's q is that of the most specific range matching it, RFC 9110 12.5.1);
 *  2. among equal q, a type the client named outright wins over one only a wildcard matches;
 *  3. then the one the client listed first;
 *  4. then the route's own order: its first offer is its default, for a wildcard alone too.
 * No Accept header (or an empty one) means the route's default.
 */
export function negotiate (accept: string | undefined, offers: readonly string[]): string | null {
  if (accept === undefined || accept.trim() === '') return offers[0] ?? null
  const ranges = parseAccept(accept)
  let best: { offer: string, q: number, named: boolean, position: number } | null = null
  for (const offer of offers) {
    const [type, subtype] = offer.split('/')
    const match = ranges
      .filter(range => (range.type === '*' || range.type === type) && (range.subtype === '*' || range.subtype === subtype))
      .sort((a, b) => specificity(b) - specificity(a) || a.position - b.position)[0]
    if (match === undefined || match.q === 0) continue
    const candidate = { offer, q: match.q, named: specificity(match) === 3, position: match.position }
    // Offers come in the route's order: a later one must be strictly preferred to take the place.
    if (best === null || candidate.q > best.q || (candidate.q === best.q && (Number(candidate.named) - Number(best.named) || best.position - candidate.position) > 0)) best = candidate
  }
  return best?.offer ?? null
}

function specificity (range: MediaRange): number {
  return (range.type === '*' ? 0 : 2) + (range.subtype === '*' ? 0 : 1)
}

export function notAcceptable (offers: readonly string[]): BerthError {
  return new BerthError('not_acceptable', `this answers in ${offers.join(' or ')}; the Accept header allows none of them`, { accepts: [...offers] })
}

/** Parses a Last-Event-ID that berth gave out as a sequence number. */
export function lastEventSeq (header: string | string[] | undefined): number {
  if (header === undefined) return 0
  const text = Array.isArray(header) ? header[0] ?? '' : header
  if (!/^\d{1,15}$/.test(text)) {
    throw new BerthError('validation_failed', 'Last-Event-ID is not an event id berth gave out', { errors: [{ location: 'headers', path: '/last-event-id', message: 'is not an event id' }] })
  }
  return Number(text)
}

/**
 * The body of a streaming response. It is a plain Readable, so Fastify pipes it and destroys it when
 * the client goes away; the 'close' event is where the owner lets go of what feeds it.
 */
export class EventStream extends Readable {
  readonly format: 'ndjson' | 'sse'
  #heartbeat: NodeJS.Timeout | null = null
  #ended = false

  constructor (media: string, options: { heartbeatMs: number }) {
    super({ highWaterMark: 64 * 1024 })
    this.format = media === SSE ? 'sse' : 'ndjson'
    if (this.format === 'sse') {
      // Sent at once so the headers go out now, and tells EventSource how soon to reconnect.
      this.push('retry: 2000\n\n')
      this.#heartbeat = setInterval(() => this.comment('heartbeat'), options.heartbeatMs)
      this.#heartbeat.unref()
    }
  }

  override _read (): void {}

  /**
   * Writes one event. A droppable one (progress that the next report supersedes) is skipped while
   * the client has not taken what was already written, so a slow client costs bounded memory.
   */
  send (data: object, options: { id?: string, droppable?: boolean } = {}): void {
    if (this.#ended || this.destroyed) return
    if (options.droppable === true && this.readableLength >= this.readableHighWaterMark) return
    const json = JSON.stringify(data)
    this.push(this.format === 'sse' ? `${options.id === undefined ? '' : `id: ${options.id}\n`}data: ${json}\n\n` : json + '\n')
  }

  /** An SSE comment: clients ignore it, proxies see traffic. NDJSON has no comments, so nothing is written. */
  comment (text: string): void {
    if (this.#ended || this.destroyed || this.format !== 'sse') return
    this.push(`: ${text.replace(/[\r\n]+/g, ' ')}\n\n`)
  }

  /** Ends the response after what is written so far. */
  finish (): void {
    if (this.#ended) return
    this.#ended = true
    this.#stopHeartbeat()
    if (!this.destroyed) this.push(null)
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.#ended = true
    this.#stopHeartbeat()
    callback(error)
  }

  #stopHeartbeat (): void {
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat)
    this.#heartbeat = null
  }
}

export interface Outgoing {
  data: object
  id?: string
  /** Progress a later event supersedes: may be skipped for a client that lags. */
  droppable?: boolean
  /** The stream ends after this one. */
  last?: boolean
}

/**
 * Feeds a subscription into an EventStream until the last event, the signal (client gone, berth
 * closing) or the client leaving; then unsubscribes and calls onClose once.
 */
export function pipeSubscription<T> (stream: EventStream, options: {
  signal: AbortSignal
  subscribe: (listener: (item: T) => void) => () => void
  render: (item: T) => Outgoing
  onClose?: () => void
}): void {
  let unsubscribe: (() => void) | null = null
  let closed = false
  stream.once('close', () => {
    closed = true
    unsubscribe?.()
    options.onClose?.()
  })
  options.signal.addEventListener('abort', () => stream.finish(), { once: true })
  if (options.signal.aborted) stream.finish()
  unsubscribe = options.subscribe(item => {
    const out = options.render(item)
    stream.send(out.data, { ...(out.id === undefined ? {} : { id: out.id }), ...(out.droppable === undefined ? {} : { droppable: out.droppable }) })
    if (out.last === true) stream.finish()
  })
  if (closed) unsubscribe()
}

/** Sends a streaming body. Streams are not in a route's typed reply payloads, hence the plain FastifyReply. */
export async function sendStream (reply: FastifyReply, media: string, body: Readable): Promise<FastifyReply> {
  // no-store: a proxy must neither cache nor buffer a stream; X-Accel-Buffering says the latter to nginx.
  return await reply.type(media).header('cache-control', 'no-store').header('x-accel-buffering', 'no').send(body)
}
