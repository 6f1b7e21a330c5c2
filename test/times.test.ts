// src/http/times.ts: the times log queries take (since, until), read to the nanosecond.
import t from 'tap'
import { parseTime } from '../src/http/times.ts'

t.test('times: RFC 3339 to the nanosecond, Unix seconds, durations back from now', async t => {
  t.equal(parseTime('2024-01-02T03:04:05Z', 'since'), 1704164645000000000n)
  t.equal(parseTime('2024-01-02T03:04:05.123456789Z', 'since'), 1704164645123456789n)
  t.equal(parseTime('2024-01-02T03:04:05.5+01:00', 'since'), 1704161045500000000n)
  t.equal(parseTime('2024-01-02t03:04:05z', 'since'), 1704164645000000000n)
  t.equal(parseTime('1700000000', 'since'), 1700000000000000000n)
  t.equal(parseTime('1700000000.000000001', 'since'), 1700000000000000001n)
  t.equal(parseTime('10m', 'since', 1_000_000), 1_000_000n * 1_000_000n - 600_000_000_000n)
  t.equal(parseTime('1h30m5s250ms', 'since', 10_000_000), 10_000_000n * 1_000_000n - 5_405_250_000_000n)
  t.throws(() => parseTime('2024-02-30T99:00:00Z', 'until'), { code: 'validation_failed', message: 'until must be an RFC 3339 time, Unix seconds or a duration such as 10m' })
})
