// Runs berth as its own process (src/server.ts), for tests of the process itself: start-up checks,
// signals, graceful close. Everything it prints is kept, and can be waited on.
import { spawn } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { env } from './helpers.ts'

const SERVER = new URL('../src/server.ts', import.meta.url).pathname

function ownedDirectory (owner: { uid: number, gid: number }): string {
  const directory = mkdtempSync(join(tmpdir(), 'berth-process-'))
  chownSync(directory, owner.uid, owner.gid)
  return directory
}

export interface Run { code: number | null, signal: NodeJS.Signals | null, output: string }

/**
 * Starts berth with these environment variables; `as` runs it as another user and group (the test
 * must be root). tap records what each process it spawns covered under .tap/, which that user may
 * not write: such a berth records it in a directory of its own, and its coverage is not counted.
 */
export function start (vars: Record<string, string>, as: { uid: number, gid: number } | null = null) {
  const own = as === null ? null : ownedDirectory(as)
  const child = spawn(process.execPath, [SERVER], { env: { PATH: process.env.PATH ?? '', BERTH_DOCKER_SOCKET: env.socket, ...(own === null ? {} : { _TAPJS_PROCESSINFO_CWD_: own }), ...vars }, stdio: ['ignore', 'pipe', 'pipe'], ...(as ?? {}) })
  if (own !== null) child.once('exit', () => { rmSync(own, { recursive: true, force: true }) })
  let output = ''
  let closed = false
  // Fired on every piece of output, and once more when berth's output has ended.
  const seen = new EventTarget()
  const keep = (chunk: Buffer) => { output += chunk; seen.dispatchEvent(new Event('output')) }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  child.once('close', () => { closed = true; seen.dispatchEvent(new Event('output')) })
  const exited = new Promise<Run>(resolve => child.once('exit', (code, signal) => resolve({ code, signal, output })))
  /**
   * Resolves once the output matches (from `from` on), as it arrives; fails when berth's output ends
   * first, or after a minute (a start on a machine busy with other test runs can take many seconds).
   */
  const waitFor = async (pattern: RegExp, from = 0) => await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (pattern.test(output.slice(from))) resolve()
      else if (closed) reject(new Error(`never saw ${pattern}: berth exited\n${output}`))
      else return
      clearTimeout(timer)
      seen.removeEventListener('output', check)
    }
    const timer = setTimeout(() => { seen.removeEventListener('output', check); reject(new Error(`never saw ${pattern} within 60 s:\n${output}`)) }, 60_000)
    seen.addEventListener('output', check)
    check()
  })
  return { child, exited, waitFor, get output () { return output } }
}
