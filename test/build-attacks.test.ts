// Issue 20, items 1 and 2: the engine builds exactly the context berth checked. Each attack sends a
// tar that reads one way to a careless reader and another way to the engine — a harmless Dockerfile
// in front of one whose FROM (or COPY --from) names a registry that is not allowed — and the
// "registry" is a listener of this test's own: whatever the attack, the engine never connects to it.
// Contexts the engine could not unpack are the client's bad input: a 400 that says what is wrong,
// never a 502. And contexts as real tools write them (links, long names, ./ prefixes) still build.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { RUN, RUN_LABEL, build, cleanupAfter, docker, waitFor } from './helpers.ts'
import { builderAuth, cleanupBuilds, formOf, gzipped, withBuilders } from './build-helpers.ts'
import { craftEntry, craftTar, paxRecord, type CraftedEntry } from './tar-craft.ts'

// Contexts are spooled under the temporary directory: this suite's own, so it can count what is left.
const spoolDir = mkdtempSync(join(tmpdir(), 'berth-attacks-'))
process.env.TMPDIR = spoolDir
t.teardown(() => rmSync(spoolDir, { recursive: true, force: true }))

cleanupAfter(t)
cleanupBuilds(t)
const LABEL = `label=${encodeURIComponent(`${RUN_LABEL}=${RUN}`)}`

/** A registry that is not on the allow-list: it counts every connection the engine makes to it. */
async function trapRegistry (t: Test): Promise<{ port: number, contacts: () => string[] }> {
  const seen: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    socket.once('data', data => { seen.push(data.toString('latin1').split('\r\n')[0] ?? '') })
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n')
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, contacts: () => [...seen] }
}

type App = Awaited<ReturnType<typeof build>>
interface Outcome { status: number, reason?: string, detail?: RegExp }

/* eslint-disable no-template-curly-in-string -- Dockerfiles write ${VAR} literally */
const HARMLESS = 'FROM berth-test/busybox:1\n'
const E = (entry: CraftedEntry): CraftedEntry => entry

async function post (app: App, payload: Buffer, query: Record<string, string> = {}, contentType = 'application/x-tar') {
  const search = new URLSearchParams(query).toString()
  return await app.inject({ method: 'POST', url: `/v1/images/build?${search}${search === '' ? '' : '&'}${LABEL}`, headers: { ...builderAuth('builder'), 'content-type': contentType }, payload })
}

function spooled (): string[] {
  return readdirSync(spoolDir).filter(name => name.startsWith('berth-build-'))
}

t.test('the tar tricks that put another Dockerfile in front of the engine: each refused before the engine sees a byte', async t => {
  const trap = await trapRegistry(t)
  const app = await build(t, withBuilders({ config: { policy: { images: ['docker.io/berth-test/*'] } } }))
  let n = 0
  /** A Dockerfile whose base is in the trap: building it means asking the trap for it. */
  const evil = (): string => `FROM 127.0.0.1:${trap.port}/evil-${++n}/base:1\n`
  const evilCopy = (): string => `FROM berth-test/busybox:1\nCOPY --from=127.0.0.1:${trap.port}/evil-${++n}/tools:1 /bin/tool /tool\n`
  const harmless = E({ name: 'Dockerfile', data: HARMLESS })
  const cases: Array<[string, Buffer, Record<string, string>, Outcome]> = [
    ['a later x/../Dockerfile', craftTar([harmless, E({ name: 'x/', type: '5' }), E({ name: 'x/../Dockerfile', data: evil() })]), {}, { status: 400, reason: 'name', detail: /x\/\.\.\/Dockerfile.*"\.\."/ }],
    ['a later symlink Dockerfile -> evil.df', craftTar([harmless, E({ name: 'evil.df', data: evil() }), E({ name: 'Dockerfile', type: '2', linkname: 'evil.df' })]), {}, { status: 400, reason: 'duplicate' }],
    ['a later hard link Dockerfile => evil.df', craftTar([harmless, E({ name: 'evil.df', data: evil() }), E({ name: 'Dockerfile', type: '1', linkname: 'evil.df' })]), {}, { status: 400, reason: 'duplicate' }],
    ['the same trick on COPY --from', craftTar([E({ name: 'Dockerfile', data: 'FROM berth-test/busybox:1\nCOPY --from=berth-test/busybox:1 /bin/busybox /bb\n' }), E({ name: 'evil.df', data: evilCopy() }), E({ name: 'Dockerfile', type: '2', linkname: 'evil.df' })]), {}, { status: 400, reason: 'duplicate' }],
    ['the Dockerfile only a symlink', craftTar([E({ name: 'evil.df', data: evil() }), E({ name: 'Dockerfile', type: '2', linkname: 'evil.df' })]), {}, { status: 400, reason: 'dockerfile', detail: /symbolic link/ }],
    ['the Dockerfile a link to a link', craftTar([E({ name: 'evil.df', data: evil() }), E({ name: 'a', type: '2', linkname: 'evil.df' }), E({ name: 'Dockerfile', type: '2', linkname: 'a' })]), {}, { status: 400, reason: 'dockerfile' }],
    ['the Dockerfile only a hard link', craftTar([E({ name: 'evil.df', data: evil() }), E({ name: 'Dockerfile', type: '1', linkname: 'evil.df' })]), {}, { status: 400, reason: 'dockerfile', detail: /hard link/ }],
    ['dockerfile= names a symlink', craftTar([E({ name: 'evil.df', data: evil() }), E({ name: 'ci.df', type: '2', linkname: 'evil.df' })]), { dockerfile: 'ci.df' }, { status: 400, reason: 'dockerfile' }],
    ['dockerfile= names a path through a directory link', craftTar([E({ name: 'build/Dockerfile', data: HARMLESS }), E({ name: 'build', type: '2', linkname: 'evil' }), E({ name: 'evil/Dockerfile', data: evil() })]), { dockerfile: 'build/Dockerfile' }, { status: 400, reason: 'parent_not_directory' }],
    ['dockerfile= with ".." and a matching entry', craftTar([E({ name: 'docker/../Dockerfile', data: HARMLESS }), E({ name: 'Dockerfile', data: evil() })]), { dockerfile: 'docker/../Dockerfile' }, { status: 400, reason: 'name' }],
    ['a pax size that hides an entry in another\'s data', craftTar([harmless, E({ name: 'pad.bin', pax: { size: '0' }, size: 1024, data: craftTar([E({ name: 'Dockerfile', data: evil() })], { end: false }) })]), {}, { status: 400, reason: 'duplicate' }],
    ['a GNU long name beside a pax path', craftTar([harmless, E({ name: 'whatever', longName: 'Dockerfile', pax: { path: 'notes.txt' }, data: evil() })]), {}, { status: 400, reason: 'format', detail: /both a pax path and a GNU long name/ }],
    ['a pax record whose value holds a newline', craftTar([harmless, E({ name: 'notes.txt', pax: Buffer.concat([paxRecord('path', 'Dockerfile'), paxRecord('comment', 'x\n9 path=y')]), data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a prefix field under the old GNU magic', craftTar([harmless, E({ name: 'Dockerfile', magic: 'gnu', prefix: '00000000000', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a prefix field without a magic (v7)', craftTar([harmless, E({ name: 'Dockerfile', magic: 'v7', prefix: 'sub', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a later ./Dockerfile', craftTar([harmless, E({ name: './Dockerfile', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a later //Dockerfile', craftTar([harmless, E({ name: '//Dockerfile', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a later /Dockerfile/.', craftTar([harmless, E({ name: '/Dockerfile/.', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a later GNU long name with a NUL', craftTar([harmless, E({ name: 'x', longName: 'Dockerfile\0.txt', data: evil() })]), {}, { status: 400, reason: 'duplicate' }],
    ['a pax path with a NUL', craftTar([harmless, E({ name: 'x', pax: { path: 'Dockerfile\0.txt' }, data: evil() })]), {}, { status: 400, reason: 'format', detail: /NUL/ }],
    ['an old-style file entry with a trailing slash', craftTar([E({ name: 'Dockerfile', data: evil() }), E({ name: 'Dockerfile/', type: '\0', size: 0 }), E({ name: 'x', data: HARMLESS })]), {}, { status: 400, reason: 'duplicate' }],
    ['a gzip-compressed symlink trick', gzipped(craftTar([harmless, E({ name: 'evil.df', data: evil() }), E({ name: 'Dockerfile', type: '2', linkname: 'evil.df' })])), {}, { status: 400, reason: 'duplicate' }],
    ['only a lower-case dockerfile, which the engine would fall back to', craftTar([E({ name: 'dockerfile', data: evil() })]), {}, { status: 400, reason: 'dockerfile', detail: /has no "Dockerfile"/ }],
    ['the whole trick after the end of the archive', Buffer.concat([craftTar([harmless]), craftTar([E({ name: 'Dockerfile', data: evil() })])]), {}, { status: 200 }]
  ]
  for (const [what, payload, query, expected] of cases) {
    const before = trap.contacts().length
    const response = await post(app, payload, query, payload[0] === 0x1f ? 'application/gzip' : 'application/x-tar')
    const body = response.json()
    t.comment(`${what}: ${response.statusCode} ${body.code ?? ''} ${body.reason ?? ''}; the trap saw ${trap.contacts().length - before}`)
    t.equal(response.statusCode, expected.status, `${what}: status`)
    if (expected.reason !== undefined) t.match(body, { code: 'invalid_build_context', reason: expected.reason, ...(expected.detail ? { detail: expected.detail } : {}) }, `${what}: the problem`)
    t.same(trap.contacts().slice(before), [], `${what}: the engine never contacted the registry that is not allowed`)
  }
  // A form is read into the same checked context: the dockerfile field and a file at its path are one path twice.
  const form = await formOf(HARMLESS, { './Dockerfile': evil() })
  const twice = await post(app, form.body, {}, form.contentType)
  t.match(twice.json(), { code: 'invalid_build_context', reason: 'duplicate' }, 'a form with a second Dockerfile')
  t.same(trap.contacts(), [], 'the engine never contacted the registry that is not allowed')
  t.same(await waitFor('the contexts to be removed', spooled, list => list.length === 0), [], 'no context left in the temporary directory')
})

t.test('.dockerignore: whatever it says, the engine reads the Dockerfile berth checked; it must be a regular file the engine can read', async t => {
  const trap = await trapRegistry(t)
  const app = await build(t, withBuilders({ config: { policy: { images: ['docker.io/berth-test/*'] } } }))
  const listing = 'FROM berth-test/busybox:1\nCOPY . /ctx\nRUN ls -a /ctx\n'
  // The engine takes the Dockerfile before it reads .dockerignore, and then leaves the two out of
  // what COPY sees when .dockerignore names them; every other file stays (the client applies it).
  const hidden = await post(app, craftTar([E({ name: '.dockerignore', data: '*\n!evil.df\n' }), E({ name: 'Dockerfile', data: listing }), E({ name: 'kept.txt', data: 'k' }), E({ name: 'evil.df', data: `FROM 127.0.0.1:${trap.port}/ignored/base:1\n` })]), { tag: `berth-test/${RUN}-ignore:1` })
  t.equal(hidden.statusCode, 200, 'built from the Dockerfile berth checked')
  const cases: Array<[string, Buffer, Outcome]> = [
    ['.dockerignore a symlink', craftTar([E({ name: 'Dockerfile', data: HARMLESS }), E({ name: 'ignore', data: 'Dockerfile\n' }), E({ name: '.dockerignore', type: '2', linkname: 'ignore' })]), { status: 400, reason: 'dockerignore' }],
    ['.dockerignore a directory', craftTar([E({ name: 'Dockerfile', data: HARMLESS }), E({ name: '.dockerignore/', type: '5' })]), { status: 400, reason: 'dockerignore' }],
    ['.dockerignore with a line the engine cannot read', craftTar([E({ name: 'Dockerfile', data: HARMLESS }), E({ name: '.dockerignore', data: 'a'.repeat(65536) + '\n' })]), { status: 400, reason: 'dockerignore', detail: /65535/ }],
    ['.dockerignore twice', craftTar([E({ name: 'Dockerfile', data: HARMLESS }), E({ name: '.dockerignore', data: 'x\n' }), E({ name: './.dockerignore', data: 'Dockerfile\n' })]), { status: 400, reason: 'duplicate' }]
  ]
  for (const [what, payload, expected] of cases) {
    const response = await post(app, payload)
    t.equal(response.statusCode, expected.status, `${what}: status`)
    t.match(response.json(), { code: 'invalid_build_context', reason: expected.reason, ...(expected.detail ? { detail: expected.detail } : {}) }, `${what}: the problem`)
  }
  t.same(trap.contacts(), [], 'the engine never contacted the registry that is not allowed')
})

t.test('contexts the engine cannot unpack are the client\'s bad input: 400 with what is wrong, never 502', async t => {
  const app = await build(t, withBuilders())
  const harmless = E({ name: 'Dockerfile', data: HARMLESS })
  const cases: Array<[string, Buffer, Record<string, string>, Outcome]> = [
    ['a file written through an absolute directory symlink', craftTar([harmless, E({ name: 'etc', type: '2', linkname: '/etc' }), E({ name: 'etc/passwd', data: 'x' })]), {}, { status: 400, reason: 'parent_not_directory', detail: /etc.*symbolic link/ }],
    ['a file written through a relative directory symlink', craftTar([harmless, E({ name: 'real/', type: '5' }), E({ name: 'alias', type: '2', linkname: 'real' }), E({ name: 'alias/x', data: 'x' })]), {}, { status: 400, reason: 'parent_not_directory' }],
    ['an entry below a regular file', craftTar([harmless, E({ name: 'a', data: 'x' }), E({ name: 'a/b', data: 'y' })]), {}, { status: 400, reason: 'parent_not_directory' }],
    ['a directory replaced by a file', craftTar([E({ name: 'docker/', type: '5' }), E({ name: 'docker/Dockerfile', data: HARMLESS }), E({ name: 'docker', data: 'a file now' })]), { dockerfile: 'docker/Dockerfile' }, { status: 400, reason: 'duplicate' }],
    ['a Dockerfile that is a directory', craftTar([E({ name: 'Dockerfile/', type: '5' }), E({ name: 'Dockerfile/x', data: HARMLESS })]), {}, { status: 400, reason: 'dockerfile', detail: /directory/ }],
    ['a Dockerfile replaced by a directory', craftTar([harmless, E({ name: 'Dockerfile/', type: '5' })]), {}, { status: 400, reason: 'duplicate' }],
    ['a name segment longer than 255 bytes', craftTar([harmless, E({ name: 'x', longName: 'a'.repeat(256), data: 'y' })]), {}, { status: 400, reason: 'name', detail: /255/ }],
    ['a name longer than 4000 bytes', craftTar([harmless, E({ name: 'x', pax: { path: ('d'.repeat(99) + '/').repeat(41) + 'f' }, data: 'y' })]), {}, { status: 400, reason: 'name', detail: /4000/ }],
    ['a name that is not UTF-8', craftTar([harmless, E({ name: 'caf\xe9', pax: Buffer.concat([paxRecord('path', Buffer.from([0x63, 0x61, 0x66, 0xe9]))]), data: 'y' })]), {}, { status: 400, reason: 'name', detail: /UTF-8/ }],
    ['a hard link to nothing', craftTar([harmless, E({ name: 'h', type: '1', linkname: 'nothere' })]), {}, { status: 400, reason: 'link' }],
    ['a hard link to a directory', craftTar([harmless, E({ name: 'd/', type: '5' }), E({ name: 'h', type: '1', linkname: 'd' })]), {}, { status: 400, reason: 'link' }],
    ['a hard link out of the context', craftTar([harmless, E({ name: 'h', type: '1', linkname: '../../../etc/passwd' })]), {}, { status: 400, reason: 'link' }],
    ['a hard link to a later file', craftTar([harmless, E({ name: 'h', type: '1', linkname: 'later' }), E({ name: 'later', data: 'l' })]), {}, { status: 400, reason: 'link' }],
    ['a symlink target with a NUL (pax)', craftTar([harmless, E({ name: 'l', type: '2', linkname: 'x', pax: { linkpath: 'a\0b' } })]), {}, { status: 400, reason: 'format' }],
    ['a FIFO', craftTar([harmless, E({ name: 'fifo', type: '6' })]), {}, { status: 400, reason: 'entry_type', detail: /FIFO/ }],
    ['a character device', craftTar([harmless, E({ name: 'null', type: '3' })]), {}, { status: 400, reason: 'entry_type' }],
    ['a GNU sparse file', craftTar([harmless, E({ name: 'sparse', type: 'S', data: 'x' })]), {}, { status: 400, reason: 'entry_type' }],
    ['an entry type nobody knows', craftTar([harmless, E({ name: 'z', type: 'Z' })]), {}, { status: 400, reason: 'entry_type' }],
    ['a lone zero block in the middle', craftTar([harmless, Buffer.alloc(512), E({ name: 'a', data: 'x' })]), {}, { status: 400, reason: 'format' }],
    ['a size field that is not a number', craftTar([harmless, E({ name: 'a', sizeField: '1 2', data: 'x' })]), {}, { status: 400, reason: 'format' }],
    ['a broken header after the first', craftTar([harmless, Buffer.alloc(512, 0x41)]), {}, { status: 400, reason: 'format' }],
    ['a tar that ends inside an entry', craftTar([harmless, E({ name: 'big', data: Buffer.alloc(4096, 1) })]).subarray(0, 2048), {}, { status: 400, reason: 'truncated' }],
    ['a tar that ends inside a header', craftTar([harmless, E({ name: 'big', data: 'x' })]).subarray(0, 1024 + 300), {}, { status: 400, reason: 'truncated' }],
    ['a tar that ends after a pax header', Buffer.concat([craftTar([harmless], { end: false }), craftEntry(E({ name: 'x', pax: { path: 'y' } })).subarray(0, 1024)]), {}, { status: 400, reason: 'truncated' }],
    ['a bzip2 context', Buffer.concat([Buffer.from('BZh91AY&SY'), Buffer.alloc(600)]), {}, { status: 400, reason: 'format', detail: /gzip/ }],
    ['dockerfile= with ".."', craftTar([harmless]), { dockerfile: 'x/../Dockerfile' }, { status: 400, reason: 'name' }]
  ]
  for (const [what, payload, query, expected] of cases) {
    const response = await post(app, payload, query)
    const body = response.json()
    t.comment(`${what}: ${response.statusCode} ${body.code ?? ''} ${body.reason ?? ''} ${String(body.detail ?? '').slice(0, 120)}`)
    t.equal(response.statusCode, expected.status, `${what}: status`)
    t.match(body, { code: 'invalid_build_context', reason: expected.reason, ...(expected.detail ? { detail: expected.detail } : {}) }, `${what}: the problem`)
  }
  // A form is checked by the same rules.
  const formCases: Array<[string, Promise<{ body: Buffer, contentType: string }>, Outcome]> = [
    ['a form with a file and a file below it', formOf(HARMLESS, { a: 'x', 'a/b': 'y' }), { status: 400, reason: 'parent_not_directory' }],
    ['a form with a name segment longer than 255 bytes', formOf(HARMLESS, { ['b'.repeat(300)]: 'x' }), { status: 400, reason: 'name' }]
  ]
  for (const [what, form, expected] of formCases) {
    const { body, contentType } = await form
    const response = await post(app, body, {}, contentType)
    t.comment(`${what}: ${response.statusCode} ${response.json().code} ${response.json().reason ?? ''}`)
    t.equal(response.statusCode, expected.status, `${what}: status`)
    t.match(response.json(), { code: 'invalid_build_context', reason: expected.reason }, `${what}: the problem`)
  }
  t.same(await waitFor('the contexts to be removed', spooled, list => list.length === 0), [], 'no context left in the temporary directory')
  const images = await docker.listImages({ filters: { label: [`${RUN_LABEL}=${RUN}`] } })
  t.same(images.filter(image => (image.RepoTags ?? []).some(tag => tag.includes('unpack'))), [], 'nothing built')
})

t.test('contexts as real tools write them build, links and all: what the engine gets is what berth read', async t => {
  const app = await build(t, withBuilders())
  const dockerfile = 'FROM berth-test/busybox:1\nCOPY . /ctx\nRUN cd /ctx && ls -lnR . | grep -v "^total" && echo content: $(cat venv/bin/pip3 long/*/*/*/file.txt long/*/*/*/pax.txt app/notes.txt)\n'
  const long = Array.from({ length: 3 }, (_, i) => `segment-${i}-${'x'.repeat(40)}`).join('/')
  const entries = [
    E({ name: './', type: '5' }),
    E({ name: './Dockerfile', data: dockerfile }),
    E({ name: './venv/', type: '5', magic: 'gnu' }),
    E({ name: './venv/bin/', type: '5' }),
    // A virtualenv: its python a link to the system's (absolute), links to links, lib64 -> lib.
    E({ name: './venv/bin/python', type: '2', linkname: '/usr/local/bin/python3.12' }),
    E({ name: './venv/bin/python3', type: '2', linkname: 'python' }),
    E({ name: './venv/bin/pip', data: 'pip-script\n', mode: 0o755 }),
    E({ name: './venv/bin/pip3', type: '1', linkname: './venv/bin/pip' }),
    E({ name: './venv/lib/', type: '5' }),
    E({ name: './venv/lib64', type: '2', linkname: 'lib' }),
    E({ name: 'dangling', type: '2', linkname: 'not/there' }),
    E({ name: 'outside', type: '2', linkname: '../../elsewhere' }),
    E({ name: 'suid', data: 's', mode: 0o4755 }),
    E({ name: 'x', longName: `long/${long}/file.txt`, data: 'gnu-long\n' }),
    E({ name: 'y', pax: { path: `long/${long}/pax.txt`, mtime: '1700000000.5', 'SCHILY.xattr.security.capability': 'x' }, data: 'pax-long\n' }),
    E({ name: 'notes.txt', prefix: 'app', type: '7', data: 'contiguous\n' })
  ]
  for (const [what, payload, contentType] of [['a tar', craftTar(entries), 'application/x-tar'], ['its gzip', gzipped(craftTar(entries)), 'application/gzip']] as const) {
    const response = await app.inject({ method: 'POST', url: `/v1/images/build?noCache=true&${LABEL}`, headers: { ...builderAuth('builder'), 'content-type': contentType, accept: 'application/x-ndjson' }, payload })
    t.equal(response.statusCode, 200, what)
    const events = response.body.split('\n').filter(Boolean).map(line => JSON.parse(line))
    t.equal(events.at(-1)?.type, 'built', `${what}: built`)
    const lines = events.filter(event => event.type === 'output').map(event => event.line as string)
    const line = (name: string): string => lines.find(text => text.endsWith(` ${name}`) || text.includes(` ${name} -> `)) ?? `no line for ${name}`
    t.match(line('python'), /^l.* python -> \/usr\/local\/bin\/python3\.12$/, `${what}: an absolute link kept as it is`)
    t.match(line('python3'), /python3 -> python$/, `${what}: a link to a link`)
    t.match(line('lib64'), /lib64 -> lib$/, `${what}: a directory link`)
    t.match(line('dangling'), /dangling -> not\/there$/)
    t.match(line('outside'), /outside -> \.\.\/\.\.\/elsewhere$/, `${what}: a link that leaves the context is kept, to resolve in the image`)
    t.match(line('pip'), /^-rwxr-xr-x +2 /, `${what}: the hard link is a second name of the file`)
    t.match(line('suid'), /^-rwxr-xr-x /, `${what}: setuid dropped`)
    t.match(line('notes.txt'), /^-rw-r--r-- /, `${what}: the prefix field read, a contiguous file taken as a file`)
    t.ok(lines.includes('content: pip-script gnu-long pax-long contiguous'), `${what}: every file's content`)
  }
})

t.test('the context berth sends is its own: a client\'s tar is never passed through', async t => {
  const app = await build(t, withBuilders())
  // Bytes after the end of the archive, and a pax global header, are the client's; the engine gets neither.
  const payload = Buffer.concat([craftTar([E({ name: 'g', type: 'g', data: paxRecord('comment', 'from git archive') }), E({ name: 'Dockerfile', data: 'FROM berth-test/busybox:1\nCOPY . /ctx\nRUN ls -a /ctx\n' })]), Buffer.from('trailing garbage')])
  const response = await app.inject({ method: 'POST', url: `/v1/images/build?${LABEL}`, headers: { ...builderAuth('builder'), 'content-type': 'application/x-tar', accept: 'application/x-ndjson' }, payload })
  const events = response.body.split('\n').filter(Boolean).map(line => JSON.parse(line))
  t.equal(events.at(-1)?.type, 'built')
  t.same(events.filter(event => event.type === 'output').map(event => event.line), ['.', '..', 'Dockerfile'])
})

t.test('what the Dockerfile leaves for later or fetches itself: an ONBUILD COPY --from, an ADD of a URL without network', async t => {
  const trap = await trapRegistry(t)
  const app = await build(t, withBuilders({ config: { policy: { images: ['docker.io/berth-test/*'] } } }))
  const parent = `berth-test/${RUN}-onbuild:1`
  // A parent image whose trigger fetches an image that is not allowed: the child's FROM is allowed.
  const planted = await post(app, craftTar([E({ name: 'Dockerfile', data: `FROM berth-test/busybox:1\nONBUILD COPY --from=127.0.0.1:${trap.port}/evil-onbuild/x:1 /a /a\n` })]), { tag: parent })
  t.comment(`ONBUILD COPY --from a registry not allowed: ${planted.statusCode} ${planted.json().code}`)
  t.equal(planted.statusCode, 403, 'the trigger is checked when the image that carries it is built')
  t.match(planted.json(), { code: 'policy_denied', rule: 'images', line: 2, detail: /ONBUILD COPY --from=127\.0\.0\.1:\d+\/evil-onbuild\/x:1 .*not on the allow-list/ })
  if (planted.statusCode === 200) {
    const child = await post(app, craftTar([E({ name: 'Dockerfile', data: `FROM ${parent}\n` })]))
    t.comment(`its child: ${child.statusCode} ${child.json().code}`)
  }
  const variable = await post(app, craftTar([E({ name: 'Dockerfile', data: 'FROM berth-test/busybox:1\nONBUILD COPY --from=${TOOLS} /a /a\n' })]))
  t.match(variable.json(), { code: 'validation_failed', detail: /names its image with a variable/ }, 'a trigger\'s image is named literally')
  t.same(trap.contacts(), [], 'the engine never contacted the registry that is not allowed')

  // ADD fetches a URL itself, from the engine's own network: not a way round network=none.
  const before = trap.contacts().length
  for (const [what, dockerfile, line] of [
    ['ADD http://', `FROM berth-test/busybox:1\nADD http://127.0.0.1:${trap.port}/secret /secret\n`, 2],
    ['ADD HTTPS:// in JSON form, after a flag', `FROM berth-test/busybox:1\nADD --chown=1 ["HTTPS://127.0.0.1:${trap.port}/secret", "/secret"]\n`, 2],
    ['ADD of a variable', `FROM berth-test/busybox:1\nARG SOURCE=http://127.0.0.1:${trap.port}/secret\nADD $SOURCE /secret\n`, 3],
    ['ONBUILD ADD http://', `FROM berth-test/busybox:1\nONBUILD ADD http://127.0.0.1:${trap.port}/secret /secret\n`, 2]
  ] as const) {
    const response = await post(app, craftTar([E({ name: 'Dockerfile', data: dockerfile })]))
    t.comment(`${what}: ${response.statusCode} ${response.json().code}`)
    t.equal(response.statusCode, 403, what)
    t.match(response.json(), { code: 'policy_denied', rule: 'buildNetwork', line, detail: /fetch(es)? .* from the engine's own network/ }, what)
  }
  t.same(trap.contacts().slice(before), [], 'the engine fetched nothing')
  const local = await post(app, craftTar([E({ name: 'Dockerfile', data: 'FROM berth-test/busybox:1\nADD notes.txt /notes.txt\n' }), E({ name: 'notes.txt', data: 'n' })]))
  t.equal(local.statusCode, 200, 'ADD of a file in the context needs no network')
})
