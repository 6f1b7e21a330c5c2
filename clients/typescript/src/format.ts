// How the berth command prints what docker prints: tables with docker's columns, its human durations
// and sizes, its port and command notation.
import type { components } from './generated/api.ts'

type ContainerSummary = components['schemas']['ContainerSummary']
type ImageSummary = components['schemas']['ImageSummary']
type PortBinding = components['schemas']['PortBinding']

/** Columns as docker's tabwriter lays them out: each as wide as its widest cell, three spaces apart. */
export function table (header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map(row => (row[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((cell, i) => i === cells.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3)).join('')
  return [header, ...rows].map(line).join('\n') + '\n'
}

/** A duration as docker words it ("About a minute", "3 hours"): go-units' HumanDuration. */
export function humanDuration (ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.floor(seconds / 60)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.floor(ms / 3_600_000 + 0.5)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`
}

export function ago (time: string, now = Date.now()): string {
  return `${humanDuration(Math.max(0, now - Date.parse(time)))} ago`
}

/** Bytes in decimal units with three significant digits, as `docker images` shows sizes ("1.98MB"). */
export function humanSize (bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return `${Number(value.toPrecision(3))}${units[unit]}`
}

/** "0.0.0.0:8080->80/tcp, 443/tcp": a bound port with its address, an unbound one alone. */
export function portsText (ports: PortBinding[]): string {
  const texts = ports.map(port => port.host === null
    ? `${port.container}/${port.protocol}`
    : `${port.hostIp || '0.0.0.0'}:${port.host}->${port.container}/${port.protocol}`)
  return [...new Set(texts)].join(', ')
}

/** The command quoted and cut to 20 characters, as `docker ps` shows it; an array is joined by spaces. */
export function commandText (command: string | readonly string[] | null | undefined): string {
  const text = typeof command === 'string' ? command : (command ?? []).join(' ')
  return `"${text.length > 20 ? `${text.slice(0, 19)}…` : text}"`
}

export function shortId (id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12)
}

export function psTable (containers: ContainerSummary[], now = Date.now()): string {
  return table(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], containers.map(container => [
    shortId(container.id),
    container.image,
    commandText(container.command),
    ago(container.createdAt, now),
    container.status,
    portsText(container.ports),
    container.name.replace(/^\//, '')
  ]))
}

/** `repo:tag` split where docker splits it: at the last colon after the last slash (a registry has a port). */
export function splitTag (reference: string): [string, string] {
  const colon = reference.lastIndexOf(':')
  return colon > reference.lastIndexOf('/') ? [reference.slice(0, colon), reference.slice(colon + 1)] : [reference, '<none>']
}

export function imagesTable (images: ImageSummary[], now = Date.now()): string {
  const rows = images.flatMap(image => {
    const names = image.tags.length > 0 ? image.tags.map(splitTag) : [['<none>', '<none>'] as [string, string]]
    return names.map(([repository, tag]) => [repository, tag, shortId(image.id), ago(image.createdAt, now), humanSize(image.size)])
  })
  return table(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], rows)
}
