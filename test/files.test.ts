// docker cp through berth, on the real engine: a tar in and out, a single file in, archives that
// would write outside their directory refused with nothing written, size limits, confined paths,
// and ownership (reading another tenant's files through the archive API is a hole in socket proxies).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { TAR_END, TarCheck, padding, tarHeader } from '../src/access/files.ts'
import { LogCapture, auth, build, cleanupAfter, name, runBody } from './helpers.ts'
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

/** A tar made by hand, entry by entry: what a hostile client can send. */
function archive (entries: Array<{ name: string, data?: string, type?: string, linkname?: string }>): Buffer {
  return Buffer.concat([...entries.flatMap(entry => {
    const data = Buffer.from(entry.data ?? '')
    return [tarHeader({ name: entry.name, size: data.length, ...(entry.type === undefined ? {} : { type: entry.type }), ...(entry.linkname === undefined ? {} : { linkname: entry.linkname }) }), data, Buffer.alloc(padding(data.length))]
  }), TAR_END])
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
  const symlink = await app.inject({ method: 'PUT', url: `/v1/containers/${name('guarded')}/archive?path=/srv/in`, headers: { ...auth('alice'), 'content-type': 'application/x-tar' }, payload: archive([{ name: 'lib', type: '2', linkname: '/usr/lib' }]) })
  t.equal(symlink.statusCode, 204, 'a symbolic link stays: it resolves inside the container')
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
    const check = new TarCheck()
    await new Promise<void>((resolve, reject) => {
      check.on('data', () => {}).on('end', resolve).on('error', reject)
      check.end(tar)
    })
    t.ok(check.entries >= 4, `${format}: ${check.entries} entries read`)
  }
})
