// The Docker CLI's strings for `-p` and `-v`, parsed into the objects a run body otherwise names: so
// `"127.0.0.1:8888:8888"` and `"data:/data:ro"` mean what they mean to `docker run`. Pure functions;
// a string that is not one of the forms is a 400 that lists them.
import { isIP } from 'node:net'
import type { Protocol } from '../engine/types.ts'
import { PORT_FORMS, VOLUME_FORMS } from '../schemas/containers.ts'
import { invalid } from './policy.ts'

/** One `-p` binding as the run body's object form names it, plus a host range the engine picks one port from. */
export interface PortForm {
  container: number
  host?: number
  hostRange?: { min: number, max: number }
  protocol: Protocol
  hostIp?: string
}

export interface VolumeForm {
  source: string
  target: string
  readOnly: boolean
}

/** How many bindings a run may have once ranges are expanded. */
export const MAX_PORTS = 64

const PORT_FORMS_HINT = `accepted forms: ${PORT_FORMS.map(form => `"${form}"`).join(', ')}, or an object {container, host?, protocol?, hostIp?}`
const VOLUME_FORMS_HINT = `accepted forms: ${VOLUME_FORMS.map(form => `"${form}"`).join(', ')}, or an object {source, target, readOnly?}`

/** `[hostIp:][host:]container[/protocol]`, with ranges; throws validation_failed naming `field`. */
export function parsePortString (text: string, field: string): PortForm[] {
  const fail = (why: string): never => { throw invalid(field, `"${text}" ${why}; ${PORT_FORMS_HINT}`) }
  let rest = text
  let protocol: Protocol = 'tcp'
  const slash = rest.lastIndexOf('/')
  if (slash !== -1) {
    const named = rest.slice(slash + 1)
    if (named !== 'tcp' && named !== 'udp' && named !== 'sctp') fail('names no protocol berth knows (tcp, udp, sctp)')
    protocol = named as Protocol
    rest = rest.slice(0, slash)
  }
  let hostIp: string | undefined
  // An IPv6 host address is written in brackets, as in a URL: [::1]:8888:8888.
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(rest)
  if (bracketed !== null) {
    hostIp = bracketed[1] as string
    if (isIP(hostIp) !== 6) fail(`has "${hostIp}" in brackets, which is not an IPv6 address`)
    rest = bracketed[2] as string
    if (!rest.includes(':')) fail('names a host address but no host port (leave it empty for any: "[::1]::8888")')
  }
  const parts = rest.split(':')
  if (hostIp === undefined && parts.length === 3) {
    hostIp = parts.shift() as string
    if (isIP(hostIp) !== 4) fail(`starts with "${hostIp}", which is not an IPv4 address (an IPv6 one goes in brackets)`)
  }
  if (parts.length > 2) fail('has too many parts')
  const containerText = parts.pop() as string
  const hostText = parts.pop()
  const container = range(containerText) ?? fail(`has "${containerText}" as the container port, which is not a port (1-65535) or a range of them`)
  const host = hostText === undefined || hostText === '' ? null : range(hostText) ?? fail(`has "${hostText}" as the host port, which is not a port (1-65535) or a range of them`)
  if (hostText === '' && hostIp === undefined) fail('leaves the host port empty without a host address')

  const base = { protocol, ...(hostIp === undefined ? {} : { hostIp }) }
  const containers = Array.from({ length: container.max - container.min + 1 }, (_, i) => container.min + i)
  if (containers.length > MAX_PORTS) fail(`spans ${containers.length} ports; a run binds ${MAX_PORTS} at most`)
  if (host === null) return containers.map(port => ({ container: port, ...base }))
  if (host.min === host.max) {
    if (containers.length > 1) fail('binds a range of container ports to one host port')
    return [{ container: container.min, host: host.min, ...base }]
  }
  // A host range for one container port: any free port of the range, as the CLI does.
  if (containers.length === 1) return [{ container: container.min, hostRange: host, ...base }]
  if (host.max - host.min !== container.max - container.min) fail('has host and container ranges of different lengths')
  return containers.map((port, i) => ({ container: port, host: host.min + i, ...base }))
}

function range (text: string): { min: number, max: number } | null {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text)
  if (match === null) return null
  const min = Number(match[1])
  const max = match[2] === undefined ? min : Number(match[2])
  if (min < 1 || max > 65535 || min > max) return null
  return { min, max }
}

/** `source:target[:ro|rw]`; throws validation_failed naming `field`. */
export function parseVolumeString (text: string, field: string): VolumeForm {
  const fail = (why: string): never => { throw invalid(field, `"${text}" ${why}; ${VOLUME_FORMS_HINT}`) }
  const parts = text.split(':')
  if (parts.length < 2 || parts.length > 3) fail('is not source:target[:ro|rw]')
  const [source = '', target = '', mode] = parts
  if (source === '') fail('names no source (a volume name, or a host path)')
  if (!target.startsWith('/') || target.length < 2) fail('names no absolute target path inside the container')
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') fail(`ends in "${mode}", which is neither ro nor rw`)
  return { source, target, readOnly: mode === 'ro' }
}
