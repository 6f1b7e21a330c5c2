// The parts of the MCP tools that need no engine: tool schemas written out from the shared ones, and
// the tar reader that turns a download into one file's content or a listing.
import t from 'tap'
import { mergedObject, selfContained } from '../src/mcp/json-schema.ts'
import { readTar } from '../src/mcp/tar.ts'
import { tarHeader, TAR_END, padding } from '../src/access/files.ts'
import { tarOf } from './build-helpers.ts'

t.test('a schema with its references written out, and none left to resolve', async t => {
  const shared: Record<string, unknown> = {
    Port: { $id: 'Port', type: 'integer', minimum: 1, description: 'A port.' },
    Binding: { $id: 'Binding', type: 'object', properties: { host: { $ref: 'Port' }, container: { $ref: 'Port', description: 'Inside.' } } }
  }
  const lookup = (id: string) => shared[id]
  t.same(selfContained({ type: 'array', items: { $ref: 'Binding' } }, lookup), {
    type: 'array',
    items: { type: 'object', properties: { host: { type: 'integer', minimum: 1, description: 'A port.' }, container: { type: 'integer', minimum: 1, description: 'Inside.' } } }
  }, 'no $id in the copies; a description beside a $ref wins')
  t.throws(() => selfContained({ $ref: 'Nowhere' }, lookup), /no shared schema Nowhere/)
  const loop: Record<string, unknown> = { A: { $id: 'A', properties: { b: { $ref: 'B' } } }, B: { $id: 'B', properties: { a: { $ref: 'A' } } } }
  t.throws(() => selfContained({ $ref: 'A' }, id => loop[id]), /schema A refers to itself \(A → B → A\)/)
  t.same(selfContained(undefined, lookup), {})
})

t.test('one argument object from several parts', async t => {
  t.same(mergedObject([{ properties: { id: { type: 'string' } }, required: ['id'] }, { properties: { all: { type: 'boolean' } } }], 'Both.'), {
    type: 'object', description: 'Both.', properties: { id: { type: 'string' }, all: { type: 'boolean' } }, required: ['id'], additionalProperties: false
  })
  t.same(mergedObject([{}]), { type: 'object', properties: {}, additionalProperties: false })
  t.throws(() => mergedObject([{ properties: { id: {} } }, { properties: { id: {} } }]), /tool argument id would be two things/)
})

t.test('tar entries: files, directories, links, and long names written either way', async t => {
  const long = 'd/' + 'n'.repeat(120) + '.txt'
  for (const longNames of ['pax', 'gnu'] as const) {
    const entries = readTar(tarOf({ 'a.txt': 'alpha\n', [long]: 'long\n' }, { longNames }))
    t.same(entries.map(entry => [entry.name, entry.type, entry.size, entry.data.toString()]), [['a.txt', 'file', 6, 'alpha\n'], [long, 'file', 5, 'long\n']], `${longNames} long names`)
  }
  const data = Buffer.from('x')
  const archive = Buffer.concat([
    tarHeader({ name: 'dir/', size: 0, type: '5', mode: 0o755 }),
    tarHeader({ name: 'dir/link', size: 0, type: '2', linkname: 'target' }),
    tarHeader({ name: 'fifo', size: 0, type: '6' }),
    tarHeader({ name: 'global', size: 0, type: 'g' }),
    tarHeader({ name: 'dir/x', size: 1 }), data, Buffer.alloc(padding(1)),
    TAR_END
  ])
  t.same(readTar(archive).map(entry => [entry.name, entry.type, entry.mode.toString(8), entry.linkTarget]), [
    ['dir/', 'directory', '755', ''], ['dir/link', 'symlink', '644', 'target'], ['fifo', 'other', '644', ''], ['dir/x', 'file', '644', '']
  ], 'a global pax header is no entry')
  const broken = Buffer.from(archive)
  broken.write('zz', 124, 'latin1')
  t.throws(() => readTar(broken), /not a tar archive: a broken header at byte 0/)
  t.same(readTar(Buffer.alloc(0)), [], 'nothing in nothing')
})
