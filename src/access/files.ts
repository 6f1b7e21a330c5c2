// Files in and out of a container (docker cp), as berth allows them: paths are absolute and plain
// (no "." or ".." to be resolved), an uploaded archive writes only below the directory it is
// unpacked in (entry names relative and plain, no device nodes or FIFOs), and an upload is read
// whole — counted against its limit and checked — before the engine sees a byte of it, so a refused
// one leaves nothing behind. Uploads are spooled to a temporary file, not held in memory.
import { randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BerthError } from '../errors.ts'
import { invalid } from './policy.ts'

const BLOCK = 512

/** An absolute path without "." or ".." segments or control characters; `/` alone is not a file. */
export function confinedPath (path: string, field: string, options: { file: boolean }): string {
  if (!path.startsWith('/')) throw invalid(field, 'must be an absolute path inside the container')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) throw invalid(field, 'must not contain control characters')
  const segments = path.split('/').filter(segment => segment !== '')
  if (segments.some(segment => segment === '.' || segment === '..')) throw invalid(field, 'must not contain "." or ".." segments')
  if (options.file && segments.length === 0) throw invalid(field, 'must name a file, not /')
  return '/' + segments.join('/')
}

/** A ustar header for one regular file; names longer than 100 bytes go through a pax record first. */
export function tarHeader (entry: { name: string, size: number, mode?: number, type?: string, linkname?: string, mtime?: number }): Buffer {
  const name = Buffer.from(entry.name, 'utf8')
  const pax = name.length > 100 ? paxRecords({ path: entry.name }) : null
  const header = Buffer.alloc(BLOCK)
  name.copy(header, 0, 0, Math.min(100, name.length))
  octal(header, 100, 8, entry.mode ?? 0o644)
  octal(header, 108, 8, 0)
  octal(header, 116, 8, 0)
  octal(header, 124, 12, entry.size)
  octal(header, 136, 12, entry.mtime ?? Math.floor(Date.now() / 1000))
  header.write(entry.type ?? '0', 156, 'latin1')
  if (entry.linkname !== undefined) Buffer.from(entry.linkname, 'utf8').copy(header, 157, 0, 100)
  header.write('ustar\u000000', 257, 'latin1')
  checksum(header)
  if (pax === null) return header
  const paxHeader = tarHeader({ name: 'PaxHeader', size: pax.length, type: 'x' })
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), header])
}

/** The zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK)

export function padding (size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK
}

function octal (header: Buffer, offset: number, length: number, value: number): void {
  header.write(value.toString(8).padStart(length - 1, '0') + '\u0000', offset, length, 'latin1')
}

function checksum (header: Buffer): void {
  header.fill(' ', 148, 156)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'latin1')
}

function paxRecords (records: Record<string, string>): Buffer {
  return Buffer.concat(Object.entries(records).map(([key, value]) => {
    const body = ` ${key}=${value}\n`
    // The length counts itself: find the length whose digits make the record that long.
    let length = Buffer.byteLength(body) + 1
    while (String(length).length + Buffer.byteLength(body) !== length) length++
    return Buffer.from(`${length}${body}`, 'utf8')
  }))
}

/** Entry types an uploaded archive may hold: files, hard and symbolic links, directories, and the headers that describe them. */
const ALLOWED_TYPES = new Set(['0', '\u0000', '1', '2', '5', '7', 'x', 'g', 'L', 'K'])
const TYPE_NAMES: Record<string, string> = { 3: 'a character device', 4: 'a block device', 6: 'a FIFO' }

/**
 * Reads a tar stream as it passes and refuses, naming the entry, what would write outside the
 * directory it is unpacked in: absolute names, ".." segments (also in hard-link targets and in pax
 * and GNU long names), and device nodes or FIFOs. Symbolic links are kept: they resolve inside the
 * container, whose root the engine confines the unpacking to.
 */
export class TarCheck extends Transform {
  #buffer: Buffer = Buffer.alloc(0)
  /** Bytes of entry data still to pass before the next header. */
  #skip = 0
  /** Bytes of a pax or GNU long-name entry still to collect, and what was collected. */
  #collect = 0
  #collected: Buffer[] = []
  #collecting: string | null = null
  #longName: string | null = null
  #longLink: string | null = null
  #paxPath: string | null = null
  #paxLink: string | null = null
  #ended = false
  entries = 0

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
      this.#parse()
      callback(null, chunk)
    } catch (error) {
      callback(error as Error)
    }
  }

  override _flush (callback: TransformCallback): void {
    if (this.entries === 0 && !this.#ended) callback(invalid('body', 'is not a tar archive (or an empty one)'))
    else callback()
  }

  #parse (): void {
    for (;;) {
      if (this.#ended) return
      if (this.#skip > 0) {
        const taken = Math.min(this.#skip, this.#buffer.length)
        if (this.#collecting !== null) this.#collected.push(this.#buffer.subarray(0, Math.min(taken, this.#collect)))
        this.#collect = Math.max(0, this.#collect - taken)
        this.#skip -= taken
        this.#buffer = this.#buffer.subarray(taken)
        if (this.#skip > 0) return
        if (this.#collecting !== null) this.#finishCollecting()
      }
      if (this.#buffer.length < BLOCK) return
      const header = this.#buffer.subarray(0, BLOCK)
      this.#buffer = this.#buffer.subarray(BLOCK)
      if (header.every(byte => byte === 0)) {
        this.#ended = true
        return
      }
      this.#header(header)
    }
  }

  #header (header: Buffer): void {
    const type = String.fromCharCode(header[156] as number)
    const size = parseSize(header.subarray(124, 136))
    if (!validChecksum(header) || size === null) throw invalid('body', `is not a tar archive: entry ${this.entries + 1} has a broken header`)
    this.#skip = size + padding(size)
    if (type === 'x' || type === 'L' || type === 'K') {
      if (size > 1024 * 1024) throw invalid('body', 'has an extended header larger than 1 MiB')
      this.#collecting = type
      this.#collect = size
      this.#collected = []
      if (size === 0) this.#finishCollecting()
      return
    }
    if (type === 'g') return
    this.entries++
    const prefix = cString(header.subarray(345, 500))
    const name = this.#paxPath ?? this.#longName ?? (prefix === '' ? '' : prefix + '/') + cString(header.subarray(0, 100))
    const link = this.#paxLink ?? this.#longLink ?? cString(header.subarray(157, 257))
    this.#paxPath = this.#paxLink = this.#longName = this.#longLink = null
    if (!ALLOWED_TYPES.has(type)) throw invalid('body', `entry "${name}" is ${TYPE_NAMES[type] ?? `of tar type ${JSON.stringify(type)}`}, which berth does not unpack`)
    checkEntryPath(name, `entry "${name}"`)
    if (type === '1') checkEntryPath(link, `hard link "${name}" to "${link}"`)
  }

  #finishCollecting (): void {
    const text = Buffer.concat(this.#collected).toString('utf8')
    if (this.#collecting === 'L') this.#longName = text.replace(/\0+$/, '')
    if (this.#collecting === 'K') this.#longLink = text.replace(/\0+$/, '')
    if (this.#collecting === 'x') {
      for (const record of text.split('\n')) {
        const match = /^\d+ (path|linkpath)=(.*)$/s.exec(record)
        if (match?.[1] === 'path') this.#paxPath = match[2] as string
        if (match?.[1] === 'linkpath') this.#paxLink = match[2] as string
      }
    }
    this.#collecting = null
    this.#collected = []
  }
}

function checkEntryPath (path: string, what: string): void {
  if (path.startsWith('/')) throw invalid('body', `${what} is an absolute path: entries must be relative to the directory they are unpacked in`)
  if (path.split('/').some(segment => segment === '..')) throw invalid('body', `${what} has a ".." segment: entries must stay in the directory they are unpacked in`)
}

function cString (bytes: Buffer): string {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8')
}

function parseSize (field: Buffer): number | null {
  // GNU base-256 for sizes past 8 GiB: the high bit of the first byte is set.
  if (((field[0] as number) & 0x80) !== 0) {
    let value = 0
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] as number)
    return value
  }
  const text = cString(field).trim()
  if (text === '') return 0
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : null
}

function validChecksum (header: Buffer): boolean {
  const stored = parseInt(cString(header.subarray(148, 156)).trim(), 8)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i] as number
  return stored === sum
}

/** Counts what passes and fails with payload_too_large past `limit` bytes. */
class Limit extends Transform {
  readonly #limit: number
  #seen = 0

  constructor (limit: number) {
    super()
    this.#limit = limit
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length
    if (this.#seen > this.#limit) callback(new BerthError('payload_too_large', `the upload is larger than ${this.#limit} bytes (BERTH_MAX_UPLOAD)`))
    else callback(null, chunk)
  }
}

/** An upload read whole into a temporary file: within the limit and, for an archive, checked. */
export interface Spooled {
  /** A fresh read of it, for the engine. */
  open (): Readable
  size: number
  /** Removes the temporary file. */
  discard (): Promise<void>
}

export async function spool (body: Readable, options: { limit: number, check?: Transform }): Promise<Spooled> {
  const path = join(tmpdir(), `berth-upload-${randomBytes(8).toString('hex')}`)
  const discard = async (): Promise<void> => { await rm(path, { force: true }) }
  const limit = new Limit(options.limit)
  // Piped by hand, not in the pipeline: a refused upload must leave the request (and its connection)
  // alive for the answer that says why. A client that goes away mid-upload ends the spooling.
  const cut = (): void => { if (!body.readableEnded) limit.destroy(new BerthError('validation_failed', 'the upload ended before it was complete')) }
  body.once('close', cut)
  body.pipe(limit)
  try {
    await pipeline(limit, options.check ?? new PassThrough(), createWriteStream(path, { mode: 0o600 }))
  } catch (error) {
    body.unpipe(limit)
    // The rest of the body is read and dropped before the refusal is sent: a client still sending
    // when the connection closes might never read the answer. BERTH_REQUEST_TIMEOUT_MS bounds it.
    await new Promise<void>(resolve => {
      if (body.readableEnded || body.destroyed) return resolve()
      body.once('end', resolve).once('close', resolve).resume()
    })
    await discard()
    throw error
  } finally {
    body.off('close', cut)
  }
  const { size } = await stat(path)
  return { open: () => createReadStream(path), size, discard }
}
