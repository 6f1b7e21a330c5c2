// The README and docs/ stay walkable: every relative link and anchor resolves, every table renders
// whole, the configuration page names exactly the settings berth reads, and the API guide every route.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter(file => file.endsWith('.md')).sort().map(file => `docs/${file}`)]
const text = (page: string): string => readFileSync(join(root, page), 'utf8')

/** A page's lines with fenced code blanked out (line numbers kept): nothing in a code block is markdown. */
function prose (page: string): string[] {
  let fence: string | null = null
  return text(page).split('\n').map(line => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === null && marker !== undefined) { fence = marker; return '' }
    if (fence !== null) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = null
      return ''
    }
    return line
  })
}

/** GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as '-', repeats numbered. */
function anchors (page: string): Set<string> {
  const seen = new Map<string, number>()
  const slugs = new Set<string>()
  for (const line of prose(page)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const base = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase().replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    slugs.add(count === 0 ? base : `${base}-${count}`)
  }
  return slugs
}

/** Table cells: the outer pipes are optional, and a pipe inside a cell (even in code) is written `\|`. */
const cells = (row: string): string[] => row.trim().replace(/^\|/, '').replace(/(?<!\\)\|$/, '').split(/(?<!\\)\|/).map(cell => cell.trim())
const DELIMITER = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/

interface Table { page: string, line: number, header: string[], rows: Array<{ line: number, cells: string[] }> }

/** Every table of a page (a header row, a delimiter row, rows up to a blank line), and the lines that look like rows of none. */
function tables (page: string): { tables: Table[], strays: number[] } {
  const lines = prose(page)
  const found: Table[] = []
  const strays: number[] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (line.includes('|') && DELIMITER.test(lines[i + 1] ?? '') && !DELIMITER.test(line)) {
      const table: Table = { page, line: i + 1, header: cells(line), rows: [] }
      i += 2
      for (; i < lines.length && (lines[i] as string).trim() !== ''; i++) table.rows.push({ line: i + 1, cells: cells(lines[i] as string) })
      found.push(table)
    } else if (line.trimStart().startsWith('|')) {
      strays.push(i + 1)
    }
  }
  return { tables: found, strays }
}

t.test('every relative link in README.md and docs/ resolves, anchors included', async t => {
  let checked = 0
  for (const page of pages) {
    prose(page).forEach((line, index) => {
      // Code spans are no links, and may hold "](" themselves.
      for (const [, target] of line.replace(/`[^`]*`/g, '``').matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        if (target === undefined || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue
        checked++
        const [path = '', anchor] = target.split('#')
        const file = path === '' ? join(root, page) : resolve(root, dirname(page), decodeURIComponent(path))
        const where = `${page}:${index + 1} → ${target}`
        if (!existsSync(file)) { t.fail(`${where}: ${relative(root, file)} does not exist`); continue }
        if (anchor !== undefined && anchor !== '') {
          if (!statSync(file).isFile() || !file.endsWith('.md')) t.fail(`${where}: an anchor into something that is not a markdown page`)
          else t.ok(anchors(relative(root, file)).has(anchor), `${where}: #${anchor} is a heading of ${relative(root, file)}`)
        }
      }
    })
  }
  t.ok(checked >= 40, `${checked} relative links checked`)
})

t.test('every table renders whole: each row has the header\'s columns, and no row stands outside a table', async t => {
  let rows = 0
  for (const page of pages) {
    const found = tables(page)
    t.same(found.strays, [], `${page}: no table row cut off from its table (by a blank line, or a lost header)`)
    for (const table of found.tables) {
      for (const row of table.rows) {
        rows++
        if (row.cells.length !== table.header.length) t.fail(`${page}:${row.line}: ${row.cells.length} cells in a table of ${table.header.length} columns (from line ${table.line})`)
      }
    }
  }
  t.ok(rows > 100, `${rows} rows checked`)
})

const READ = /\benv\??\.(BERTH_[A-Z0-9_]+)|\benv(?:\?\.)?\[\s*(['"])(BERTH_[A-Z0-9_]+)\2\s*\]/g

/** Every BERTH_* setting berth's source reads from an environment (`env.BERTH_X`, `process.env.BERTH_X`, `env['BERTH_X']`). */
function settingsRead (): Set<string> {
  const read = new Set<string>()
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts')) {
        for (const match of readFileSync(path, 'utf8').matchAll(READ)) read.add((match[1] ?? match[3]) as string)
      }
    }
  }
  walk(join(root, 'src'))
  return read
}

t.test('docs/configuration.md names exactly the settings berth reads', async t => {
  const documented = new Set<string>()
  for (const table of tables('docs/configuration.md').tables) {
    for (const row of table.rows) for (const [name] of (row.cells[0] ?? '').matchAll(/BERTH_[A-Z0-9_]+/g)) documented.add(name)
  }
  const read = settingsRead()
  // The parse must find what config.ts is known to read, or an empty set would pass by itself.
  for (const known of ['BERTH_TOKENS', 'BERTH_ENGINE', 'BERTH_SWEEP_INTERVAL_MS']) t.ok(read.has(known), `the source is seen reading ${known}`)
  t.same([...read].filter(name => !documented.has(name)).sort(), [], 'every setting read is in the table')
  t.same([...documented].filter(name => !read.has(name)).sort(), [], 'every setting in the table is read')
})

/** "GET /v1/containers/{}" for each operation of the committed OpenAPI document. */
function documentOperations (): Set<string> {
  const operations = new Set<string>()
  let inPaths = false
  let path: string | null = null
  for (const line of readFileSync(join(root, 'openapi/openapi.yaml'), 'utf8').split('\n')) {
    if (/^\S/.test(line)) inPaths = line === 'paths:'
    if (!inPaths) continue
    const at = /^ {2}(\/\S*):$/.exec(line)?.[1]
    if (at !== undefined) path = at
    const method = /^ {4}(get|put|post|delete|patch|head|options):$/.exec(line)?.[1]
    if (method !== undefined && path !== null) operations.add(operation(method, path))
  }
  return operations
}
const operation = (method: string, path: string): string => `${method.toUpperCase()} ${path.split('?')[0]?.replace(/\{[^}]*\}/g, '{}')}`
/** Routes berth serves outside its OpenAPI document (Swagger UI, the document itself, Prometheus text, MCP's JSON-RPC). */
const UNDOCUMENTED = new Set(['GET /docs', 'GET /openapi.json', 'GET /metrics', 'POST /mcp', 'GET /mcp'])

t.test('the API guide names every operation of the document, and the pages name none it lacks', async t => {
  const operations = documentOperations()
  t.ok(operations.size >= 40, `${operations.size} operations in openapi/openapi.yaml`)
  const named = (page: string): Set<string> => new Set(prose(page).flatMap(line =>
    [...line.matchAll(/`(GET|PUT|POST|DELETE|PATCH) (\/[^`\s]*)/g)].map(([, method, path]) => operation(method as string, path as string))))
  const guide = named('docs/api.md')
  t.same([...operations].filter(op => !guide.has(op)).sort(), [], 'docs/api.md names each operation (write it whole: METHOD /path)')
  // A page may name a route by an example path (`GET /v1/containers/demo/spec`): a parameter matches any segment.
  const patterns = [...operations, ...UNDOCUMENTED].map(op => new RegExp(`^${op.split('{}').map(part => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('[^/]+')}$`))
  for (const page of pages) {
    t.same([...named(page)].filter(op => !patterns.some(pattern => pattern.test(op))).sort(), [], `${page} names only routes berth has`)
  }
})
