// Tar archives written byte by byte, as an attacker would: any header field, any entry type, pax and
// GNU long-name headers in any order, ustar prefixes under any magic, raw blocks between entries and
// no end-of-archive marker. For the attack suites; tarOf (build-helpers.ts) makes well-formed ones.

export interface CraftedEntry {
  /** The header's name field (cut to 100 bytes). */
  name: string
  /** The typeflag: '0' by default. */
  type?: string
  /** The entry's data, written after the header and padded to a block. */
  data?: string | Buffer
  /** The size field, when it is to differ from the data's length. */
  size?: number
  /** The size field's 12 bytes as written, for broken numbers. */
  sizeField?: string
  linkname?: string
  mode?: number
  /** The ustar prefix field (bytes 345-500). */
  prefix?: string
  /** The magic and version: POSIX ustar (the default), old GNU, or none (v7). */
  magic?: 'ustar' | 'gnu' | 'v7'
  /** A pax extended header ('x') before the entry: its records, or the raw record bytes. */
  pax?: Record<string, string> | Buffer
  /** A GNU long-name header ('L') before the entry. */
  longName?: string
  /** A GNU long-link header ('K') before the entry. */
  longLink?: string
}

const BLOCK = 512

function pad (data: Buffer): Buffer[] {
  const rest = (BLOCK - (data.length % BLOCK)) % BLOCK
  return rest === 0 ? [data] : [data, Buffer.alloc(rest)]
}

/** One pax record: "<length> key=value\n", the length counting itself. */
export function paxRecord (key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')])
  let length = body.length + 1
  while (String(length).length + body.length !== length) length = String(length).length + body.length
  return Buffer.concat([Buffer.from(String(length)), body])
}

export function craftHeader (entry: CraftedEntry, size: number): Buffer {
  const block = Buffer.alloc(BLOCK)
  Buffer.from(entry.name).copy(block, 0, 0, 100)
  const type = entry.type ?? '0'
  block.write((entry.mode ?? (type === '5' ? 0o755 : 0o644)).toString(8).padStart(7, '0') + '\0', 100, 8, 'latin1')
  block.write('0000000\0', 108, 8, 'latin1')
  block.write('0000000\0', 116, 8, 'latin1')
  if (entry.sizeField !== undefined) block.write(entry.sizeField.padEnd(12, '\0').slice(0, 12), 124, 12, 'latin1')
  else block.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'latin1')
  block.write('14712345670\0', 136, 12, 'latin1')
  block.write(type, 156, 1, 'latin1')
  if (entry.linkname !== undefined) Buffer.from(entry.linkname).copy(block, 157, 0, 100)
  const magic = entry.magic ?? 'ustar'
  if (magic === 'ustar') block.write('ustar\u000000', 257, 8, 'latin1')
  if (magic === 'gnu') block.write('ustar  \0', 257, 8, 'latin1')
  if (entry.prefix !== undefined) Buffer.from(entry.prefix).copy(block, 345, 0, 155)
  block.fill(' ', 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  return block
}

/** The blocks of one entry: its pax and long-name headers, its header, its data. */
export function craftEntry (entry: CraftedEntry): Buffer {
  const blocks: Buffer[] = []
  if (entry.pax !== undefined) {
    const records = Buffer.isBuffer(entry.pax) ? entry.pax : Buffer.concat(Object.entries(entry.pax).map(([key, value]) => paxRecord(key, value)))
    blocks.push(craftHeader({ name: 'PaxHeaders/x', type: 'x' }, records.length), ...pad(records))
  }
  for (const [type, text] of [['L', entry.longName], ['K', entry.longLink]] as const) {
    if (text === undefined) continue
    const data = Buffer.from(text + '\0')
    blocks.push(craftHeader({ name: '././@LongLink', type, magic: 'gnu' }, data.length), ...pad(data))
  }
  const data = entry.data === undefined ? Buffer.alloc(0) : Buffer.from(entry.data)
  blocks.push(craftHeader(entry, entry.size ?? data.length))
  if (data.length > 0) blocks.push(...pad(data))
  return Buffer.concat(blocks)
}

/** An archive of the entries (a Buffer is written as it is), ended by two zero blocks unless `end` is false. */
export function craftTar (entries: Array<CraftedEntry | Buffer>, options: { end?: boolean } = {}): Buffer {
  const parts = entries.map(entry => Buffer.isBuffer(entry) ? entry : craftEntry(entry))
  if (options.end !== false) parts.push(Buffer.alloc(2 * BLOCK))
  return Buffer.concat(parts)
}
