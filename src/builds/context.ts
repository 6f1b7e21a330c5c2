// Receives a build context (a tar, or a gzip-compressed tar) from a request body: spooled to a
// temporary file within the size limit, its Dockerfile read on the way, so policy can check the
// build before anything reaches the engine. The context is never held in memory.
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { createGunzip, type Gunzip } from 'node:zlib'
import { BerthError } from '../errors.ts'

/** A Dockerfile larger than this is not one: it is refused rather than read into memory. */
export const MAX_DOCKERFILE = 1024 * 1024

export interface ReceivedContext {
  /** The Dockerfile's text. */
  dockerfile: string
  /** Bytes received (as sent, compressed or not). */
  size: number
  /** Opens the spooled context for the engine. */
  open: () => Readable
  /** Removes the spooled context. */
  remove: () => Promise<void>
}

export function tooLarge (limit: number): BerthError {
  return new BerthError('payload_too_large', `the build context is larger than the limit of ${limit} bytes (BERTH_BUILD_CONTEXT_LIMIT)`, { limit })
}

export function invalidContext (detail: string): BerthError {
  return new BerthError('validation_failed', `the build context ${detail}`, { errors: [{ location: 'body', path: '', message: detail }] })
}

/** The path a tar entry names, as the builder resolves a Dockerfile path: no leading "./" or "/". */
export function normaliseEntry (path: string): string {
  return path.split('/').filter(segment => segment !== '' && segment !== '.').join('/')
}

/**
 * A ustar header for a regular file of `size` bytes (a pax record first when the path is longer than
 * a header holds), and how many zero bytes pad its content to a block. Fixed mode, owner and time:
 * the same files make the same context.
 */
export function tarHeader (path: string, size: number): { header: Buffer, padding: number } {
  const block = (name: string, length: number, type: string): Buffer => {
    const header = Buffer.alloc(512)
    header.write(name, 0, 100, 'utf8')
    header.write('0000644\0', 100, 8, 'ascii')
    header.write('0000000\0', 108, 8, 'ascii')
    header.write('0000000\0', 116, 8, 'ascii')
    header.write(length.toString(8).padStart(11, '0') + '\0', 124, 12, 'ascii')
    header.write('00000000000\0', 136, 12, 'ascii')
    header.write('        ', 148, 8, 'ascii')
    header.write(type, 156, 1, 'ascii')
    header.write('ustar\0', 257, 6, 'ascii')
    header.write('00', 263, 2, 'ascii')
    let sum = 0
    for (const byte of header) sum += byte
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
    return header
  }
  const pad = (length: number): number => (512 - (length % 512)) % 512
  if (Buffer.byteLength(path) <= 100) return { header: block(path, size, '0'), padding: pad(size) }
  // pax: "<length> path=<path>\n", the length counting itself.
  const text = ` path=${path}\n`
  let length = Buffer.byteLength(text) + 1
  while (String(length).length + Buffer.byteLength(text) !== length) length = String(length).length + Buffer.byteLength(text)
  const record = Buffer.from(`${length}${text}`)
  return { header: Buffer.concat([block('PaxHeader', record.length, 'x'), record, Buffer.alloc(pad(record.length)), block(path.slice(0, 100), size, '0')]), padding: pad(size) }
}

function octal (field: Buffer): number {
  // Sizes past 8 GiB are base-256: the top bit of the first byte is set.
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = 0
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] as number)
    return value
  }
  const text = field.toString('ascii').replace(/\0.*$/s, '').trim()
  return text === '' ? 0 : parseInt(text, 8)
}

/**
 * Walks tar headers as bytes go by, keeping only the wanted file's content. Knows ustar names with
 * prefixes, GNU long names and pax `path` records, which is what tar, docker and the libraries write.
 */
export class TarScanner {
  readonly #wanted: string
  #buffer: Buffer = Buffer.alloc(0)
  /** Bytes of entry data (and padding) still to pass before the next header. */
  #skip = 0
  #collect: { kind: 'file' | 'longname' | 'pax', size: number, parts: Buffer[], got: number } | null = null
  #nextName: string | null = null
  #zeroBlocks = 0
  found: string | null = null
  bytes = 0
  entries = 0
  ended = false

  constructor (wanted: string) {
    this.#wanted = normaliseEntry(wanted)
  }

  write (chunk: Buffer): void {
    this.bytes += chunk.length
    if (this.ended) return
    let data = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, chunk]) : chunk
    this.#buffer = Buffer.alloc(0)
    while (data.length > 0 && !this.ended) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, data.length)
        if (this.#collect !== null && this.#collect.got < this.#collect.size) {
          const part = data.subarray(0, Math.min(take, this.#collect.size - this.#collect.got))
          this.#collect.parts.push(Buffer.from(part))
          this.#collect.got += part.length
        }
        this.#skip -= take
        data = data.subarray(take)
        if (this.#skip === 0 && this.#collect !== null) this.#finishEntry()
        continue
      }
      if (data.length < 512) {
        this.#buffer = Buffer.from(data)
        return
      }
      this.#header(data.subarray(0, 512))
      data = data.subarray(512)
    }
  }

  #header (block: Buffer): void {
    if (block.every(byte => byte === 0)) {
      if (++this.#zeroBlocks >= 2) this.ended = true
      return
    }
    this.#zeroBlocks = 0
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : block[i] as number
    if (sum !== octal(block.subarray(148, 156))) throw invalidContext('is not a tar archive (send application/x-tar, optionally gzip-compressed)')
    const type = String.fromCharCode(block[156] as number)
    const size = octal(block.subarray(124, 136))
    const ustar = block.subarray(257, 262).toString('ascii') === 'ustar'
    const prefix = ustar ? block.subarray(345, 500).toString('utf8').replace(/\0.*$/s, '') : ''
    const plain = block.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '')
    const name = this.#nextName ?? (prefix === '' ? plain : `${prefix}/${plain}`)
    this.#skip = Math.ceil(size / 512) * 512
    if (type === 'L' || type === 'x') {
      if (size > 64 * 1024) throw invalidContext('has a tar header larger than 64 KiB')
      this.#collect = { kind: type === 'L' ? 'longname' : 'pax', size, parts: [], got: 0 }
      if (size === 0) this.#finishEntry()
      return
    }
    this.#nextName = null
    this.entries++
    if ((type === '0' || type === '\0' || type === '7') && normaliseEntry(name) === this.#wanted) {
      if (size > MAX_DOCKERFILE) throw invalidContext(`has a Dockerfile larger than ${MAX_DOCKERFILE} bytes`)
      this.#collect = { kind: 'file', size, parts: [], got: 0 }
      if (size === 0) this.#finishEntry()
    }
  }

  #finishEntry (): void {
    const entry = this.#collect
    this.#collect = null
    if (entry === null) return
    const text = Buffer.concat(entry.parts).toString('utf8')
    if (entry.kind === 'file') this.found = text
    else if (entry.kind === 'longname') this.#nextName = text.replace(/\0.*$/s, '')
    else {
      // pax records: "<length> <key>=<value>\n"
      for (const record of text.split('\n')) {
        const match = /^\d+ path=(.*)$/s.exec(record)
        if (match !== null) this.#nextName = match[1] as string
      }
    }
  }
}

/**
 * Spools the request body to a temporary file, within `limit` bytes both as sent and unpacked, and
 * answers the context with its Dockerfile. Nothing is left on disk when it fails.
 */
export async function receiveContext (body: Readable, options: { limit: number, dockerfile: string, signal?: AbortSignal }): Promise<ReceivedContext> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-build-'))
  const path = join(dir, 'context.tar')
  const remove = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
  const scanner = new TarScanner(options.dockerfile)
  const file = createWriteStream(path)
  let gunzip: Gunzip | null = null
  let size = 0
  let first = true
  try {
    await new Promise<void>((resolve, reject) => {
      // The body is left unread, not destroyed: the answer (a 413, say) still has to reach the client,
      // and the connection closes after it (app.ts), so what the client still sends goes nowhere.
      const fail = (error: unknown): void => {
        body.off('data', onData)
        body.pause()
        gunzip?.destroy()
        reject(error)
      }
      const feed = (chunk: Buffer): void => {
        try {
          scanner.write(chunk)
          if (scanner.bytes > options.limit) fail(tooLarge(options.limit))
        } catch (error) {
          fail(error)
        }
      }
      const onData = (chunk: Buffer): void => {
        if (first) {
          first = false
          // gzip's magic number: the scanner reads the unpacked bytes; the engine unpacks by itself.
          if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
            gunzip = createGunzip()
            gunzip.on('data', feed)
            gunzip.on('error', () => fail(invalidContext('is not valid gzip')))
          }
        }
        size += chunk.length
        if (size > options.limit) return fail(tooLarge(options.limit))
        if (gunzip === null) feed(chunk)
        else gunzip.write(chunk)
        if (!file.write(chunk)) {
          body.pause()
          file.once('drain', () => body.resume())
        }
      }
      options.signal?.addEventListener('abort', () => fail(options.signal?.reason), { once: true })
      if (options.signal?.aborted) return fail(options.signal.reason)
      body.on('data', onData)
      body.once('error', fail)
      const stopped = (): void => fail(new BerthError('validation_failed', 'the client stopped sending the build context'))
      body.once('aborted', stopped)
      if (body.readableAborted) stopped()
      body.once('end', () => {
        const done = (): void => { file.end((error?: Error | null) => error ? fail(error) : resolve()) }
        if (gunzip === null) return done()
        gunzip.once('end', done)
        gunzip.end()
      })
      file.once('error', fail)
    })
  } catch (error) {
    file.destroy()
    await remove()
    throw error
  }
  if (size === 0) {
    await remove()
    throw invalidContext('is empty: send a tar of the build context as the body')
  }
  if (scanner.found === null) {
    await remove()
    throw invalidContext(scanner.entries === 0 ? 'is not a tar archive with files (send application/x-tar, optionally gzip-compressed)' : `has no ${normaliseEntry(options.dockerfile)} (the dockerfile parameter names its path in the context)`)
  }
  return { dockerfile: scanner.found, size, open: () => createReadStream(path), remove }
}
