// Receives a build context sent as a tar (or a gzip-compressed tar): read once, as it arrives, within
// the size limit, into berth's own index of it (context-set.ts) and a spool file of its data — never
// held in memory. What the engine then gets is berth's tar of that index, so the Dockerfile policy
// checked is the one the engine reads, whatever tricks the client's tar holds.
import { once } from 'node:events'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { createGunzip, type Gunzip } from 'node:zlib'
import { BerthError } from '../errors.ts'
import { ContextSet, contextError, quote, type ContextLimits } from './context-set.ts'
import { TarError, TarReader, type TarHeader } from './tar.ts'

export { MAX_DOCKERFILE } from './context-set.ts'

export interface ReceivedContext {
  /** The Dockerfile's text. */
  dockerfile: string
  /** Its cleaned path in the context, which the engine is told to read. */
  dockerfilePath: string
  /** Bytes received (as sent, compressed or not). */
  size: number
  /** Entries berth sends the engine. */
  entries: number
  /** Opens berth's tar of the context, for the engine. */
  open: () => Readable
  /** Removes the spooled context. */
  remove: () => Promise<void>
}

export interface ReceiveOptions {
  /** Bytes the context may have, as sent and unpacked. */
  limit: number
  /** The Dockerfile's path in the context, as the client gave it. */
  dockerfile: string
  signal?: AbortSignal
  /** Entries and path bytes a context may have; the defaults unless a test asks for less. */
  limits?: ContextLimits
}

export function tooLarge (limit: number): BerthError {
  return new BerthError('payload_too_large', `the build context is larger than the limit of ${limit} bytes (BERTH_BUILD_CONTEXT_LIMIT)`, { limit })
}

export function stoppedSending (): BerthError {
  return new BerthError('validation_failed', 'the client stopped sending the build context')
}

const TYPE_NAMES: Record<string, string> = {
  3: 'a character device',
  4: 'a block device',
  6: 'a FIFO',
  S: 'a GNU sparse file',
  V: 'a volume label',
  D: 'a GNU directory dump',
  M: 'a multi-volume continuation',
  N: 'an old GNU long-name entry'
}

function ordinal (n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : ['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'
  return `${n}${suffix}`
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** A name from the archive as text: UTF-8, exactly (so berth can send the engine the very same bytes). */
function decode (bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw contextError('name', `the build context's ${what} is not UTF-8 (${quote(bytes.toString('utf8'))}): berth reads names as UTF-8 and sends them on as they are`, bytes.toString('utf8'))
  }
}

/**
 * Reads the request body as a tar into a spooled, checked context, within `limit` bytes both as sent
 * and unpacked. Nothing is left on disk when it fails.
 */
export async function receiveContext (body: Readable, options: ReceiveOptions): Promise<ReceivedContext> {
  const { dir, spool, file } = await openSpool()
  const set = new ContextSet(spool, options.limits)
  const remove = async (): Promise<void> => {
    set.close()
    await rm(dir, { recursive: true, force: true })
  }
  let written = 0
  const reader = new TarReader({
    entry: (header: TarHeader) => {
      const name = decode(header.name, `${ordinal(header.index)} entry's name`)
      if (header.kind === null) {
        const what = TYPE_NAMES[header.typeflag] ?? `of tar type ${JSON.stringify(header.typeflag)}`
        throw contextError('entry_type', `the build context has ${quote(name)}, ${what}: berth sends the engine only regular files, directories and links`, name)
      }
      set.add({
        name,
        kind: header.kind,
        mode: header.mode,
        mtime: header.mtime,
        size: header.size,
        offset: written,
        ...(header.linkname.length === 0 ? {} : { linkname: decode(header.linkname, `link ${quote(name)}'s target`) })
      })
    },
    data: (chunk: Buffer) => {
      file.write(chunk)
      written += chunk.length
    }
  })
  const readError = (error: unknown): unknown => {
    if (!(error instanceof TarError)) return error
    if (reader.headers === 0) return contextError('format', 'the build context is not a tar archive (send application/x-tar, optionally gzip-compressed)')
    return contextError(error.reason, `the build context ${error.message}`)
  }
  let gunzip: Gunzip | null = null
  let size = 0
  let unpacked = 0
  let first = true
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false
      // The body is left unread, not destroyed: the answer (a 413, say) still has to reach the client,
      // and the connection closes after it (app.ts), so what the client still sends goes nowhere.
      const fail = (error: unknown): void => {
        if (failed) return
        failed = true
        body.off('data', onData)
        body.pause()
        gunzip?.destroy()
        reject(error)
      }
      let draining = false
      const feed = (chunk: Buffer): void => {
        if (failed) return
        unpacked += chunk.length
        if (unpacked > options.limit) return fail(tooLarge(options.limit))
        try {
          reader.write(chunk)
        } catch (error) {
          return fail(readError(error))
        }
        // The spool is slower than the network: the source waits for it, nothing piles up in memory.
        const source = gunzip ?? body
        if (file.writableNeedDrain && !draining) {
          draining = true
          source.pause()
          file.once('drain', () => {
            draining = false
            if (!failed) source.resume()
          })
        }
      }
      const onData = (chunk: Buffer): void => {
        if (first) {
          first = false
          if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
            gunzip = createGunzip()
            gunzip.on('data', feed)
            gunzip.on('error', () => fail(contextError('format', 'the build context is not valid gzip')))
          } else if (chunk.subarray(0, 3).toString('latin1') === 'BZh' || chunk.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
            return fail(contextError('format', 'the build context is compressed with bzip2 or xz: send a tar, or a gzip-compressed tar'))
          }
        }
        size += chunk.length
        if (size > options.limit) return fail(tooLarge(options.limit))
        const unzip = gunzip as Gunzip | null
        if (unzip === null) return feed(chunk)
        if (!unzip.write(chunk)) {
          body.pause()
          unzip.once('drain', () => { if (!failed) body.resume() })
        }
      }
      options.signal?.addEventListener('abort', () => fail(options.signal?.reason), { once: true })
      if (options.signal?.aborted) return fail(options.signal.reason)
      body.on('data', onData)
      body.once('error', fail)
      body.once('aborted', () => fail(stoppedSending()))
      if (body.readableAborted) fail(stoppedSending())
      body.once('end', () => {
        const done = (): void => {
          if (failed) return
          try {
            reader.end()
          } catch (error) {
            return fail(readError(error))
          }
          file.end((error?: Error | null) => error ? fail(error) : resolve())
        }
        const unzip = gunzip as Gunzip | null
        if (unzip === null) return done()
        unzip.once('end', done)
        unzip.end()
      })
      file.on('error', fail)
    })
    if (size === 0) throw contextError('format', 'the build context is empty: send a tar of the build context as the body')
    if (reader.entries === 0) throw contextError('format', 'the build context is not a tar archive with files (send application/x-tar, optionally gzip-compressed)')
    const sealed = await set.seal(options.dockerfile)
    return { ...sealed, size, open: () => set.open(), remove }
  } catch (error) {
    await closeSpool(file)
    await remove()
    throw error
  }
}

/**
 * A new spool file in a directory of its own, open before anything is written or removed: a refusal
 * that comes at once must not remove the directory under an open still under way (which then fails
 * with nobody listening).
 */
export async function openSpool (): Promise<{ dir: string, spool: string, file: WriteStream }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-build-'))
  const spool = join(dir, 'data')
  const file = createWriteStream(spool, { mode: 0o600 })
  try {
    await once(file, 'open')
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  return { dir, spool, file }
}

/** Stops writing the spool and resolves once its descriptor is closed. */
export async function closeSpool (file: WriteStream): Promise<void> {
  if (file.closed) return
  const closed = once(file, 'close').catch(() => {})
  file.destroy()
  await closed
}
