// `npm pack` of the client package: the tarball holds the built JavaScript and its types (and no
// sources), installs into a project of its own, whose code type-checks against it, calls a berth
// with it, and gets the berth command on its PATH.
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { CLIENT_DIR, liveBerth } from './live-berth.ts'
import { RUN } from './helpers.ts'

const run = promisify(execFile)
const ROOT = new URL('..', import.meta.url).pathname

t.test('npm pack gives a package that installs, type-checks and works', async t => {
  const work = await mkdtemp(join(tmpdir(), `${RUN}-pack-`))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  // prepack builds it: the types generated from openapi/openapi.yaml, compiled into dist.
  await run('npm', ['pack', '--pack-destination', work, '--loglevel=error'], { cwd: CLIENT_DIR })
  const [tarball] = (await readdir(work)).filter(file => file.endsWith('.tgz'))
  t.equal(tarball, 'berth-client-0.1.0.tgz')
  const { stdout: listing } = await run('tar', ['-tzf', join(work, tarball ?? '')])
  const files = listing.trim().split('\n').sort()
  for (const file of ['package/package.json', 'package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cli.js', 'package/dist/generated/api.d.ts']) {
    t.ok(files.includes(file), `it holds ${file}`)
  }
  t.same(files.filter(file => !file.startsWith('package/dist/') && file !== 'package/package.json'), [], 'and nothing but dist and its manifest')

  const app = join(work, 'app')
  await run('mkdir', [app])
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', join(work, tarball ?? '')], { cwd: app })

  // Code of its users, type-checked against the installed declarations (a wrong one would fail tsc),
  // under the strictest options a project sets: a token that may be undefined, a problem narrowed by code.
  await writeFile(join(app, 'consumer.ts'), [
    "import { BerthProblem, createBerthClient, ok, type Problem, type ProblemCode } from '@berth/client'",
    'const berth = createBerthClient({ url: process.env.BERTH_URL ?? "", token: process.env.BERTH_TOKEN })',
    'export function held (problem: Problem): string | undefined { return problem.code === "port_conflict" ? String(problem.port ?? "") + " " + (problem.holder?.name ?? "") : undefined }',
    'export function port (error: unknown): number | undefined { return error instanceof BerthProblem && error.is("port_conflict") ? error.problem.port : undefined }',
    "const names: string[] = (await ok(berth.GET('/v1/containers', { params: { query: { all: true } } }))).map(container => container.name)",
    "const code: ProblemCode | undefined = await ok(berth.GET('/v1/containers/{idOrName}', { params: { path: { idOrName: 'nobody' } } })).then(() => undefined, (error: unknown) => error instanceof BerthProblem ? error.code : undefined)",
    'console.log(JSON.stringify({ names, code }))',
    ''
  ].join('\n'))
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'es2023', module: 'nodenext', moduleResolution: 'nodenext', strict: true, exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')], allowImportingTsExtensions: true }
  }))
  const tsc = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app]).then(() => '', (error: { stdout: string }) => error.stdout)
  t.equal(tsc, '', 'its users\' code type-checks')

  const live = await liveBerth(t)
  const vars = { ...process.env, BERTH_URL: live.url, BERTH_TOKEN: live.token }
  const { stdout } = await run(process.execPath, [join(app, 'consumer.ts')], { cwd: app, env: vars })
  t.same(JSON.parse(stdout), { names: [], code: 'not_found' }, 'it calls berth')
  const help = await run(join(app, 'node_modules/.bin/berth'), ['--help'], { env: vars })
  t.match(help.stdout, /^\s*Usage:\s+berth \[OPTIONS\] COMMAND/, 'and installs the berth command')
  const ps = await run(join(app, 'node_modules/.bin/berth'), ['ps'], { env: vars })
  t.equal(ps.stdout, 'CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES\n')
})
