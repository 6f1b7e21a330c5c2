// Receives a build context sent as multipart/form-data — a `dockerfile` (text or file) and the files
// it uses, each at the path its filename gives — into the same checked context a tar becomes
// (context-set.ts), its data spooled to a temporary file within the size limit. For clients without
// tar, and for Swagger UI's form.
import { Busboy, type BusboyHeaders, type BusboyInstance } from '@fastify/busboy'
import { rm } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import { ContextSet, MAX_DOCKERFILE, contextError, quote } from './context-set.ts'
import { closeSpool, openSpool, stoppedSending, tooLarge, type ReceiveOptions, type ReceivedContext } from './context.ts'

const MAX_FILES = 10_000

/** A context path from a part's file name: relative, without "..", without control characters. */
function contextPath (name: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is refused
  if (name.startsWith('/') || name.split(/[/\\]/).includes('..') || /[\u0000-\u001f]/.test(name) || name.split('/').every(segment => segment === '' || segment === '.')) {
    throw contextError('name', `the build context has a file name ${quote(name)} that is not a relative path inside the context`, name)
  }
  return name
}

export async function receiveMultipartContext (body: Readable, headers: IncomingHttpHeaders, options: ReceiveOptions): Promise<ReceivedContext> {
  const { dir, spool, file } = await openSpool()
  const set = new ContextSet(spool, options.limits)
  const remove = async (): Promise<void> => {
    set.close()
    await rm(dir, { recursive: true, force: true })
  }
  let written = 0
  try {
    await new Promise<void>((resolve, reject) => {
      let busboy: BusboyInstance
      try {
        // Paths are kept: a file's name is where it goes in the context.
        busboy = Busboy({ headers: headers as BusboyHeaders, preservePath: true, limits: { fileSize: options.limit, files: MAX_FILES, fields: 8, fieldSize: MAX_DOCKERFILE, parts: MAX_FILES + 8 } })
      } catch {
        return reject(contextError('format', 'the build context is not multipart/form-data with a boundary'))
      }
      let failed = false
      const fail = (error: unknown): void => {
        if (failed) return
        failed = true
        body.unpipe(busboy)
        body.pause()
        reject(error)
      }
      // Parts are written to the spool one after another, in the order they came: a part waits
      // (and busboy with it) until the one before is written.
      let chain: Promise<void> = Promise.resolve()
      const add = (name: string, write: () => Promise<number>): void => {
        chain = chain.then(async () => {
          if (failed) return
          const offset = written
          const size = await write()
          set.add({ name, kind: 'file', mode: 0o644, mtime: 0, size, offset })
        }).catch(fail)
      }
      const append = async (chunk: Buffer): Promise<void> => {
        written += chunk.length
        if (written > options.limit) throw tooLarge(options.limit)
        if (!file.write(chunk)) await once(file, 'drain')
      }
      busboy.on('file', (field, stream, filename) => {
        let name: string
        try {
          name = field === 'dockerfile' ? options.dockerfile : contextPath(filename)
        } catch (error) {
          stream.resume()
          return fail(error)
        }
        stream.on('limit', () => fail(tooLarge(options.limit)))
        add(name, async () => {
          let size = 0
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            if (failed) return size
            size += chunk.length
            await append(chunk)
          }
          return size
        })
      })
      busboy.on('field', (field, value, _nameTruncated, valueTruncated) => {
        if (field !== 'dockerfile') return fail(contextError('format', `the build context has a field "${field.slice(0, 64)}": send files (their paths as file names) and a dockerfile field`))
        if (valueTruncated) return fail(contextError('dockerfile', `the build context has a Dockerfile larger than ${MAX_DOCKERFILE} bytes`))
        add(options.dockerfile, async () => {
          const text = Buffer.from(value)
          await append(text)
          return text.length
        })
      })
      busboy.on('filesLimit', () => fail(contextError('format', `the build context has more than ${MAX_FILES} files`)))
      busboy.on('error', () => fail(contextError('format', 'the build context is not valid multipart/form-data')))
      busboy.on('finish', () => {
        chain.then(() => {
          if (failed) return
          file.end((error?: Error | null) => error ? fail(error) : resolve())
        }, fail)
      })
      file.on('error', fail)
      options.signal?.addEventListener('abort', () => fail(options.signal?.reason), { once: true })
      if (options.signal?.aborted) return fail(options.signal.reason)
      body.once('aborted', () => fail(stoppedSending()))
      body.pipe(busboy)
    })
    const sealed = await set.seal(options.dockerfile)
    return { ...sealed, size: written, open: () => set.open(), remove }
  } catch (error) {
    await closeSpool(file)
    await remove()
    throw error
  }
}
