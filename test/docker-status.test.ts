// docker ps's status line, made at read time from when a container started or finished: the same
// words and the same roundings as the engine's own list (moby's State.String, go-units' HumanDuration).
import t from 'tap'
import { humanDuration, statusLine, type StatusFacts } from '../src/engine/docker/status.ts'

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

t.test('durations as go-units words them', async t => {
  const cases: Array<[number, string]> = [
    [-5 * SECOND, 'Less than a second'],
    [0, 'Less than a second'],
    [999, 'Less than a second'],
    [SECOND, '1 second'],
    [1999, '1 second'],
    [2 * SECOND, '2 seconds'],
    [59 * SECOND + 999, '59 seconds'],
    [MINUTE, 'About a minute'],
    [2 * MINUTE - 1, 'About a minute'],
    [2 * MINUTE, '2 minutes'],
    [59 * MINUTE + 59 * SECOND, '59 minutes'],
    [HOUR, 'About an hour'],
    // Hours are rounded, minutes and seconds are not.
    [HOUR + 29 * MINUTE, 'About an hour'],
    [HOUR + 30 * MINUTE, '2 hours'],
    [47 * HOUR + 29 * MINUTE, '47 hours'],
    [47 * HOUR + 30 * MINUTE, '2 days'],
    [13 * DAY + 23 * HOUR, '13 days'],
    [14 * DAY, '2 weeks'],
    [59 * DAY, '8 weeks'],
    [60 * DAY, '2 months'],
    [729 * DAY, '24 months'],
    [730 * DAY, '2 years'],
    [3 * 365 * DAY + 10 * DAY, '3 years']
  ]
  for (const [ms, words] of cases) t.equal(humanDuration(ms), words, `${ms} ms`)
})

t.test('status lines as docker ps shows them', async t => {
  const now = Date.parse('2026-01-02T03:04:05.678Z')
  const zero = '0001-01-01T00:00:00Z'
  const base: StatusFacts = { running: false, paused: false, restarting: false, dead: false, removing: false, startedAt: zero, finishedAt: zero, exitCode: 0, health: null }
  const ago = (ms: number): string => new Date(now - ms).toISOString()
  const cases: Array<[Partial<StatusFacts>, string]> = [
    [{}, 'Created'],
    [{ running: true, startedAt: ago(5 * MINUTE) }, 'Up 5 minutes'],
    [{ running: true, paused: true, startedAt: ago(3 * SECOND) }, 'Up 3 seconds (Paused)'],
    [{ running: true, restarting: true, startedAt: ago(HOUR), finishedAt: ago(2 * SECOND), exitCode: 1 }, 'Restarting (1) 2 seconds ago'],
    [{ running: true, startedAt: ago(10 * SECOND), health: 'starting' }, 'Up 10 seconds (health: starting)'],
    [{ running: true, startedAt: ago(2 * DAY), health: 'healthy' }, 'Up 2 days (healthy)'],
    [{ running: true, startedAt: ago(MINUTE), health: 'unhealthy' }, 'Up About a minute (unhealthy)'],
    [{ startedAt: ago(HOUR), finishedAt: ago(90 * SECOND), exitCode: 137 }, 'Exited (137) About a minute ago'],
    // Nanoseconds as the engine writes them.
    [{ startedAt: '2026-01-02T03:00:00.123456789Z', finishedAt: '2026-01-02T03:04:00.000000001Z' }, 'Exited (0) 5 seconds ago'],
    [{ dead: true, startedAt: ago(HOUR), finishedAt: ago(HOUR) }, 'Dead'],
    [{ removing: true, startedAt: ago(HOUR), finishedAt: ago(HOUR) }, 'Removal In Progress'],
    // Started but never finished, and not running: the engine says nothing.
    [{ startedAt: ago(HOUR) }, '']
  ]
  for (const [facts, line] of cases) t.equal(statusLine({ ...base, ...facts }, now), line, line || '(empty)')
})
