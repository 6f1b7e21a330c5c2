// No import cycle in src/: each module's relative imports (type imports too, as `madge --circular`
// counts them) form a graph without a cycle, so every module can be read, and loaded, after the ones
// it uses. A small reader of the source rather than a dependency: the imports here are plain.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const SOURCE = fileURLToPath(new URL('../src', import.meta.url))

/** `import … from './x.ts'`, `import './x.ts'`, `export … from './x.ts'` and `import('./x.ts')`. */
const IMPORTS = /^\s*(?:import|export)\s[^;]*?\bfrom\s+['"](\.{1,2}\/[^'"]+)['"]|^\s*import\s+['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm

function files (dir: string): string[] {
  return readdirSync(dir).flatMap(entry => {
    const path = join(dir, entry)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : []
  })
}

/** The modules each module of `root` imports, as paths relative to it. */
function importGraph (root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of files(root)) {
    const imported = new Set<string>()
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORTS)) {
      const specifier = (match[1] ?? match[2] ?? match[3]) as string
      const target = [specifier, `${specifier}.ts`, join(specifier, 'index.ts')].map(candidate => resolve(dirname(file), candidate))
        .find(candidate => candidate.endsWith('.ts') && existsSync(candidate))
      if (target !== undefined && target.startsWith(root)) imported.add(relative(root, target))
    }
    graph.set(relative(root, file), [...imported].sort())
  }
  return graph
}

/** Every cycle found by a depth-first walk, each as the modules along it, the first repeated at the end. */
function cycles (graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (module: string): void => {
    state.set(module, 'open')
    path.push(module)
    for (const next of graph.get(module) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next])
      else if (state.get(next) === undefined) visit(next)
    }
    path.pop()
    state.set(module, 'done')
  }
  for (const module of [...graph.keys()].sort()) if (state.get(module) === undefined) visit(module)
  return found
}

t.test('the reader finds a cycle where there is one, through type imports and re-exports too', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cycles-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'a.ts'), "import { b } from './b.ts'\nexport const a = b\n")
  writeFileSync(join(dir, 'b.ts'), "import type {\n  C\n} from './c.ts'\nexport const b = 1 as unknown as C\n")
  writeFileSync(join(dir, 'c.ts'), "export { a as C } from './a.ts'\n")
  writeFileSync(join(dir, 'd.ts'), "import './a.ts'\nconst later = async () => await import('./d.ts')\n")
  const graph = importGraph(dir)
  t.same(Object.fromEntries(graph), { 'a.ts': ['b.ts'], 'b.ts': ['c.ts'], 'c.ts': ['a.ts'], 'd.ts': ['a.ts', 'd.ts'] })
  t.same(cycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts'], ['d.ts', 'd.ts']])
})

t.test('src/ has no import cycle', async t => {
  const graph = importGraph(SOURCE)
  // The reader must see the graph it checks, or an empty one would pass by itself.
  t.ok(graph.get('app.ts')?.includes('config.ts'), 'app.ts is seen importing config.ts')
  t.ok([...graph.values()].flat().length > 200, `${[...graph.values()].flat().length} imports read`)
  t.same(cycles(graph).map(cycle => cycle.join(' → ')), [], 'no module imports, through others, a module that imports it')
})
