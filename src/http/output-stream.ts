// Streamed responses fed by a source that is read as the client reads (an exec's output, stats):
// NDJSON lines or server-sent events, with SSE heartbeats while the source is quiet, and the
// source's own pace: nothing is read from the engine faster than the client takes it.
import { Readable } from 'node:stream'
import { SSE } from './event-stream.ts'

/**
 * The items of `source`, and null whenever `ms` pass without one. Stopping early (the client left)
 * returns the source, which releases what feeds it.
 */
export async function * withHeartbeats<T> (source: AsyncIterable<T>, ms: number): AsyncGenerator<T | null> {
  const iterator = source[Symbol.asyncIterator]()
  let pending = iterator.next()
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const tick = new Promise<'tick'>(resolve => { timer = setTimeout(() => resolve('tick'), ms) })
      const result = await Promise.race([pending, tick]).finally(() => clearTimeout(timer))
      if (result === 'tick') {
        yield null
        continue
      }
      if (result.done === true) return
      yield result.value
      pending = iterator.next()
    }
  } finally {
    // Not awaited: a source waiting on a quiet engine settles only when its signal ends it.
    pending.catch(() => {})
    iterator.return?.().catch(() => {})
  }
}

/** A response body of `events` in the media type asked for: one JSON a line, or SSE `data:` with `: heartbeat` comments. */
export function eventBody (events: AsyncIterable<object>, media: string, heartbeatMs: number): Readable {
  async function * render (): AsyncGenerator<string> {
    if (media !== SSE) {
      for await (const event of events) yield JSON.stringify(event) + '\n'
      return
    }
    // At once, so the headers go out now; and how soon EventSource reconnects.
    yield 'retry: 2000\n\n'
    for await (const event of withHeartbeats(events, heartbeatMs)) yield event === null ? ': heartbeat\n\n' : `data: ${JSON.stringify(event)}\n\n`
  }
  return Readable.from(render(), { objectMode: false })
}
