// src/pulls/progress.ts: the overall fraction of a pull, from the engine's layer reports.
import t from 'tap'
import { PullTracker } from '../src/pulls/progress.ts'

t.test('the overall fraction: by size, without layers already there, never going back', async t => {
  const tracker = new PullTracker()
  tracker.update({ id: 'have', phase: 'exists', current: 0, total: null })
  t.equal(tracker.fraction, 0)
  tracker.update({ id: 'a', phase: 'waiting', current: 0, total: null })
  tracker.update({ id: 'b', phase: 'downloading', current: 50, total: 100 })
  // a's size is unknown: it counts as the average known size (100); b is a quarter done (half of the download half).
  t.equal(tracker.fraction, 0.125)
  tracker.update({ id: 'a', phase: 'downloading', current: 0, total: 900 })
  t.equal(tracker.fraction, 0.125, 'a larger layer coming to light does not make the fraction go back')
  t.same(tracker.update({ id: 'b', phase: 'downloaded', current: 0, total: null }), { id: 'b', phase: 'downloaded', current: 100, total: 100 }, 'sizes are remembered across phases')
  tracker.update({ id: 'a', phase: 'complete', current: 0, total: null })
  tracker.update({ id: 'b', phase: 'extracting', current: 50, total: 100 })
  t.equal(tracker.fraction, 0.975)
  t.same(tracker.counts, { total: 3, done: 2 })
  tracker.finish()
  t.same(tracker.snapshot().fraction, 1)
})
