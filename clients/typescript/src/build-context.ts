// A build context as docker sends one: the directory's files as a tar, less what .dockerignore excludes
// (its rules: globs from the context's root, `**` across directories, `!` to take back, the last
// matching line wins, a directory excluded with everything in it), the Dockerfile always included.
import { readFile, readdir } from 'node:fs/promises'
import { join, posix, relative, resolve, sep } from 'node:path'
import { entryOf, tarBlob, type TarEntry } from './tar.ts'

interface Rule { negate: boolean, pattern: RegExp, text: string }

function globToRegExp (glob: string): RegExp {
  let out = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` is any number of directories, none included; `**` alone anything at all.
        if (glob[i + 2] === '/') { out += '(?:.*/)?'; i += 2 } else { out += '.*'; i++ }
      } else out += '[^/]*'
    } else if (c === '?') out += '[^/]'
    else if (c === '[') {
      const close = glob.indexOf(']', i + 1)
      if (close === -1) out += '\\['
      else { out += `[${glob.slice(i + 1, close).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`; i = close }
    } else if (c === '\\' && i + 1 < glob.length) out += `\\${glob[++i] as string}`
    else out += c.replace(/[.+^${}()|\]\\]/g, '\\$&')
  }
  return new RegExp(`^${out}$`)
}

/** The rules of a .dockerignore text, in order. */
export function parseIgnore (content: string): Rule[] {
  return content.split(/\r?\n/).map(line => line.trim()).filter(line => line !== '' && !line.startsWith('#')).map(line => {
    const negate = line.startsWith('!')
    const cleaned = posix.normalize((negate ? line.slice(1) : line).trim()).replace(/^\/+/, '').replace(/\/+$/, '')
    return { negate, pattern: globToRegExp(cleaned === '.' ? '' : cleaned), text: line }
  })
}

/** Whether the path (relative, `/`-separated) is left out: its own or a parent's match, the last rule deciding. */
export function ignored (rules: Rule[], path: string): boolean {
  const parents: string[] = []
  const parts = path.split('/')
  for (let i = 1; i <= parts.length; i++) parents.push(parts.slice(0, i).join('/'))
  let excluded = false
  for (const rule of rules) {
    if (parents.some(candidate => rule.pattern.test(candidate))) excluded = !rule.negate
  }
  return excluded
}

/** Whether a rule taking something back might reach below `dir`: then an excluded directory is still walked. */
function exceptionsBelow (rules: Rule[], dir: string): boolean {
  return rules.some(rule => rule.negate && (rule.text.slice(1).replace(/^\/+/, '').startsWith(`${dir}/`) || rule.text.includes('**')))
}

export interface Context {
  archive: Blob
  /** Files, directories and links sent. */
  entries: number
  /** Their bytes, headers not counted. */
  bytes: number
}

/** The context of `directory` as a tar Blob; `dockerfile` (relative to it) is sent even when ignored. */
export async function buildContext (directory: string, dockerfile = 'Dockerfile'): Promise<Context> {
  const root = resolve(directory)
  const rules = parseIgnore(await readFile(join(root, '.dockerignore'), 'utf8').catch(() => ''))
  const keep = new Set([dockerfile.split(sep).join('/'), '.dockerignore'])
  const entries: Array<TarEntry & { source: string }> = []
  const walk = async (dir: string): Promise<void> => {
    const names = (await readdir(dir)).sort()
    for (const name of names) {
      const path = join(dir, name)
      const rel = relative(root, path).split(sep).join('/')
      const entry = await entryOf(path, rel)
      if (entry === null) continue
      const left = ignored(rules, rel) && !keep.has(rel)
      if (entry.type === 'directory') {
        if (!left) entries.push(entry)
        if (!left || exceptionsBelow(rules, rel)) await walk(path)
      } else if (!left) entries.push(entry)
    }
  }
  await walk(root)
  const archive = await tarBlob(entries)
  return { archive, entries: entries.length, bytes: entries.reduce((sum, entry) => sum + entry.size, 0) }
}
