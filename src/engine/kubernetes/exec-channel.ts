// A command run in a pod's container through the apiserver's exec subresource, over a WebSocket in
// the channel protocol kubectl's successors speak: every frame starts with its channel — 0 stdin,
// 1 stdout, 2 stderr, 3 the final status (a Status object: Success, or the exit code), 4 a resize.
// v5 (Kubernetes 1.29+) can also close stdin alone; on v4 (1.25 here) stdin ends only with the whole
// connection, so a caller that must end stdin early says so in its input (tar stops at its end
// marker; a terminal takes Ctrl-D).
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { ApiException } from '@kubernetes/client-node'
import { BerthError } from '../../errors.ts'
import { Inbox } from '../inbox.ts'
import type { OutputChunk } from '../types.ts'
import type { KubeClient } from './client.ts'
import { mapKubeError } from './errors.ts'
import { outcomeOf, type ExecOutcome } from './pod-readings.ts'

const PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io']
const STDIN = 0
const STDOUT = 1
const STDERR = 2
const STATUS = 3
const RESIZE = 4
const CLOSE = 255
/** Between the interrupt and the end of input sent to a terminal berth leaves. */
const TTY_LEAVE_MS = 200
/** Output chunks held for a reader before the socket is paused. */
const MAX_BUFFERED = 64

export interface ExecChannel {
  readonly id: string
  /** Output as it comes; ends when the command has ended (or the connection went). */
  readonly output: AsyncIterable<OutputChunk>
  /** Resolves with how it ended; rejects when the connection broke first (engine_unavailable). */
  readonly outcome: Promise<ExecOutcome>
  /** Sends stdin; resolves once the frame is on its way (the socket's own backpressure). */
  write: (data: Buffer) => Promise<void>
  /** Ends stdin alone, where the protocol can (v5); false where it cannot. */
  closeStdin: () => boolean
  resize: (size: { cols: number, rows: number }) => void
  /** Ends the connection (and with it stdin, and the command's hold on the caller). */
  close: () => void
}

export interface ExecRequest {
  pod: string
  container: string
  command: string[]
  stdin: boolean
  tty: boolean
  signal?: AbortSignal
}

/** Opens the exec; resolves once the apiserver has connected it to the kubelet (within the call deadline). */
export async function openExec (client: KubeClient, request: ExecRequest): Promise<ExecChannel> {
  const query = new URLSearchParams()
  for (const argument of request.command) query.append('command', argument)
  query.set('container', request.container)
  query.set('stdout', 'true')
  // A terminal has one output: the apiserver refuses stderr beside a TTY.
  query.set('stderr', String(!request.tty))
  query.set('stdin', String(request.stdin))
  query.set('tty', String(request.tty))
  const url = `${client.server.replace(/^http/, 'ws')}/api/v1/namespaces/${encodeURIComponent(client.namespace)}/pods/${encodeURIComponent(request.pod)}/exec?${query.toString()}`
  const options: Record<string, unknown> = {}
  await client.config.applyToHTTPSOptions(options)
  const target = { timedOut: false, timeoutMs: client.timeoutMs, server: client.server }
  const socket = new WebSocket(url, PROTOCOLS, { ...options, handshakeTimeout: client.timeoutMs, perMessageDeflate: false })
  const inbox = new Inbox<OutputChunk>()
  let settle: { resolve: (outcome: ExecOutcome) => void, reject: (error: unknown) => void } = { resolve: () => {}, reject: () => {} }
  const outcome = new Promise<ExecOutcome>((resolve, reject) => { settle = { resolve, reject } })
  // Nobody may be waiting on it yet; a rejection is still the caller's to see when it asks.
  outcome.catch(() => {})
  const frame = (channel: number, data: Buffer): Buffer => Buffer.concat([Buffer.from([channel]), data])
  let settled = false
  /** How it ended, said once: the status channel, or a connection that went first. */
  const finish = (result: ExecOutcome | Error): void => {
    if (settled) return
    settled = true
    if (result instanceof Error) settle.reject(result)
    else settle.resolve(result)
  }
  const abort = (): void => {
    finish(new BerthError('engine_unavailable', 'the exec was ended before the command did', {}, { headers: { 'retry-after': '5' } }))
    inbox.close()
    // Closing the connection closes the command's stdin, which ends a command that reads it; but a
    // terminal's process holds its own end of the pty and would outlive berth's session. Interrupt
    // what runs in the foreground and end the shell's input (Ctrl-C, then Ctrl-D), as a user leaving
    // would — Ctrl-D again until the command has ended and the apiserver closed the connection: the
    // terminal drops what was typed after an interrupt in the same read, and on a loaded node the
    // two can reach it in one read however far apart berth sent them.
    const leave = (): void => {
      socket.send(frame(STDIN, Buffer.from([3])))
      const again = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(frame(STDIN, Buffer.from([4])))
      }, TTY_LEAVE_MS).unref()
      const giveUp = setTimeout(() => { socket.terminate() }, client.timeoutMs).unref()
      socket.once('close', () => {
        clearInterval(again)
        clearTimeout(giveUp)
      })
    }
    if (!(request.tty && request.stdin)) socket.terminate()
    else if (socket.readyState === WebSocket.OPEN) leave()
    // Ended while the apiserver was still opening the connection: the kubelet may have started the
    // command already, so it is left as a user would, once the connection is open (or fails to open).
    else if (socket.readyState === WebSocket.CONNECTING) socket.once('open', leave)
    else socket.terminate()
  }
  request.signal?.addEventListener('abort', abort, { once: true })

  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('unexpected-response', (_request, response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { body += chunk })
      response.on('end', () => reject(mapKubeError(new ApiException(response.statusCode ?? 500, body, body, {}), 'container', request.pod, target)))
    })
    socket.once('error', error => reject(mapKubeError(error, 'container', request.pod, { ...target, timedOut: /timed out/i.test(error.message) })))
  }).catch((error: unknown) => {
    request.signal?.removeEventListener('abort', abort)
    socket.terminate()
    throw error
  })

  let buffered = 0
  let paused = false
  socket.on('message', (data: Buffer) => {
    if (data.length < 1) return
    const channel = data[0] as number
    const payload = data.subarray(1)
    // Every channel starts with an empty frame: it says nothing.
    if (payload.length === 0) return
    if (channel === STDOUT || channel === STDERR) {
      inbox.push({ stream: channel === STDERR ? 'stderr' : 'stdout', data: Buffer.from(payload) })
      // A reader slower than the command holds the command back (through the socket), not berth's memory.
      if (++buffered >= MAX_BUFFERED && !paused) {
        paused = true
        socket.pause()
      }
    } else if (channel === STATUS) {
      finish(outcomeOf(payload.toString('utf8')))
      // The output ends with the connection, which the apiserver closes after the status: a
      // terminal's last output can come after its status. One that stays open is closed here, once
      // a slow reader has taken what came (a paused socket still holds output).
      const lingering = setInterval(() => { if (!paused) socket.terminate() }, client.timeoutMs).unref()
      socket.once('close', () => clearInterval(lingering))
    }
  })
  socket.on('close', () => {
    request.signal?.removeEventListener('abort', abort)
    finish(new BerthError('engine_unavailable', `the exec connection to pod ${request.pod} closed before the command said how it ended`, {}, { headers: { 'retry-after': '5' } }))
    inbox.close()
  })
  socket.on('error', () => { socket.terminate() })

  async function * drain (): AsyncGenerator<OutputChunk> {
    for (let next = await inbox.take(); next !== undefined; next = await inbox.take()) {
      buffered--
      if (paused && buffered < MAX_BUFFERED / 2) {
        paused = false
        socket.resume()
      }
      yield next
    }
  }
  return {
    id: `${request.pod}.${randomBytes(6).toString('hex')}`,
    output: drain(),
    outcome,
    write: async (data: Buffer) => {
      if (socket.readyState !== WebSocket.OPEN) return
      await new Promise<void>(resolve => socket.send(frame(STDIN, data), () => resolve()))
    },
    closeStdin: () => {
      if (socket.protocol !== 'v5.channel.k8s.io' || socket.readyState !== WebSocket.OPEN) return false
      socket.send(Buffer.from([CLOSE, STDIN]))
      return true
    },
    resize: ({ cols, rows }) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(frame(RESIZE, Buffer.from(JSON.stringify({ Width: cols, Height: rows }))))
    },
    close: () => { socket.close(1000) }
  }
}
