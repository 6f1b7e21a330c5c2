// What every verb of the berth command is made of: its usage, its options, and what it does with the
// client; and the helpers verbs share (each container in turn, KEY=VALUE lists, problems in docker's words).
import { UsageError, type OptionSpecs, type Parsed } from '../args.ts'
import { BerthProblem, BerthResponseError, type BerthClient } from '../index.ts'

export interface Io {
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
  stdin: NodeJS.ReadStream
  env: NodeJS.ProcessEnv
}

export interface Ctx {
  berth: BerthClient
  io: Io
  url: string
  token: string | undefined
  /** One line for a failure, as berth's command words it. */
  describe: (error: unknown) => string
}

export interface Command<O extends OptionSpecs = OptionSpecs> {
  /** `volume ls` for a verb of a group. */
  name: string
  /** What follows `berth NAME` in the usage line: `[OPTIONS] CONTAINER [CONTAINER...]`. */
  usage: string
  summary: string
  options: O
  /** Positional arguments needed at least (docker: fewer is status 1 with the usage). */
  min?: number
  max?: number
  /** false: options end at the first argument (run, exec: the command's own flags follow). */
  interspersed?: boolean
  /** More help under the options. */
  more?: string
  run: (ctx: Ctx, parsed: Parsed<O>) => Promise<number>
}

/** Typed in place, stored untyped: the table of verbs holds many option shapes. */
export function command<O extends OptionSpecs> (spec: Command<O>): Command {
  return spec as unknown as Command
}

/** Exit status of a verb whose call berth refused (docker: 1; `run` and `create`: 125). */
export const REFUSED = 1

/** Runs `act` for each name, printing it as docker does; any failure is a line on stderr and status 1. */
export async function eachName (ctx: Ctx, names: string[], act: (name: string) => Promise<string | undefined | void>): Promise<number> {
  let status = 0
  for (const name of names) {
    try {
      const printed = await act(name)
      ctx.io.stdout.write(`${printed ?? name}\n`)
    } catch (error) {
      ctx.io.stderr.write(`${ctx.describe(error)}\n`)
      status = 1
    }
  }
  return status
}

/** KEY=VALUE pairs (-l, --build-arg) as an object; a pair without `=` is the flag's mistake. */
export function keyValues (pairs: string[] | undefined, flag: string, { bare }: { bare?: (key: string) => string | undefined } = {}): Record<string, string> | undefined {
  if (!pairs?.length) return undefined
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq === 0) throw new UsageError(`invalid argument ${JSON.stringify(pair)} for ${JSON.stringify(flag)} flag: the name is missing before "="`)
    if (eq === -1) {
      // docker -e NAME: the value from berth's own environment, or left out when that has none.
      const value = bare?.(pair)
      if (bare === undefined) throw new UsageError(`invalid argument ${JSON.stringify(pair)} for ${JSON.stringify(flag)} flag: KEY=VALUE expected`)
      if (value !== undefined) out[pair] = value
      continue
    }
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/** "512m", "2g", "1.5GB" → bytes, as docker's units.RAMInBytes reads them. */
export function parseSize (text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(text.trim())
  if (!match) return null
  const power = ['', 'k', 'm', 'g', 't', 'p'].indexOf((match[2] ?? '').toLowerCase())
  return Math.floor(Number(match[1]) * 1024 ** power)
}

export function isProblem (error: unknown, ...codes: string[]): error is BerthProblem {
  return error instanceof BerthProblem && (codes.length === 0 || codes.includes(error.code))
}

export { BerthProblem, BerthResponseError }
