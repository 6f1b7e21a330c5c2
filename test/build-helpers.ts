// What the build, share and reproduce suites share: build contexts made in memory, a token with the
// `build` scope beside the usual ones, and the cleanup of what builds leave on the engine.
import { randomBytes } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import type { Test } from 'tap'
import { hashToken } from '../src/config.ts'
import { RUN, RUN_LABEL, TOKENS, docker, type BuildOptions } from './helpers.ts'

/** A ustar archive of the given files (a name ending in "/" is a directory). */
export function tarOf (files: Record<string, string | Buffer>, options: { longNames?: 'gnu' | 'pax' } = {}): Buffer {
  const blocks: Buffer[] = []
  const header = (name: string, size: number, type: string): Buffer => {
    const block = Buffer.alloc(512)
    const field = (value: string, offset: number, length: number) => block.write(value, offset, length, 'utf8')
    field(name.slice(0, 100), 0, 100)
    field(type === '5' ? '0000755\0' : '0000644\0', 100, 8)
    field('0000000\0', 108, 8)
    field('0000000\0', 116, 8)
    field(size.toString(8).padStart(11, '0') + '\0', 124, 12)
    field(Math.floor(Date.now() / 1000).toString(8).padStart(11, '0') + '\0', 136, 12)
    field('        ', 148, 8)
    field(type, 156, 1)
    field('ustar\0', 257, 6)
    field('00', 263, 2)
    let sum = 0
    for (const byte of block) sum += byte
    field(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
    return block
  }
  const data = (content: Buffer): Buffer[] => [content, Buffer.alloc((512 - (content.length % 512)) % 512)]
  for (const [name, value] of Object.entries(files)) {
    const content = Buffer.isBuffer(value) ? value : Buffer.from(value)
    if (name.length > 100 && options.longNames === 'pax') {
      const record = (text: string): string => {
        let length = text.length + 3
        while (`${length} ${text}\n`.length !== length) length = `${length} ${text}\n`.length
        return `${length} ${text}\n`
      }
      const pax = Buffer.from(record(`path=${name}`))
      blocks.push(header('PaxHeader', pax.length, 'x'), ...data(pax))
    } else if (name.length > 100) {
      const long = Buffer.from(name + '\0')
      blocks.push(header('././@LongLink', long.length, 'L'), ...data(long))
    }
    const isDir = name.endsWith('/')
    blocks.push(header(name, isDir ? 0 : content.length, isDir ? '5' : '0'))
    if (!isDir) blocks.push(...data(content))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

export function gzipped (tar: Buffer): Buffer {
  return gzipSync(tar)
}

/** A token with only the build scope, and one with build and write. */
export const BUILDERS = {
  builder: { token: 'builder-token-' + randomBytes(12).toString('hex'), scopes: ['build' as const] },
  maker: { token: 'maker-token-' + randomBytes(12).toString('hex'), scopes: ['build' as const, 'write' as const] }
}

export function builderAuth (who: keyof typeof BUILDERS): Record<string, string> {
  return { authorization: `Bearer ${BUILDERS[who].token}` }
}

/** Build options whose token list holds the usual tokens and the builders. */
export function withBuilders (options: BuildOptions = {}): BuildOptions {
  const tokens = [...Object.entries(TOKENS), ...Object.entries(BUILDERS)].map(([name, { token, scopes }]) => ({ name, scopes: [...scopes], sha256: hashToken(token) }))
  return { ...options, config: { ...options.config, auth: { ...options.config?.auth, tokens } } }
}

/** A name for an image this run builds: cleanupAfter removes it. */
export function imageName (suffix: string, tag = '1'): string {
  return `berth-test/${RUN}-${suffix}:${tag}`
}

/** The label every image a test builds carries, so a prune can be held to this run's images. */
export const RUN_LABEL_QUERY = `label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`

/**
 * Removes the images this run's builds left without a name (the result of an earlier stage, an image
 * whose name moved on), by the run label or by the ids the test collected.
 */
export function cleanupBuilds (t: Test, ids: Set<string> = new Set()): Set<string> {
  t.teardown(async () => {
    const labelled = await docker.listImages({ all: true, filters: { label: [`${RUN_LABEL}=${RUN}`] } })
    for (const image of labelled) {
      for (const ref of (image.RepoTags ?? []).filter(tag => tag.includes(RUN))) await docker.getImage(ref).remove().catch(() => {})
      await docker.getImage(image.Id).remove({ noprune: false }).catch(() => {})
    }
    for (const id of [...ids].reverse()) await docker.getImage(id).remove({ noprune: true }).catch(() => {})
  })
  return ids
}

/** A multipart/form-data body of a dockerfile field and files at their paths, as a browser or curl -F sends it. */
export async function formOf (dockerfile: string | null, files: Record<string, string | Buffer> = {}, extra: Record<string, string> = {}): Promise<{ body: Buffer, contentType: string }> {
  const form = new FormData()
  if (dockerfile !== null) form.append('dockerfile', dockerfile)
  for (const [path, content] of Object.entries(files)) form.append('files', new Blob([content]), path)
  for (const [field, value] of Object.entries(extra)) form.append(field, value)
  const request = new Request('http://berth.test/', { method: 'POST', body: form })
  return { body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type') as string }
}
