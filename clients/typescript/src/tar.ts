// Tar archives, the form docker cp and a build context travel in: written as a Blob whose parts are the
// files themselves (fs.openAsBlob, so a large context is never held in memory), read as a stream.
// ustar headers, with a PAX record for a name or link longer than ustar holds; GNU long names read too.
import { lstat, mkdir, open, readlink, symlink, utimes, chmod, rm } from 'node:fs/promises'
import { openAsBlob } from 'node:fs'
import { dirname, join, normalize, sep } from 'node:path'

export interface TarEntry {
  /** The path in the archive, with `/` separators; a directory's ends without one. */
  name: string
  type: 'file' | 'directory' | 'symlink'
  mode: number
  mtime: Date
  size: number
  linkTarget?: string
}

const BLOCK = 512
const END = new Uint8Array(BLOCK * 2)
const TYPE_FLAG = { file: '0', directory: '5', symlink: '2' } as const

function octal (value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0'
}

/** One ustar header block; fields that do not fit are left to a PAX record before it. */
function header (entry: TarEntry, name: string, link: string): Uint8Array {
  const block = new Uint8Array(BLOCK)
  const put = (text: string, offset: number, length: number) => { block.set(Buffer.from(text, 'utf8').subarray(0, length), offset) }
  put(name, 0, 100)
  put(octal(entry.mode & 0o7777, 8), 100, 8)
  put(octal(0, 8), 108, 8)
  put(octal(0, 8), 116, 8)
  put(octal(entry.type === 'file' ? entry.size : 0, 12), 124, 12)
  put(octal(Math.max(0, Math.floor(entry.mtime.getTime() / 1000)), 12), 136, 12)
  put(' '.repeat(8), 148, 8)
  put(entry.type === 'file' ? TYPE_FLAG.file : TYPE_FLAG[entry.type], 156, 1)
  put(link, 157, 100)
  put('ustar\0', 257, 6)
  put('00', 263, 2)
  let sum = 0
  for (const byte of block) sum += byte
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8)
  return block
}

/** A PAX extended header carrying the long name and link: `<length> path=<name>\n`. */
function paxRecords (records: Record<string, string>): Uint8Array[] {
  const body = Object.entries(records).map(([key, value]) => {
    const text = ` ${key}=${value}\n`
    let length = Buffer.byteLength(text) + 1
    while (String(length).length + Buffer.byteLength(text) !== length) length = String(length).length + Buffer.byteLength(text)
    return `${length}${text}`
  }).join('')
  const data = Buffer.from(body, 'utf8')
  const paxHeader = header({ name: 'PaxHeader', type: 'file', mode: 0o644, mtime: new Date(0), size: data.length }, 'PaxHeader', '')
  paxHeader[156] = 'x'.charCodeAt(0)
  // The type flag changed after the checksum: count it again.
  paxHeader.set(Buffer.from(' '.repeat(8)), 148)
  let sum = 0
  for (const byte of paxHeader) sum += byte
  paxHeader.set(Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `), 148)
  return [paxHeader, data, new Uint8Array(padding(data.length))]
}

function padding (size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK
}

/** The blocks that announce an entry: a PAX record when its name or link is too long for ustar. */
export function entryHeader (entry: TarEntry): Uint8Array[] {
  const name = entry.type === 'directory' ? `${entry.name}/` : entry.name
  const link = entry.linkTarget ?? ''
  const long: Record<string, string> = {}
  if (Buffer.byteLength(name) > 100) long.path = name
  if (Buffer.byteLength(link) > 100) long.linkpath = link
  return [...(Object.keys(long).length > 0 ? paxRecords(long) : []), header(entry, name, link)]
}

/** A tar of `entries`, each file's bytes read from `source(entry)` (a path on disk) only when the Blob is. */
export async function tarBlob (entries: Array<TarEntry & { source?: string }>): Promise<Blob> {
  const parts: Array<Uint8Array | Blob> = []
  for (const entry of entries) {
    parts.push(...entryHeader(entry) as Array<Uint8Array | Blob>)
    if (entry.type === 'file' && entry.size > 0) {
      parts.push(entry.source ? await openAsBlob(entry.source) : new Blob([]))
      parts.push(new Uint8Array(padding(entry.size)))
    }
  }
  parts.push(END)
  return new Blob(parts)
}

/** What is at `path` on disk, as an entry named `name`; null for what tar does not carry (sockets, devices). */
export async function entryOf (path: string, name: string): Promise<(TarEntry & { source: string }) | null> {
  const info = await lstat(path)
  const base = { name, mode: info.mode & 0o7777, mtime: info.mtime, size: 0, source: path }
  if (info.isDirectory()) return { ...base, type: 'directory' }
  if (info.isSymbolicLink()) return { ...base, type: 'symlink', linkTarget: await readlink(path) }
  if (info.isFile()) return { ...base, type: 'file', size: info.size }
  return null
}

/** Reads exactly what is asked for from a stream of chunks. */
class Reader {
  #chunks: AsyncIterator<Uint8Array>
  #buffer = Buffer.alloc(0)
  constructor (source: AsyncIterable<Uint8Array>) {
    this.#chunks = source[Symbol.asyncIterator]()
  }

  /** `length` bytes, or fewer when the stream ends first. */
  async read (length: number): Promise<Buffer> {
    while (this.#buffer.length < length) {
      const { value, done } = await this.#chunks.next()
      if (done === true) break
      this.#buffer = this.#buffer.length === 0 ? Buffer.from(value) : Buffer.concat([this.#buffer, value])
    }
    const out = this.#buffer.subarray(0, length)
    this.#buffer = this.#buffer.subarray(out.length)
    return out
  }

  /** Passes `length` bytes on in pieces, as they come. */
  async * pieces (length: number): AsyncGenerator<Buffer> {
    let left = length
    while (left > 0) {
      if (this.#buffer.length === 0) {
        const { value, done } = await this.#chunks.next()
        if (done === true) throw new Error('the archive ended in the middle of a file')
        this.#buffer = Buffer.from(value)
      }
      const piece = this.#buffer.subarray(0, left)
      this.#buffer = this.#buffer.subarray(piece.length)
      left -= piece.length
      yield piece
    }
  }
}

function text (block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length)
  const nul = field.indexOf(0)
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8')
}

function number (block: Buffer, offset: number, length: number): number {
  const value = text(block, offset, length).trim()
  return value === '' ? 0 : parseInt(value, 8)
}

function paxValues (data: Buffer): Record<string, string> {
  const values: Record<string, string> = {}
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    if (space === -1) break
    const length = Number(data.subarray(at, space).toString('utf8'))
    if (!Number.isInteger(length) || length <= 0) break
    const record = data.subarray(space + 1, at + length - 1).toString('utf8')
    const eq = record.indexOf('=')
    if (eq > 0) values[record.slice(0, eq)] = record.slice(eq + 1)
    at += length
  }
  return values
}

/** The entries of a tar stream, each with its content (to be read, or skipped, before the next). */
export async function * readTar (source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry & { content: AsyncGenerator<Buffer> }> {
  const reader = new Reader(source)
  let long: Record<string, string> = {}
  while (true) {
    const block = await reader.read(BLOCK)
    if (block.length < BLOCK || block.every(byte => byte === 0)) return
    const flag = String.fromCharCode(block[156] ?? 0)
    const size = number(block, 124, 12)
    if (flag === 'x' || flag === 'L' || flag === 'K' || flag === 'g') {
      const data = await reader.read(size)
      await reader.read(padding(size))
      if (flag === 'x') long = { ...long, ...paxValues(data) }
      else if (flag === 'L') long.path = text(data, 0, data.length)
      else if (flag === 'K') long.linkpath = text(data, 0, data.length)
      continue
    }
    const prefix = text(block, 345, 155)
    const name = long.path ?? (prefix ? `${prefix}/${text(block, 0, 100)}` : text(block, 0, 100))
    const linkTarget = long.linkpath ?? text(block, 157, 100)
    long = {}
    const type = flag === '5' ? 'directory' : flag === '2' ? 'symlink' : flag === '0' || flag === '\0' || flag === '7' ? 'file' : null
    const content = reader.pieces(size)
    const entry = { name: name.replace(/\/+$/, ''), mode: number(block, 100, 8), mtime: new Date(number(block, 136, 12) * 1000), size, content }
    if (type !== null) yield { ...entry, type, ...(type === 'symlink' ? { linkTarget } : {}) }
    // Whatever the consumer left unread (or an entry type it does not know, such as a hard link) is skipped.
    while (!(await content.next()).done) { /* skipped */ }
    await reader.read(padding(size))
  }
}

/**
 * Unpacks a tar stream under `directory`, the first path segment of each name replaced by `rename`
 * when given (docker cp to a path that does not exist yet). Names that would leave `directory` stop it.
 */
export async function extractTar (source: AsyncIterable<Uint8Array>, directory: string, rename?: string): Promise<number> {
  let count = 0
  for await (const entry of readTar(source)) {
    const segments = entry.name.split('/').filter(segment => segment !== '' && segment !== '.')
    if (rename !== undefined && segments.length > 0) segments[0] = rename
    if (segments.length === 0) continue
    const target = normalize(join(directory, ...segments))
    if (segments.includes('..') || !(target === directory || target.startsWith(directory.endsWith(sep) ? directory : directory + sep))) {
      throw new Error(`the archive's entry ${JSON.stringify(entry.name)} lies outside ${directory}`)
    }
    await mkdir(dirname(target), { recursive: true })
    if (entry.type === 'directory') {
      await mkdir(target, { recursive: true })
      await chmod(target, entry.mode & 0o7777)
    } else if (entry.type === 'symlink') {
      await rm(target, { force: true })
      await symlink(entry.linkTarget ?? '', target)
    } else {
      const file = await open(target, 'w', entry.mode & 0o7777)
      try {
        for await (const piece of entry.content) await file.write(piece)
      } finally {
        await file.close()
      }
      await chmod(target, entry.mode & 0o7777)
      await utimes(target, entry.mtime, entry.mtime)
    }
    count++
  }
  return count
}
