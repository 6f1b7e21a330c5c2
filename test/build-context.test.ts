// Receiving a build context: a tar (plain, gzip, GNU and pax names, any chunking) or a form read once
// into berth's checked context; what the engine then gets is berth's own tar of it — cleaned names,
// each path once, sane modes — within the size and entry limits; broken input is refused with a
// reason, and nothing is left on disk either way.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import t from 'tap'
import { receiveContext, type ReceivedContext } from '../src/builds/context.ts'
import { receiveMultipartContext } from '../src/builds/multipart.ts'
import { TarReader, tarHeader, type TarHeader } from '../src/builds/tar.ts'
import { BerthError } from '../src/errors.ts'
import { formOf, gzipped, tarOf } from './build-helpers.ts'
import { craftHeader, craftTar, paxRecord } from './tar-craft.ts'
import { waitFor } from './helpers.ts'

// This suite's own temporary directory, so that what is left in it is only what this suite left.
const spoolDir = mkdtempSync(join(tmpdir(), 'berth-context-'))
process.env.TMPDIR = spoolDir
t.teardown(() => rmSync(spoolDir, { recursive: true, force: true }))
const spooled = () => readdirSync(spoolDir).filter(name => name.startsWith('berth-build-')).length

async function receive (body: Buffer | Readable, options: { limit?: number, dockerfile?: string, limits?: { entries: number, pathBytes: number } } = {}) {
  const stream = Buffer.isBuffer(body) ? Readable.from([body]) : body
  return await receiveContext(stream, { limit: options.limit ?? 1024 * 1024, dockerfile: options.dockerfile ?? 'Dockerfile', ...(options.limits ? { limits: options.limits } : {}) })
}

interface Listed { name: string, kind: string | null, mode: number, mtime: number, linkname: string, data: string }

/** The entries of a tar as berth reads one. */
function list (tar: Buffer): Listed[] {
  const entries: Listed[] = []
  const reader = new TarReader({
    entry: (header: TarHeader) => { entries.push({ name: header.name.toString(), kind: header.kind, mode: header.mode, mtime: header.mtime, linkname: header.linkname.toString(), data: '' }) },
    data: chunk => { (entries.at(-1) as Listed).data += chunk.toString('latin1') }
  })
  reader.write(tar)
  reader.end()
  return entries
}

async function sent (context: ReceivedContext): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of context.open()) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

t.test('the Dockerfile is read from plain and gzip tars; the engine gets berth\'s tar, and the spool is removed', async t => {
  const tar = tarOf({ './': '', 'src/': '', 'src/app.py': 'print(1)\n', './Dockerfile': 'FROM busybox\n', 'big.bin': Buffer.alloc(5000, 1) })
  for (const body of [tar, gzipped(tar)]) {
    const context = await receive(body)
    t.equal(context.dockerfile, 'FROM busybox\n')
    t.equal(context.dockerfilePath, 'Dockerfile')
    t.equal(context.size, body.length, 'the size as sent')
    t.equal(context.entries, 4, 'the root directory is not an entry')
    const out = await sent(context)
    t.same(list(out).map(entry => [entry.name, entry.kind, entry.data.length]), [['src/', 'directory', 0], ['src/app.py', 'file', 9], ['Dockerfile', 'file', 13], ['big.bin', 'file', 5000]], 'cleaned names, the same data')
    t.same(await sent(context), out, 'each open reads the same context again')
    await context.remove()
  }
  t.equal(spooled(), 0, 'nothing left in the temporary directory')
})

t.test('large and small files side by side reach the engine byte for byte', async t => {
  const big = randomBytes(2.5 * 1024 * 1024)
  const files: Record<string, Buffer> = { Dockerfile: Buffer.from('FROM a\n') }
  for (let i = 0; i < 300; i++) files[`small/${i}`] = randomBytes(i * 7)
  files['big.bin'] = big
  files['after.txt'] = Buffer.from('after')
  const context = await receive(tarOf(files), { limit: 8 * 1024 * 1024 })
  const out = list(await sent(context))
  t.same(out.map(entry => entry.name), Object.keys(files))
  t.ok(out.every(entry => Buffer.from(entry.data, 'latin1').equals(files[entry.name] as Buffer)), 'every file\'s bytes')
  await context.remove()
})

t.test('names: GNU and pax long names, a Dockerfile elsewhere, any chunking; long names go to the engine as pax', async t => {
  const long = 'deep/'.repeat(30) + 'Dockerfile.release'
  for (const longNames of ['gnu', 'pax'] as const) {
    const context = await receive(tarOf({ [long]: 'FROM alpine\n', Dockerfile: 'FROM busybox\n' }, { longNames }), { dockerfile: long })
    t.equal(context.dockerfile, 'FROM alpine\n', longNames)
    const out = await sent(context)
    t.equal(list(out)[0]?.name, long)
    t.match(out.subarray(0, 1024).toString('latin1'), / path=deep\//, 'a pax record, not a GNU long name')
    await context.remove()
  }
  const tar = tarOf({ 'a.txt': 'x'.repeat(700), 'docker/Dockerfile': 'FROM scratch\n' })
  const dribble = new PassThrough()
  const received = receive(dribble, { dockerfile: '/docker/./Dockerfile' })
  for (let i = 0; i < tar.length; i += 7) dribble.write(tar.subarray(i, i + 7))
  dribble.end()
  const context = await received
  t.equal(context.dockerfile, 'FROM scratch\n')
  t.equal(context.dockerfilePath, 'docker/Dockerfile', 'the engine is told the cleaned path')
  await context.remove()
})

t.test('what the engine gets: links kept or resolved by the rules, modes without setuid, no owners, nothing else of the client\'s', async t => {
  const tar = craftTar([
    { name: 'Dockerfile', data: 'FROM a\n' },
    { name: 'g', type: 'g', data: paxRecord('comment', 'git archive') },
    { name: 'bin/', type: '5', mode: 0o3755 },
    { name: 'bin/tool', data: 'tool', mode: 0o4755 },
    { name: './bin', type: '5', mode: 0o3755 },
    { name: 'bin/same', type: '1', linkname: '/bin/tool', mode: 0o600 },
    { name: 'bin/python', type: '2', linkname: '/usr/bin/python3' },
    { name: 'x', pax: { path: 'caps', 'SCHILY.xattr.security.capability': 'x', mtime: '1700000000.75' }, data: 'c' },
    { name: 'contiguous', type: '7', data: 'seven' }
  ])
  const context = await receive(Buffer.concat([tar, Buffer.from('after the end')]))
  const out = await sent(context)
  t.same(list(out).map(({ name, kind, mode, linkname, data }) => ({ name, kind, mode: mode.toString(8), linkname, data })), [
    { name: 'Dockerfile', kind: 'file', mode: '644', linkname: '', data: 'FROM a\n' },
    { name: 'bin/', kind: 'directory', mode: '1755', linkname: '', data: '' },
    { name: 'bin/tool', kind: 'file', mode: '755', linkname: '', data: 'tool' },
    { name: 'bin/same', kind: 'hardlink', mode: '755', linkname: 'bin/tool', data: '' },
    { name: 'bin/python', kind: 'symlink', mode: '777', linkname: '/usr/bin/python3', data: '' },
    { name: 'caps', kind: 'file', mode: '644', linkname: '', data: 'c' },
    { name: 'contiguous', kind: 'file', mode: '644', linkname: '', data: 'seven' }
  ])
  t.equal(list(out).find(entry => entry.name === 'caps')?.mtime, 1700000000, 'the pax time, to the second')
  t.notOk(out.includes('SCHILY'), 'no extended attributes')
  t.notOk(out.includes('git archive'), 'no global header')
  t.notOk(out.includes('after the end'), 'nothing after the end of the archive')
  t.equal(out.subarray(108, 124).toString('latin1'), '0000000\u00000000000\u0000', 'owned by root')
  await context.remove()
})

t.test('refused: too large (as sent or unpacked), not a tar, no Dockerfile, empty, broken gzip, too many entries', async t => {
  const big = tarOf({ Dockerfile: 'FROM busybox\n', 'data.bin': Buffer.alloc(64 * 1024) })
  const many = tarOf(Object.fromEntries([['Dockerfile', 'FROM a'], ...Array.from({ length: 20 }, (_, i) => [`f${i}`, 'x'])]))
  const cases: Array<[string, Buffer, Parameters<typeof receive>[1], string, RegExp, string?]> = [
    ['over the limit as sent', big, { limit: 16 * 1024 }, 'payload_too_large', /larger than the limit of 16384 bytes/],
    ['over the limit unpacked (a gzip bomb)', gzipped(tarOf({ Dockerfile: 'FROM a\n', 'zeros.bin': Buffer.alloc(512 * 1024) })), { limit: 64 * 1024 }, 'payload_too_large', /larger than the limit/],
    ['more entries than the limit', many, { limits: { entries: 10, pathBytes: 1024 } }, 'payload_too_large', /more than 10 entries/],
    ['longer paths than the limit', many, { limits: { entries: 100, pathBytes: 20 } }, 'payload_too_large', /paths are longer than 20 bytes/],
    ['not a tar', Buffer.from('this is not a tar archive at all'.repeat(40)), {}, 'invalid_build_context', /is not a tar archive/, 'format'],
    ['shorter than a header', Buffer.from('hello'), {}, 'invalid_build_context', /is not a tar archive/, 'format'],
    ['a tar without the Dockerfile', tarOf({ 'a.txt': 'a' }), {}, 'invalid_build_context', /has no "Dockerfile"/, 'dockerfile'],
    ['a tar without the named Dockerfile', tarOf({ Dockerfile: 'FROM a' }), { dockerfile: 'other/Dockerfile' }, 'invalid_build_context', /has no "other\/Dockerfile"/, 'dockerfile'],
    ['only the root directory', tarOf({ './': '' }), {}, 'invalid_build_context', /has no "Dockerfile"/, 'dockerfile'],
    ['a dockerfile parameter naming the root', tarOf({ Dockerfile: 'FROM a' }), { dockerfile: './' }, 'invalid_build_context', /has no ""/, 'dockerfile'],
    ['empty', Buffer.alloc(0), {}, 'invalid_build_context', /is empty/, 'format'],
    ['only the end blocks', Buffer.alloc(1024), {}, 'invalid_build_context', /not a tar archive with files/, 'format'],
    ['broken gzip', Buffer.concat([gzipped(big).subarray(0, 40), Buffer.from('garbage garbage garbage')]), {}, 'invalid_build_context', /not valid gzip/, 'format'],
    ['an xz context', Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100)]), {}, 'invalid_build_context', /bzip2 or xz/, 'format'],
    ['a huge Dockerfile', tarOf({ Dockerfile: Buffer.alloc(1024 * 1024 + 1, 0x41) }), { limit: 4 * 1024 * 1024 }, 'invalid_build_context', /Dockerfile larger than/, 'dockerfile'],
    ['a huge .dockerignore', tarOf({ Dockerfile: 'FROM a', '.dockerignore': Buffer.alloc(1024 * 1024 + 1, 0x41) }), { limit: 4 * 1024 * 1024 }, 'invalid_build_context', /\.dockerignore larger than/, 'dockerignore'],
    ['a pax header too large', craftTar([{ name: 'x', pax: { comment: 'c'.repeat(1024 * 1024) } }]), { limit: 4 * 1024 * 1024 }, 'invalid_build_context', /larger than 1048576 bytes/, 'format'],
    ['two GNU long names', Buffer.concat([craftTar([{ name: 'Dockerfile', data: 'FROM a' }], { end: false }), craftHeader({ name: '././@LongLink', type: 'L' }, 2), Buffer.from('a\0'), Buffer.alloc(510), craftTar([{ name: 'y', longName: 'b' }])]), {}, 'invalid_build_context', /two GNU long-name headers/, 'format'],
    ['a broken pax record', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'x', pax: Buffer.from('99 path=a\n') }]), {}, 'invalid_build_context', /pax record that is not/, 'format'],
    ['a pax record without a key', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'x', pax: Buffer.from('8 =abcd\n') }]), {}, 'invalid_build_context', /pax record without a key/, 'format'],
    ['a pax size that is not a number', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'x', pax: { size: '1e3' } }]), {}, 'invalid_build_context', /pax size that is not a number/, 'format'],
    ['a pax sparse file', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'x', pax: { 'GNU.sparse.major': '1' } }]), {}, 'invalid_build_context', /sparse/, 'format'],
    ['a negative base-256 size', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'x', sizeField: '\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff' }]), {}, 'invalid_build_context', /not a number/, 'format'],
    ['a symlink to nothing', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'l', type: '2', linkname: '' }]), {}, 'invalid_build_context', /symbolic link to nothing/, 'link'],
    ['a symlink whose target is too long', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'l', type: '2', linkname: 'x', pax: { linkpath: 'a/'.repeat(2001) } }]), {}, 'invalid_build_context', /longer than 4000 bytes/, 'link'],
    ['a link target that is not UTF-8', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'l', type: '2', linkname: 'x', pax: Buffer.concat([paxRecord('linkpath', Buffer.from([0xff]))]) }]), {}, 'invalid_build_context', /link "l"'s target is not UTF-8/, 'name'],
    ['the root as a file', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: './', type: '0', data: 'x' }]), {}, 'invalid_build_context', /names the context's root/, 'name'],
    ['a file named with a trailing slash', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'dir/', type: '2', linkname: 'x' }]), {}, 'invalid_build_context', /ends in "\/"/, 'name'],
    ['a NUL in a hard link target', craftTar([{ name: 'Dockerfile', data: 'FROM a' }, { name: 'h', type: '1', linkname: 'x', pax: Buffer.concat([paxRecord('linkpath', 'a\u0000b')]) }]), {}, 'invalid_build_context', /NUL/, 'format']
  ]
  for (const [what, body, options, code, detail, reason] of cases) {
    const error = await receive(body, options).then(() => null, (failure: unknown) => failure)
    t.ok(error instanceof BerthError, what)
    t.match(error, { code, message: detail, ...(reason === undefined ? {} : { extensions: { reason } }) }, what)
  }
  t.equal(spooled(), 0, 'nothing left in the temporary directory')
})

t.test('a client that stops sending, or a request that is abandoned', async t => {
  const body = new PassThrough()
  const pending = receive(body)
  body.write(tarOf({ Dockerfile: 'FROM a\n' }).subarray(0, 600))
  // The client goes away once the receiver listens for it (it first makes its spool folder).
  await waitFor('the receiver to listen to the body', () => body.listenerCount('aborted'), count => count > 0)
  body.emit('aborted')
  await t.rejects(pending, { code: 'validation_failed', message: /stopped sending/ })
  const controller = new AbortController()
  const second = new PassThrough()
  const abandoned = receiveContext(second, { limit: 1024, dockerfile: 'Dockerfile', signal: controller.signal })
  controller.abort(new BerthError('validation_failed', 'gone'))
  await t.rejects(abandoned, { message: 'gone' })
  t.equal(spooled(), 0)
})

t.test('the reader: base-256 sizes, signed checksums, a truncated end; the writer: long names, big sizes and times as pax', async t => {
  const header = Buffer.from(craftHeader({ name: 'Dockerfile' }, 1))
  header.fill(0, 124, 136)
  header[124] = 0x80
  header[135] = 1
  // An old tar's checksum: the sum of signed bytes (a name byte above 0x7f makes it differ).
  header[50] = 0xe9
  header.fill(0x20, 148, 156)
  let signed = 0
  for (const byte of header) signed += byte >= 0x80 ? byte - 256 : byte
  header.write(signed.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  const entries = list(Buffer.concat([header, Buffer.from('x'), Buffer.alloc(511), Buffer.alloc(1024)]))
  t.equal(entries[0]?.data, 'x')
  const reader = new TarReader({ entry: () => {}, data: () => {} })
  reader.write(Buffer.alloc(512))
  reader.end()
  t.equal(reader.ended, false, 'one zero block and the end of the bytes is an end too, not a refusal')
  const big = tarHeader({ name: Buffer.from('n'.repeat(150)), kind: 'symlink', size: 8 ** 11, mode: 0o777, mtime: 8 ** 11, linkname: Buffer.from('t'.repeat(150)) })
  const text = big.toString('latin1')
  t.match(text, / path=n{150}\n/)
  t.match(text, / linkpath=t{150}\n/)
  t.match(text, new RegExp(` size=${8 ** 11}\n`))
  t.match(text, new RegExp(` mtime=${8 ** 11}\n`))
})

async function receiveForm (form: { body: Buffer, contentType: string }, options: { limit?: number, dockerfile?: string } = {}) {
  return await receiveMultipartContext(Readable.from([form.body]), { 'content-type': form.contentType }, { limit: options.limit ?? 1024 * 1024, dockerfile: options.dockerfile ?? 'Dockerfile' })
}

t.test('a form becomes berth\'s tar: the dockerfile field, files at the paths their names give, long paths too', async t => {
  const long = 'deep/'.repeat(30) + 'data.txt'
  const context = await receiveForm(await formOf('FROM busybox\nCOPY . /app\n', { 'src/app.py': 'print(1)\n', [long]: 'long', 'empty.txt': '' }))
  // A form's text fields come with CRLF line ends (the HTML rules); the builder reads either.
  t.equal(context.dockerfile, 'FROM busybox\r\nCOPY . /app\r\n')
  t.same(list(await sent(context)).map(entry => [entry.name, entry.data]), [['Dockerfile', 'FROM busybox\r\nCOPY . /app\r\n'], ['src/app.py', 'print(1)\n'], [long, 'long'], ['empty.txt', '']])
  t.equal(context.size, 'FROM busybox\r\nCOPY . /app\r\n'.length + 'print(1)\n'.length + 4)
  await context.remove()
  const asFile = new FormData()
  asFile.append('dockerfile', new Blob(['FROM alpine\n']), 'whatever-name')
  const request = new Request('http://berth.test/', { method: 'POST', body: asFile })
  const fromFile = await receiveForm({ body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type') as string }, { dockerfile: 'ci/Dockerfile' })
  t.equal(fromFile.dockerfile, 'FROM alpine\n', 'the dockerfile may come as a file, and goes where the dockerfile parameter says')
  t.equal(fromFile.dockerfilePath, 'ci/Dockerfile')
  await fromFile.remove()
  const named = await receiveForm(await formOf(null, { Dockerfile: 'FROM named\n' }))
  t.equal(named.dockerfile, 'FROM named\n', 'or as a file at its path')
  await named.remove()
  t.equal(spooled(), 0)
})

t.test('a form refused: no dockerfile, a path out of the context, a name twice, an unknown field, too large, not multipart', async t => {
  const cases: Array<[string, Promise<{ body: Buffer, contentType: string }>, number | undefined, string, RegExp]> = [
    ['no dockerfile', formOf(null, { 'a.txt': 'a' }), undefined, 'invalid_build_context', /has no "Dockerfile"/],
    ['a path up and out', formOf('FROM a', { '../etc/passwd': 'x' }), undefined, 'invalid_build_context', /not a relative path inside the context/],
    ['an absolute path', formOf('FROM a', { '/etc/passwd': 'x' }), undefined, 'invalid_build_context', /not a relative path/],
    ['only dots', formOf('FROM a', { './': 'x' }), undefined, 'invalid_build_context', /not a relative path/],
    ['a name twice', formOf('FROM a', { Dockerfile: 'FROM b' }), undefined, 'invalid_build_context', /has "Dockerfile" twice/],
    ['an unknown field', formOf('FROM a', {}, { tag: 'x:1' }), undefined, 'invalid_build_context', /has a field "tag"/],
    ['too large', formOf('FROM a', { 'big.bin': Buffer.alloc(64 * 1024) }), 16 * 1024, 'payload_too_large', /larger than the limit/]
  ]
  for (const [what, form, limit, code, detail] of cases) {
    const error = await receiveForm(await form, limit === undefined ? {} : { limit }).then(() => null, (failure: unknown) => failure)
    t.match(error, { code, message: detail }, what)
  }
  await t.rejects(receiveMultipartContext(Readable.from([Buffer.from('x')]), { 'content-type': 'multipart/form-data' }, { limit: 1024, dockerfile: 'Dockerfile' }), { code: 'invalid_build_context', message: /not multipart\/form-data with a boundary/ })
  await t.rejects(receiveMultipartContext(Readable.from([Buffer.from('--x\r\nbroken')]), { 'content-type': 'multipart/form-data; boundary=x' }, { limit: 1024, dockerfile: 'Dockerfile' }), { code: 'invalid_build_context' })
  t.equal(spooled(), 0, 'nothing left in the temporary directory')
})
