// The two stream formats berth answers in, read from a fetch body: NDJSON (pulls, builds, logs) and
// server-sent events (the event feed, job events), as async iterators.

/** Lines of text as they arrive; the last one even without its line break. */
async function * lines (body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buffered = ''
  try {
    while (true) {
      const { value, done } = await reader.read()
      if (done) break
      buffered += value
      const parts = buffered.split(/\r\n|\n|\r(?!$)/)
      buffered = parts.pop() ?? ''
      yield * parts
    }
    if (buffered) yield buffered
  } finally {
    // Leaving early (break, an exception) closes the response, and with it berth's engine stream.
    await reader.cancel().catch(() => {})
  }
}

/** One JSON value per line; blank lines are skipped. */
export async function * ndjson<T> (body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  for await (const line of lines(body)) {
    if (line.trim()) yield JSON.parse(line) as T
  }
}

export interface ServerSentEvent {
  /** The stream's last event id as of this event (the SSE spec: an event without `id:` keeps the previous one). */
  id: string | undefined
  event: string
  data: string
  /** The reconnection time the server asked for, when it did. */
  retry?: number
}

/** Server-sent events as the HTML spec parses them: comments skipped, `data` lines joined. */
export async function * sse (body: ReadableStream<Uint8Array>, lastEventId?: string): AsyncGenerator<ServerSentEvent> {
  let id = lastEventId
  let event = ''
  let data: string[] = []
  let retry: number | undefined
  for await (const line of lines(body)) {
    if (line === '') {
      if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n'), ...(retry === undefined ? {} : { retry }) }
      event = ''
      data = []
      retry = undefined
      continue
    }
    if (line.startsWith(':')) continue
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
    if (field === 'data') data.push(value)
    else if (field === 'event') event = value
    else if (field === 'id' && !value.includes('\0')) id = value
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value)
  }
}
