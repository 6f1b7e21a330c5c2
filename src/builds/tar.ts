// Tar as berth reads and writes it. The reader takes an archive as its bytes go by and answers one
// header per entry — its name from a pax record, a GNU long name or the ustar prefix and name, its
// size from pax or the header — and the entry's data; it refuses what it cannot read in exactly one
// way rather than guess. The writer makes the plain ustar (pax for long names) berth sends the engine.

const BLOCK = 512
/** A pax or GNU long-name header larger than this is not one berth reads. */
export const MAX_META = 1024 * 1024

/** Why an archive cannot be read: `format` (not tar, or not one way), `truncated` (it ends early). */
export class TarError extends Error {
  readonly reason: 'format' | 'truncated'
  constructor (reason: 'format' | 'truncated', message: string) {
    super(message)
    this.reason = reason
  }
}

export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink'

export interface TarHeader {
  /** 1 for the archive's first entry (pax and long-name headers are not entries). */
  index: number
  /** The name as the archive spells it, undecoded. */
  name: Buffer
  /** What berth takes the entry for, or null (a device, a FIFO, a sparse file, an unknown type). */
  kind: EntryKind | null
  /** The typeflag as written. */
  typeflag: string
  /** Bytes of data that follow: a file's content, nothing for the other kinds. */
  size: number
  mode: number
  /** Seconds since the epoch. */
  mtime: number
  /** A link's target, undecoded; empty for the other kinds. */
  linkname: Buffer
}

export interface TarHandlers {
  entry: (header: TarHeader) => void
  data: (chunk: Buffer) => void
}

// Typeflags that carry no data whatever their size field says (POSIX; Go's archive/tar, which the
// engine uses, reads them so).
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6'])
const KINDS: Record<string, EntryKind> = { 0: 'file', '\0': 'file', 7: 'file', 5: 'directory', 2: 'symlink', 1: 'hardlink' }

function cString (field: Buffer): Buffer {
  const end = field.indexOf(0)
  return end === -1 ? field : field.subarray(0, end)
}

/** An octal field (spaces and NULs around it allowed), or a GNU base-256 one; null when it is neither. */
function numeric (field: Buffer): number | null {
  const first = field[0] as number
  if ((first & 0x80) !== 0) {
    // Base-256: only positive numbers (0x80), that fit in a double exactly.
    if (first !== 0x80) return null
    let value = 0
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] as number)
    return Number.isSafeInteger(value) ? value : null
  }
  const text = field.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '')
  if (text === '') return 0
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : null
}

/** pax records: "<length> <key>=<value>\n", each exactly its length; the value may hold anything but what the key forbids. */
function paxRecords (data: Buffer, where: string): Map<string, Buffer> {
  const records = new Map<string, Buffer>()
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    const digits = space === -1 ? '' : data.subarray(at, space).toString('latin1')
    const length = /^[1-9][0-9]{0,8}$/.test(digits) ? Number(digits) : NaN
    if (!(length > digits.length + 1) || at + length > data.length || data[at + length - 1] !== 0x0a) {
      throw new TarError('format', `${where} has a pax record that is not "<length> <key>=<value>"`)
    }
    const record = data.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq <= 0) throw new TarError('format', `${where} has a pax record without a key`)
    records.set(record.subarray(0, eq).toString('latin1'), record.subarray(eq + 1))
    at += length
  }
  return records
}

interface Pending {
  paxPath?: Buffer
  paxLinkpath?: Buffer
  paxSize?: number
  paxMtime?: number
  longName?: Buffer
  longLink?: Buffer
}

/**
 * Reads an archive pushed to it chunk by chunk, calling `entry` for each entry's header and `data`
 * for its bytes, in order. Throws TarError: at `write` for what cannot be read one way only, at
 * `end` when the archive stops early. What follows the end-of-archive blocks is not read.
 */
export class TarReader {
  readonly #handlers: TarHandlers
  #pending: Buffer[] = []
  #pendingBytes = 0
  /** What the next bytes are. */
  #state: 'header' | 'meta' | 'data' | 'padding' | 'zero' | 'ended' = 'header'
  #left = 0
  #padding = 0
  #meta: { type: string, parts: Buffer[], size: number } | null = null
  #next: Pending = {}
  /** Entries read so far. */
  entries = 0
  /** Headers read so far (entries' and pax and long-name ones): none means it was never a tar. */
  headers = 0

  constructor (handlers: TarHandlers) {
    this.#handlers = handlers
  }

  /** Whether the end-of-archive blocks were read. */
  get ended (): boolean {
    return this.#state === 'ended'
  }

  write (chunk: Buffer): void {
    let data = chunk
    while (data.length > 0 && this.#state !== 'ended') {
      if (this.#state === 'data' || this.#state === 'meta' || this.#state === 'padding') {
        const take = Math.min(this.#left, data.length)
        const piece = data.subarray(0, take)
        data = data.subarray(take)
        this.#left -= take
        if (this.#state === 'data') this.#handlers.data(piece)
        if (this.#state === 'meta') (this.#meta as { parts: Buffer[] }).parts.push(Buffer.from(piece))
        if (this.#left === 0) this.#endOfData()
        continue
      }
      // A header, or the block after a zero block: whole blocks only.
      const need = BLOCK - this.#pendingBytes
      const piece = data.subarray(0, need)
      data = data.subarray(piece.length)
      // A part of a block waits for the next chunk: a copy, the chunk is not ours to keep.
      this.#pending.push(piece.length < BLOCK ? Buffer.from(piece) : piece)
      this.#pendingBytes += piece.length
      if (this.#pendingBytes < BLOCK) return
      const block = this.#pending.length === 1 ? this.#pending[0] as Buffer : Buffer.concat(this.#pending)
      this.#pending = []
      this.#pendingBytes = 0
      this.#block(block)
    }
  }

  /** The archive's bytes are over: throws when it stopped inside an entry or a header. */
  end (): void {
    if (this.#state === 'ended') return
    if (this.#state !== 'header' && this.#state !== 'zero') throw new TarError('truncated', `ends inside entry ${this.entries + 1}: the archive was cut short`)
    if (this.#pendingBytes > 0) throw new TarError('truncated', `ends inside the header of entry ${this.entries + 1}: the archive was cut short`)
    if (Object.keys(this.#next).length > 0) throw new TarError('truncated', 'ends after a pax or GNU long-name header, before the entry it describes')
  }

  #endOfData (): void {
    if (this.#state === 'meta') {
      this.#finishMeta()
      this.#state = this.#padding > 0 ? 'padding' : 'header'
    } else if (this.#state === 'data') {
      this.#state = this.#padding > 0 ? 'padding' : 'header'
    } else {
      this.#state = 'header'
    }
    this.#left = this.#state === 'padding' ? this.#padding : 0
    this.#padding = 0
  }

  #block (block: Buffer): void {
    const zero = block.every(byte => byte === 0)
    if (this.#state === 'zero') {
      // Two zero blocks end the archive; one followed by anything else is not an end, nor a header.
      if (!zero) throw new TarError('format', `has a lone zero block before entry ${this.entries + 1}`)
      this.#state = 'ended'
      if (Object.keys(this.#next).length > 0) throw new TarError('truncated', 'ends after a pax or GNU long-name header, before the entry it describes')
      return
    }
    if (zero) {
      this.#state = 'zero'
      return
    }
    this.#header(block)
  }

  #header (block: Buffer): void {
    const where = `entry ${this.entries + 1}`
    const stored = numeric(block.subarray(148, 156))
    let unsigned = 0
    let signed = 0
    for (let i = 0; i < BLOCK; i++) {
      const byte = i >= 148 && i < 156 ? 0x20 : block[i] as number
      unsigned += byte
      signed += byte >= 0x80 ? byte - 256 : byte
    }
    if (stored === null || (stored !== unsigned && stored !== signed)) {
      throw new TarError('format', this.headers === 0 ? 'is not a tar archive' : `has a broken header at ${where} (its checksum does not match)`)
    }
    this.headers++
    const typeflag = String.fromCharCode(block[156] as number)
    const size = numeric(block.subarray(124, 136))
    const mode = numeric(block.subarray(100, 108))
    const mtime = numeric(block.subarray(136, 148))
    if (size === null || mode === null || mtime === null) throw new TarError('format', `has a broken header at ${where} (a size, mode or time that is not a number)`)
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META) throw new TarError('format', `has a pax or GNU long-name header larger than ${MAX_META} bytes at ${where}`)
      if ((typeflag === 'L' && this.#next.longName !== undefined) || (typeflag === 'K' && this.#next.longLink !== undefined)) {
        throw new TarError('format', `has two GNU long-name headers for ${where}`)
      }
      this.#meta = { type: typeflag, parts: [], size }
      this.#startData(size, 'meta')
      return
    }
    this.entries++
    const magic = block.subarray(257, 263).toString('latin1')
    // Only POSIX ustar has a prefix field; the old GNU format keeps times there, v7 nothing.
    const prefix = magic === 'ustar\0' ? cString(block.subarray(345, 500)) : Buffer.alloc(0)
    const plain = cString(block.subarray(0, 100))
    const next = this.#next
    this.#next = {}
    if (next.paxPath !== undefined && next.longName !== undefined) throw new TarError('format', `gives ${where} both a pax path and a GNU long name`)
    if (next.paxLinkpath !== undefined && next.longLink !== undefined) throw new TarError('format', `gives ${where} both a pax linkpath and a GNU long link name`)
    const name = next.paxPath ?? next.longName ?? (prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), plain]) : plain)
    let kind: EntryKind | null = KINDS[typeflag] ?? null
    // An old-style file entry whose name ends in "/" is a directory (as tar and Go's archive/tar read it).
    if (typeflag === '\0' && name[name.length - 1] === 0x2f) kind = 'directory'
    const length = next.paxSize ?? size
    const dataSize = HEADER_ONLY.has(typeflag) || kind === 'directory' ? 0 : length
    this.#handlers.entry({
      index: this.entries,
      name,
      kind,
      typeflag,
      size: dataSize,
      mode,
      mtime: next.paxMtime ?? mtime,
      linkname: kind === 'symlink' || kind === 'hardlink' ? next.paxLinkpath ?? next.longLink ?? cString(block.subarray(157, 257)) : Buffer.alloc(0)
    })
    this.#startData(dataSize, 'data')
  }

  #startData (size: number, state: 'meta' | 'data'): void {
    this.#padding = (BLOCK - (size % BLOCK)) % BLOCK
    if (size > 0) {
      this.#state = state
      this.#left = size
      return
    }
    if (state === 'meta') this.#finishMeta()
    this.#state = 'header'
  }

  #finishMeta (): void {
    const meta = this.#meta as { type: string, parts: Buffer[] }
    this.#meta = null
    const data = Buffer.concat(meta.parts)
    const where = `the header of entry ${this.entries + 1}`
    if (meta.type === 'L') this.#next.longName = Buffer.from(cString(data))
    if (meta.type === 'K') this.#next.longLink = Buffer.from(cString(data))
    if (meta.type !== 'x' && meta.type !== 'g') return
    const records = paxRecords(data, where)
    // A global header (git archive writes one with the commit) says nothing berth uses.
    if (meta.type === 'g') return
    for (const [key, value] of records) {
      if (key.startsWith('GNU.sparse.')) throw new TarError('format', `marks entry ${this.entries + 1} as a sparse file, which berth does not take`)
      if ((key === 'path' || key === 'linkpath') && value.includes(0)) throw new TarError('format', `has a pax ${key} with a NUL byte at entry ${this.entries + 1}`)
      if (key === 'path') this.#next.paxPath = value
      if (key === 'linkpath') this.#next.paxLinkpath = value
      if (key === 'size' || key === 'mtime') {
        const text = value.toString('latin1')
        const pattern = key === 'size' ? /^[0-9]{1,16}$/ : /^-?[0-9]{1,16}(\.[0-9]*)?$/
        if (!pattern.test(text) || !Number.isSafeInteger(Math.floor(Number(text)))) throw new TarError('format', `has a pax ${key} that is not a number at entry ${this.entries + 1}`)
        if (key === 'size') this.#next.paxSize = Number(text)
        else this.#next.paxMtime = Math.floor(Number(text))
      }
    }
  }
}

/** A header for the archive berth writes: ustar, with a pax header before it for what ustar cannot hold. */
export function tarHeader (entry: { name: Buffer, kind: EntryKind, size: number, mode: number, mtime: number, linkname?: Buffer }): Buffer {
  const name = entry.kind === 'directory' ? Buffer.concat([entry.name, Buffer.from('/')]) : entry.name
  const linkname = entry.linkname ?? Buffer.alloc(0)
  const records: Buffer[] = []
  if (name.length > 100) records.push(paxRecord('path', name))
  if (linkname.length > 100) records.push(paxRecord('linkpath', linkname))
  // 11 octal digits hold sizes and times below 8 GiB and year 2242.
  const big = 8 ** 11
  if (entry.size >= big) records.push(paxRecord('size', Buffer.from(String(entry.size))))
  const mtime = Math.max(0, entry.mtime)
  if (mtime >= big) records.push(paxRecord('mtime', Buffer.from(String(mtime))))
  const block = Buffer.alloc(BLOCK)
  name.copy(block, 0, 0, Math.min(100, name.length))
  octal(block, 100, 8, entry.mode)
  octal(block, 108, 8, 0)
  octal(block, 116, 8, 0)
  octal(block, 124, 12, entry.size < big ? entry.size : 0)
  octal(block, 136, 12, mtime < big ? mtime : 0)
  block.write({ file: '0', directory: '5', symlink: '2', hardlink: '1' }[entry.kind], 156, 1, 'latin1')
  linkname.copy(block, 157, 0, Math.min(100, linkname.length))
  block.write('ustar\u000000', 257, 8, 'latin1')
  checksum(block)
  if (records.length === 0) return block
  const pax = Buffer.concat(records)
  const paxHeader = Buffer.alloc(BLOCK)
  paxHeader.write('PaxHeader', 0, 'latin1')
  octal(paxHeader, 100, 8, 0o644)
  octal(paxHeader, 108, 8, 0)
  octal(paxHeader, 116, 8, 0)
  octal(paxHeader, 124, 12, pax.length)
  octal(paxHeader, 136, 12, 0)
  paxHeader.write('x', 156, 1, 'latin1')
  paxHeader.write('ustar\u000000', 257, 8, 'latin1')
  checksum(paxHeader)
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), block])
}

/** The zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK)

/** Zero bytes that fill an entry's data up to a whole block. */
export function padding (size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK
}

function octal (block: Buffer, offset: number, length: number, value: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'latin1')
}

function checksum (block: Buffer): void {
  block.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
}

function paxRecord (key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')])
  // The length counts its own digits: the smallest length whose digits make the record that long.
  let length = body.length + 1
  while (String(length).length + body.length !== length) length = String(length).length + body.length
  return Buffer.concat([Buffer.from(String(length), 'latin1'), body])
}
