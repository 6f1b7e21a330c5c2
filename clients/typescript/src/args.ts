// The command line as docker reads it (spf13/pflag): `--name value`, `--name=value`, short options
// combined (`-dp 8080:80`, `-it`), repeated options, `--`; for run and exec the options end at the
// first argument, so the container's own command keeps its flags. Mistakes are UsageErrors in
// pflag's words, which name the flag as it is typed.

export type OptionType = 'bool' | 'string' | 'list'

export interface OptionSpec {
  type: OptionType
  short?: string
  /** The value's name in help (`--name string`). */
  value?: string
  description: string
  /** Left out of help (accepted for docker's sake, but not berth's to advertise). */
  hidden?: boolean
}

export type OptionSpecs = Record<string, OptionSpec>

/** The values given, by long name: booleans, strings, or lists of strings for repeated options. */
export type Values<O extends OptionSpecs> = {
  [K in keyof O]?: O[K]['type'] extends 'bool' ? boolean : O[K]['type'] extends 'list' ? string[] : string
}

export interface Parsed<O extends OptionSpecs> {
  values: Values<O>
  positionals: string[]
}

/** A wrong command line: docker's exit status 125, and the verb's usage under the message. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
  /** docker: a flag it cannot read is 125; a missing argument 1. */
  readonly status: number
  constructor (message: string, status = 125) {
    super(message)
    this.status = status
  }
}

/** "-m, --memory": how pflag names an option in a message. */
export function flagName (long: string, spec: OptionSpec | undefined): string {
  return spec?.short ? `-${spec.short}, --${long}` : `--${long}`
}

/** `invalid argument "lots" for "-m, --memory" flag: …`: a value the option cannot take. */
export function invalidValue (options: OptionSpecs, long: string, value: string, why: string): UsageError {
  return new UsageError(`invalid argument ${JSON.stringify(value)} for ${JSON.stringify(flagName(long, options[long]))} flag: ${why}`)
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false, 1: true, 0: false, t: true, f: false, TRUE: true, FALSE: false, True: true, False: false }

/**
 * Reads `args` against `options`. With `interspersed: false` the first argument that is not an
 * option ends the options (docker run IMAGE CMD…, docker exec CONTAINER CMD…).
 */
export function parseArgs<O extends OptionSpecs> (args: readonly string[], options: O, { interspersed = true } = {}): Parsed<O> {
  const values: Record<string, boolean | string | string[]> = {}
  const positionals: string[] = []
  const byShort = new Map(Object.entries(options).filter(([, spec]) => spec.short).map(([long, spec]) => [spec.short as string, long]))

  const set = (long: string, value: string | true) => {
    const spec = options[long] as OptionSpec
    if (spec.type === 'bool') {
      if (value === true) values[long] = true
      else if (value in BOOLEAN_WORDS) values[long] = BOOLEAN_WORDS[value] as boolean
      else throw invalidValue(options, long, value, 'parse error')
    } else if (spec.type === 'list') {
      values[long] = [...(values[long] as string[] | undefined ?? []), value as string]
    } else {
      values[long] = value as string
    }
  }

  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (arg === '--') {
      positionals.push(...args.slice(i + 1))
      break
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (!interspersed) {
        positionals.push(...args.slice(i))
        break
      }
      positionals.push(arg)
      continue
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      const long = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
      const spec = options[long]
      if (!spec) throw new UsageError(`unknown flag: --${long}`)
      if (eq !== -1) set(long, arg.slice(eq + 1))
      else if (spec.type === 'bool') set(long, true)
      else if (i + 1 < args.length) set(long, args[++i] as string)
      else throw new UsageError(`flag needs an argument: --${long}`)
      continue
    }
    // A cluster of short options: every one a boolean but perhaps the last, which takes the rest or the next argument.
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j] as string
      const long = byShort.get(letter)
      if (long === undefined) throw new UsageError(`unknown shorthand flag: '${letter}' in ${arg}`)
      const spec = options[long] as OptionSpec
      if (spec.type === 'bool') {
        if (arg[j + 1] === '=') { set(long, arg.slice(j + 2)); break }
        set(long, true)
        continue
      }
      const rest = arg.slice(j + 1)
      if (rest !== '') set(long, rest.startsWith('=') ? rest.slice(1) : rest)
      else if (i + 1 < args.length) set(long, args[++i] as string)
      else throw new UsageError(`flag needs an argument: '${letter}' in -${letter}`)
      break
    }
  }
  return { values: values as Values<O>, positionals }
}

/** The options as docker's help lists them: `  -d, --detach          Run container in background…`. */
export function optionsHelp (options: OptionSpecs): string {
  const rows = Object.entries(options).filter(([, spec]) => !spec.hidden).map(([long, spec]) => {
    const name = `${spec.short ? `-${spec.short}, ` : '    '}--${long}${spec.type === 'bool' ? '' : ` ${spec.value ?? (spec.type === 'list' ? 'list' : 'string')}`}`
    return [name, spec.description] as const
  })
  const width = Math.max(0, ...rows.map(([name]) => name.length))
  return rows.map(([name, description]) => `  ${name.padEnd(width)}   ${description}\n`).join('')
}
