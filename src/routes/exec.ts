// docker exec: POST /v1/containers/{idOrName}/exec runs a command in a running container and streams
// its output (NDJSON or SSE, stdout and stderr apart) with its exit code last, or answers it whole
// (JSON); GET on the same path upgrades to a WebSocket for an interactive terminal (stdin, TTY,
// resize). A token execs only in its own containers.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { WebSocket } from 'ws'
import type { Principal } from '../access/ownership.ts'
import type { Container, ExecSession, ExecSpec } from '../engine/types.ts'
import { BerthError, problemOf } from '../errors.ts'
import { NDJSON, SSE, negotiate, notAcceptable, sendStream } from '../http/event-stream.ts'
import { eventBody } from '../http/output-stream.ts'
import { ref } from '../schemas/common.ts'
import { CONTAINER, problems } from '../schemas/problems.ts'
import { ContainerParams } from '../schemas/containers.ts'
import { ReplicaQuery } from '../schemas/common.ts'
import { ExecEvent, ExecQuery, ExecRequest, ExecResult } from '../schemas/exec.ts'

const EXEC_MEDIA = [NDJSON, SSE, 'application/json'] as const
/** What a JSON exec answer keeps of each stream. */
const MAX_COLLECTED = 1024 * 1024
/** Output a WebSocket may have queued for a slow client before berth waits for it. */
const MAX_UNSENT = 256 * 1024
/** WebSocket output frames start with the stream they carry. */
const CHANNEL = { stdout: 1, stderr: 2 } as const

const exec: FastifyPluginAsyncTypebox = async (app) => {
  const principalOf = (request: FastifyRequest): Principal => request.principal as Principal

  app.post('/v1/containers/:idOrName/exec', {
    config: { scope: 'write', part: 'exec' },
    schema: {
      tags: ['containers'],
      summary: 'Run a command in a running container (docker exec)',
      description: 'Streams its output as ExecEvents — NDJSON by default, SSE with `Accept: text/event-stream` — line by line, stdout and stderr apart, ' +
        'and its exit code last. `Accept: application/json` waits for the end and answers the output whole (1 MiB of each stream at most). ' +
        'A client that leaves ends the stream; the command itself runs on until it ends (the engine cannot stop it). ' +
        'For an interactive terminal (stdin, resize) open a WebSocket on the same path.',
      operationId: 'execContainer',
      params: ContainerParams,
      querystring: ReplicaQuery,
      body: ref(ExecRequest),
      response: {
        200: {
          description: 'Its output and exit code.',
          content: {
            [NDJSON]: { schema: ref(ExecEvent) },
            [SSE]: { schema: { type: 'string', description: 'Server-sent events; each `data` is an ExecEvent.' } },
            'application/json': { schema: ref(ExecResult) }
          }
        },
        ...problems(...CONTAINER, 'container_not_running', 'not_acceptable')
      }
    }
  }, async (request, reply) => {
    const media = negotiate(request.headers.accept, EXEC_MEDIA)
    if (media === null) throw notAcceptable(EXEC_MEDIA)
    const { command, env, workingDir, user, tty = false } = request.body
    const container = await start(request, { command, env: env ?? {}, tty, stdin: false, ...(workingDir === undefined ? {} : { workingDir }), ...(user === undefined ? {} : { user }) })
    const signal = app.streams.signal(reply)
    const { replica } = request.query
    const session = await app.engine.part('exec').exec(container.id, container.spec, { signal, ...(replica === undefined ? {} : { replica }) })
    request.audit({ exec: session.id })
    // Somebody works in it: an idle timeout does not count this as idle.
    app.lifecycle.touch(container.id)
    if (media === 'application/json') return await collect(session)
    return await sendStream(reply as unknown as FastifyReply, media, eventBody(events(session, request.id), media, app.config.streams.heartbeatMs))
  })

  // Declared with app.route: the type provider knows nothing of wsHandler, and the two disagree on schema types.
  app.route({
    method: 'GET',
    url: '/v1/containers/:idOrName/exec',
    config: { scope: 'write', part: 'exec' },
    schema: {
      tags: ['containers'],
      summary: 'An interactive terminal in a running container (docker exec -it), over a WebSocket',
      description: 'Upgrade to a WebSocket (plain GET answers 426). The command comes as `command` query parameters, one per argument. ' +
        'Server to client: binary frames of output, whose first byte is the stream (1 stdout, 2 stderr; with a TTY always 1); ' +
        'then a text frame `{"type":"exit","exitCode":n}` and a normal close — or `{"type":"error","problem":{…}}` and close code 1011. ' +
        'Client to server: binary frames are stdin; text frames are JSON `{"type":"resize","cols":n,"rows":n}` or `{"type":"eof"}` (closes stdin). ' +
        'Closing the socket closes the command\'s stdin (a shell then exits). Needs the `Authorization` header on the upgrade request.',
      operationId: 'execContainerTerminal',
      params: ContainerParams,
      querystring: ExecQuery,
      response: {
        101: { description: 'Switching to the WebSocket protocol.' },
        ...problems(...CONTAINER, 'container_not_running', 'upgrade_required')
      }
    },
    preHandler: async (request: FastifyRequest, reply: FastifyReply) => {
      // Before the upgrade, so that a container that is not there or not running is an HTTP answer.
      if (!request.ws) return
      const started = await start(request, terminalSpec(request.query as ExecQueryType))
      // Ends when the socket closes, a reload revokes the token, or berth closes.
      terminals.set(request, { ...started, signal: app.streams.signal(reply) })
    },
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      // Thrown, so that the one error handler answers it like every other problem.
      throw new BerthError('upgrade_required', 'this is a WebSocket endpoint: send the upgrade request (Connection: Upgrade, Upgrade: websocket)', {}, { headers: { upgrade: 'websocket' } })
    },
    wsHandler: async (socket: WebSocket, request: FastifyRequest) => {
      const started = terminals.get(request) as Started & { signal: AbortSignal }
      terminals.delete(request)
      await terminal(socket, request, started)
    }
  } as unknown as RouteOptions)

  type ExecQueryType = { command: string[], tty?: boolean, workingDir?: string, user?: string, cols?: number, rows?: number, replica?: string }
  type Started = Pick<Container, 'id' | 'name'> & { spec: ExecSpec }
  const terminals = new WeakMap<FastifyRequest, Started & { signal: AbortSignal }>()

  function terminalSpec (query: ExecQueryType): ExecSpec {
    return { command: query.command, env: {}, tty: query.tty ?? true, stdin: true, ...(query.workingDir === undefined ? {} : { workingDir: query.workingDir }), ...(query.user === undefined ? {} : { user: query.user }) }
  }

  /** Finds the container for the requester, and says in the audit line what is run where (the program, never its arguments). */
  async function start (request: FastifyRequest, spec: ExecSpec): Promise<Started> {
    const params = request.params as { idOrName: string }
    const { id, name, running } = await app.containers.find(principalOf(request), params.idOrName)
    request.audit({ container: { id, name }, command: spec.command[0] as string })
    // Said now, before a WebSocket upgrade, rather than by the engine once the session has begun.
    if (!running) throw new BerthError('container_not_running', `container ${id} is not running: start it first`)
    return { id, name, spec }
  }

  async function terminal (socket: WebSocket, request: FastifyRequest, container: Started & { signal: AbortSignal }): Promise<void> {
    const closed = new AbortController()
    socket.once('close', () => closed.abort())
    const signal = AbortSignal.any([closed.signal, container.signal])
    signal.addEventListener('abort', () => { if (socket.readyState === socket.OPEN) socket.close(1001, 'session ended') }, { once: true })
    // Frames a client sends at once arrive before the engine has started the command: they wait for it.
    let session: ExecSession | null = null
    const early: Array<[Buffer, boolean]> = []
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      if (session === null) {
        early.push([data, isBinary])
        return
      }
      if (isBinary) {
        session.stdin?.write(data)
        return
      }
      let message: { type?: unknown, cols?: unknown, rows?: unknown }
      try {
        message = JSON.parse(data.toString('utf8'))
      } catch {
        message = {}
      }
      if (message.type === 'eof') session.stdin?.end()
      else if (message.type === 'resize' && isSize(message.cols) && isSize(message.rows)) session.resize({ cols: message.cols, rows: message.rows }).catch(() => {})
      else socket.send(JSON.stringify({ type: 'error', problem: problemOf(new BerthError('validation_failed', 'text frames are {"type":"resize","cols":n,"rows":n} or {"type":"eof"}; stdin goes in binary frames'), request.id) }))
    }
    socket.on('message', onMessage)
    let started: ExecSession
    try {
      const { replica } = request.query as ExecQueryType
      started = await app.engine.part('exec').exec(container.id, container.spec, { signal, ...(replica === undefined ? {} : { replica }) })
    } catch (error) {
      fail(socket, error, request.id)
      return
    }
    const query = request.query as ExecQueryType
    app.lifecycle.touch(container.id)
    request.log.info({ audit: { actor: principalOf(request).name, action: 'GET /v1/containers/:idOrName/exec', target: { container: { id: container.id, name: container.name }, command: container.spec.command[0], exec: started.id }, status: 101 } }, 'audit')
    if (query.cols !== undefined && query.rows !== undefined) await started.resize({ cols: query.cols, rows: query.rows }).catch(() => {})
    session = started
    for (const [data, isBinary] of early.splice(0)) onMessage(data, isBinary)
    try {
      for await (const chunk of started.output) {
        if (socket.readyState !== socket.OPEN) break
        const frame = Buffer.concat([Buffer.from([CHANNEL[chunk.stream]]), chunk.data])
        // A client that reads slower than the command writes holds the command back, not berth's memory.
        if (socket.bufferedAmount < MAX_UNSENT) socket.send(frame, { binary: true })
        else await new Promise<void>(resolve => socket.send(frame, { binary: true }, () => resolve()))
      }
      const exitCode = await started.exitCode()
      if (socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ type: 'exit', exitCode }))
        socket.close(1000, 'exited')
      }
    } catch (error) {
      fail(socket, error, request.id)
    } finally {
      closed.abort()
    }
  }
}

function isSize (value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 1000
}

function fail (socket: WebSocket, error: unknown, requestId: string): void {
  if (socket.readyState !== socket.OPEN) return
  const problem = error instanceof BerthError ? error : new BerthError('internal_error', 'berth failed unexpectedly; the request id leads to the cause in its log')
  socket.send(JSON.stringify({ type: 'error', problem: problemOf(problem, requestId) }))
  socket.close(1011, problem.code)
}

/** An exec's output as ExecEvents: its lines, then its exit code; a broken engine connection is the last event. */
async function * events (session: ExecSession, requestId: string): AsyncGenerator<ExecEvent> {
  try {
    for await (const entry of session.lines()) yield { type: 'output', stream: entry.stream, line: entry.line }
    yield { type: 'exit', exitCode: await session.exitCode() }
  } catch (error) {
    if (!(error instanceof BerthError)) throw error
    yield { type: 'error', problem: problemOf(error, requestId) }
  }
}

async function collect (session: ExecSession) {
  const kept = { stdout: [] as Buffer[], stderr: [] as Buffer[] }
  const size = { stdout: 0, stderr: 0 }
  let truncated = false
  for await (const chunk of session.output) {
    const room = MAX_COLLECTED - size[chunk.stream]
    if (chunk.data.length > room) truncated = true
    if (room > 0) {
      kept[chunk.stream].push(chunk.data.subarray(0, room))
      size[chunk.stream] += Math.min(room, chunk.data.length)
    }
  }
  return {
    exitCode: await session.exitCode(),
    stdout: Buffer.concat(kept.stdout).toString('utf8'),
    stderr: Buffer.concat(kept.stderr).toString('utf8'),
    truncated
  }
}

export default exec
