// Reads a Dockerfile as the classic builder does, far enough to know every image a build would
// fetch: each stage's FROM (global ARGs substituted, build args applied, earlier stages and
// `scratch` told apart), each COPY/ADD --from that names an image rather than a stage, and those an
// ONBUILD trigger leaves for the builds FROM this image; and every ADD that may fetch a URL, which
// the engine does itself, from its own network. Policy checks these before the context goes to the engine.
import { parseImage, type ImageRef } from '../engine/image-ref.ts'

export interface Stage {
  index: number
  /** The `AS name`, lower-cased as the builder compares it; null when unnamed. */
  name: string | null
  /** The base: an image, `scratch`, or an earlier stage. */
  base: { kind: 'image', ref: ImageRef } | { kind: 'scratch' } | { kind: 'stage', index: number }
  /** 1-based line of the FROM instruction. */
  line: number
  /** The FROM instruction as written. */
  instruction: string
}

export interface ImageUse {
  ref: ImageRef
  line: number
  instruction: string
}

/** An ADD whose source is a URL, or may become one once variables are substituted. */
export interface UrlSource {
  source: string
  line: number
  instruction: string
}

export interface ParsedDockerfile {
  stages: Stage[]
  /** Every image the build may fetch: stage bases and COPY/ADD --from images, ONBUILD ones too, in order. */
  images: ImageUse[]
  /** Every ADD that may fetch a URL, ONBUILD ones too, in order. */
  urls: UrlSource[]
}

/** A Dockerfile the builder would refuse, or whose images cannot be known: the line and what is wrong. */
export class DockerfileError extends Error {
  readonly line: number
  constructor (line: number, message: string) {
    super(`Dockerfile line ${line}: ${message}`)
    this.line = line
  }
}

interface Instruction {
  keyword: string
  /** Everything after the keyword, continuation lines joined. */
  rest: string
  line: number
  text: string
}

const MAX_INSTRUCTIONS = 10_000

/** Splits a Dockerfile into instructions: parser directives, comments and line continuations handled. */
export function instructions (text: string): Instruction[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  let escape = '\\'
  let index = 0
  // Parser directives come first, as `# key=value` comments; the first other line ends them.
  for (; index < lines.length; index++) {
    const directive = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(lines[index] as string)
    if (directive === null) break
    if ((directive[1] as string).toLowerCase() === 'escape') {
      if (directive[2] !== '\\' && directive[2] !== '`') throw new DockerfileError(index + 1, `invalid escape character ${directive[2]}`)
      escape = directive[2]
    }
  }
  const result: Instruction[] = []
  let pending: { parts: string[], line: number } | null = null
  for (; index < lines.length; index++) {
    const raw = lines[index] as string
    const trimmed = raw.trim()
    // Comments and blank lines are dropped, also between continuation lines.
    if (trimmed.startsWith('#') || (trimmed === '' && pending !== null)) continue
    if (trimmed === '') continue
    const continues = trimmed.endsWith(escape)
    const part = continues ? trimmed.slice(0, -1) : trimmed
    if (pending === null) pending = { parts: [part], line: index + 1 }
    else pending.parts.push(part)
    if (continues) continue
    result.push(toInstruction(pending.parts.join(' '), pending.line))
    pending = null
    if (result.length > MAX_INSTRUCTIONS) throw new DockerfileError(index + 1, `more than ${MAX_INSTRUCTIONS} instructions`)
  }
  if (pending !== null) result.push(toInstruction(pending.parts.join(' '), pending.line))
  return result
}

function toInstruction (text: string, line: number): Instruction {
  const match = /^(\S+)\s*(.*)$/s.exec(text.trim()) as RegExpExecArray
  return { keyword: (match[1] as string).toUpperCase(), rest: (match[2] as string).trim(), line, text: text.trim() }
}

/** `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}`; `\$` is a literal dollar. Unknown is empty. */
export function substitute (text: string, variables: Map<string, string>, line: number): string {
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string
    if (char === '\\' && text[i + 1] === '$') {
      out += '$'
      i++
      continue
    }
    if (char !== '$') {
      out += char
      continue
    }
    if (text[i + 1] === '{') {
      const end = text.indexOf('}', i + 2)
      if (end === -1) throw new DockerfileError(line, `missing } in ${text}`)
      const body = text.slice(i + 2, end)
      const modifier = /^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$/s.exec(body)
      if (modifier === null) throw new DockerfileError(line, `bad substitution \${${body}}`)
      const value = variables.get(modifier[1] as string)
      if (modifier[2] === '-') out += value !== undefined && value !== '' ? value : substitute(modifier[3] as string, variables, line)
      else if (modifier[2] === '+') out += value !== undefined && value !== '' ? substitute(modifier[3] as string, variables, line) : ''
      else out += value ?? ''
      i = end
      continue
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1))
    if (name === null) {
      out += '$'
      continue
    }
    out += variables.get(name[0]) ?? ''
    i += name[0].length
  }
  return out
}

/** `ARG A`, `ARG A=1`, `ARG A="x y" B=2`: the names and their defaults (undefined when none). */
function argDeclarations (rest: string, line: number): Array<[string, string | undefined]> {
  const declarations: Array<[string, string | undefined]> = []
  const re = /([A-Za-z_][A-Za-z0-9_]*)(?:=("(?:[^"\\]|\\.)*"|'[^']*'|\S*))?/gy
  let position = 0
  while (position < rest.length) {
    while (rest[position] === ' ' || rest[position] === '\t') position++
    if (position >= rest.length) break
    re.lastIndex = position
    const match = re.exec(rest)
    if (match === null) throw new DockerfileError(line, `ARG ${rest} is not NAME or NAME=value`)
    const raw = match[2]
    const value = raw === undefined ? undefined : /^["']/.test(raw) ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw
    declarations.push([match[1] as string, value])
    position = re.lastIndex
  }
  if (declarations.length === 0) throw new DockerfileError(line, 'ARG needs a name')
  return declarations
}

/**
 * The stages and images of a Dockerfile. `buildArgs` override the defaults of the ARGs they name;
 * with a `target`, only the stages up to it are built, so only theirs are returned.
 */
export function parseDockerfile (text: string, buildArgs: Record<string, string> = {}, target?: string): ParsedDockerfile {
  const all = instructions(text)
  const global = new Map<string, string>()
  const stages: Stage[] = []
  const images: ImageUse[] = []
  let local: Map<string, string> | null = null
  const resolve = (value: string, variables: Map<string, string>, line: number, what: string): ImageRef | 'scratch' => {
    const written = substitute(value, variables, line)
    if (written === '') throw new DockerfileError(line, `${what} ${value} names no image once its variables are substituted`)
    if (written.toLowerCase() === 'scratch') return 'scratch'
    const parsed = parseImage(written)
    if (typeof parsed === 'string') throw new DockerfileError(line, `${what} ${written} ${parsed}`)
    if (parsed.kind === 'id') throw new DockerfileError(line, `${what} ${written}: name the image by reference, not by id, so policy can check it`)
    return parsed.ref
  }
  const urls: UrlSource[] = []
  for (const instruction of all) {
    if (instruction.keyword === 'ARG') {
      for (const [name, fallback] of argDeclarations(instruction.rest, instruction.line)) {
        const scope = local ?? global
        const inherited = local === null ? undefined : global.get(name)
        const value = buildArgs[name] ?? (fallback === undefined ? inherited : substitute(fallback, scope, instruction.line)) ?? ''
        scope.set(name, value)
      }
      continue
    }
    if (instruction.keyword === 'FROM') {
      const words = instruction.rest.split(/\s+/).filter(Boolean)
      while (words[0]?.startsWith('--')) words.shift()
      const [image, as, name, ...extra] = words
      if (image === undefined || (as !== undefined && (as.toLowerCase() !== 'as' || name === undefined)) || extra.length > 0) {
        throw new DockerfileError(instruction.line, 'FROM takes an image and an optional AS name')
      }
      const stageName = name === undefined ? null : name.toLowerCase()
      const earlier = stages.find(stage => stage.name !== null && stage.name === substitute(image, global, instruction.line).toLowerCase())
      const resolved = earlier === undefined ? resolve(image, global, instruction.line, 'FROM') : null
      const base: Stage['base'] = earlier !== undefined
        ? { kind: 'stage', index: earlier.index }
        : resolved === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref: resolved as ImageRef }
      stages.push({ index: stages.length, name: stageName, base, line: instruction.line, instruction: instruction.text })
      if (base.kind === 'image') images.push({ ref: base.ref, line: instruction.line, instruction: instruction.text })
      local = new Map()
      continue
    }
    if (local === null) throw new DockerfileError(instruction.line, `${instruction.keyword} before the first FROM (only ARG may come first)`)
    if (instruction.keyword === 'ONBUILD') {
      // A trigger runs in every build FROM this image, right after its FROM, with that build's
      // variables: what it fetches is checked now, so it must say so without variables.
      const trigger = toInstruction(instruction.rest === '' ? 'ONBUILD' : instruction.rest, instruction.line)
      if (trigger.keyword !== 'COPY' && trigger.keyword !== 'ADD') continue
      const from = fromFlag(trigger.rest)
      if (from !== null && from.includes('$')) {
        throw new DockerfileError(instruction.line, `ONBUILD ${trigger.keyword} --from=${from} names its image with a variable, which the build that uses this image fills in: name the image itself, so policy can check it`)
      }
      if (from !== null && !/^\d+$/.test(from)) {
        const ref = resolve(from, new Map(), instruction.line, `ONBUILD ${trigger.keyword} --from=`)
        if (ref !== 'scratch') images.push({ ref, line: instruction.line, instruction: instruction.text })
      }
      if (trigger.keyword === 'ADD') urls.push(...urlSources(trigger.rest, instruction))
      continue
    }
    if (instruction.keyword === 'COPY' || instruction.keyword === 'ADD') {
      if (instruction.keyword === 'ADD') urls.push(...urlSources(instruction.rest, instruction))
      const from = fromFlag(instruction.rest)
      if (from === null) continue
      const value = substitute(from, new Map([...global, ...local]), instruction.line)
      if (/^\d+$/.test(value) || stages.some(stage => stage.name === value.toLowerCase())) continue
      const ref = resolve(value, new Map(), instruction.line, `${instruction.keyword} --from=`)
      if (ref !== 'scratch') images.push({ ref, line: instruction.line, instruction: instruction.text })
    }
  }
  if (stages.length === 0) throw new DockerfileError(Math.max(1, all.at(-1)?.line ?? 1), 'no FROM: a Dockerfile needs at least one')
  if (target === undefined) return { stages, images, urls }
  const last = stages.findIndex(stage => stage.name === target.toLowerCase())
  if (last === -1) throw new DockerfileError(1, `no stage is named ${target} (the target)`)
  const built = stages.slice(0, last + 1)
  const lastLine = stages[last + 1]?.line ?? Infinity
  return { stages: built, images: images.filter(use => use.line < lastLine), urls: urls.filter(use => use.line < lastLine) }
}

/** The value of a COPY or ADD `--from=` flag, as written. */
function fromFlag (rest: string): string | null {
  return /(?:^|\s)--from=(\S+)/.exec(rest)?.[1] ?? null
}

/**
 * The sources of an ADD that the engine would fetch as URLs: http:// or https:// in any case (the
 * builder matches them in lower case only; berth errs on the safe side), or any source with a
 * variable, whose value may come from the base image's ENV, which berth cannot see.
 */
function urlSources (rest: string, instruction: Instruction): UrlSource[] {
  let body = rest.trim()
  while (/^--\S+/.test(body)) body = body.replace(/^--\S+\s*/, '')
  let words: string[] | null = null
  if (body.startsWith('[')) {
    try {
      const list: unknown = JSON.parse(body)
      if (Array.isArray(list) && list.every(item => typeof item === 'string')) words = list
    } catch {
      // Not JSON: the builder reads it as the shell form, and so does berth.
    }
  }
  words ??= body.split(/\s+/).filter(Boolean)
  return words.slice(0, -1).filter(source => /^https?:\/\//i.test(source) || source.includes('$'))
    .map(source => ({ source, line: instruction.line, instruction: instruction.text }))
}
