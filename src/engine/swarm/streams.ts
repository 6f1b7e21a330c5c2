// A service's logs: the same framed stream as a container's (read by the single-host reader), from
// every task of the service, each line prefixed by the manager with the task and node it came from.
import type { Readable } from 'node:stream'
import { readLogStream } from '../docker/streams.ts'
import type { LogEntry } from '../types.ts'
import type { NodeRef } from './mapping.ts'

/** Nanoseconds since the epoch of an RFC 3339 time with up to nine fractional digits. */
export function nanosOf (time: string): bigint | null {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(time)
  if (match === null) return null
  const seconds = Date.parse(`${match[1]}${match[3]}`)
  if (Number.isNaN(seconds)) return null
  return BigInt(seconds) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'))
}

export interface ServiceLogOptions {
  tty: boolean
  /** Whether the client asked for each line's time (the manager is always asked, to parse the prefix). */
  timestamps: boolean
  /** Nanoseconds since the epoch: lines after this are dropped (the manager has no `until`). */
  until?: bigint
  nodes: Map<string, NodeRef>
  signal?: AbortSignal
}

// "com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,com.docker.swarm.task.id=…"
const DETAILS = /^((?:[a-z0-9.]+=[^,\s]*,?)+) /

export async function * readServiceLogs (stream: Readable, options: ServiceLogOptions): AsyncGenerator<LogEntry> {
  for await (const entry of readLogStream(stream, { tty: options.tty, timestamps: true, ...(options.signal ? { signal: options.signal } : {}) })) {
    const time = entry.time ?? ''
    if (options.until !== undefined) {
      const at = nanosOf(time)
      if (at !== null && at > options.until) continue
    }
    let line = entry.line
    const details: Record<string, string> = {}
    const prefix = DETAILS.exec(line)
    if (prefix !== null) {
      for (const pair of (prefix[1] as string).split(',')) {
        const eq = pair.indexOf('=')
        if (eq > 0) details[pair.slice(0, eq)] = pair.slice(eq + 1)
      }
      line = line.slice(prefix[0].length)
    }
    const task = details['com.docker.swarm.task.id']
    const nodeId = details['com.docker.swarm.node.id']
    const node = nodeId === undefined ? undefined : options.nodes.get(nodeId)?.name ?? nodeId
    yield {
      stream: entry.stream,
      line,
      ...(options.timestamps ? { time } : {}),
      ...(task === undefined ? {} : { task }),
      ...(node === undefined ? {} : { node })
    }
  }
}
