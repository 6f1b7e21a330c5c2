// src/http/limiter.ts: at most N tasks at once, the rest queued in order up to a bound, then refused.
import t from 'tap'
import { Limiter } from '../src/http/limiter.ts'

t.test('the limiter runs at most N at once, hands slots over in order, and refuses past its queue', async t => {
  const limiter = new Limiter('pulls', 2, 2)
  const order: string[] = []
  let running = 0
  let peak = 0
  const release: Array<() => void> = []
  const task = (label: string) => limiter.run(async () => {
    running++
    peak = Math.max(peak, running)
    order.push(label)
    await new Promise<void>(resolve => release.push(resolve))
    running--
    return label
  })
  const results = [task('a'), task('b'), task('c'), task('d')]
  await new Promise(resolve => setImmediate(resolve))
  t.same(order, ['a', 'b'], 'two run, two wait')
  t.equal(limiter.active, 2)
  await t.rejects(task('e'), { code: 'rate_limited', statusCode: 429, message: /too many pulls/ }, 'a fifth is refused: the queue holds two')
  release.shift()?.()
  await new Promise(resolve => setImmediate(resolve))
  t.same(order, ['a', 'b', 'c'], 'the first waiter takes the freed slot')
  while (release.length > 0 || order.length < 4) {
    release.shift()?.()
    await new Promise(resolve => setImmediate(resolve))
  }
  t.same(await Promise.all(results), ['a', 'b', 'c', 'd'])
  t.equal(peak, 2)
  t.equal(limiter.active, 0)
})
