// The status line `docker ps` shows ("Up 5 minutes", "Exited (0) 2 hours ago"), made at the moment
// of the read from when a container started or finished — as the engine makes it for its own list
// (moby's State.String with go-units' HumanDuration), so a copy kept for minutes still says "now".

/** What a container's status line is made of, as inspect shows it. */
export interface StatusFacts {
  running: boolean
  paused: boolean
  restarting: boolean
  dead: boolean
  removing: boolean
  /** RFC 3339; the zero time (0001-01-01…) when it never started or finished. */
  startedAt: string
  finishedAt: string
  exitCode: number
  /** The healthcheck's status (starting, healthy, unhealthy), or null without one. */
  health: string | null
}

/** docker ps's status of a container at `now` (ms since the epoch). */
export function statusLine (facts: StatusFacts, now: number): string {
  if (facts.running) {
    const up = `Up ${humanDuration(now - timeOf(facts.startedAt))}`
    if (facts.paused) return `${up} (Paused)`
    if (facts.restarting) return `Restarting (${facts.exitCode}) ${humanDuration(now - timeOf(facts.finishedAt))} ago`
    if (facts.health !== null) return `${up} (${facts.health === 'starting' ? 'health: starting' : facts.health})`
    return up
  }
  if (facts.removing) return 'Removal In Progress'
  if (facts.dead) return 'Dead'
  if (isZero(facts.startedAt)) return 'Created'
  if (isZero(facts.finishedAt)) return ''
  return `Exited (${facts.exitCode}) ${humanDuration(now - timeOf(facts.finishedAt))} ago`
}

/** go-units' HumanDuration of a span in milliseconds: "Less than a second", "About a minute", "3 hours"… */
export function humanDuration (ms: number): string {
  const seconds = Math.trunc(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.trunc(ms / 60_000)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.trunc(ms / 3_600_000 + 0.5)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`
  return `${Math.trunc(Math.trunc(ms / 3_600_000) / 24 / 365)} years`
}

function isZero (time: string): boolean {
  return time === '' || time.startsWith('0001-01-01')
}

function timeOf (time: string): number {
  return Date.parse(time)
}
