// What an upload into a container may do, decided before the engine sees any of it: the entries
// berth read (src/access/files.ts) are normalised — clean relative names, one entry per path, files,
// directories and links only, permission bits without setuid, setgid or sticky, no xattrs — and held
// to one rule: everything lands inside the directory it is unpacked in and nothing is written
// through a link, neither one the archive makes nor one the container already has. Then the engine
// gets the archive berth assembles from them, in an order of berth's choosing.
import { posix } from 'node:path'
import { Readable } from 'node:stream'
import type { PathStat } from '../engine/types.ts'
import { BerthError } from '../errors.ts'
import { TAR_END, padding, tarHeader, type ArchiveEntry, type EntryKind, type Spooled } from './files.ts'
import { invalid } from './policy.ts'

/** One entry as berth will send it. */
export interface PlannedEntry {
  /** Relative to the directory unpacked in, clean: no "", "." or ".." component. */
  path: string
  kind: EntryKind
  /** Permission bits only. */
  mode: number
  uid: number
  gid: number
  mtime: number
  size: number
  /** Where its data lies in the spooled upload. */
  offset: number
  /** A symbolic link's target as given; a hard link's target as a clean path of this archive. */
  linkname: string
}

export interface UploadPlan {
  /** In the order the engine gets them: directories (parents first), files, hard links, symbolic links. */
  entries: PlannedEntry[]
  /** Every path the upload writes or writes below: its entries, and the directories they need ("implied" when the archive has no entry for one). */
  nodes: Map<string, EntryKind | 'implied'>
}

/** How many paths an upload may be looked up in the container for (each is an engine call). */
export const MAX_LOOKUPS = 10_000
/** Links followed in resolving one link's target, as the kernel's limit. */
const MAX_HOPS = 40

/** The plan of an upload, or validation_failed naming the first entry that breaks the rule. */
export function planUpload (read: ArchiveEntry[]): UploadPlan {
  const byPath = new Map<string, { entry: ArchiveEntry, path: string }>()
  for (const entry of read) {
    const path = cleanName(entry.name, `entry "${entry.name}"`)
    if (path === '') {
      // The directory itself: berth leaves its owner and mode as they are.
      if (entry.kind === 'directory') continue
      throw refused(`entry "${entry.name}" names the directory it is unpacked in`)
    }
    const earlier = byPath.get(path)
    if (earlier !== undefined) throw refused(`entry "${entry.name}" names ${path} again (entry ${earlier.entry.index}): an archive gives each path once`)
    byPath.set(path, { entry, path })
  }
  const kindOf = (path: string): EntryKind | undefined => byPath.get(path)?.entry.kind
  const links = new Map<string, string>()
  for (const { entry, path } of byPath.values()) if (entry.kind === 'symlink') links.set(path, entry.linkname)

  const nodes = new Map<string, EntryKind | 'implied'>()
  const entries: PlannedEntry[] = []
  for (const { entry, path } of byPath.values()) {
    // Every directory above it must be one: not a link (nothing is written through one), not a file.
    const parts = path.split('/')
    for (let depth = 1; depth < parts.length; depth++) {
      const above = parts.slice(0, depth).join('/')
      const kind = kindOf(above)
      if (kind === 'symlink') throw refused(`entry "${entry.name}" would be written through the link ${above} (entry ${byPath.get(above)?.entry.index}): berth writes nothing through a link`)
      if (kind !== undefined && kind !== 'directory') throw refused(`entry "${entry.name}" needs ${above} to be a directory, but the archive makes it a ${words(kind)} (entry ${byPath.get(above)?.entry.index})`)
      if (kind === undefined) nodes.set(above, 'implied')
    }
    nodes.set(path, entry.kind)
    let linkname = ''
    if (entry.kind === 'hardlink') {
      linkname = cleanName(entry.linkname, `hard link "${entry.name}" to "${entry.linkname}"`)
      if (kindOf(linkname) !== 'file') throw refused(`hard link "${entry.name}" to "${entry.linkname}": ${linkname} is not a file of this archive (a hard link joins files the archive holds)`)
    }
    if (entry.kind === 'symlink') {
      linkname = entry.linkname
      checkLink(entry, posix.dirname(path), links)
    }
    // A hard link is its target's inode: the engine would give that the link's owner and mode, so it gets the target's.
    const owner = entry.kind === 'hardlink' ? (byPath.get(linkname) as { entry: ArchiveEntry }).entry : entry
    entries.push({
      path,
      kind: entry.kind,
      // Permission bits only: a setuid file in a container is a way to its root.
      mode: owner.mode & 0o777,
      uid: owner.uid,
      gid: owner.gid,
      mtime: owner.mtime,
      size: entry.kind === 'file' ? entry.size : 0,
      offset: entry.offset,
      linkname
    })
  }
  const rank: Record<EntryKind, number> = { directory: 0, file: 1, hardlink: 2, symlink: 3 }
  entries.sort((a, b) => rank[a.kind] - rank[b.kind] || (a.kind === 'directory' ? (a.path < b.path ? -1 : 1) : 0))
  return { entries, nodes }
}

/** The plan of one file of `size` bytes, the whole upload, written as `name` (PUT …/files). */
export function planFile (name: string, size: number, mode: number, mtime: number): UploadPlan {
  return {
    entries: [{ path: name, kind: 'file', mode: mode & 0o777, uid: 0, gid: 0, mtime, size, offset: 0, linkname: '' }],
    nodes: new Map([[name, 'file']])
  }
}

/**
 * A symbolic link must point inside the directory unpacked in, as the archive itself has it: its
 * target relative, and resolved — through the archive's own links, so a ".." after one counts from
 * where that one points — never above the directory.
 */
function checkLink (entry: ArchiveEntry, from: string, links: Map<string, string>): void {
  const target = entry.linkname
  if (target === '') throw refused(`link "${entry.name}" has no target`)
  if (target.startsWith('/')) throw refused(`link "${entry.name}" points to ${target}, an absolute path: links must stay inside the directory they are unpacked in (make it relative)`)
  let hops = 0
  const resolve = (base: string[], to: string): string[] | null => {
    let at = [...base]
    for (const part of to.split('/')) {
      if (part === '' || part === '.') continue
      if (part === '..') {
        if (at.length === 0) return null
        at.pop()
        continue
      }
      at.push(part)
      const further = links.get(at.join('/'))
      if (further === undefined) continue
      if (++hops > MAX_HOPS) throw refused(`link "${entry.name}" points to ${target}, through a loop of links`)
      if (further.startsWith('/')) return null
      const next = resolve(at.slice(0, -1), further)
      if (next === null) return null
      at = next
    }
    return at
  }
  if (resolve(from === '.' ? [] : from.split('/'), target) === null) {
    throw refused(`link "${entry.name}" points to ${target}, which climbs out of the directory it is unpacked in`)
  }
}

/** A name cleaned of "", "." components and a trailing "/"; absolute names and ".." are refused. */
function cleanName (name: string, what: string): string {
  if (name.startsWith('/')) throw refused(`${what} is an absolute path: entries must be relative to the directory they are unpacked in`)
  const parts = name.split('/').filter(part => part !== '' && part !== '.')
  if (parts.includes('..')) throw refused(`${what} has a ".." segment: entries must stay in the directory they are unpacked in`)
  if (name.includes('\u0000')) throw refused(`${what} has a NUL byte`)
  if (parts.some(part => Buffer.byteLength(part) > 255)) throw refused(`${what} has a name longer than 255 bytes`)
  return parts.join('/')
}

function refused (detail: string): BerthError {
  return invalid('body', detail)
}

function words (kind: EntryKind | 'implied'): string {
  return kind === 'symlink' ? 'link' : kind === 'hardlink' ? 'hard link' : kind === 'implied' ? 'directory' : kind
}

/** Go's os.FileMode type bits, as the engine reports a path. */
const isDirectory = (stat: PathStat): boolean => ((stat.mode >>> 31) & 1) === 1
const isLink = (stat: PathStat): boolean => ((stat.mode >>> 27) & 1) === 1

/**
 * Holds the plan to what is in the container, looking only where the upload can meet something: the
 * directory unpacked in, and below it each path whose parent is already there as a directory. A link
 * where the upload needs a directory, a directory it would replace with something else, or a file
 * where it needs a directory, is path_conflict — before anything is written. (Only a process in the
 * same container, changing it between this look and the unpacking, can still get in the way.)
 */
export async function checkAgainst (plan: UploadPlan, at: string, container: string, stat: (path: string) => Promise<PathStat | null>): Promise<void> {
  const conflict = (path: string, detail: string): BerthError => new BerthError('path_conflict', detail, { path })
  let root = await stat(at)
  if (root === null) throw new BerthError('not_found', `no such path ${at} in container ${container}`, { path: at })
  // The directory itself is followed when it is a link, as the engine does (and cp into a directory).
  if (isLink(root)) root = root.linkTarget === '' ? null : await stat(root.linkTarget)
  if (root === null || !isDirectory(root)) throw conflict(at, `${at} is a file in container ${container}: unpack into a directory`)
  const children = new Map<string, string[]>()
  for (const path of plan.nodes.keys()) {
    const parent = posix.dirname(path)
    children.set(parent, [...(children.get(parent) ?? []), path])
  }
  let lookups = 0
  let level = children.get('.') ?? []
  while (level.length > 0) {
    const next: string[] = []
    for (const path of level) {
      if (++lookups > MAX_LOOKUPS) {
        throw new BerthError('payload_too_large', `the upload would need more than ${MAX_LOOKUPS} looks at what is in container ${container} (one for each of its paths whose directory is there already): unpack it into a new directory, or in parts`)
      }
      const full = posix.join(at, path)
      const there = await stat(full)
      if (there === null) continue
      const kind = plan.nodes.get(path) as EntryKind | 'implied'
      const wantsDirectory = kind === 'directory' || kind === 'implied'
      if (isLink(there) && wantsDirectory) {
        throw conflict(full, `${full} is a symbolic link in container ${container} (to ${there.linkTarget}): berth writes nothing through a link; remove it first, or unpack into its target`)
      }
      if (isDirectory(there) && !wantsDirectory) throw conflict(full, `${full} is a directory in container ${container}: an upload does not replace a directory with a ${words(kind)}`)
      if (!isDirectory(there) && !isLink(there) && wantsDirectory) throw conflict(full, `${full} is a file in container ${container}, where the archive needs a directory`)
      // A directory that is there: what the upload puts in it may meet what is there too.
      if (isDirectory(there)) next.push(...(children.get(path) ?? []))
    }
    level = next
  }
}

/** The archive berth sends the engine for a plan, its data read from the spooled upload; and its length. */
export function assemble (plan: UploadPlan, upload: Spooled): { archive: Readable, size: number } {
  // Made twice, to count and to send, rather than held: an archive may have many entries.
  const headerOf = (entry: PlannedEntry): Buffer => tarHeader({
    name: entry.kind === 'directory' ? `${entry.path}/` : entry.path,
    size: entry.size,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtime: entry.mtime,
    type: { file: '0', directory: '5', symlink: '2', hardlink: '1' }[entry.kind],
    ...(entry.linkname === '' ? {} : { linkname: entry.linkname })
  })
  let size = TAR_END.length
  for (const entry of plan.entries) size += headerOf(entry).length + entry.size + padding(entry.size)
  async function * bytes (): AsyncGenerator<Buffer> {
    for (const entry of plan.entries) {
      yield headerOf(entry)
      if (entry.size === 0) continue
      for await (const chunk of upload.open({ start: entry.offset, size: entry.size })) yield chunk as Buffer
      yield Buffer.alloc(padding(entry.size))
    }
    yield TAR_END
  }
  return { archive: Readable.from(bytes()), size }
}
