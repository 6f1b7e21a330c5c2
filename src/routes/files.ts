// docker cp for HTTP clients: GET /v1/containers/{idOrName}/archive downloads a path as a tar; PUT
// on it unpacks a tar into a directory; PUT /v1/containers/{idOrName}/files writes one file. Owner-
// checked (another token's files are not found), paths confined (src/access/files.ts), uploads
// limited by BERTH_MAX_UPLOAD and read whole before the engine sees them, downloads cut at
// BERTH_MAX_DOWNLOAD.
import { posix } from 'node:path'
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify'
import { Type } from 'typebox'
import { TAR_END, TarCheck, confinedPath, padding, spool, tarHeader } from '../access/files.ts'
import type { Principal } from '../access/ownership.ts'
import { BerthError } from '../errors.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { ArchiveQuery, PutArchiveQuery, PutFileQuery } from '../schemas/files.ts'

/** On a cluster each task's files live on its node's engine, which berth does not reach yet. */
const TAR = 'application/x-tar'
const BYTES = 'application/octet-stream'

const files: FastifyPluginAsyncTypebox = async (app) => {
  const { maxUploadBytes, maxDownloadBytes } = app.config.files
  const principalOf = (request: FastifyRequest): Principal => request.principal as Principal

  // Bodies here are streams, read (and counted) by the handler; only in this plugin.
  app.addContentTypeParser([TAR, BYTES], (_request, payload, done) => { done(null, payload) })
  // A stream is no JSON to validate: the body schemas only document the media types.
  const validate = app.validatorCompiler as FastifySchemaCompiler<unknown>
  const validatorCompiler: FastifySchemaCompiler<unknown> = (route) => route.httpPart === 'body' ? () => true : validate(route)
  const binary = (media: string, description: string) => ({ content: { [media]: { schema: Type.String({ format: 'binary', description }) } } })

  app.get('/v1/containers/:idOrName/archive', {
    config: { scope: 'read', part: 'files' },
    schema: {
      tags: ['files'],
      summary: 'Download a path from a container as a tar (docker cp out)',
      description: 'A file, or a directory with everything below it, as a tar archive. `X-Berth-Path-Stat` says what the path is (JSON: name, size, mode, mtime, linkTarget). ' +
        `An archive longer than BERTH_MAX_DOWNLOAD (${maxDownloadBytes} bytes here) is cut off: the response then ends in an error, never as a shorter valid archive.`,
      operationId: 'getArchive',
      params: ContainerParams,
      querystring: ArchiveQuery,
      response: {
        200: { description: 'The tar archive.', content: { [TAR]: { schema: Type.String({ format: 'binary' }) } } },
        ...problems(...CONTAINER, 'payload_too_large')
      }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: false })
    const container = await app.containers.find(principalOf(request), request.params.idOrName)
    const signal = app.streams.signal(reply)
    const { stat, archive } = await app.engine.part('files').get(container.id, path, { signal })
    const name = (stat.name === '' || stat.name === '/' ? 'root' : stat.name).replace(/[^A-Za-z0-9._-]/g, '_')
    return await (reply as unknown as FastifyReply)
      .type(TAR)
      .header('content-disposition', `attachment; filename="${name}.tar"`)
      // JSON with everything outside ASCII escaped: a header carries ASCII only.
      .header('x-berth-path-stat', JSON.stringify(stat).replace(/[^\x20-\x7e]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))
      .header('cache-control', 'no-store')
      .send(Readable.from(cutOff(archive as AsyncIterable<Buffer>, maxDownloadBytes)))
  })

  app.put('/v1/containers/:idOrName/archive', {
    config: { scope: 'write', part: 'files' },
    validatorCompiler,
    schema: {
      tags: ['files'],
      summary: 'Unpack a tar into a directory of a container (docker cp in)',
      description: `The archive is read whole first, at most BERTH_MAX_UPLOAD (${maxUploadBytes} bytes here), and checked: entries must stay inside the directory — ` +
        'no absolute names, no ".." (also in hard-link targets and long names), no device nodes or FIFOs. A refused archive writes nothing. ' +
        'Existing files are replaced; a directory is not replaced by a file.',
      operationId: 'putArchive',
      params: ContainerParams,
      querystring: PutArchiveQuery,
      body: binary(TAR, 'A tar archive.'),
      response: { 204: Type.Null({ description: 'Unpacked.' }), ...problems(...CONTAINER) }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: false })
    request.audit({ path })
    const container = await findFor(request)
    const upload = await spool(bodyOf(request, TAR, maxUploadBytes), { limit: maxUploadBytes, check: new TarCheck() })
    try {
      await app.engine.part('files').put(container.id, path, upload.open(), { size: upload.size })
    } finally {
      await upload.discard()
    }
    return await reply.code(204).send(null)
  })

  app.put('/v1/containers/:idOrName/files', {
    config: { scope: 'write', part: 'files' },
    validatorCompiler,
    schema: {
      tags: ['files'],
      summary: 'Write one file into a container',
      description: `The body is the file's content, at most BERTH_MAX_UPLOAD (${maxUploadBytes} bytes here), read whole before it is written. ` +
        'Its directory must exist; an existing file is replaced.',
      operationId: 'putFile',
      params: ContainerParams,
      querystring: PutFileQuery,
      body: binary(BYTES, 'The file\'s content.'),
      response: { 204: Type.Null({ description: 'Written.' }), ...problems(...CONTAINER) }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: true })
    request.audit({ path })
    const container = await findFor(request)
    const upload = await spool(bodyOf(request, BYTES, maxUploadBytes), { limit: maxUploadBytes })
    try {
      const header = tarHeader({ name: posix.basename(path), size: upload.size, mode: parseInt(request.query.mode ?? '0644', 8) })
      async function * archive (): AsyncGenerator<Buffer> {
        yield header
        for await (const chunk of upload.open()) yield chunk as Buffer
        yield Buffer.alloc(padding(upload.size))
        yield TAR_END
      }
      await app.engine.part('files').put(container.id, posix.dirname(path), Readable.from(archive()), { size: header.length + upload.size + padding(upload.size) + TAR_END.length })
    } finally {
      await upload.discard()
    }
    return await reply.code(204).send(null)
  })

  async function findFor (request: FastifyRequest) {
    const { id, name } = await app.containers.find(principalOf(request), (request.params as { idOrName: string }).idOrName)
    request.audit({ container: { id, name } })
    return { id, name }
  }
}

/** The request body as sent, when it came in the media type the route takes. */
function bodyOf (request: FastifyRequest, media: string, limit: number): Readable {
  if (!(request.body instanceof Readable)) throw new BerthError('unsupported_media_type', `send the body as ${media}`)
  // Said before a byte is read when the client says how much it sends; counted as it comes otherwise.
  if (Number(request.headers['content-length'] ?? 0) > limit) throw new BerthError('payload_too_large', `the upload is larger than ${limit} bytes (BERTH_MAX_UPLOAD)`)
  return request.body
}

/**
 * At most `limit` bytes of `source`; past them the response is cut off with an error, so no client
 * takes it for whole. One generator, so that every error (the cut, the engine going away) reaches
 * the response, and a client that leaves releases the engine's stream.
 */
async function * cutOff (source: AsyncIterable<Buffer>, limit: number): AsyncGenerator<Buffer> {
  let seen = 0
  for await (const chunk of source) {
    seen += chunk.length
    if (seen > limit) throw new BerthError('payload_too_large', `the archive is larger than ${limit} bytes (BERTH_MAX_DOWNLOAD)`)
    yield chunk
  }
}

export default files
