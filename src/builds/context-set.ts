// The build context as berth sends it to the engine: every path once and cleaned, only regular files,
// directories and links, nothing below a file or a link, the Dockerfile and .dockerignore regular
// files — all checked on the whole context before a byte goes to the engine, which then gets berth's
// own tar of exactly these entries, never the client's. What the client sent is read once (context.ts
// for a tar, multipart.ts for a form); the file data waits in a spool file, the index in memory.
import { open } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { BerthError } from '../errors.ts'
import { TAR_END, padding, tarHeader, type EntryKind } from './tar.ts'

/** A Dockerfile larger than this is not one: it is refused rather than read into memory. */
export const MAX_DOCKERFILE = 1024 * 1024
/** The engine reads .dockerignore a line at a time, each at most this long. */
export const MAX_DOCKERIGNORE_LINE = 65535
/** The longest name (bytes): the engine unpacks the context below a directory of its own, and Linux paths end at 4096. */
export const MAX_NAME = 4000
/** The longest segment of a name, in bytes (Linux's NAME_MAX). */
export const MAX_SEGMENT = 255

/** What berth reads from the spool at a time, and what it hands the engine at a time. */
const READ_AHEAD = 1024 * 1024
const CHUNK = 64 * 1024
const ZEROS = Buffer.alloc(512)

export interface ContextLimits {
  /** Entries a context may have. */
  entries: number
  /** Bytes of all its paths together: the index berth keeps in memory. */
  pathBytes: number
}

export const DEFAULT_CONTEXT_LIMITS: ContextLimits = { entries: 250_000, pathBytes: 32 * 1024 ** 2 }

export type ContextProblem =
  | 'format' | 'truncated' | 'name' | 'duplicate' | 'entry_type' | 'parent_not_directory' | 'link' | 'dockerfile' | 'dockerignore'

/** The client's context is not one berth sends on: `reason` says what kind of wrong, `entry` where. */
export function contextError (reason: ContextProblem, detail: string, entry?: string): BerthError {
  return new BerthError('invalid_build_context', detail, { reason, ...(entry === undefined ? {} : { entry: shorten(entry) }) })
}

function shorten (text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

/** A path as a message shows it: quoted, escaped, and cut when long. */
export function quote (path: string): string {
  return JSON.stringify(shorten(path))
}

const KIND_NAMES: Record<EntryKind, string> = { file: 'regular file', directory: 'directory', symlink: 'symbolic link', hardlink: 'hard link' }

/**
 * The path a name gives, as the engine would resolve it: no leading "/", no "." or empty segments.
 * A ".." segment is refused rather than resolved: it is how one entry pretends to be another.
 * `what` is what a refusal says the name is ("the build context's entry \"x\"").
 */
export function cleanPath (name: string, what: string, reason: ContextProblem = 'name'): string {
  if (name.includes('\0')) throw contextError(reason, `${what} has a NUL byte`, name)
  const segments = name.split('/').filter(segment => segment !== '' && segment !== '.')
  if (segments.includes('..')) throw contextError(reason, `${what} has a ".." segment: names are plain paths inside the context`, name)
  const path = segments.join('/')
  if (Buffer.byteLength(path) > MAX_NAME) throw contextError('name', `${what} is longer than ${MAX_NAME} bytes`, name)
  if (segments.some(segment => Buffer.byteLength(segment) > MAX_SEGMENT)) throw contextError('name', `${what} has a segment longer than ${MAX_SEGMENT} bytes`, name)
  return path
}

export interface NewEntry {
  /** The name as the client gave it. */
  name: string
  kind: EntryKind
  mode: number
  mtime: number
  /** A file's bytes in the spool file. */
  size: number
  offset: number
  /** A link's target as the client gave it. */
  linkname?: string
}

interface Entry {
  path: string
  kind: EntryKind
  mode: number
  mtime: number
  size: number
  offset: number
  /** A symlink's target as given; a hard link's as a cleaned path of an earlier file. */
  target: string | null
}

export interface SealedContext {
  /** The Dockerfile's text. */
  dockerfile: string
  /** Its cleaned path in the context: what the engine is told to read. */
  dockerfilePath: string
  entries: number
}

export class ContextSet {
  readonly #spool: string
  readonly #limits: ContextLimits
  readonly #entries: Entry[] = []
  readonly #byPath = new Map<string, Entry>()
  readonly #opened = new Set<Readable>()
  #pathBytes = 0

  /** `spool` is the file that holds the data of the files added, at the offsets they give. */
  constructor (spool: string, limits: ContextLimits = DEFAULT_CONTEXT_LIMITS) {
    this.#spool = spool
    this.#limits = limits
  }

  /** Takes the next entry, refusing what cannot be one: a bad name, a path twice, a link to what it may not name. */
  add (entry: NewEntry): void {
    const what = `the build context's entry ${quote(entry.name)}`
    const path = cleanPath(entry.name, what)
    if (path === '') {
      // "./", as tar -c . writes first: the context's root, which is there anyway.
      if (entry.kind === 'directory') return
      throw contextError('name', `${what} names the context's root, which is a directory, as a ${KIND_NAMES[entry.kind]}`, entry.name)
    }
    if (entry.kind !== 'directory' && entry.name.endsWith('/')) throw contextError('name', `${what} ends in "/" but is a ${KIND_NAMES[entry.kind]}`, entry.name)
    const earlier = this.#byPath.get(path)
    if (earlier !== undefined) {
      // A directory named twice is one directory (tar c dir dir/sub writes dir/sub twice); the later mode counts.
      if (earlier.kind === 'directory' && entry.kind === 'directory') {
        earlier.mode = entry.mode
        earlier.mtime = entry.mtime
        return
      }
      throw contextError('duplicate', `the build context has ${quote(path)} twice (a ${KIND_NAMES[earlier.kind]}, then a ${KIND_NAMES[entry.kind]}): each path may appear once`, path)
    }
    if (this.#entries.length >= this.#limits.entries) {
      throw new BerthError('payload_too_large', `the build context has more than ${this.#limits.entries} entries`, { entries: this.#limits.entries })
    }
    this.#pathBytes += Buffer.byteLength(path)
    if (this.#pathBytes > this.#limits.pathBytes) {
      throw new BerthError('payload_too_large', `the build context's paths are longer than ${this.#limits.pathBytes} bytes together`, { pathBytes: this.#limits.pathBytes })
    }
    const added: Entry = { path, kind: entry.kind, mode: entry.mode, mtime: entry.mtime, size: 0, offset: 0, target: null }
    if (entry.kind === 'file') {
      added.size = entry.size
      added.offset = entry.offset
    }
    if (entry.kind === 'symlink') added.target = this.#symlinkTarget(path, entry.linkname ?? '')
    if (entry.kind === 'hardlink') {
      const target = this.#hardLinkTarget(path, entry.linkname ?? '')
      added.target = target.path
      // The engine sets a hard link's mode and time on the file it links to: they are the file's.
      added.mode = target.mode
      added.mtime = target.mtime
    }
    this.#entries.push(added)
    this.#byPath.set(path, added)
  }

  /**
   * Checks the context as a whole and reads its Dockerfile: nothing may be below a file or a link
   * (the engine would write through the link, or fail), the Dockerfile and .dockerignore must be
   * regular files (what berth reads is then what the engine reads), and .dockerignore must be
   * readable by the engine.
   */
  async seal (dockerfile: string): Promise<SealedContext> {
    const below = new Map<string, string>()
    for (const entry of this.#entries) {
      for (let end = entry.path.lastIndexOf('/'); end > 0; end = entry.path.lastIndexOf('/', end - 1)) {
        const parent = entry.path.slice(0, end)
        if (below.has(parent)) break
        below.set(parent, entry.path)
      }
    }
    for (const entry of this.#entries) {
      const child = below.get(entry.path)
      if (entry.kind !== 'directory' && child !== undefined) {
        throw contextError('parent_not_directory', `the build context has ${quote(child)} below ${quote(entry.path)}, which is a ${KIND_NAMES[entry.kind]}: entries are written only into directories, never through a link`, child)
      }
    }
    const path = cleanPath(dockerfile, `the dockerfile parameter ${quote(dockerfile)}`)
    const found = this.#byPath.get(path)
    if (found === undefined) throw contextError('dockerfile', `the build context has no ${quote(path)} (the dockerfile parameter names the Dockerfile's path in the context)`, path)
    if (found.kind !== 'file') throw contextError('dockerfile', `the build context has ${quote(path)} as a ${KIND_NAMES[found.kind]}: the Dockerfile must be a regular file (name the file itself with the dockerfile parameter)`, path)
    if (found.size > MAX_DOCKERFILE) throw contextError('dockerfile', `the build context has a Dockerfile larger than ${MAX_DOCKERFILE} bytes`, path)
    const ignore = this.#byPath.get('.dockerignore')
    if (ignore !== undefined) {
      if (ignore.kind !== 'file') throw contextError('dockerignore', `the build context has .dockerignore as a ${KIND_NAMES[ignore.kind]}: it must be a regular file`, '.dockerignore')
      if (ignore.size > MAX_DOCKERFILE) throw contextError('dockerignore', `the build context has a .dockerignore larger than ${MAX_DOCKERFILE} bytes`, '.dockerignore')
      const text = await this.#read(ignore)
      let start = 0
      while (start <= text.length) {
        const end = text.indexOf(0x0a, start)
        const stop = end === -1 ? text.length : end
        if (stop - start > MAX_DOCKERIGNORE_LINE) throw contextError('dockerignore', `the build context has a .dockerignore line longer than ${MAX_DOCKERIGNORE_LINE} bytes, which the engine cannot read`, '.dockerignore')
        start = stop + 1
      }
    }
    return { dockerfile: (await this.#read(found)).toString('utf8'), dockerfilePath: path, entries: this.#entries.length }
  }

  /** berth's tar of the entries, in the order they came: a fresh read of the spool each time. */
  open (): Readable {
    const stream = Readable.from(this.#tar(), { objectMode: false })
    this.#opened.add(stream)
    stream.once('close', () => this.#opened.delete(stream))
    return stream
  }

  /**
   * Ends the reads still open. The engine's request stops reading a context it no longer wants (a
   * cancelled build) without ending it, which would keep its file open until garbage collection.
   */
  close (): void {
    for (const stream of this.#opened) stream.destroy()
  }

  async * #tar (): AsyncGenerator<Buffer> {
    const file = await open(this.#spool, 'r')
    try {
      // The files' data lies in the spool in the order of the entries: read ahead, a window at a time.
      let window = Buffer.alloc(0)
      let windowAt = 0
      const slice = async (offset: number, length: number): Promise<Buffer> => {
        if (offset < windowAt || offset >= windowAt + window.length) {
          const buffer = Buffer.allocUnsafe(READ_AHEAD)
          const { bytesRead } = await file.read(buffer, 0, READ_AHEAD, offset)
          if (bytesRead === 0) throw new Error('the spooled build context ends before the data of its entries')
          window = buffer.subarray(0, bytesRead)
          windowAt = offset
        }
        return window.subarray(offset - windowAt, Math.min(window.length, offset - windowAt + length))
      }
      let batch: Buffer[] = []
      let batched = 0
      for (const entry of this.#entries) {
        // Only the permission bits and the sticky bit: no setuid or setgid, no owners.
        const mode = entry.kind === 'symlink' ? 0o777 : entry.mode & (entry.kind === 'directory' ? 0o1777 : 0o777)
        const header = tarHeader({ name: Buffer.from(entry.path), kind: entry.kind, size: entry.size, mode, mtime: entry.mtime, ...(entry.target === null ? {} : { linkname: Buffer.from(entry.target) }) })
        batch.push(header)
        batched += header.length
        for (let done = 0; done < entry.size;) {
          const piece = await slice(entry.offset + done, entry.size - done)
          done += piece.length
          if (piece.length < CHUNK) {
            batch.push(piece)
            batched += piece.length
            if (batched < CHUNK) continue
          }
          // Small pieces (headers, small files) go together; a large one goes as it is, uncopied.
          if (batch.length > 0) yield Buffer.concat(batch)
          if (piece.length >= CHUNK) yield piece
          batch = []
          batched = 0
        }
        if (entry.size > 0) {
          batch.push(ZEROS.subarray(0, padding(entry.size)))
          batched += padding(entry.size)
        }
      }
      batch.push(TAR_END)
      yield Buffer.concat(batch)
    } finally {
      await file.close()
    }
  }

  async #read (entry: Entry): Promise<Buffer> {
    const file = await open(this.#spool, 'r')
    try {
      const buffer = Buffer.alloc(entry.size)
      let done = 0
      while (done < entry.size) {
        const { bytesRead } = await file.read(buffer, done, entry.size - done, entry.offset + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      return buffer.subarray(0, done)
    } finally {
      await file.close()
    }
  }

  /**
   * A symbolic link is kept as written, whatever it points to: the engine unpacks the context in a
   * chroot and follows links only inside it, and in the image the link means what it meant on the
   * client (a virtualenv's python -> /usr/bin/python3). Nothing is ever written through one (seal).
   */
  #symlinkTarget (path: string, linkname: string): string {
    if (linkname === '') throw contextError('link', `the build context has ${quote(path)} as a symbolic link to nothing`, path)
    if (linkname.includes('\0')) throw contextError('link', `the build context has ${quote(path)} as a symbolic link whose target has a NUL byte`, path)
    if (Buffer.byteLength(linkname) > MAX_NAME) throw contextError('link', `the build context has ${quote(path)} as a symbolic link whose target is longer than ${MAX_NAME} bytes`, path)
    return linkname
  }

  /** A hard link names a regular file that came before it in the context: the engine links the two. */
  #hardLinkTarget (path: string, linkname: string): Entry {
    const target = cleanPath(linkname, `the target of the build context's hard link ${quote(path)}, ${quote(linkname)},`, 'link')
    const file = this.#byPath.get(target)
    if (file === undefined || file.kind !== 'file') {
      throw contextError('link', `the build context has ${quote(path)} as a hard link to ${quote(target)}, which is not a regular file earlier in the context`, path)
    }
    return file
  }
}
