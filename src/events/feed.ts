// docker events that survive the engine going away: the feed reconnects by itself and resumes after
// the last event it saw, so a client neither misses what the engine still holds nor sees anything twice.
import { setTimeout as sleep } from 'node:timers/promises'
import type { EngineEvent } from '../engine/types.ts'
import type { Backend } from '../engine/parts.ts'
import type { Ownership, Principal } from '../access/ownership.ts'

export interface FeedOptions {
  /** Resume after this event id (a client's Last-Event-ID). */
  after?: string
  signal: AbortSignal
  /** Told when the engine connection is lost and when it is back. */
  onConnection?: (state: 'lost' | 'restored', error?: unknown) => void
  retryMs?: { first: number, max: number }
}

/**
 * Opens the engine's event stream (failing as any engine call does when it cannot) and returns a feed
 * that follows it until the signal aborts, reconnecting with backoff whenever the connection breaks.
 */
export async function followEvents (engine: Backend, options: FeedOptions): Promise<AsyncIterable<EngineEvent>> {
  const { signal } = options
  const retry = options.retryMs ?? { first: 250, max: 5000 }
  // Until an event arrives there is no cursor: a reconnect then replays from when the client came.
  const since = new Date()
  let cursor = options.after
  let source = await engine.events({ ...(cursor === undefined ? {} : { after: cursor }), signal })

  async function * feed (): AsyncGenerator<EngineEvent> {
    while (!signal.aborted) {
      let failure: unknown
      try {
        for await (const event of source) {
          cursor = event.cursor
          yield event
        }
      } catch (error) {
        failure = error
      }
      if (signal.aborted) return
      options.onConnection?.('lost', failure)
      let delay = retry.first
      for (;;) {
        try {
          await sleep(delay, undefined, { signal })
        } catch {
          return
        }
        try {
          source = await engine.events(cursor === undefined ? { since, signal } : { after: cursor, signal })
          options.onConnection?.('restored')
          break
        } catch (error) {
          if (signal.aborted) return
          failure = error
          delay = Math.min(delay * 2, retry.max)
        }
      }
    }
  }
  return feed()
}

/** Images and nodes are everyone's; a container's (and its tasks') events belong to the token that made it (and to admins). */
export function visibleTo (ownership: Ownership, requester: Principal, event: EngineEvent): boolean {
  return event.type === 'image' || event.type === 'node' || ownership.owns(requester, event.labels)
}

/** An event as a client receives it: no labels (they are the container's business, not the feed's). */
export function publicEvent (event: EngineEvent): Record<string, unknown> {
  const { cursor: _cursor, labels: _labels, ...rest } = event
  return rest
}
