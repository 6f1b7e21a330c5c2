// src/pulls/shared-pull.ts: what a pull keeps for the clients that join it late.
import t from 'tap'
import { SharedPull, type PullEntry } from '../src/pulls/shared-pull.ts'
import { imageRef } from './helpers.ts'

t.test('a long pull replays in a few lines per layer: updates within a phase replace each other', async t => {
  const pull = new SharedPull(imageRef('busybox'), null)
  pull.progress({ kind: 'started' })
  for (let i = 1; i <= 300; i++) {
    for (const id of ['a', 'b']) pull.progress({ kind: 'layer', layer: { id, phase: 'downloading', current: i * 10, total: 3000 } })
  }
  pull.progress({ kind: 'layer', layer: { id: 'a', phase: 'downloaded', current: 0, total: null } })
  pull.progress({ kind: 'layer', layer: { id: 'b', phase: 'downloading', current: 3000, total: 3000 } })
  const replay: PullEntry[] = []
  pull.subscribe(0, Infinity, entry => replay.push(entry))
  t.same(replay.map(({ event }) => event.type === 'progress' ? `${event.layer.id}:${event.layer.phase}:${event.layer.current}` : event.type), [
    'started', 'a:downloading:3000', 'a:downloaded:3000', 'b:downloading:3000'
  ])
  t.ok(replay.every((entry, i) => i === 0 || entry.seq > (replay[i - 1] as PullEntry).seq), 'in the order they happened')
  t.equal(pull.seq, 603, 'every report had its own sequence number')
  const later: PullEntry[] = []
  pull.subscribe(600, Infinity, entry => later.push(entry))
  t.same(later.map(entry => entry.seq), [602, 603], 'Last-Event-ID skips what the client has')
})
