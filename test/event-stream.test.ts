// src/http/event-stream.ts: content negotiation, Last-Event-ID, and an event stream's buffer for a
// client that does not read.
import t from 'tap'
import { EventStream, NDJSON, SSE, lastEventSeq, negotiate } from '../src/http/event-stream.ts'
import { readAll, waitFor } from './helpers.ts'

t.test('negotiate: q-values, wildcards and the most specific match', async t => {
  const offers = ['application/json', NDJSON, SSE]
  t.equal(negotiate(undefined, offers), 'application/json')
  t.equal(negotiate('', offers), 'application/json')
  t.equal(negotiate('*/*', offers), 'application/json')
  t.equal(negotiate('application/x-ndjson', offers), NDJSON)
  t.equal(negotiate('text/*', offers), SSE)
  t.equal(negotiate('application/json;q=0.2, text/event-stream', offers), SSE)
  t.equal(negotiate('*/*;q=0.1, application/x-ndjson;q=0.5', offers), NDJSON)
  t.equal(negotiate('application/*, application/json;q=0', offers), NDJSON, 'an explicit q=0 beats the wildcard')
  t.equal(negotiate('TEXT/EVENT-STREAM', offers), SSE, 'media types are case-insensitive')
  t.equal(negotiate('text/html, image/png', offers), null)
  t.equal(negotiate('garbage, ;;, application/x-ndjson;q=abc', offers), null, 'unparseable ranges and q-values count for nothing')
})

t.test('Last-Event-ID for job events is a sequence number', async t => {
  t.equal(lastEventSeq(undefined), 0)
  t.equal(lastEventSeq('17'), 17)
  t.equal(lastEventSeq(['4', '5']), 4)
  t.throws(() => lastEventSeq('1.5'), { code: 'validation_failed' })
  t.throws(() => lastEventSeq('9'.repeat(16)), { code: 'validation_failed' })
})

t.test('an event stream sheds progress, never final events, for a client that does not read', async t => {
  const stream = new EventStream(NDJSON, { heartbeatMs: 1000 })
  const big = { type: 'progress', padding: 'x'.repeat(1024) }
  for (let i = 0; i < 200; i++) stream.send(big, { droppable: true })
  t.ok(stream.readableLength < 70 * 1024, `buffered ${stream.readableLength} bytes, not 200 KiB`)
  stream.send({ type: 'pulled' })
  stream.comment('NDJSON has no comments')
  stream.finish()
  stream.send({ type: 'late' })
  const text = (await readAll(stream as AsyncIterable<Buffer>)).join('')
  t.ok(text.endsWith('{"type":"pulled"}\n'), 'the final event got through')
  t.notOk(text.includes('late'))

  const sse = new EventStream(SSE, { heartbeatMs: 20 })
  const hint = sse.readableLength
  await waitFor('a heartbeat to be written', () => sse.readableLength, length => length > hint)
  sse.send({ a: 1 }, { id: '7' })
  sse.comment('two\nlines')
  sse.finish()
  const frames = (await readAll(sse as AsyncIterable<Buffer>)).join('')
  t.match(frames, /^retry: 2000\n\n(: heartbeat\n\n)+id: 7\ndata: \{"a":1\}\n\n: two lines\n\n$/)
})
