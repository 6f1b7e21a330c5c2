// Runs berth as its own process (src/server.ts), for tests of the process itself: start-up checks,
// signals, graceful close. Everything it prints is kept, and can be waited on.
import { spawn } from 'node:child_process'
import { env } from './helpers.ts'

const SERVER = new URL('../src/server.ts', import.meta.url).pathname

export interface Run { code: number | null, signal: NodeJS.Signals | null, output: string }

export function start (vars: Record<string, string>) {
  const child = spawn(process.execPath, [SERVER], { env: { PATH: process.env.PATH ?? '', BERTH_DOCKER_SOCKET: env.socket, ...vars }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', chunk => { output += chunk })
  child.stderr.on('data', chunk => { output += chunk })
  const exited = new Promise<Run>(resolve => child.once('exit', (code, signal) => resolve({ code, signal, output })))
  /** Resolves once the output matches (from `from` on); fails after 15 s or when berth exits first. */
  const waitFor = async (pattern: RegExp, from = 0) => {
    const deadline = Date.now() + 15_000
    while (!pattern.test(output.slice(from))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`never saw ${pattern}:\n${output}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  return { child, exited, waitFor, get output () { return output } }
}
