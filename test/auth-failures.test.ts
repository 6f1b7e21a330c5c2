// Issue 10, item 8: guessing tokens as fast as the network allows. Failed authentications are
// limited per client address; past the limit the address is locked out of every token check —
// a valid token included — until its failures age out of the window.
import type { InjectOptions } from 'fastify'
import t from 'tap'
import { AuthFailures, clientKey } from '../src/access/auth-failures.ts'
import { LogCapture, auth, build } from './helpers.ts'

const GUESS = { authorization: 'Bearer a-guessed-token-0000000000' }

t.test('past the limit an address gets 429 rate_limited with Retry-After, even with a valid token, until the window passes', async t => {
  let now = 1_700_000_000_000
  const logs = new LogCapture()
  const app = await build(t, { config: { auth: { failuresPerMinute: 5 } }, now: () => now, logs })
  const from = (remoteAddress: string, headers: Record<string, string>): InjectOptions => ({ method: 'GET', url: '/v1/images', headers, remoteAddress })
  const attacker = '203.0.113.7'

  for (let i = 1; i <= 5; i++) {
    const guess = await app.inject(from(attacker, GUESS))
    t.equal(guess.statusCode, 401, `guess ${i} is checked and refused`)
  }
  const locked = await app.inject(from(attacker, GUESS))
  t.equal(locked.statusCode, 429, 'the sixth guess within the minute is not checked')
  t.equal(locked.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.equal(locked.headers['retry-after'], '60')
  t.match(locked.json(), { code: 'rate_limited', status: 429, detail: 'too many failed authentications from this address; retry in 60 s', requestId: String })
  const valid = await app.inject(from(attacker, auth('admin')))
  t.equal(valid.statusCode, 429, 'a valid token from a locked-out address is refused too: guessing cannot go on')
  t.equal(valid.json().code, 'rate_limited')

  t.equal((await app.inject(from('198.51.100.9', auth('admin')))).statusCode, 200, 'another address is not locked out')
  t.equal((await app.inject(from('198.51.100.9', GUESS))).statusCode, 401, 'and has its own count')

  now += 30_000
  const later = await app.inject(from(attacker, GUESS))
  t.equal(later.statusCode, 429)
  t.equal(later.headers['retry-after'], '30', 'Retry-After counts down with the clock')

  now += 30_000
  t.equal((await app.inject(from(attacker, auth('admin')))).statusCode, 200, 'once the window has passed the valid token works')
  t.equal((await app.inject(from(attacker, GUESS))).statusCode, 401, 'and guesses are checked again, one at a time')

  const lockouts = logs.lines.filter(line => line.msg === 'too many failed authentications: refusing this address for now')
  t.match(lockouts, [{ level: 40, address: attacker, failures: 5, windowMs: 60_000 }], 'the lockout is logged once, when it starts')
})

t.test('the count is per address: IPv4-mapped IPv6 is the IPv4 address, IPv6 counts per /64', async t => {
  const app = await build(t, { config: { auth: { failuresPerMinute: 3 } } })
  const status = async (remoteAddress: string, headers: Record<string, string> = GUESS) =>
    (await app.inject({ method: 'GET', url: '/v1/containers', headers, remoteAddress })).statusCode
  for (const address of ['2001:db8:1:2::1', '2001:db8:1:2:ffff::9', '2001:0db8:0001:0002::7']) t.equal(await status(address), 401, address)
  t.equal(await status('2001:db8:1:2:abcd::1'), 429, 'a new address in the same /64 is the same client')
  t.equal(await status('2001:db8:1:3::1'), 401, 'the next /64 is another client')
  for (let i = 0; i < 3; i++) t.equal(await status('::ffff:192.0.2.1'), 401)
  t.equal(await status('192.0.2.1'), 429, 'an IPv4-mapped address counts as the IPv4 address')
})

t.test('a request without credentials is not a guess: it gets 401 and is not counted', async t => {
  const app = await build(t, { config: { auth: { failuresPerMinute: 2 } } })
  for (let i = 0; i < 5; i++) {
    t.equal((await app.inject({ method: 'GET', url: '/v1/images', remoteAddress: '192.0.2.50' })).statusCode, 401)
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('reader'), remoteAddress: '192.0.2.50' })).statusCode, 200)
  // A success does not clear the count: a holder of one token cannot interleave its own to keep guessing another.
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: GUESS, remoteAddress: '192.0.2.50' })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('reader'), remoteAddress: '192.0.2.50' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: GUESS, remoteAddress: '192.0.2.50' })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/images', headers: auth('reader'), remoteAddress: '192.0.2.50' })).statusCode, 429)
  t.equal((await app.inject({ method: 'GET', url: '/healthz', remoteAddress: '192.0.2.50' })).statusCode, 200, 'public routes stay open')
})

t.test('the docs, when closed, count failures the same way', async t => {
  const app = await build(t, { config: { auth: { failuresPerMinute: 1, docsPublic: false } } })
  t.equal((await app.inject({ method: 'GET', url: '/docs/', headers: GUESS })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/docs/', headers: auth('reader') })).statusCode, 429)
  t.equal((await app.inject({ method: 'GET', url: '/openapi.json', headers: auth('reader') })).statusCode, 429)
})

t.test('the tracker keeps a bounded number of addresses, forgetting the one that failed longest ago', async t => {
  const now = 1_000
  const failures = new AuthFailures({ limit: 1, maxClients: 2, now: () => now })
  t.equal(failures.fail('192.0.2.1'), true, 'a limit of one: the first failure locks')
  failures.fail('192.0.2.2')
  failures.fail('192.0.2.1')
  failures.fail('192.0.2.3')
  t.equal(failures.lockedFor('192.0.2.2'), 0, 'the address that failed longest ago was forgotten')
  t.equal(failures.lockedFor('192.0.2.1'), 60_000, 'the others are still locked')
  t.equal(failures.lockedFor('192.0.2.3'), 60_000)
})

t.test('client keys: IPv4 as is, IPv6 by /64 however it is written, anything else as is', async t => {
  t.equal(clientKey('192.0.2.9'), '192.0.2.9')
  t.equal(clientKey('::ffff:192.0.2.9'), '192.0.2.9')
  t.equal(clientKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:0DB8:0001:0002::'), '2001:db8:1:2::/64')
  t.equal(clientKey('::1'), '0:0:0:0::/64')
  t.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  t.equal(clientKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64')
  t.equal(clientKey('not-an-address'), 'not-an-address')
})
