// Reads the engine's long-lived streams into berth's types: pull progress lines, multiplexed (or TTY)
// log streams, and the events stream, whose `timeNano` does not fit in a JavaScript number.
import type { Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { BerthError } from '../../errors.ts'
import type { EngineEvent, LayerProgress, LayerPhase, LogEntry, OutputChunk } from '../types.ts'

const PHASES: Record<string, LayerPhase> = {
  'Pulling fs layer': 'waiting',
  Waiting: 'waiting',
  Downloading: 'downloading',
  'Verifying Checksum': 'verifying',
  'Download complete': 'downloaded',
  Extracting: 'extracting',
  'Pull complete': 'complete',
  'Already exists': 'exists'
}

/** A progress line about one layer, in berth's words; null for the lines about the whole pull. */
/** One line of the engine's pull progress. */
export interface PullLine {
  status?: string
  id?: string
  progressDetail?: { current?: number, total?: number }
}

export function layerProgress (line: PullLine): LayerProgress | null {
  if (typeof line.id !== 'string' || typeof line.status !== 'string') return null
  const phase = PHASES[line.status] ?? (line.status.startsWith('Retrying in') ? 'retrying' : undefined)
  if (phase === undefined) return null
  const { current, total } = line.progressDetail ?? {}
  return {
    id: line.id,
    phase,
    current: typeof current === 'number' && current >= 0 ? current : 0,
    total: typeof total === 'number' && total > 0 ? total : null
  }
}

/** Nanoseconds since the epoch as the engine's `since`/`until` take them: "seconds.nanoseconds". */
export function engineTime (nanos: bigint): string {
  return `${nanos / 1_000_000_000n}.${(nanos % 1_000_000_000n).toString().padStart(9, '0')}`
}

/** Nanoseconds since the epoch as RFC 3339, keeping all nine digits a Date would drop. */
export function isoFromNanos (nanos: bigint): string {
  const millis = new Date(Number(nanos / 1_000_000n)).toISOString()
  return millis.slice(0, 19) + '.' + (nanos % 1_000_000_000n).toString().padStart(9, '0') + 'Z'
}

// A line is cut here when no line break comes: a container writing without newlines must not grow berth's memory.
const MAX_LINE = 64 * 1024

/** Splits one output stream into lines, decoding UTF-8 across chunk boundaries. */
class LineSplitter {
  readonly #decoder = new StringDecoder('utf8')
  #pending = ''

  push (chunk: Buffer): string[] {
    this.#pending += this.#decoder.write(chunk)
    const lines: string[] = []
    let start = 0
    for (let newline = this.#pending.indexOf('\n'); newline !== -1; newline = this.#pending.indexOf('\n', start)) {
      cut(this.#pending.slice(start, newline), lines)
      start = newline + 1
    }
    this.#pending = this.#pending.slice(start)
    // Whole pieces of an unfinished line go out now; only the rest waits for its line break.
    while (this.#pending.length >= MAX_LINE) {
      lines.push(this.#pending.slice(0, MAX_LINE))
      this.#pending = this.#pending.slice(MAX_LINE)
    }
    return lines
  }

  end (): string[] {
    const rest = this.#pending + this.#decoder.end()
    this.#pending = ''
    const lines: string[] = []
    if (rest !== '') cut(rest, lines)
    return lines
  }
}

// The same line comes out in the same pieces however the engine chunked it.
function cut (line: string, into: string[]): void {
  for (let start = 0; start === 0 || start < line.length; start += MAX_LINE) into.push(line.slice(start, start + MAX_LINE))
}

export interface LogStreamOptions {
  /** A TTY container's stream has no frames: it is the terminal's output as it was written. */
  tty: boolean
  timestamps: boolean
  signal?: AbortSignal
}

/**
 * The engine's log stream as lines: the same frames as an attached stream's (readFrames), cut into
 * lines per stream, with the engine's timestamp split off each line when it was asked for.
 */
export async function * readLogStream (stream: Readable, options: LogStreamOptions): AsyncGenerator<LogEntry> {
  for await (const { stream: name, line } of linesOf(readFrames(stream, options.tty, options.signal), options.tty)) {
    if (!options.timestamps) {
      yield { stream: name, line }
      continue
    }
    const space = line.indexOf(' ')
    yield space === -1 ? { stream: name, line: '', time: line } : { stream: name, line: line.slice(space + 1), time: line.slice(0, space) }
  }
}

/**
 * Demultiplexes an attached stream (an exec's): without a TTY every piece of output comes in a frame
 * with an 8-byte header (stream type, three zero bytes, big-endian payload size); with one, the
 * stream is the terminal's output as it is.
 */
export async function * readFrames (stream: Readable, tty: boolean, signal?: AbortSignal): AsyncGenerator<OutputChunk> {
  const abort = (): void => { stream.destroy() }
  signal?.addEventListener('abort', abort, { once: true })
  if (signal?.aborted) abort()
  let buffer: Buffer = Buffer.alloc(0)
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (tty) {
        yield { stream: 'stdout', data: chunk }
        continue
      }
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      while (buffer.length >= 8) {
        const size = buffer.readUInt32BE(4)
        if (buffer.length < 8 + size) break
        const data = buffer.subarray(8, 8 + size)
        // 0 is stdin, which the engine only sends for an attached stdin; the CLI shows it as stdout.
        const name = buffer[0] === 2 ? 'stderr' : 'stdout'
        buffer = buffer.subarray(8 + size)
        if (data.length > 0) yield { stream: name, data }
      }
    }
  } catch (error) {
    if (signal?.aborted) return
    throw brokenStream(error)
  } finally {
    signal?.removeEventListener('abort', abort)
    stream.destroy()
  }
}

/** Chunks of output as lines, per stream, cut as `docker logs` lines are (a TTY's carriage returns dropped). */
export async function * linesOf (chunks: AsyncIterable<OutputChunk>, tty: boolean): AsyncGenerator<LogEntry> {
  const splitters = { stdout: new LineSplitter(), stderr: new LineSplitter() }
  const entry = (name: 'stdout' | 'stderr', line: string): LogEntry => ({ stream: name, line: tty && line.endsWith('\r') ? line.slice(0, -1) : line })
  for await (const chunk of chunks) {
    for (const line of splitters[chunk.stream].push(chunk.data)) yield entry(chunk.stream, line)
  }
  for (const name of ['stdout', 'stderr'] as const) {
    for (const line of splitters[name].end()) yield entry(name, line)
  }
}

/** A stream of JSON objects, one a line (stats); the signal ends it and releases the connection. */
export async function * readJsonLines<T> (stream: Readable, signal?: AbortSignal): AsyncGenerator<T> {
  const abort = (): void => { stream.destroy() }
  signal?.addEventListener('abort', abort, { once: true })
  if (signal?.aborted) abort()
  let pending = ''
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending += chunk.toString('utf8')
      for (let newline = pending.indexOf('\n'); newline !== -1; newline = pending.indexOf('\n')) {
        const line = pending.slice(0, newline).trim()
        pending = pending.slice(newline + 1)
        if (line !== '') yield JSON.parse(line) as T
      }
    }
    if (pending.trim() !== '') yield JSON.parse(pending) as T
  } catch (error) {
    if (signal?.aborted) return
    throw brokenStream(error)
  } finally {
    signal?.removeEventListener('abort', abort)
    stream.destroy()
  }
}

interface Cursor {
  nanos: bigint
  /** How many events before this one the engine reported with the very same timeNano. */
  index: number
}

// Two events can share a timeNano, and the engine's `since` includes the events at that instant:
// the cursor names both the instant and the position among them, so a resume repeats nothing.
export function parseCursor (text: string): Cursor | null {
  const match = /^(\d{1,20})-(\d{1,9})$/.exec(text)
  if (!match) return null
  return { nanos: BigInt(match[1] as string), index: Number(match[2]) }
}

export function formatCursor (cursor: Cursor): string {
  return `${cursor.nanos}-${cursor.index}`
}

interface DockerEvent {
  Type?: string
  Action?: string
  Actor?: { ID?: string, Attributes?: Record<string, string> }
  time?: number
}

/** Reads the events stream: one JSON object a line, numbers included that JSON.parse would round. */
export async function * readEventStream (stream: Readable, after: Cursor | null, signal?: AbortSignal): AsyncGenerator<EngineEvent> {
  let last: Cursor = { nanos: -1n, index: 0 }
  let pending = ''
  const abort = (): void => { stream.destroy() }
  signal?.addEventListener('abort', abort, { once: true })
  function * handle (text: string): Generator<EngineEvent> {
    if (text.trim() === '') return
    let raw: DockerEvent
    try {
      raw = JSON.parse(text)
    } catch {
      return
    }
    const exact = /"timeNano":(\d+)\s*\}\s*$/.exec(text) ?? /"timeNano":(\d+)/.exec(text)
    const nanos = exact ? BigInt(exact[1] as string) : BigInt(raw.time ?? 0) * 1_000_000_000n
    last = nanos === last.nanos ? { nanos, index: last.index + 1 } : { nanos, index: 0 }
    if (after !== null && (nanos < after.nanos || (nanos === after.nanos && last.index <= after.index))) return
    const event = toEngineEvent(raw, last)
    if (event !== null) yield event
  }
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending += chunk.toString('utf8')
      let newline = pending.indexOf('\n')
      while (newline !== -1) {
        yield * handle(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
        newline = pending.indexOf('\n')
      }
    }
    yield * handle(pending)
  } catch (error) {
    if (signal?.aborted) return
    throw brokenStream(error)
  } finally {
    signal?.removeEventListener('abort', abort)
    stream.destroy()
  }
}

function toEngineEvent (raw: DockerEvent, cursor: Cursor): EngineEvent | null {
  const type = raw.Type
  if (type !== 'container' && type !== 'image') return null
  const attributes = raw.Actor?.Attributes ?? {}
  const id = raw.Actor?.ID ?? ''
  // "exec_start: sh -c …" carries a command line, which may hold secrets: the action is the part before it.
  const action = (raw.Action ?? '').split(':')[0]?.trim() ?? ''
  const { name, image, exitCode, ...labels } = attributes
  const base: Pick<EngineEvent, 'cursor' | 'type' | 'action' | 'id' | 'time'> = { cursor: formatCursor(cursor), type, action, id, time: isoFromNanos(cursor.nanos) }
  if (type === 'image') return { ...base, name: name ?? null, image: id, labels: {} }
  const code = exitCode === undefined ? undefined : Number(exitCode)
  return {
    ...base,
    name: name ?? null,
    image: image ?? null,
    labels,
    ...(code !== undefined && Number.isInteger(code) ? { exitCode: code } : {})
  }
}

/** A whole response body, for the engine's answers that come late (a wait); the signal ends it. */
export async function readAll (stream: Readable, signal?: AbortSignal): Promise<Buffer> {
  const abort = (): void => { stream.destroy(signal?.reason) }
  signal?.addEventListener('abort', abort, { once: true })
  if (signal?.aborted) abort()
  const chunks: Buffer[] = []
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk)
  } finally {
    signal?.removeEventListener('abort', abort)
    stream.destroy()
  }
  return Buffer.concat(chunks)
}

function brokenStream (error: unknown): BerthError {
  return new BerthError('engine_unavailable', `the engine connection broke: ${(error as Error).message}`, {}, { cause: error, headers: { 'retry-after': '5' } })
}
