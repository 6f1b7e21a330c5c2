// Files in and out of a container (docker cp), as berth allows them: paths are absolute and plain
// (no "." or ".." to be resolved); an upload is read whole — counted against its limit, every entry
// read by berth's own tar reader — before the engine sees a byte of it, and what the engine is then
// sent is the archive berth assembles from it (src/access/uploads.ts), never the client's bytes.
// Uploads are spooled to a temporary file, not held in memory.
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

/** What berth writes of one entry: ustar, with a pax header first for what a ustar header cannot hold. */
export interface TarEntryHeader {
  name: string
  size: number
  mode?: number
  uid?: number
  gid?: number
  /** Seconds since the epoch; now when not given. */
  mtime?: number
  /** The typeflag: "0" (a file) unless given. */
  type?: string
  linkname?: string
}

/** The largest number an octal field of `length` bytes holds (its last byte is a NUL). */
const fits = (length: number): number => 8 ** (length - 1) - 1

/** A ustar header for one entry; a long name or link target, or a number too large for its field, goes in a pax record before it. */
export function tarHeader (entry: TarEntryHeader): Buffer {
  const name = Buffer.from(entry.name, 'utf8')
  const linkname = Buffer.from(entry.linkname ?? '', 'utf8')
  const uid = entry.uid ?? 0
  const gid = entry.gid ?? 0
  const mtime = Math.max(0, entry.mtime ?? Math.floor(Date.now() / 1000))
  const records: Record<string, string> = {}
  if (name.length > 100) records.path = entry.name
  if (linkname.length > 100) records.linkpath = entry.linkname ?? ''
  if (entry.size > fits(12)) records.size = String(entry.size)
  if (uid > fits(8)) records.uid = String(uid)
  if (gid > fits(8)) records.gid = String(gid)
  if (mtime > fits(12)) records.mtime = String(mtime)
  const header = Buffer.alloc(BLOCK)
  name.copy(header, 0, 0, Math.min(100, name.length))
  octal(header, 100, 8, entry.mode ?? 0o644)
  octal(header, 108, 8, uid > fits(8) ? 0 : uid)
  octal(header, 116, 8, gid > fits(8) ? 0 : gid)
  octal(header, 124, 12, entry.size > fits(12) ? 0 : entry.size)
  octal(header, 136, 12, mtime > fits(12) ? 0 : mtime)
  header.write(entry.type ?? '0', 156, 'latin1')
  linkname.copy(header, 157, 0, Math.min(100, linkname.length))
  header.write('ustar\u000000', 257, 'latin1')
  checksum(header)
  if (Object.keys(records).length === 0) return header
  const pax = paxRecords(records)
  const paxHeader = tarHeader({ name: 'PaxHeader', size: pax.length, type: 'x', mtime: 0 })
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

/** The kinds of entry berth unpacks. */
export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink'

/** One entry of an uploaded archive, as berth read it. */
export interface ArchiveEntry {
  /** Its place among the entries, from 1 (pax and long-name headers are not entries). */
  index: number
  /** The name as the archive gives it: a pax path, a GNU long name, or the ustar prefix and name. */
  name: string
  kind: EntryKind
  mode: number
  uid: number
  gid: number
  /** Seconds since the epoch. */
  mtime: number
  /** Bytes of data, and where in the archive they begin. */
  size: number
  offset: number
  /** A link's target as the archive gives it; empty for the other kinds. */
  linkname: string
}

/** How many entries an upload may hold. */
export const MAX_ENTRIES = 100_000
/** A pax or GNU long-name header larger than this is not one berth reads. */
const MAX_META = 1024 * 1024

const KINDS: Record<string, EntryKind> = { 0: 'file', '\u0000': 'file', 7: 'file', 5: 'directory', 2: 'symlink', 1: 'hardlink' }
const TYPE_NAMES: Record<string, string> = { 3: 'a character device', 4: 'a block device', 6: 'a FIFO', S: 'a sparse file' }
// Typeflags that carry no data whatever their size says, as POSIX and Go's archive/tar read them.
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6'])
const utf8 = new TextDecoder('utf-8', { fatal: true })

interface Pending {
  path?: string
  linkpath?: string
  size?: number
  uid?: number
  gid?: number
  mtime?: number
  sparse?: boolean
  longName?: string
  longLink?: string
}

/**
 * Reads an archive as it passes (into the spool) and keeps its entries: names from pax records, GNU
 * long names or the ustar prefix and name, sizes and owners from pax or the header, and where each
 * entry's data lies. It refuses, naming the entry, what it cannot read one way only — a broken
 * header, an archive that ends inside an entry, a device node, a FIFO, a sparse file, a name that is
 * not UTF-8 — and nothing else: what an entry may do is src/access/uploads.ts's to judge. xattrs,
 * owner names and global pax headers are not kept.
 */
export class ArchiveReader extends Transform {
  readonly entries: ArchiveEntry[] = []
  #buffer: Buffer = Buffer.alloc(0)
  /** Bytes of the archive read so far. */
  #offset = 0
  /** Bytes of entry data and padding still to pass before the next header. */
  #skip = 0
  /** Bytes of a pax or GNU long-name header's data still to collect, and what is collected. */
  #collect = 0
  #collected: Buffer[] = []
  #collecting: string | null = null
  #next: Pending = {}
  #headers = 0
  #ended = false
  #zero = false

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
    if (this.#headers === 0) callback(invalid('body', 'is not a tar archive (or an empty one)'))
    else if (!this.#ended && (this.#skip > 0 || this.#collecting !== null || this.#buffer.length > 0 || Object.keys(this.#next).length > 0)) {
      // Inside an entry's data, that entry; inside a header (or its pax records), the one it begins.
      const inside = this.#skip > 0 && this.#collecting === null ? this.entries.length : this.entries.length + 1
      callback(invalid('body', `ends inside entry ${inside}: the archive was cut short`))
    } else callback()
  }

  #parse (): void {
    for (;;) {
      if (this.#ended) {
        // What follows the end of the archive is not read.
        this.#offset += this.#buffer.length
        this.#buffer = Buffer.alloc(0)
        return
      }
      if (this.#skip > 0) {
        const taken = Math.min(this.#skip, this.#buffer.length)
        if (this.#collecting !== null && this.#collect > 0) this.#collected.push(Buffer.from(this.#buffer.subarray(0, Math.min(taken, this.#collect))))
        this.#collect = Math.max(0, this.#collect - taken)
        this.#skip -= taken
        this.#offset += taken
        this.#buffer = this.#buffer.subarray(taken)
        if (this.#skip > 0) return
        if (this.#collecting !== null) this.#finishCollecting()
      }
      if (this.#buffer.length < BLOCK) return
      const header = this.#buffer.subarray(0, BLOCK)
      this.#buffer = this.#buffer.subarray(BLOCK)
      this.#offset += BLOCK
      if (header.every(byte => byte === 0)) {
        // Two zero blocks end the archive (one, then the end of the bytes, too: tar writes some so).
        if (this.#zero) this.#ended = true
        this.#zero = true
        continue
      }
      if (this.#zero) throw invalid('body', `has a lone zero block before entry ${this.entries.length + 1}`)
      this.#header(header)
    }
  }

  #header (header: Buffer): void {
    const where = `entry ${this.entries.length + 1}`
    const size = numeric(header.subarray(124, 136))
    if (!validChecksum(header) || size === null) {
      throw invalid('body', this.#headers === 0 ? 'is not a tar archive' : `is not a tar archive: ${where} has a broken header`)
    }
    this.#headers++
    const type = String.fromCharCode(header[156] as number)
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META) throw invalid('body', `has an extended header larger than 1 MiB at ${where}`)
      this.#collecting = type
      this.#collect = size
      this.#collected = []
      this.#skip = size + padding(size)
      if (size === 0) this.#finishCollecting()
      return
    }
    const next = this.#next
    this.#next = {}
    const index = this.entries.length + 1
    const prefix = header.subarray(257, 263).toString('latin1') === 'ustar\u0000' ? cString(header.subarray(345, 500)) : Buffer.alloc(0)
    const plain = cString(header.subarray(0, 100))
    const name = next.path ?? next.longName ?? text(prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), plain]) : plain, where)
    let kind: EntryKind | undefined = KINDS[type]
    // An old-style file whose name ends in "/" is a directory, as tar and Go's archive/tar read it.
    if (type === '\u0000' && name.endsWith('/')) kind = 'directory'
    if (next.sparse === true || kind === undefined) {
      const what = next.sparse === true ? 'a sparse file' : TYPE_NAMES[type] ?? `of tar type ${JSON.stringify(type)}`
      throw invalid('body', `${next.sparse === true ? where : `entry "${name}"`} is ${what}, which berth does not unpack`)
    }
    if (index > MAX_ENTRIES) throw new BerthError('payload_too_large', `the archive holds more than ${MAX_ENTRIES} entries`)
    const dataSize = HEADER_ONLY.has(type) || kind === 'directory' ? 0 : next.size ?? size
    const number = (field: Buffer, what: string): number => {
      const value = numeric(field)
      if (value === null) throw invalid('body', `is not a tar archive: ${where} has a ${what} that is not a number`)
      return value
    }
    this.entries.push({
      index,
      name,
      kind,
      mode: number(header.subarray(100, 108), 'mode'),
      uid: next.uid ?? number(header.subarray(108, 116), 'uid'),
      gid: next.gid ?? number(header.subarray(116, 124), 'gid'),
      mtime: next.mtime ?? number(header.subarray(136, 148), 'time'),
      size: dataSize,
      offset: this.#offset,
      linkname: kind === 'symlink' || kind === 'hardlink' ? next.linkpath ?? next.longLink ?? text(cString(header.subarray(157, 257)), where) : ''
    })
    this.#skip = dataSize + padding(dataSize)
  }

  #finishCollecting (): void {
    const data = Buffer.concat(this.#collected)
    const type = this.#collecting
    const where = `entry ${this.entries.length + 1}`
    this.#collecting = null
    this.#collected = []
    if (type === 'L') this.#next.longName = text(cString(data), where)
    if (type === 'K') this.#next.longLink = text(cString(data), where)
    // A global header (git archive writes one with the commit) says nothing berth keeps.
    if (type !== 'x') return
    for (const [key, value] of paxEntries(data, where)) {
      if (key.startsWith('GNU.sparse.')) this.#next.sparse = true
      if (key === 'path' || key === 'linkpath') {
        if (value.includes(0)) throw invalid('body', `has a pax ${key} with a NUL byte at ${where}`)
        this.#next[key] = text(value, where)
      }
      if (key === 'size' || key === 'uid' || key === 'gid' || key === 'mtime') {
        const digits = value.toString('latin1')
        const parsed = key === 'mtime' ? /^-?\d{1,16}(?:\.\d*)?$/.test(digits) ? Math.max(0, Math.floor(Number(digits))) : NaN : /^\d{1,16}$/.test(digits) ? Number(digits) : NaN
        if (!Number.isSafeInteger(parsed)) throw invalid('body', `has a pax ${key} that is not a number at ${where}`)
        this.#next[key] = parsed
      }
    }
  }
}

/** pax records, "<length> <key>=<value>\n", each exactly its length. */
function paxEntries (data: Buffer, where: string): Array<[string, Buffer]> {
  const records: Array<[string, Buffer]> = []
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    const digits = space === -1 ? '' : data.subarray(at, space).toString('latin1')
    const length = /^[1-9]\d{0,8}$/.test(digits) ? Number(digits) : NaN
    if (!(length > digits.length + 1) || at + length > data.length || data[at + length - 1] !== 0x0a) {
      throw invalid('body', `has a pax record at ${where} that is not "<length> <key>=<value>"`)
    }
    const record = data.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq <= 0) throw invalid('body', `has a pax record without a key at ${where}`)
    records.push([record.subarray(0, eq).toString('latin1'), record.subarray(eq + 1)])
    at += length
  }
  return records
}

function text (bytes: Buffer, where: string): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw invalid('body', `has a name at ${where} that is not UTF-8`)
  }
}

function cString (bytes: Buffer): Buffer {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, end === -1 ? bytes.length : end)
}

/** An octal field (spaces and NULs around it allowed), or GNU base-256 for large positive numbers; null when neither. */
function numeric (field: Buffer): number | null {
  const first = field[0] as number
  if ((first & 0x80) !== 0) {
    if (first !== 0x80) return null
    let value = 0
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] as number)
    return Number.isSafeInteger(value) ? value : null
  }
  // eslint-disable-next-line no-control-regex
  const digits = field.toString('latin1').replace(/^[ \u0000]+|[ \u0000]+$/g, '')
  if (digits === '') return 0
  return /^[0-7]+$/.test(digits) ? parseInt(digits, 8) : null
}

/** The checksum as tar writes it (unsigned bytes), or as some old tars did (signed). */
function validChecksum (header: Buffer): boolean {
  const stored = numeric(header.subarray(148, 156))
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 32 : header[i] as number
    unsigned += byte
    signed += byte >= 0x80 ? byte - 256 : byte
  }
  return stored !== null && (stored === unsigned || stored === signed)
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

/** An upload read whole into a temporary file: within the limit and, for an archive, read. */
export interface Spooled {
  /** A fresh read of it, or of `size` bytes of it from `start`. */
  open (range?: { start: number, size: number }): Readable
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
  return {
    open: range => range === undefined ? createReadStream(path) : range.size === 0 ? Readable.from([]) : createReadStream(path, { start: range.start, end: range.start + range.size - 1 }),
    size,
    discard
  }
}
