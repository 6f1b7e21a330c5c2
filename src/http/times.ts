// Points in time as `docker logs --since/--until` take them, made exact: nanoseconds since the epoch,
// so a client can resume from the timestamp of the last line it saw without rounding.
import { BerthError } from '../errors.ts'

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i
const UNIX = /^(\d{1,12})(?:\.(\d{1,9}))?$/
const RELATIVE = /^(?:\d{1,9}(?:h|m|s|ms))+$/
const UNIT_NANOS: Record<string, bigint> = { h: 3_600_000_000_000n, m: 60_000_000_000n, s: 1_000_000_000n, ms: 1_000_000n }

export const TIME_PATTERN = '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})|[0-9]{1,12}(\\.[0-9]{1,9})?|([0-9]{1,9}(h|m|s|ms))+)$'

function fraction (digits: string | undefined): bigint {
  return digits === undefined ? 0n : BigInt(digits.padEnd(9, '0'))
}

/**
 * An RFC 3339 time (fractions to the nanosecond), Unix seconds (`1700000000.5`), or a duration back
 * from now (`10m`, `1h30m`, `500ms`), as nanoseconds since the epoch.
 */
export function parseTime (value: string, field: string, nowMs: number = Date.now()): bigint {
  const rfc = RFC3339.exec(value)
  if (rfc) {
    const millis = Date.parse(`${rfc[1]}${(rfc[3] as string).toUpperCase()}`)
    if (!Number.isNaN(millis)) return BigInt(millis) * 1_000_000n + fraction(rfc[2])
  }
  const unix = UNIX.exec(value)
  if (unix) return BigInt(unix[1] as string) * 1_000_000_000n + fraction(unix[2])
  if (RELATIVE.test(value)) {
    let back = 0n
    for (const [, amount, unit] of value.matchAll(/(\d+)(ms|h|m|s)/g)) back += BigInt(amount as string) * (UNIT_NANOS[unit as string] as bigint)
    return BigInt(nowMs) * 1_000_000n - back
  }
  throw new BerthError('validation_failed', `${field} must be an RFC 3339 time, Unix seconds or a duration such as 10m`, {
    errors: [{ location: 'querystring', path: `/${field}`, message: 'is not a time' }]
  })
}
