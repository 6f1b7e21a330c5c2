// docker cp for HTTP clients: GET /v1/containers/{idOrName}/archive downloads a path as a tar; PUT
// on it unpacks a tar into a directory; PUT /v1/containers/{idOrName}/files writes one file. Owner-
// checked (another token's files are not found), paths confined (src/access/files.ts), uploads
// limited by BERTH_MAX_UPLOAD, read whole and held to the upload rule (src/access/uploads.ts) —
// against what is in the container too — before the engine gets the archive berth assembles;
// downloads cut at BERTH_MAX_DOWNLOAD.
import { posix } from 'node:path'
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify'
import { Type } from 'typebox'
import { ArchiveReader, confinedPath, spool, type Spooled } from '../access/files.ts'
import type { Principal } from '../access/ownership.ts'
import { assemble, checkAgainst, planFile, planUpload, type UploadPlan } from '../access/uploads.ts'
import { BerthError } from '../errors.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { ArchiveQuery, PutArchiveQuery, PutFileQuery } from '../schemas/files.ts'

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
        ...problems(...CONTAINER, 'payload_too_large', 'container_not_running')
      }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: false })
    const container = await app.containers.find(principalOf(request), request.params.idOrName)
    const signal = app.streams.signal(reply)
    const { replica } = request.query
    const { stat, archive } = await app.engine.part('files').get(container.id, path, { signal, ...(replica === undefined ? {} : { replica }) })
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
      description: `The archive is read whole first, at most BERTH_MAX_UPLOAD (${maxUploadBytes} bytes here), and checked entirely before anything is written; ` +
        'the engine then gets the archive berth assembles from it, never the one sent. Everything lands inside `path`, and nothing is written through a link:\n\n' +
        '- entries are files, directories, symbolic and hard links (no devices, FIFOs or sparse files); names are relative, without "..", each path once ' +
        '(`./a` and `a` are one path), and no entry lies below a link or a file of the archive;\n' +
        '- a symbolic link points inside `path`: relative, and not climbing above `path` (also through the archive\'s other links); a hard link joins files of the archive;\n' +
        '- setuid, setgid and sticky bits, owner names and xattrs are dropped; numeric owners, permission bits and times are kept;\n' +
        '- in the container, where the archive needs a directory there must be one (a link there is 409 path_conflict, as is a file), and a directory is not ' +
        'replaced by a file or a link (409 path_conflict); a file or a link there is replaced, never written through.\n\n' +
        '`path` itself is followed when it is a link, as `cp` into a directory does. A refused upload (400 validation_failed naming the entry, 409 path_conflict ' +
        'naming the path) writes nothing.',
      operationId: 'putArchive',
      params: ContainerParams,
      querystring: PutArchiveQuery,
      body: binary(TAR, 'A tar archive.'),
      response: { 204: Type.Null({ description: 'Unpacked.' }), ...problems(...CONTAINER, 'path_conflict', 'container_not_running') }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: false })
    request.audit({ path })
    const container = await findFor(request)
    const reader = new ArchiveReader()
    const upload = await spool(bodyOf(request, TAR, maxUploadBytes), { limit: maxUploadBytes, check: reader })
    try {
      await unpack(container, path, planUpload(reader.entries), upload, request.query.replica)
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
        'Its directory must exist (it is followed when it is a link); an existing file or link is replaced, never written through; ' +
        'a directory is not replaced (409 path_conflict).',
      operationId: 'putFile',
      params: ContainerParams,
      querystring: PutFileQuery,
      body: binary(BYTES, 'The file\'s content.'),
      response: { 204: Type.Null({ description: 'Written.' }), ...problems(...CONTAINER, 'path_conflict', 'container_not_running') }
    }
  }, async (request, reply) => {
    const path = confinedPath(request.query.path, 'querystring/path', { file: true })
    request.audit({ path })
    const container = await findFor(request)
    const upload = await spool(bodyOf(request, BYTES, maxUploadBytes), { limit: maxUploadBytes })
    try {
      const plan = planFile(posix.basename(path), upload.size, parseInt(request.query.mode ?? '0644', 8), Math.floor(Date.now() / 1000))
      await unpack(container, posix.dirname(path), plan, upload, request.query.replica)
    } finally {
      await upload.discard()
    }
    return await reply.code(204).send(null)
  })

  /** Holds a plan to what is in the container, then sends the engine the archive berth assembles. */
  /** Unpacks into one replica's container: the one asked for, else (on a cluster) the running replica with the lowest slot. */
  async function unpack (container: { id: string, name: string }, path: string, plan: UploadPlan, upload: Spooled, replica: string | undefined): Promise<void> {
    const files = app.engine.part('files')
    const which = replica === undefined ? {} : { replica }
    await checkAgainst(plan, path, container.name, async at => await files.stat(container.id, at, which))
    const { archive, size } = assemble(plan, upload)
    await files.put(container.id, path, archive, { size, ...which })
  }

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
