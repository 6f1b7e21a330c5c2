// Receives a build context sent as multipart/form-data — a `dockerfile` (text or file) and the files
// it uses, each at the path its filename gives — and makes it the tar the engine takes, spooled to a
// temporary file within the size limit. For clients without tar, and for Swagger UI's form.
import { Busboy, type BusboyHeaders, type BusboyInstance } from '@fastify/busboy'
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BerthError } from '../errors.ts'
import { MAX_DOCKERFILE, invalidContext, normaliseEntry, tarHeader, tooLarge, type ReceivedContext } from './context.ts'

const MAX_FILES = 10_000

interface Entry {
  path: string
  /** The spooled content. */
  file: string
  size: number
}

function badPath (name: string): BerthError {
  return invalidContext(`file name ${JSON.stringify(name.slice(0, 200))} is not a relative path inside the context`)
}

/** A context path from a part: relative, without "..", as the builder will see it. */
function contextPath (name: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is refused
  if (name.startsWith('/') || name.split(/[/\\]/).includes('..') || /[\u0000-\u001f]/.test(name)) throw badPath(name)
  const path = normaliseEntry(name)
  if (path === '') throw badPath(name)
  return path
}

export async function receiveMultipartContext (body: Readable, headers: IncomingHttpHeaders, options: { limit: number, dockerfile: string, signal?: AbortSignal }): Promise<ReceivedContext> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-build-'))
  const remove = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
  const parts = join(dir, 'parts')
  await mkdir(parts)
  const dockerfilePath = normaliseEntry(options.dockerfile)
  const entries = new Map<string, Entry>()
  let dockerfile: string | null = null
  try {
    let total = 0
    await new Promise<void>((resolve, reject) => {
      let busboy: BusboyInstance
      try {
        // Paths are kept: a file's name is where it goes in the context.
        busboy = Busboy({ headers: headers as BusboyHeaders, preservePath: true, limits: { fileSize: options.limit, files: MAX_FILES, fields: 8, fieldSize: MAX_DOCKERFILE, parts: MAX_FILES + 8 } })
      } catch {
        return reject(invalidContext('is not multipart/form-data with a boundary'))
      }
      const writes: Array<Promise<void>> = []
      let failed = false
      const fail = (error: unknown): void => {
        if (failed) return
        failed = true
        body.unpipe(busboy)
        body.pause()
        reject(error)
      }
      const add = (path: string, write: (file: WriteStream) => Promise<void>): void => {
        if (entries.has(path)) return fail(invalidContext(`has ${path} twice`))
        const file = join(parts, String(entries.size))
        const entry: Entry = { path, file, size: 0 }
        entries.set(path, entry)
        writes.push(write(createWriteStream(file)).then(async () => {
          entry.size = (await stat(file)).size
        }, fail))
      }
      busboy.on('file', (field, stream, filename) => {
        let path: string
        try {
          path = field === 'dockerfile' ? dockerfilePath : contextPath(filename)
        } catch (error) {
          stream.resume()
          return fail(error)
        }
        const chunks: Buffer[] = []
        stream.on('data', (chunk: Buffer) => {
          total += chunk.length
          if (total > options.limit) fail(tooLarge(options.limit))
          if (path === dockerfilePath) chunks.push(chunk)
        })
        stream.on('limit', () => fail(tooLarge(options.limit)))
        add(path, async file => {
          await pipeline(stream, file)
          if (path === dockerfilePath) {
            const text = Buffer.concat(chunks)
            if (text.length > MAX_DOCKERFILE) throw invalidContext(`has a Dockerfile larger than ${MAX_DOCKERFILE} bytes`)
            dockerfile = text.toString('utf8')
          }
        })
      })
      busboy.on('field', (field, value, _nameTruncated, valueTruncated) => {
        if (field !== 'dockerfile') return fail(invalidContext(`has a field "${field.slice(0, 64)}": send files (their paths as file names) and a dockerfile field`))
        if (valueTruncated) return fail(invalidContext(`has a Dockerfile larger than ${MAX_DOCKERFILE} bytes`))
        total += Buffer.byteLength(value)
        dockerfile = value
        add(dockerfilePath, async file => { await new Promise<void>((resolve, reject) => file.end(value, (error?: Error | null) => error ? reject(error) : resolve())) })
      })
      busboy.on('filesLimit', () => fail(invalidContext(`has more than ${MAX_FILES} files`)))
      busboy.on('error', () => fail(invalidContext('is not valid multipart/form-data')))
      busboy.on('finish', () => { Promise.all(writes).then(() => { if (!failed) resolve() }, fail) })
      options.signal?.addEventListener('abort', () => fail(options.signal?.reason), { once: true })
      if (options.signal?.aborted) return fail(options.signal.reason)
      body.once('aborted', () => fail(new BerthError('validation_failed', 'the client stopped sending the build context')))
      body.pipe(busboy)
    })
    if (dockerfile === null) throw invalidContext(`has no ${dockerfilePath}: send it as the dockerfile field (or a file of that name)`)
    // The tar the engine takes: each file under its path, then the two zero blocks that end an archive.
    const tar = join(dir, 'context.tar')
    const out = createWriteStream(tar)
    for (const entry of entries.values()) {
      const { header, padding } = tarHeader(entry.path, entry.size)
      if (!out.write(header)) await new Promise<void>(resolve => { out.once('drain', () => resolve()) })
      await pipeline(createReadStream(entry.file), out, { end: false })
      if (padding > 0) out.write(Buffer.alloc(padding))
    }
    await new Promise<void>((resolve, reject) => out.end(Buffer.alloc(1024), (error?: Error | null) => error ? reject(error) : resolve()))
    await rm(parts, { recursive: true, force: true })
    const size = (await stat(tar)).size
    if (size > options.limit) throw tooLarge(options.limit)
    return { dockerfile, size, open: () => createReadStream(tar), remove }
  } catch (error) {
    await remove()
    throw error
  }
}
