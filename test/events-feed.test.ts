// src/events/feed.ts: docker events that survive the engine going away, resumed without a gap or a repeat.
import t from 'tap'
import type { EngineEvent, EventsOptions } from '../src/engine/types.ts'
import type { Backend } from '../src/engine/parts.ts'
import { BerthError } from '../src/errors.ts'
import { followEvents } from '../src/events/feed.ts'
import { readAll } from './helpers.ts'

t.test('the events feed reconnects after the last cursor it saw, or from when the client came', async t => {
  const calls: EventsOptions[] = []
  const event = (cursor: string): EngineEvent => ({ cursor, type: 'image', action: 'tag', id: 'x', name: 'x', image: 'x', time: '', labels: {} })
  const plan: Array<() => AsyncIterable<EngineEvent>> = [
    async function * () { /* the connection drops at once, before any event */ },
    async function * () { yield event('1-0'); yield event('2-0'); throw new Error('connection reset') },
    () => { throw new BerthError('engine_unavailable', 'down') },
    () => { throw new BerthError('engine_unavailable', 'still down') },
    async function * () { yield event('3-0') }
  ]
  const engine = {
    async events (options: EventsOptions) {
      calls.push(options)
      const next = plan.shift()
      if (next === undefined) return await new Promise<never>(() => {})
      return next()
    }
  }
  const controller = new AbortController()
  const states: string[] = []
  const feed = await followEvents(engine as unknown as Backend, { signal: controller.signal, retryMs: { first: 1, max: 4 }, onConnection: state => states.push(state) })
  const seen: string[] = []
  for await (const item of feed) {
    seen.push(item.cursor)
    if (item.cursor === '3-0') break
  }
  t.same(seen, ['1-0', '2-0', '3-0'], 'nothing twice, nothing missed')
  t.same(calls.map(call => call.after ?? (call.since instanceof Date ? 'since' : 'now')), ['now', 'since', '2-0', '2-0', '2-0'])
  t.same(states, ['lost', 'restored', 'lost', 'restored'])

  // Aborted while waiting to reconnect: the feed just ends. The abort comes once the connection is
  // lost and the feed waits out its 10 s before reconnecting; it never reconnects.
  const quiet = new AbortController()
  let opened = 0
  const ending = { events: async () => { opened++; return (async function * () {})() } }
  const short = await followEvents(ending as unknown as Backend, {
    signal: quiet.signal,
    retryMs: { first: 10_000, max: 10_000 },
    onConnection: state => { if (state === 'lost') setImmediate(() => quiet.abort()) }
  })
  t.same(await readAll(short), [])
  t.equal(opened, 1, 'it ended without reconnecting')
  controller.abort()
})
