// Reads a tar archive held whole in memory (a download, already bounded): what files_out needs to
// hand an agent one file's content rather than an archive, and to list a directory it sends as a tar.
// The engine writes ustar with pax records (Go's archive/tar) or GNU long names; both are read.

const BLOCK = 512

export interface TarEntry {
  name: string
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other'
  size: number
  /** Permission bits. */
  mode: number
  /** Where a link points. */
  linkTarget: string
  data: Buffer
}

const TYPES: Record<string, TarEntry['type']> = { 0: 'file', '\u0000': 'file', 7: 'file', 5: 'directory', 2: 'symlink', 1: 'hardlink' }

/** The entries of `archive`; throws on a header that is not tar. */
export function readTar (archive: Buffer): TarEntry[] {
  const entries: TarEntry[] = []
  let offset = 0
  // What a pax record or a GNU long-name entry says about the next entry.
  let next: { path?: string, linkpath?: string } = {}
  while (offset + BLOCK <= archive.length) {
    const header = archive.subarray(offset, offset + BLOCK)
    if (header.every(byte => byte === 0)) break
    const size = parseOctal(header.subarray(124, 136))
    if (size === null || !validChecksum(header)) throw new Error(`not a tar archive: a broken header at byte ${offset}`)
    const data = archive.subarray(offset + BLOCK, offset + BLOCK + size)
    offset += BLOCK + size + ((BLOCK - (size % BLOCK)) % BLOCK)
    const type = String.fromCharCode(header[156] as number)
    if (type === 'x') {
      next = { ...next, ...paxRecords(data) }
      continue
    }
    if (type === 'L' || type === 'K') {
      next = { ...next, [type === 'L' ? 'path' : 'linkpath']: cString(data) }
      continue
    }
    if (type === 'g') continue
    const prefix = cString(header.subarray(345, 500))
    entries.push({
      name: next.path ?? (prefix === '' ? '' : prefix + '/') + cString(header.subarray(0, 100)),
      type: TYPES[type] ?? 'other',
      size,
      mode: parseOctal(header.subarray(100, 108)) ?? 0,
      linkTarget: next.linkpath ?? cString(header.subarray(157, 257)),
      data
    })
    next = {}
  }
  return entries
}

function paxRecords (data: Buffer): { path?: string, linkpath?: string } {
  const records: { path?: string, linkpath?: string } = {}
  for (const record of data.toString('utf8').split('\n')) {
    const match = /^\d+ (path|linkpath)=(.*)$/s.exec(record)
    if (match !== null) records[match[1] as 'path' | 'linkpath'] = match[2] as string
  }
  return records
}

function cString (bytes: Buffer): string {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8')
}

function parseOctal (field: Buffer): number | null {
  const text = cString(field).trim()
  if (text === '') return 0
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : null
}

function validChecksum (header: Buffer): boolean {
  const stored = parseOctal(header.subarray(148, 156))
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i] as number
  return stored === sum
}
