// Why a response's work was cut short: its client went away, or berth is closing. A client that left
// has nobody to answer and is no fault of anybody's; the error handler tells the two apart by these.
import { BerthError } from '../errors.ts'

/**
 * The reason a response's signal aborts with when its client went away: nobody is left to answer,
 * which is no fault of anybody's (src/plugins/problems.ts logs it at info).
 */
export class ClientLeft extends Error {
  override name = 'ClientLeft'
  constructor () {
    super('the client left before the answer')
  }
}

/** The reason a response's signal aborts with when berth closes: a 503 that says to try again. */
export class BerthClosing extends BerthError {
  constructor () {
    super('engine_unavailable', 'berth is closing; try again', {}, { headers: { 'retry-after': '5' } })
  }
}

/** Whether `error`, or what caused it, is a client going away. */
export function isClientLeft (error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause) if (cause instanceof ClientLeft) return true
  return false
}
