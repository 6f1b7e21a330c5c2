// The tools berth offers agents over MCP: docker's verbs for containers (run, ps, inspect, logs,
// exec, stop, start, rm, wait) and files in and out (docker cp). Each one calls the REST operation it
// names, as the agent's token (./rest.ts), and takes that operation's own arguments (./operations.ts);
// a refusal is a tool error carrying berth's problem: its code, detail and members.
import { posix } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { CallToolResult, Tool as ToolDefinition } from '@modelcontextprotocol/sdk/types.js'
import { BerthError, problemOf, type Problem } from '../errors.ts'
import type { JsonSchema } from './json-schema.ts'
import { argumentsOf, invalidArgument, requestOf, type Operation } from './operations.ts'
import { callRoute, problemOfAnswer, type Caller, type RestAnswer } from './rest.ts'
import { readTar } from './tar.ts'

/** Output of a command or a log kept for a tool result: as much as an exec answered in JSON keeps of each stream. */
const MAX_TEXT = 1024 * 1024
/** The largest JSON answer read (an exec's two streams, escaped). */
const MAX_JSON = 8 * 1024 * 1024
/**
 * The largest file or archive a tool moves, in or out: a tool call and its result travel whole in one
 * JSON message, held in memory at both ends, base64 in it. Within BERTH_MAX_UPLOAD and
 * BERTH_MAX_DOWNLOAD too; bigger files go through the REST routes, which stream them.
 */
export const MAX_FILE = 8 * 1024 * 1024

export interface ToolContext {
  app: FastifyInstance
  caller: Caller
  operation: (id: string) => Operation
}

export interface Tool {
  name: string
  /** The REST operations it calls: a backend without them does not list it. */
  operations: string[]
  definition: (operation: (id: string) => Operation) => ToolDefinition
  call: (args: Record<string, unknown>, context: ToolContext) => Promise<CallToolResult>
}

/** A tool error: the problem berth answered, whole, as JSON an agent reads and a program parses. */
export function toolError (problem: Problem): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: JSON.stringify(problem) }] }
}

/** Runs a tool, its refusals and berth's own as tool errors; anything else is berth's bug, thrown. */
export async function runTool (tool: Tool, args: Record<string, unknown>, context: ToolContext): Promise<CallToolResult> {
  try {
    return await tool.call(args, context)
  } catch (error) {
    if (error instanceof Answered) return toolError(error.problem)
    if (error instanceof BerthError) return toolError(problemOf(error, context.caller.requestId))
    throw error
  }
}

/** Calls the operation with the tool's arguments; an error answer is thrown as its problem. */
async function call (context: ToolContext, id: string, args: Record<string, unknown>, options: { accept?: string, limit?: number, omit?: string[], mayBreak?: boolean } = {}): Promise<RestAnswer> {
  const operation = context.operation(id)
  const request = requestOf(operation, args, options.omit === undefined ? {} : { omit: options.omit })
  const answer = await callRoute(context.app, context.caller, {
    method: operation.method,
    url: request.url,
    query: request.query,
    ...(request.body === undefined ? {} : { body: request.body }),
    accept: options.accept ?? 'application/json',
    limit: options.limit ?? MAX_JSON
  })
  if (answer.status >= 400) throw new Answered(problemOfAnswer(answer))
  if (answer.broken && !options.mayBreak) throw new BerthError('engine_error', `the answer of ${operation.method} ${request.url} broke off half-way: the engine failed (berth's log says why, under this request id)`)
  return answer
}

/** An error answer of a route: its problem goes to the agent as it is. */
class Answered extends Error {
  readonly problem: Problem
  constructor (problem: Problem) {
    super(problem.detail)
    this.problem = problem
  }
}

/** The answer's JSON as structured content, and as text for clients that read only text. */
function structured (value: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value }
}

function json (answer: RestAnswer): unknown {
  return JSON.parse(answer.body.toString('utf8'))
}

/** A tool whose result is the operation's JSON answer, its schema the operation's. */
function jsonTool (spec: { name: string, title: string, description: string, operation: string, status: number, media?: string, annotations: ToolDefinition['annotations'], list?: string }): Tool {
  return {
    name: spec.name,
    operations: [spec.operation],
    definition: (operation) => {
      const op = operation(spec.operation)
      const answer = op.answer(spec.status, spec.media)
      return {
        name: spec.name,
        title: spec.title,
        description: spec.description,
        inputSchema: argumentsOf(op) as ToolDefinition['inputSchema'],
        // Structured content is an object: a list goes under a name.
        outputSchema: (spec.list === undefined ? answer : { type: 'object', properties: { [spec.list]: answer }, required: [spec.list], additionalProperties: false }) as ToolDefinition['outputSchema'],
        annotations: { title: spec.title, ...spec.annotations }
      }
    },
    call: async (args, context) => {
      const value = json(await call(context, spec.operation, args))
      return structured(spec.list === undefined ? value as Record<string, unknown> : { [spec.list]: value })
    }
  }
}

const CONTAINER_ARG = 'Name it by the id (or a unique prefix of it) or the name you gave it.'

const run = jsonTool({
  name: 'run',
  title: 'Run a container (docker run -d)',
  description: 'Creates and starts a container from an image, pulling the image when it is missing, and answers the container as it runs: ' +
    'its id and name, the host ports actually bound, the image digest it runs. It runs detached: use `wait` for a command that ends, `logs` for its output, ' +
    '`exec` to run more commands in it. Only your token (and admins) can see and act on it. A host port already taken is a port_conflict and leaves nothing behind; ' +
    'berth\'s policy (allowed images, ports, bind mounts) and your quota can refuse it.',
  operation: 'runContainer',
  status: 201,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
})

const ps = jsonTool({
  name: 'ps',
  title: 'List containers (docker ps)',
  description: 'The containers your token can see, newest first: running ones only unless `all` is true. Filter by status, label or name.',
  operation: 'listContainers',
  status: 200,
  list: 'containers',
  annotations: { readOnlyHint: true, openWorldHint: false }
})

const inspect = jsonTool({
  name: 'inspect',
  title: 'Inspect a container (docker inspect)',
  description: `A container as it is now: state, exit code, ports, image and digest, command, labels. ${CONTAINER_ARG}`,
  operation: 'inspectContainer',
  status: 200,
  annotations: { readOnlyHint: true, openWorldHint: false }
})

const stop = jsonTool({
  name: 'stop',
  title: 'Stop a container (docker stop)',
  description: `SIGTERM, then SIGKILL after \`timeout\` seconds. Already stopped is a success with \`changed: false\`. ${CONTAINER_ARG}`,
  operation: 'stopContainer',
  status: 200,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false }
})

const start = jsonTool({
  name: 'start',
  title: 'Start a container (docker start)',
  description: `Starts a stopped container again, with the command and ports it was run with. Already running is a success with \`changed: false\`. ${CONTAINER_ARG}`,
  operation: 'startContainer',
  status: 200,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false }
})

const wait = jsonTool({
  name: 'wait',
  title: 'Wait for a container to stop (docker wait)',
  description: 'Answers its exit code once it is not running (at once when it already is not), or `stopped: false` after `timeout` seconds. ' +
    `Give a timeout: without one the call lasts as long as the container runs. ${CONTAINER_ARG}`,
  operation: 'waitContainer',
  status: 200,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false }
})

const exec = jsonTool({
  name: 'exec',
  title: 'Run a command in a container (docker exec)',
  description: 'Runs a command in a running container and answers when it ends: its exit code and what it wrote to stdout and stderr ' +
    `(1 MiB of each at most; \`truncated\` says when there was more). The command is an array, no shell: use ["sh", "-c", "…"] for one. ${CONTAINER_ARG}`,
  operation: 'execContainer',
  status: 200,
  // The route streams unless asked for the whole answer.
  media: 'application/json',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true }
})

const rm: Tool = {
  name: 'rm',
  operations: ['removeContainer'],
  definition: (operation) => ({
    name: 'rm',
    title: 'Remove a container (docker rm)',
    description: `Removes a container and its logs. A running one is refused (container_running) unless \`force\` is true. ${CONTAINER_ARG}`,
    inputSchema: argumentsOf(operation('removeContainer')) as ToolDefinition['inputSchema'],
    annotations: { title: 'Remove a container (docker rm)', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false }
  }),
  call: async (args, context) => {
    await call(context, 'removeContainer', args)
    return { content: [{ type: 'text', text: `removed ${String(args.idOrName)}` }] }
  }
}

// A log followed would last as long as the container runs: a tool answers once, so it reads what is there.
const LOGS_OMIT = ['follow']

const logs: Tool = {
  name: 'logs',
  operations: ['containerLogs'],
  definition: (operation) => ({
    name: 'logs',
    title: 'Read a container\'s output (docker logs)',
    description: 'What the container wrote to stdout and stderr so far, as `docker logs` prints it (1 MiB at most: use `tail` or `since` for the latest). ' +
      `Readable after it stopped, until it is removed. ${CONTAINER_ARG}`,
    inputSchema: argumentsOf(operation('containerLogs'), { omit: LOGS_OMIT }) as ToolDefinition['inputSchema'],
    annotations: { title: 'Read a container\'s output (docker logs)', readOnlyHint: true, openWorldHint: false }
  }),
  call: async (args, context) => {
    const answer = await call(context, 'containerLogs', args, { accept: 'text/plain', limit: MAX_TEXT, omit: LOGS_OMIT })
    const text = answer.body.toString('utf8')
    return {
      content: [
        { type: 'text', text },
        ...(answer.truncated ? [{ type: 'text' as const, text: `[the output goes on past ${MAX_TEXT} bytes: ask for less with tail or since]` }] : [])
      ]
    }
  }
}

// ---- Files in and out (docker cp)

/** How a file's content travels in a tool argument or result. */
const ENCODINGS = ['text', 'base64', 'tar'] as const
type Encoding = typeof ENCODINGS[number]

/** What a path is, from Go's os.FileMode as the engine reports it: bit 31 a directory, bit 27 a symbolic link. */
function pathType (mode: number): 'directory' | 'symlink' | 'file' {
  // Arithmetic, not bitwise: JavaScript's bitwise operators work on signed 32-bit integers.
  if (mode >= 2 ** 31) return 'directory'
  return Math.floor(mode / 2 ** 27) % 2 === 1 ? 'symlink' : 'file'
}

const filesIn: Tool = {
  name: 'files_in',
  operations: ['putFile', 'putArchive'],
  definition: (operation) => {
    const putFile = operation('putFile')
    return {
      name: 'files_in',
      title: 'Copy a file or a directory into a container (docker cp)',
      description: 'Writes one file (`encoding` text: the content as UTF-8 text, or base64: its bytes) at `path`, replacing one that is there; its directory must exist. ' +
        'With `encoding` tar, `content` is a tar archive (base64) unpacked into the directory `path`: how a directory goes in. ' +
        `At most ${MAX_FILE} bytes (and BERTH_MAX_UPLOAD). ${CONTAINER_ARG}`,
      inputSchema: argumentsOf(putFile, { extra: [contentArguments] }) as ToolDefinition['inputSchema'],
      annotations: { title: 'Copy a file or a directory into a container (docker cp)', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false }
    }
  },
  call: async (args, context) => {
    const { content, encoding = 'text', ...rest } = args
    if (typeof content !== 'string') throw invalidArgument('content', 'is required, as a string')
    if (!ENCODINGS.includes(encoding as Encoding)) throw invalidArgument('encoding', `must be one of ${ENCODINGS.join(', ')}`)
    if (encoding === 'tar' && rest.mode !== undefined) throw invalidArgument('mode', 'applies to one file: a tar archive carries the modes of its entries')
    const bytes = encoding === 'text' ? Buffer.from(content, 'utf8') : decodeBase64(content)
    // BERTH_MAX_UPLOAD is the route's to hold, as for any upload.
    if (bytes.length > MAX_FILE) {
      throw new BerthError('payload_too_large', `the content is ${bytes.length} bytes; a tool moves at most ${MAX_FILE} (PUT /v1/containers/{idOrName}/${encoding === 'tar' ? 'archive' : 'files'} takes up to BERTH_MAX_UPLOAD)`)
    }
    const id = encoding === 'tar' ? 'putArchive' : 'putFile'
    const operation = context.operation(id)
    const request = requestOf(operation, rest)
    const answer = await callRoute(context.app, context.caller, {
      method: operation.method,
      url: request.url,
      query: request.query,
      body: bytes,
      contentType: encoding === 'tar' ? 'application/x-tar' : 'application/octet-stream',
      accept: 'application/json',
      limit: MAX_JSON
    })
    if (answer.status >= 400) throw new Answered(problemOfAnswer(answer))
    return { content: [{ type: 'text', text: encoding === 'tar' ? `unpacked ${bytes.length} bytes of tar into ${String(rest.path)}` : `wrote ${bytes.length} bytes to ${String(rest.path)}` }] }
  }
}

const contentArguments: JsonSchema = {
  properties: {
    content: { type: 'string', description: 'The file\'s content as `encoding` says: UTF-8 text, or base64 of its bytes, or base64 of a tar archive.' },
    encoding: { type: 'string', enum: [...ENCODINGS], default: 'text', description: 'text: `content` is the file as text. base64: its bytes in base64. tar: a tar archive in base64, unpacked into the directory `path`.' }
  },
  required: ['content']
}

function decodeBase64 (text: string): Buffer {
  const compact = text.replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) throw invalidArgument('content', 'is not base64')
  return Buffer.from(compact, 'base64')
}

const filesOut: Tool = {
  name: 'files_out',
  operations: ['getArchive'],
  definition: (operation) => ({
    name: 'files_out',
    title: 'Copy a file or a directory out of a container (docker cp)',
    description: 'Reads `path` from a container. A file comes back as its content: as text when it is UTF-8 text, else base64 of its bytes. ' +
      'A directory (or a link) comes back as a tar archive of it in base64, with a listing; files_in with encoding tar puts such an archive into a container. ' +
      `The first block says what came back (JSON: path, type, size, encoding). At most ${MAX_FILE} bytes (and BERTH_MAX_DOWNLOAD). ${CONTAINER_ARG}`,
    inputSchema: argumentsOf(operation('getArchive')) as ToolDefinition['inputSchema'],
    annotations: { title: 'Copy a file or a directory out of a container (docker cp)', readOnlyHint: true, openWorldHint: false }
  }),
  call: async (args, context) => {
    const { maxDownloadBytes } = context.app.config.files
    const answer = await call(context, 'getArchive', args, { accept: 'application/x-tar', limit: MAX_FILE, mayBreak: true })
    if (answer.truncated) {
      throw new BerthError('payload_too_large', `${String(args.path)} is larger than ${MAX_FILE} bytes, the most a tool moves: download it with GET /v1/containers/{idOrName}/archive`)
    }
    if (answer.broken) {
      // The route cuts a download off at BERTH_MAX_DOWNLOAD with a broken body (never a shorter valid
      // archive): up to MAX_FILE, that is what a break most likely is; above it, MAX_FILE stops the reading first.
      if (maxDownloadBytes <= MAX_FILE) throw new BerthError('payload_too_large', `the archive of ${String(args.path)} broke off: it is larger than BERTH_MAX_DOWNLOAD (${maxDownloadBytes} bytes), or the engine failed half-way`)
      throw new BerthError('engine_error', `the archive of ${String(args.path)} broke off half-way: the engine failed (berth's log says why, under this request id)`)
    }
    const stat = JSON.parse(String(answer.headers['x-berth-path-stat'] ?? '{}')) as { name?: string, size?: number, mode?: number, mtime?: string, linkTarget?: string }
    const type = pathType(stat.mode ?? 0)
    const entries = readTar(answer.body)
    const single = type === 'file' && entries.length === 1 && entries[0]?.type === 'file' ? entries[0] : null
    const path = String(args.path)
    if (single !== null) {
      const text = asText(single.data)
      const about = { path, type, size: single.size, mode: single.mode.toString(8).padStart(4, '0'), mtime: stat.mtime, encoding: text === null ? 'base64' : 'text' }
      return {
        content: [
          { type: 'text', text: JSON.stringify(about) },
          text === null
            ? { type: 'resource', resource: { uri: resourceUri(args, path), mimeType: 'application/octet-stream', blob: single.data.toString('base64') } }
            : { type: 'text', text }
        ]
      }
    }
    const about = {
      path,
      type,
      ...(stat.linkTarget ? { linkTarget: stat.linkTarget } : {}),
      size: answer.body.length,
      encoding: 'tar',
      entries: entries.map(entry => ({ name: entry.name, type: entry.type, size: entry.size, ...(entry.linkTarget === '' ? {} : { linkTarget: entry.linkTarget }) }))
    }
    return {
      content: [
        { type: 'text', text: JSON.stringify(about) },
        { type: 'resource', resource: { uri: resourceUri(args, path), mimeType: 'application/x-tar', blob: answer.body.toString('base64') } }
      ]
    }
  }
}

/** UTF-8 text without NUL bytes, or null for bytes that are not text. */
function asText (data: Buffer): string | null {
  if (data.includes(0)) return null
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data)
  } catch {
    return null
  }
}

/** Names the file in a result: berth serves no MCP resources, the URI only says where it came from. */
function resourceUri (args: Record<string, unknown>, path: string): string {
  return `berth://containers/${encodeURIComponent(String(args.idOrName))}${posix.normalize(path).split('/').map(encodeURIComponent).join('/')}`
}

export const TOOLS: Tool[] = [run, ps, inspect, logs, exec, filesIn, filesOut, stop, start, rm, wait]
