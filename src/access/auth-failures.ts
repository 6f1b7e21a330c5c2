// Counts failed authentications per client address in a sliding window, so that tokens cannot be
// guessed as fast as the network allows. Past the limit the address is locked out of every token
// check until its oldest counted failure leaves the window.
import { isIPv6 } from 'node:net'

export interface AuthFailuresOptions {
  /** Failures an address may have within the window; the next attempt waits. */
  limit: number
  windowMs?: number
  /** The clock, injectable so a test can pass the window without waiting. */
  now?: () => number
  /** Addresses tracked at most: the memory an attacker with many addresses can make berth spend. */
  maxClients?: number
}

export class AuthFailures {
  readonly limit: number
  readonly windowMs: number
  readonly #now: () => number
  readonly #maxClients: number
  // Failure times by client, oldest first; the map itself is ordered by the latest failure, so the
  // first entry is the one to forget when there are too many.
  readonly #failures = new Map<string, number[]>()

  constructor (options: AuthFailuresOptions) {
    this.limit = options.limit
    this.windowMs = options.windowMs ?? 60_000
    this.#now = options.now ?? Date.now
    this.#maxClients = options.maxClients ?? 10_000
  }

  /** Milliseconds until this address may present a token again; 0 when it may now. */
  lockedFor (address: string): number {
    // Asked on every request: with no failure counted anywhere, nobody is locked out.
    if (this.#failures.size === 0) return 0
    const times = this.#recent(clientKey(address))
    if (times.length < this.limit) return 0
    return (times[times.length - this.limit] as number) + this.windowMs - this.#now()
  }

  /** Counts a failed authentication; answers true when this one used up the address's allowance. */
  fail (address: string): boolean {
    const key = clientKey(address)
    const times = this.#recent(key)
    times.push(this.#now())
    if (times.length > this.limit) times.shift()
    this.#failures.delete(key)
    this.#failures.set(key, times)
    if (this.#failures.size > this.#maxClients) this.#failures.delete(this.#failures.keys().next().value as string)
    return times.length === this.limit
  }

  #recent (key: string): number[] {
    const times = this.#failures.get(key)
    if (times === undefined) return []
    const horizon = this.#now() - this.windowMs
    while (times.length > 0 && (times[0] as number) <= horizon) times.shift()
    if (times.length === 0) this.#failures.delete(key)
    return times
  }
}

/**
 * Who counts as one client: an IPv4 address (also written IPv4-mapped, ::ffff:a.b.c.d), or an IPv6
 * /64 — a single host is commonly handed a whole /64, so counting per IPv6 address would count nothing.
 */
export function clientKey (address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)
  if (mapped) return mapped[1] as string
  const ip = address.split('%')[0] as string
  if (!isIPv6(ip)) return address
  const [head = '', tail] = ip.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  // An embedded IPv4 address takes two groups, always among the last: it never reaches the prefix.
  const written = headGroups.length + tailGroups.length + (ip.includes('.') ? 1 : 0)
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - written).fill('0'), ...tailGroups]
  return groups.slice(0, 4).map(group => parseInt(group, 16).toString(16)).join(':') + '::/64'
}
