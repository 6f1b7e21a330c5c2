// Receiving a build context: its Dockerfile found in plain, gzip, GNU and pax tars, the size limit held
// both as sent and unpacked, broken input refused, and nothing left on disk either way.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import t from 'tap'
import { TarScanner, normaliseEntry, receiveContext } from '../src/builds/context.ts'
import { BerthError } from '../src/errors.ts'
import { formOf, gzipped, tarOf } from './build-helpers.ts'
import { waitFor } from './helpers.ts'
import { receiveMultipartContext } from '../src/builds/multipart.ts'

// The spool goes to os.tmpdir(): a folder of this test's own, so that other test processes spooling
// builds on the same machine at the same time are not counted as this one's leftovers.
process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'berth-context-test-'))
t.teardown(() => rmSync(process.env.TMPDIR as string, { recursive: true, force: true }))
const spooled = () => readdirSync(tmpdir()).filter(name => name.startsWith('berth-build-')).length

async function receive (body: Buffer | Readable, options: { limit?: number, dockerfile?: string } = {}) {
  const stream = Buffer.isBuffer(body) ? Readable.from([body]) : body
  return await receiveContext(stream, { limit: options.limit ?? 1024 * 1024, dockerfile: options.dockerfile ?? 'Dockerfile' })
}

t.test('the Dockerfile is read from plain and gzip tars; the context is spooled and removed', async t => {
  const before = spooled()
  const tar = tarOf({ 'src/': '', 'src/app.py': 'print(1)\n', './Dockerfile': 'FROM busybox\n', 'big.bin': Buffer.alloc(5000, 1) })
  const plain = await receive(tar)
  t.equal(plain.dockerfile, 'FROM busybox\n')
  t.equal(plain.size, tar.length)
  const chunks: Buffer[] = []
  for await (const chunk of plain.open()) chunks.push(chunk as Buffer)
  t.same(Buffer.concat(chunks), tar, 'the engine gets the context exactly as sent')
  await plain.remove()
  const zipped = await receive(gzipped(tar))
  t.equal(zipped.dockerfile, 'FROM busybox\n')
  await zipped.remove()
  t.equal(spooled(), before, 'nothing left in the temporary directory')
})

t.test('a Dockerfile elsewhere, under a long GNU or pax name, or cut into tiny chunks', async t => {
  const long = 'deep/'.repeat(30) + 'Dockerfile.release'
  for (const longNames of ['gnu', 'pax'] as const) {
    const context = await receive(tarOf({ [long]: 'FROM alpine\n', Dockerfile: 'FROM busybox\n' }, { longNames }), { dockerfile: long })
    t.equal(context.dockerfile, 'FROM alpine\n', longNames)
    await context.remove()
  }
  const tar = tarOf({ 'a.txt': 'x'.repeat(700), 'docker/Dockerfile': 'FROM scratch\n' })
  const dribble = new PassThrough()
  const received = receive(dribble, { dockerfile: '/docker/./Dockerfile' })
  for (let i = 0; i < tar.length; i += 7) dribble.write(tar.subarray(i, i + 7))
  dribble.end()
  const context = await received
  t.equal(context.dockerfile, 'FROM scratch\n')
  await context.remove()
  t.equal(normaliseEntry('./a//b/./c'), 'a/b/c')
})

t.test('refused: too large (as sent or unpacked), not a tar, no Dockerfile, empty, broken gzip', async t => {
  const before = spooled()
  const big = tarOf({ Dockerfile: 'FROM busybox\n', 'data.bin': Buffer.alloc(64 * 1024) })
  const cases: Array<[string, Buffer, Partial<{ limit: number, dockerfile: string }>, string, RegExp]> = [
    ['over the limit as sent', big, { limit: 16 * 1024 }, 'payload_too_large', /larger than the limit of 16384 bytes/],
    ['over the limit unpacked (a gzip bomb)', gzipped(tarOf({ Dockerfile: 'FROM a\n', 'zeros.bin': Buffer.alloc(512 * 1024) })), { limit: 64 * 1024 }, 'payload_too_large', /larger than the limit/],
    ['not a tar', Buffer.from('this is not a tar archive at all'.repeat(40)), {}, 'validation_failed', /is not a tar archive/],
    ['a tar without the Dockerfile', tarOf({ 'a.txt': 'a' }), {}, 'validation_failed', /has no Dockerfile/],
    ['a tar without the named Dockerfile', tarOf({ Dockerfile: 'FROM a' }), { dockerfile: 'other/Dockerfile' }, 'validation_failed', /has no other\/Dockerfile/],
    ['empty', Buffer.alloc(0), {}, 'validation_failed', /is empty/],
    ['only the end blocks', Buffer.alloc(1024), {}, 'validation_failed', /not a tar archive with files/],
    ['broken gzip', Buffer.concat([gzipped(big).subarray(0, 40), Buffer.from('garbage garbage garbage')]), {}, 'validation_failed', /not valid gzip/],
    ['a huge Dockerfile', tarOf({ Dockerfile: Buffer.alloc(1024 * 1024 + 1, 0x41) }), { limit: 4 * 1024 * 1024 }, 'validation_failed', /Dockerfile larger than/]
  ]
  for (const [what, body, options, code, detail] of cases) {
    const error = await receive(body, options).then(() => null, (failure: unknown) => failure)
    t.ok(error instanceof BerthError, what)
    t.match(error, { code, message: detail }, what)
  }
  t.equal(spooled(), before, 'nothing left in the temporary directory')
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
})

t.test('the scanner reads base-256 sizes and ignores what follows the end of the archive', async t => {
  const scanner = new TarScanner('Dockerfile')
  const tar = tarOf({ Dockerfile: 'FROM a\n' })
  scanner.write(Buffer.concat([tar, Buffer.from('trailing bytes')]))
  t.equal(scanner.found, 'FROM a\n')
  t.equal(scanner.ended, true)
  // A header whose size field is base-256 (top bit set): 1 byte of data.
  const header = Buffer.from(tarOf({ Dockerfile: 'x' }).subarray(0, 512))
  header.fill(0, 124, 136)
  header[124] = 0x80
  header[135] = 1
  header.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
  const next = new TarScanner('Dockerfile')
  next.write(Buffer.concat([header, Buffer.from('x'), Buffer.alloc(511), Buffer.alloc(1024)]))
  t.equal(next.found, 'x')
  t.ok(existsSync(tmpdir()))
})

async function receiveForm (form: { body: Buffer, contentType: string }, options: { limit?: number, dockerfile?: string } = {}) {
  return await receiveMultipartContext(Readable.from([form.body]), { 'content-type': form.contentType }, { limit: options.limit ?? 1024 * 1024, dockerfile: options.dockerfile ?? 'Dockerfile' })
}

t.test('a form becomes a tar: the dockerfile field, files at the paths their names give, long paths too', async t => {
  const before = spooled()
  const long = 'deep/'.repeat(30) + 'data.txt'
  const context = await receiveForm(await formOf('FROM busybox\nCOPY . /app\n', { 'src/app.py': 'print(1)\n', [long]: 'long', 'empty.txt': '' }))
  // A form's text fields come with CRLF line ends (the HTML rules); the builder reads either.
  t.equal(context.dockerfile, 'FROM busybox\r\nCOPY . /app\r\n')
  const chunks: Buffer[] = []
  for await (const chunk of context.open()) chunks.push(chunk as Buffer)
  const tar = Buffer.concat(chunks)
  t.equal(context.size, tar.length)
  for (const [wanted, content] of [['Dockerfile', 'FROM busybox\r\nCOPY . /app\r\n'], ['src/app.py', 'print(1)\n'], [long, 'long'], ['empty.txt', '']]) {
    const scanner = new TarScanner(wanted as string)
    scanner.write(tar)
    t.equal(scanner.found, content, `${(wanted as string).slice(0, 40)} is in the tar`)
  }
  await context.remove()
  const asFile = new FormData()
  asFile.append('dockerfile', new Blob(['FROM alpine\n']), 'whatever-name')
  const request = new Request('http://berth.test/', { method: 'POST', body: asFile })
  const fromFile = await receiveForm({ body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type') as string }, { dockerfile: 'ci/Dockerfile' })
  t.equal(fromFile.dockerfile, 'FROM alpine\n', 'the dockerfile may come as a file, and goes where the dockerfile parameter says')
  await fromFile.remove()
  t.equal(spooled(), before)
})

t.test('a form refused: no dockerfile, a path out of the context, a name twice, an unknown field, too large, not multipart', async t => {
  const before = spooled()
  const cases: Array<[string, Promise<{ body: Buffer, contentType: string }>, number | undefined, string, RegExp]> = [
    ['no dockerfile', formOf(null, { 'a.txt': 'a' }), undefined, 'validation_failed', /has no Dockerfile/],
    ['a path up and out', formOf('FROM a', { '../etc/passwd': 'x' }), undefined, 'validation_failed', /not a relative path inside the context/],
    ['an absolute path', formOf('FROM a', { '/etc/passwd': 'x' }), undefined, 'validation_failed', /not a relative path/],
    ['a name twice', formOf('FROM a', { Dockerfile: 'FROM b' }), undefined, 'validation_failed', /has Dockerfile twice/],
    ['an unknown field', formOf('FROM a', {}, { tag: 'x:1' }), undefined, 'validation_failed', /has a field "tag"/],
    ['too large', formOf('FROM a', { 'big.bin': Buffer.alloc(64 * 1024) }), 16 * 1024, 'payload_too_large', /larger than the limit/]
  ]
  for (const [what, form, limit, code, detail] of cases) {
    const error = await receiveForm(await form, limit === undefined ? {} : { limit }).then(() => null, (failure: unknown) => failure)
    t.match(error, { code, message: detail }, what)
  }
  await t.rejects(receiveMultipartContext(Readable.from([Buffer.from('x')]), { 'content-type': 'multipart/form-data' }, { limit: 1024, dockerfile: 'Dockerfile' }), { code: 'validation_failed', message: /not multipart\/form-data with a boundary/ })
  await t.rejects(receiveMultipartContext(Readable.from([Buffer.from('--x\r\nbroken')]), { 'content-type': 'multipart/form-data; boundary=x' }, { limit: 1024, dockerfile: 'Dockerfile' }), { code: 'validation_failed' })
  t.equal(spooled(), before, 'nothing left in the temporary directory')
})
