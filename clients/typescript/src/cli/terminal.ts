// berth exec through the WebSocket terminal (GET …/exec upgraded): output frames to stdout/stderr, input
// to the command's stdin, and with -t the local terminal in raw mode, its size sent again on SIGWINCH.
import { BerthProblem, ok, type Problem } from '../index.ts'
import type { Ctx } from './command.ts'

export interface TerminalOptions {
  idOrName: string
  command: string[]
  tty: boolean
  /** Send this process's stdin to the command (-i). */
  interactive: boolean
  user?: string
  workdir?: string
}

/** Runs the command to its end, answering its exit code. */
export async function terminal (ctx: Ctx, options: TerminalOptions): Promise<number> {
  const { stdin, stdout, stderr } = ctx.io
  // A container that is missing or stopped is an HTTP problem before the upgrade; a WebSocket error says nothing, so ask first.
  const container = await ok(ctx.berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: options.idOrName } } }))
  if (!container.running) throw new BerthProblem({ type: 'about:blank', title: 'Conflict', status: 409, code: 'container_not_running', detail: `container ${container.id} is not running`, requestId: '' })
  const url = new URL(`${ctx.url.replace(/\/+$/, '')}/v1/containers/${encodeURIComponent(options.idOrName)}/exec`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  for (const arg of options.command) url.searchParams.append('command', arg)
  url.searchParams.set('tty', String(options.tty))
  if (options.user !== undefined) url.searchParams.set('user', options.user)
  if (options.workdir !== undefined) url.searchParams.set('workingDir', options.workdir)
  if (options.tty && stdout.isTTY) {
    url.searchParams.set('cols', String(stdout.columns))
    url.searchParams.set('rows', String(stdout.rows))
  }
  // Node's WebSocket (undici) takes headers: the token goes in Authorization, never in the URL.
  const socket = new WebSocket(url, { headers: ctx.token ? { authorization: `Bearer ${ctx.token}` } : {} } as unknown as string[])
  socket.binaryType = 'arraybuffer'
  const raw = options.tty && options.interactive && stdin.isTTY
  const resize = () => { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'resize', cols: stdout.columns, rows: stdout.rows })) }
  const onInput = (chunk: Buffer) => { if (socket.readyState === WebSocket.OPEN) socket.send(chunk) }
  const onEnd = () => { if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'eof' })) }
  return await new Promise<number>((resolve, reject) => {
    let exitCode: number | null = null
    let problem: Problem | null = null
    const cleanup = () => {
      if (raw) stdin.setRawMode(false)
      stdin.off('data', onInput)
      stdin.off('end', onEnd)
      stdin.pause()
      process.off('SIGWINCH', resize)
    }
    socket.addEventListener('open', () => {
      if (options.interactive) {
        if (raw) stdin.setRawMode(true)
        stdin.on('data', onInput)
        stdin.once('end', onEnd)
        stdin.resume()
      } else onEnd()
      if (options.tty && stdout.isTTY) process.on('SIGWINCH', resize)
    })
    socket.addEventListener('message', (event: MessageEvent) => {
      if (typeof event.data === 'string') {
        const message = JSON.parse(event.data) as { type: string, exitCode?: number | null, problem?: Problem }
        if (message.type === 'exit') exitCode = message.exitCode ?? 0
        else if (message.type === 'error' && message.problem) problem = message.problem
        return
      }
      const frame = Buffer.from(event.data as ArrayBuffer)
      ;(frame[0] === 2 ? stderr : stdout).write(frame.subarray(1))
    })
    socket.addEventListener('close', () => {
      cleanup()
      if (problem !== null) reject(new BerthProblem(problem))
      else if (exitCode !== null) resolve(exitCode)
      else reject(new Error('the terminal closed before the command ended'))
    })
    socket.addEventListener('error', () => { /* the close that follows says what happened */ })
  })
}
