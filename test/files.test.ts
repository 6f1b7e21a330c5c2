// docker cp through berth, on the real engine: a tar in and out, a single file in, archives that
// would write outside their directory refused with nothing written, size limits, confined paths,
// and ownership (reading another tenant's files through the archive API is a hole in socket proxies).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ArchiveReader, TAR_END, padding, tarHeader } from '../src/access/files.ts'
import { MAX_LOOKUPS, checkAgainst, planUpload } from '../src/access/uploads.ts'
import { LogCapture, assertNoFaults, assertProblem, auth, build, cleanupAfter, name, runBody } from './helpers.ts'
import { listen } from './stream-client.ts'

cleanupAfter(t)

type App = Awaited<ReturnType<typeof build>>

async function run (app: App, body: Record<string, unknown> = {}, who: 'alice' | 'bob' = 'alice') {
  const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: runBody(body) })
  if (response.statusCode !== 201) throw new Error(response.body)
  return response.json() as { id: string }
}

/** What a shell in the container prints, through berth's exec. */
async function shell (app: App, container: string, command: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: `/v1/containers/${container}/exec`, headers: { ...auth('alice'), accept: 'application/json' }, payload: { command: ['sh', '-c', command] } })
  return response.json().stdout
}

interface HandMade { name: string, data?: string | Buffer, type?: string, linkname?: string, mode?: number, uid?: number, headerSize?: number, pax?: Record<string, string> }

/** A tar made by hand, entry by entry: what a hostile client can send (pax records before an entry when asked). */
function archive (entries: HandMade[]): Buffer {
  return Buffer.concat([...entries.flatMap(entry => {
    const data = Buffer.from(entry.data ?? '')
    const pax = entry.pax === undefined ? [] : paxBlock(entry.pax)
    const header = tarHeader({ name: entry.name, size: entry.headerSize ?? data.length, ...(entry.mode === undefined ? {} : { mode: entry.mode }), ...(entry.uid === undefined ? {} : { uid: entry.uid }), ...(entry.type === undefined ? {} : { type: entry.type }), ...(entry.linkname === undefined ? {} : { linkname: entry.linkname }) })
    return [...pax, header, data, Buffer.alloc(padding(data.length))]
  }), TAR_END])
}

function paxBlock (records: Record<string, string>): Buffer[] {
  const body = Buffer.concat(Object.entries(records).map(([key, value]) => {
    const text = ` ${key}=${value}\n`
    let length = Buffer.byteLength(text) + 1
    while (String(length).length + Buffer.byteLength(text) !== length) length++
    return Buffer.from(`${length}${text}`)
  }))
  return [tarHeader({ name: 'PaxHeader', size: body.length, type: 'x' }), body, Buffer.alloc(padding(body.length))]
}

function tarList (tar: Buffer): string[] {
  return execFileSync('tar', ['-t'], { input: tar, encoding: 'utf8' }).trim().split('\n').sort()
}

t.test('a tar in, a file in, a tar out: what docker cp does', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  await run(app, { name: name('cp') })
  const dir = mkdtempSync(join(tmpdir(), 'berth-cp-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'data/sub'), { recursive: true })
  writeFileSync(join(dir, 'data/a.txt'), 'alpha\n')
  writeFileSync(join(dir, 'data/sub/b.txt'), 'beta\n')
  const tar = execFileSync('tar', ['-c', '-C', dir, 'data'])

  const put = await app.inject({ method: 'PUT', url: `/v1/containers/${name('cp')}/archive?path=/tmp`, headers: { ...auth('alice'), 'content-type': 'application/x-tar', 'x-request-id': 'cp-in' }, payload: tar })
  t.equal(put.statusCode, 204, put.body)
  t.equal(await shell(app, name('cp'), 'cat /tmp/data/a.txt /tmp/data/sub/b.txt'), 'alpha\nbeta\n')
  t.match(logs.lines.find(line => line.requestId === 'cp-in' && line.msg === 'audit')?.audit, { actor: 'alice', action: 'PUT /v1/containers/:idOrName/archive', target: { container: { name: name('cp') }, path: '/tmp' }, status: 204 })

  const file = await app.inject({ method: 'PUT', url: `/v1/containers/${name('cp')}/files?path=/tmp/data/run.sh&mode=0755`, headers: { ...auth('alice'), 'content-type': 'application/octet-stream' }, payload: Buffer.from('#!/bin/sh\necho ran\n') })
  t.equal(file.statusCode, 204, file.body)
  t.equal(await shell(app, name('cp'), '/tmp/data/run.sh'), 'ran\n', 'written, with the mode asked for')
  const longName = 'n'.repeat(150) + '.txt'
  const long = await app.inject({ method: 'PUT', url: `/v1/containers/${name('cp')}/files?path=/tmp/${longName}`, headers: { ...auth('alice'), 'content-type': 'application/octet-stream' }, payload: Buffer.from('long') })
  t.equal(long.statusCode, 204, long.body)
  t.equal(await shell(app, name('cp'), `cat /tmp/${longName}`), 'long', 'a name longer than a tar header holds')

  const out = await app.inject({ method: 'GET', url: `/v1/containers/${name('cp')}/archive?path=/tmp/data`, headers: auth('alice') })
  t.equal(out.statusCode, 200, out.body)
  t.equal(out.headers['content-type'], 'application/x-tar')
  t.equal(out.headers['content-disposition'], 'attachment; filename="data.tar"')
  t.match(JSON.parse(out.headers['x-berth-path-stat'] as string), { name: 'data', size: Number, mode: Number, mtime: String })
  t.same(tarList(out.rawPayload), ['data/', 'data/a.txt', 'data/run.sh', 'data/sub/', 'data/sub/b.txt'])
  const single = await app.inject({ method: 'GET', url: `/v1/containers/${name('cp')}/archive?path=/tmp/data/a.txt`, headers: auth('alice') })
  t.equal(execFileSync('tar', ['-x', '-O'], { input: single.rawPayload, encoding: 'utf8' }), 'alpha\n')
  const reader = await app.inject({ method: 'GET', url: `/v1/containers/${name('cp')}/archive?path=/tmp/data/a.txt`, headers: auth('admin') })
  t.equal(reader.statusCode, 200, 'an admin reads anyone\'s')
})

t.test('archives that would write outside their directory are refused, and write nothing', async t => {
  const app = await build(t)
  await run(app, { name: name('guarded') })
  await shell(app, name('guarded'), 'mkdir -p /srv/in')
  const hostile: Array<[string, Buffer, RegExp]> = [
    ['a ".." entry', archive([{ name: 'ok.txt', data: 'fine' }, { name: '../escaped.txt', data: 'x' }]), /entry "\.\.\/escaped\.txt" has a "\.\." segment/],
    ['an absolute entry', archive([{ name: 'ok.txt', data: 'fine' }, { name: '/etc/escaped.txt', data: 'x' }]), /entry "\/etc\/escaped\.txt" is an absolute path/],
    ['a hard link out', archive([{ name: 'ok.txt', data: 'fine' }, { name: 'link', type: '1', linkname: '../../etc/passwd' }]), /hard link "link" to "\.\.\/\.\.\/etc\/passwd" has a "\.\." segment/],
    ['a long name with ".."', archive([{ name: 'ok.txt', data: 'fine' }, { name: 'deep/'.repeat(25) + '../'.repeat(30) + 'escaped.txt', data: 'x' }]), /has a "\.\." segment/],
    ['a block device', archive([{ name: 'ok.txt', data: 'fine' }, { name: 'sda', type: '4' }]), /entry "sda" is a block device, which berth does not unpack/],
    ['a FIFO', archive([{ name: 'pipe', type: '6' }]), /entry "pipe" is a FIFO/],
    ['not a tar', Buffer.from('hello, this is no archive'.repeat(40)), /is not a tar archive/],
    ['an empty body', Buffer.alloc(0), /is not a tar archive \(or an empty one\)/]
  ]
  for (const [what, payload, detail] of hostile) {
    const response = await app.inject({ method: 'PUT', url: `/v1/containers/${name('guarded')}/archive?path=/srv/in`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload })
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  t.equal(await shell(app, name('guarded'), 'ls -A /srv/in; ls /srv; ls /etc/escaped.txt 2>&1'), 'in\nls: /etc/escaped.txt: No such file or directory\n', 'nothing was written, not even the entries before the refused one')
  const symlink = await app.inject({ method: 'PUT', url: `/v1/containers/${name('guarded')}/archive?path=/srv/in`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload: archive([{ name: 'lib', type: '2', linkname: 'sub/lib' }, { name: 'sub/lib/', type: '5' }]) })
  t.equal(symlink.statusCode, 204, 'a link that stays inside stays')
  t.equal(await shell(app, name('guarded'), 'busybox readlink /srv/in/lib'), 'sub/lib\n')
})

t.test('attacks on an upload: nothing lands outside path, nothing is written through a link, and a refusal writes nothing', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  // A read-only root with a volume: a write that reaches the root through a link is one the engine was told to refuse.
  await run(app, { name: name('attacked'), readOnly: true, volumes: [{ source: name('attacked-data'), target: '/data' }] })
  const sh = async (command: string) => await shell(app, name('attacked'), command)
  await sh('busybox mkdir -p /data/in/d /data/in/keep && echo kept > /data/in/keep/k && echo f > /data/in/f && busybox ln -s /etc /data/in/l && busybox ln -s keep /data/in/k2')
  const tree = async () => await sh('cd /data/in && busybox find . | busybox sort; busybox ls /etc')
  const before = await tree()
  const etc = await sh('busybox ls /etc')
  const put = async (payload: Buffer, path = '/data/in') => await app.inject({ method: 'PUT', url: `/v1/containers/${name('attacked')}/archive?path=${path}`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload })
  const first = { name: 'first.txt', data: 'written first, if anything is' }

  const refusedArchives: Array<[string, HandMade[], string]> = [
    ['a link that climbs out', [first, { name: 'up', type: '2', linkname: '../../../../etc' }],
      'link "up" points to ../../../../etc, which climbs out of the directory it is unpacked in'],
    ['an absolute link, and a file through it', [first, { name: 'etc', type: '2', linkname: '/etc' }, { name: 'etc/pwned', data: 'x' }],
      'link "etc" points to /etc, an absolute path: links must stay inside the directory they are unpacked in (make it relative)'],
    ['a file through a link that stays inside', [first, { name: 'sub/', type: '5' }, { name: 'via', type: '2', linkname: 'sub' }, { name: 'via/x', data: 'x' }],
      'entry "via/x" would be written through the link via (entry 3): berth writes nothing through a link'],
    ['a link through a link, then up', [first, { name: 'a/b/x', type: '2', linkname: '../..' }, { name: 'y', type: '2', linkname: 'a/b/x/..' }],
      'link "y" points to a/b/x/.., which climbs out of the directory it is unpacked in'],
    ['a loop of links', [first, { name: 'p', type: '2', linkname: 'q/z' }, { name: 'q', type: '2', linkname: 'p' }],
      'link "p" points to q/z, through a loop of links'],
    ['a link with no target', [first, { name: 'nothing', type: '2', linkname: '' }], 'link "nothing" has no target'],
    ['a hard link out', [first, { name: 'h', type: '1', linkname: '../../etc/passwd' }],
      'hard link "h" to "../../etc/passwd" has a ".." segment: entries must stay in the directory they are unpacked in'],
    ['a hard link to a file the archive does not hold', [first, { name: 'h', type: '1', linkname: 'l/passwd' }],
      'hard link "h" to "l/passwd": l/passwd is not a file of this archive (a hard link joins files the archive holds)'],
    ['a hard link to a directory', [first, { name: 'sub/', type: '5' }, { name: 'h', type: '1', linkname: 'sub' }],
      'hard link "h" to "sub": sub is not a file of this archive (a hard link joins files the archive holds)'],
    ['a ".." hidden behind "."', [first, { name: './a/../../x', data: 'x' }], 'entry "./a/../../x" has a ".." segment: entries must stay in the directory they are unpacked in'],
    ['a pax path with ".."', [first, { name: 'harmless', data: 'x', pax: { path: '../pax-escaped' } }],
      'entry "../pax-escaped" has a ".." segment: entries must stay in the directory they are unpacked in'],
    ['a pax linkpath that climbs', [first, { name: 'harmless', type: '2', linkname: 'ok', pax: { linkpath: '../../../etc' } }],
      'link "harmless" points to ../../../etc, which climbs out of the directory it is unpacked in'],
    ['an archive cut short', [first, { name: 'short', data: 'x', pax: { size: '4096' } }],
      'ends inside entry 2: the archive was cut short'],
    ['a sparse file', [first, { name: 'sparse', data: 'x', pax: { 'GNU.sparse.major': '1' } }],
      'entry 2 is a sparse file, which berth does not unpack'],
    ['the same path twice', [first, { name: 'twice', data: '1' }, { name: './twice', data: '2' }],
      'entry "./twice" names twice again (entry 2): an archive gives each path once'],
    ['a directory then a file of its name', [first, { name: 'x/', type: '5' }, { name: 'x/y', data: 'y' }, { name: 'x', data: 'x' }],
      'entry "x" names x again (entry 2): an archive gives each path once'],
    ['a file, then a file below it', [first, { name: 'plain', data: 'p' }, { name: 'plain/below', data: 'b' }],
      'entry "plain/below" needs plain to be a directory, but the archive makes it a file (entry 2)'],
    ['the directory itself as a file', [first, { name: './', data: 'x', type: '0' }], 'entry "./" names the directory it is unpacked in']
  ]
  for (const [what, entries, detail] of refusedArchives) {
    assertProblem(t, await put(archive(entries)), 400, { code: 'validation_failed', detail: `body ${detail}`, errors: [{ location: 'body', path: '/', message: detail }] }, what)
  }

  // What is in the container is looked at before anything is sent: a link there is not written through.
  const refusedHere: Array<[string, HandMade[], string, string]> = [
    ['a file below a link the container has', [first, { name: 'l/pwned', data: 'x' }], '/data/in/l',
      `/data/in/l is a symbolic link in container ${name('attacked')} (to /etc): berth writes nothing through a link; remove it first, or unpack into its target`],
    ['a directory over a link the container has', [first, { name: 'l/', type: '5' }, { name: 'l/pwned', data: 'x' }], '/data/in/l',
      `/data/in/l is a symbolic link in container ${name('attacked')} (to /etc): berth writes nothing through a link; remove it first, or unpack into its target`],
    ['a link to a link the container has', [first, { name: 'k2/x', data: 'x' }], '/data/in/k2',
      `/data/in/k2 is a symbolic link in container ${name('attacked')} (to /data/in/keep): berth writes nothing through a link; remove it first, or unpack into its target`],
    ['a file replacing a directory', [first, { name: 'd', data: 'x' }], '/data/in/d',
      `/data/in/d is a directory in container ${name('attacked')}: an upload does not replace a directory with a file`],
    ['a link replacing a directory', [first, { name: 'd', type: '2', linkname: 'keep' }], '/data/in/d',
      `/data/in/d is a directory in container ${name('attacked')}: an upload does not replace a directory with a link`],
    ['a directory where a file is', [first, { name: 'f/', type: '5' }, { name: 'f/z', data: 'z' }], '/data/in/f',
      `/data/in/f is a file in container ${name('attacked')}, where the archive needs a directory`]
  ]
  for (const [what, entries, path, detail] of refusedHere) {
    assertProblem(t, await put(archive(entries)), 409, { code: 'path_conflict', detail, path }, what)
  }
  const file = await app.inject({ method: 'PUT', url: `/v1/containers/${name('attacked')}/files?path=/data/in/d`, headers: { ...auth('alice'), 'content-type': 'application/octet-stream' }, payload: Buffer.from('x') })
  assertProblem(t, file, 409, { code: 'path_conflict', detail: `/data/in/d is a directory in container ${name('attacked')}: an upload does not replace a directory with a file`, path: '/data/in/d' }, 'one file over a directory')
  const intoFile = await put(archive([first]), '/data/in/f')
  assertProblem(t, intoFile, 409, { code: 'path_conflict', detail: `/data/in/f is a file in container ${name('attacked')}: unpack into a directory`, path: '/data/in/f' }, 'into a file')
  const throughLink = await put(archive([first]), '/data/in/l')
  assertProblem(t, throughLink, 400, { code: 'validation_failed', detail: `container ${(await app.inject({ method: 'GET', url: `/v1/containers/${name('attacked')}`, headers: auth('alice') })).json().id} has a read-only root filesystem: write into one of its volumes`, path: '/data/in/l' }, 'into a link to the read-only root: the engine follows path, and refuses')
  t.equal(await tree(), before, 'nothing was written by any refused upload, in the volume or in /etc')

  // What stays allowed: a file over a link the container has replaces the link, and writes nothing through it.
  t.equal((await put(archive([{ name: 'l', data: 'now a file' }]))).statusCode, 204, 'a file replacing a link')
  t.equal(await sh('cat /data/in/l; echo; busybox readlink /data/in/l || echo not a link'), 'now a file\nnot a link\n')
  t.equal(await sh('busybox ls /etc'), etc, '/etc as it was')

  // A pax size hides another header in an entry's data: berth reads it as the engine's tar reader
  // would (it is data), and sends only what it read — there is no second reading to disagree with.
  const inner = Buffer.concat([tarHeader({ name: '../../../etc/smuggled', size: 1 }), Buffer.from('x'), Buffer.alloc(511)])
  t.equal((await put(archive([{ name: 'hidden', data: inner, headerSize: 0, pax: { size: String(inner.length) } }]))).statusCode, 204)
  t.equal(await sh('busybox stat -c %s /data/in/hidden; busybox ls /etc/smuggled /data/smuggled 2>&1 | busybox wc -l'), '1024\n2\n', 'the hidden header is the data of hidden')
  assertNoFaults(t, logs)
})

t.test('what an upload keeps and what it drops: modes without setuid, owners, hard and relative links, long names, a path that is a link', async t => {
  const app = await build(t)
  await run(app, { name: name('kept') })
  const sh = async (command: string) => await shell(app, name('kept'), command)
  await sh('busybox mkdir -p /tmp/real && busybox ln -s /tmp/real /tmp/alias')
  const long = `${'n'.repeat(120)}/${'m'.repeat(120)}.txt`
  const payload = archive([
    { name: 'bin/', type: '5', mode: 0o750 },
    { name: 'bin/tool', data: '#!/bin/sh\necho tool\n', mode: 0o4755, uid: 1000, pax: { 'SCHILY.xattr.security.capability': 'x' } },
    { name: 'bin/same', type: '1', linkname: 'bin/tool' },
    { name: 'lib', type: '2', linkname: 'bin' },
    { name: 'deep/a/b/c.txt', data: 'c' },
    { name: long, data: 'long' }
  ])
  const put = await app.inject({ method: 'PUT', url: `/v1/containers/${name('kept')}/archive?path=/tmp/alias`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload })
  t.equal(put.statusCode, 204, put.body)
  t.equal(await sh('cd /tmp/real && busybox stat -c "%a %u %h" bin bin/tool && bin/tool && busybox readlink lib && cat deep/a/b/c.txt lib/same'),
    '750 0 2\n755 1000 2\ntool\nbin\nc#!/bin/sh\necho tool\n', 'the setuid bit is dropped; the owner, the hard link and the relative link kept')
  t.equal(await sh(`cat /tmp/real/${long}`), 'long', 'a name longer than a header holds')
  t.equal(await sh('busybox readlink /tmp/alias'), '/tmp/real\n', 'path is followed as the container has it, as cp into a directory does')
  const again = await app.inject({ method: 'PUT', url: `/v1/containers/${name('kept')}/archive?path=/tmp/real`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload })
  t.equal(again.statusCode, 204, 'the same archive again: what is there is replaced, directories merged')
})

t.test('paths are confined, sizes limited, media types and ownership checked', async t => {
  const app = await build(t, { config: { files: { maxUploadBytes: 64 * 1024, maxDownloadBytes: 200 * 1024 } } })
  const base = await listen(app)
  await run(app, { name: name('limits') })
  await run(app, { name: name('bobs') }, 'bob')
  await run(app, { name: name('ro'), readOnly: true })
  const put = async (url: string, payload: Buffer, type = 'application/x-tar', who: 'alice' | 'bob' | 'reader' = 'alice') =>
    await app.inject({ method: 'PUT', url, headers: { ...auth(who), 'content-type': type }, payload })
  const small = archive([{ name: 'x.txt', data: 'x' }])

  for (const [what, path, detail] of [
    ['a relative path', 'tmp', /querystring\/path must be an absolute path/],
    ['a ".." segment', '/tmp/../etc', /must not contain "\." or "\.\." segments/],
    ['a control character', '/tmp/a%0Ab', /must not contain control characters/]
  ] as const) {
    const response = await app.inject({ method: 'GET', url: `/v1/containers/${name('limits')}/archive?path=${path}`, headers: auth('alice') })
    t.equal(response.statusCode, 400, what)
    t.match(response.json(), { code: 'validation_failed', detail }, what)
  }
  t.equal((await put(`/v1/containers/${name('limits')}/files?path=/`, Buffer.from('x'), 'application/octet-stream')).statusCode, 400, 'a file needs a name')
  t.equal((await put(`/v1/containers/${name('limits')}/files?path=/tmp/x&mode=9999`, Buffer.from('x'), 'application/octet-stream')).statusCode, 400, 'a mode is octal')

  const big = Buffer.alloc(100 * 1024, 'a')
  const tooBig = await put(`/v1/containers/${name('limits')}/files?path=/tmp/big`, big, 'application/octet-stream')
  t.equal(tooBig.statusCode, 413)
  t.match(tooBig.json(), { code: 'payload_too_large', detail: 'the upload is larger than 65536 bytes (BERTH_MAX_UPLOAD)' })
  // Without a Content-Length the body is counted as it comes.
  const chunked = await fetch(`${base}/v1/containers/${name('limits')}/files?path=/tmp/big`, {
    method: 'PUT',
    headers: { ...auth('alice'), 'content-type': 'application/octet-stream' },
    body: new ReadableStream({ start (controller) { for (let i = 0; i < 10; i++) controller.enqueue(new Uint8Array(10 * 1024)); controller.close() } }),
    duplex: 'half'
  } as RequestInit)
  t.equal(chunked.status, 413)
  t.equal(await shell(app, name('limits'), 'ls /tmp/big 2>&1'), 'ls: /tmp/big: No such file or directory\n', 'nothing was written')

  await shell(app, name('limits'), 'head -c 300000 /dev/zero > /tmp/large')
  const cut = await fetch(`${base}/v1/containers/${name('limits')}/archive?path=/tmp/large`, { headers: auth('alice') })
  t.equal(cut.status, 200)
  await t.rejects(cut.arrayBuffer(), 'a download past BERTH_MAX_DOWNLOAD ends in an error, not as a shorter archive')

  const json = await app.inject({ method: 'PUT', url: `/v1/containers/${name('limits')}/archive?path=/tmp`, headers: { ...auth('alice'), 'content-type': 'application/json' }, payload: { a: 1 } })
  t.equal(json.statusCode, 415)
  t.equal((await put(`/v1/containers/${name('limits')}/archive?path=/tmp`, small, 'text/plain')).statusCode, 415)

  const missing = await app.inject({ method: 'GET', url: `/v1/containers/${name('limits')}/archive?path=/no/such`, headers: auth('alice') })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { code: 'not_found', detail: /^no such path \/no\/such in container [0-9a-f]{64}$/ })
  t.equal((await put(`/v1/containers/${name('limits')}/archive?path=/no/such`, small)).statusCode, 404, 'unpacking needs the directory')
  const readOnly = await put(`/v1/containers/${name('ro')}/archive?path=/tmp`, small)
  t.equal(readOnly.statusCode, 400)
  t.match(readOnly.json(), { detail: /has a read-only root filesystem: write into one of its volumes/ })

  // Another tenant's files do not exist for alice, either way.
  for (const [method, url] of [['GET', `/v1/containers/${name('bobs')}/archive?path=/etc/passwd`], ['PUT', `/v1/containers/${name('bobs')}/archive?path=/tmp`]] as const) {
    const response = await app.inject({ method, url, headers: { ...auth('alice'), ...(method === 'PUT' ? { 'content-type': 'application/x-tar' } : {}) }, ...(method === 'PUT' ? { payload: small } : {}) })
    t.equal(response.statusCode, 404, `${method} another tenant's`)
    t.equal(response.json().code, 'not_found')
  }
  t.equal((await put(`/v1/containers/${name('limits')}/archive?path=/tmp`, small, 'application/x-tar', 'reader')).statusCode, 403, 'a reader writes nothing')
})

t.test('the tar check reads what real tar writes, pax and GNU long names included', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-tar-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const deep = join(dir, 'd'.repeat(80), 'e'.repeat(80))
  mkdirSync(deep, { recursive: true })
  writeFileSync(join(deep, 'f'.repeat(90)), 'x')
  for (const format of ['gnu', 'pax']) {
    const tar = execFileSync('tar', ['-c', `--format=${format}`, '-C', dir, '.'])
    const reader = new ArchiveReader()
    await new Promise<void>((resolve, reject) => {
      reader.on('data', () => {}).on('end', resolve).on('error', reject)
      reader.end(tar)
    })
    t.same(reader.entries.map(entry => [entry.name, entry.kind]).sort(), [
      ['./', 'directory'], [`./${'d'.repeat(80)}/`, 'directory'], [`./${'d'.repeat(80)}/${'e'.repeat(80)}/`, 'directory'], [`./${'d'.repeat(80)}/${'e'.repeat(80)}/${'f'.repeat(90)}`, 'file']
    ], `${format}: every entry, long names whole`)
  }
})

t.test('the look at the container is bounded: an upload over a tree that is there costs one look per path, at most 10000', async t => {
  // A container where every path is a directory, as a stat function says: no engine needed to count looks.
  const directory = { name: 'x', size: 0, mode: 2 ** 31 + 0o755, mtime: '', linkTarget: '' }
  const looked: string[] = []
  const stat = async (path: string) => { looked.push(path); return directory }
  const entries = (count: number) => Array.from({ length: count }, (_, i) => ({ index: i + 1, name: `d${i}/`, kind: 'directory' as const, mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, offset: 0, linkname: '' }))
  await checkAgainst(planUpload(entries(3)), '/srv', 'box', stat)
  t.same(looked, ['/srv', '/srv/d0', '/srv/d1', '/srv/d2'], 'the directory itself, then each path whose directory is there')
  await t.rejects(checkAgainst(planUpload(entries(MAX_LOOKUPS + 1)), '/srv', 'box', stat), {
    code: 'payload_too_large',
    message: `the upload would need more than ${MAX_LOOKUPS} looks at what is in container box (one for each of its paths whose directory is there already): unpack it into a new directory, or in parts`
  })
})
