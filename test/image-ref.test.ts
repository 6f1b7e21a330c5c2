// The image reference grammar, as the Docker CLI reads it; no engine needed.
import t from 'tap'
import { matchesPattern, parseImage } from '../src/engine/image-ref.ts'

const DIGEST = 'sha256:' + 'b'.repeat(64)

t.test('normalises references the way the Docker CLI does', async t => {
  const cases: Array<[string, { name: string, tag?: string, digest?: string, reference: string, repository: string, registry: string }]> = [
    ['busybox', { name: 'docker.io/library/busybox', tag: 'latest', reference: 'busybox:latest', repository: 'busybox', registry: 'docker.io' }],
    ['busybox:1.36', { name: 'docker.io/library/busybox', tag: '1.36', reference: 'busybox:1.36', repository: 'busybox', registry: 'docker.io' }],
    ['jupyter/base-notebook', { name: 'docker.io/jupyter/base-notebook', tag: 'latest', reference: 'jupyter/base-notebook:latest', repository: 'jupyter/base-notebook', registry: 'docker.io' }],
    ['docker.io/library/busybox:1', { name: 'docker.io/library/busybox', tag: '1', reference: 'busybox:1', repository: 'busybox', registry: 'docker.io' }],
    ['127.0.0.1:5000/a/b:2', { name: '127.0.0.1:5000/a/b', tag: '2', reference: '127.0.0.1:5000/a/b:2', repository: '127.0.0.1:5000/a/b', registry: '127.0.0.1:5000' }],
    ['localhost/x', { name: 'localhost/x', tag: 'latest', reference: 'localhost/x:latest', repository: 'localhost/x', registry: 'localhost' }],
    ['ghcr.io/org/img@' + DIGEST, { name: 'ghcr.io/org/img', digest: DIGEST, reference: 'ghcr.io/org/img@' + DIGEST, repository: 'ghcr.io/org/img', registry: 'ghcr.io' }],
    ['quay.io/a/b:v1@' + DIGEST, { name: 'quay.io/a/b', tag: 'v1', digest: DIGEST, reference: 'quay.io/a/b:v1@' + DIGEST, repository: 'quay.io/a/b', registry: 'quay.io' }],
    ['[::1]:5000/x:1', { name: '[::1]:5000/x', tag: '1', reference: '[::1]:5000/x:1', repository: '[::1]:5000/x', registry: '[::1]:5000' }],
    ['a__b/c-d.e_f:T.1-x', { name: 'docker.io/a__b/c-d.e_f', tag: 'T.1-x', reference: 'a__b/c-d.e_f:T.1-x', repository: 'a__b/c-d.e_f', registry: 'docker.io' }]
  ]
  for (const [input, expected] of cases) {
    const parsed = parseImage(input)
    t.match(parsed, { kind: 'ref', ref: expected }, input)
    if (typeof parsed !== 'string' && parsed.kind === 'ref' && expected.digest === undefined) t.equal(parsed.ref.digest, undefined, `${input}: no digest`)
  }
  t.same(parseImage('sha256:' + 'a'.repeat(64)), { kind: 'id', id: 'sha256:' + 'a'.repeat(64) })
})

t.test('refuses what the Docker CLI refuses, saying why', async t => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['a'.repeat(513), /512/],
    ['Busybox', /repository name/],
    ['busybox:', /tag/],
    ['busybox:-x', /tag/],
    ['busybox:' + 'a'.repeat(129), /tag/],
    ['busybox@sha256:xyz', /digest/],
    ['busybox@', /digest/],
    ['/busybox', /repository name/],
    ['a//b', /repository name/],
    ['a/b/', /repository name/],
    ['bad_host.:5000/x', /registry/],
    ['-x.io/a', /registry/],
    ['a b', /repository name/],
    ['a\nb', /repository name/],
    ['x.io/' + 'a'.repeat(260), /255/]
  ]
  for (const [input, reason] of cases) {
    const parsed = parseImage(input)
    t.type(parsed, 'string', JSON.stringify(input))
    t.match(parsed, reason, JSON.stringify(input))
  }
  t.notOk(String(parseImage('a\u0000b:\u0007')).includes('\u0007'), 'control characters never reach a message')
})

t.test('allow-list patterns: * spans path segments; everything else is literal', async t => {
  t.ok(matchesPattern('docker.io/library/busybox', 'docker.io/library/*'))
  t.ok(matchesPattern('127.0.0.1:5000/team/a/b', '127.0.0.1:5000/*'))
  t.ok(matchesPattern('docker.io/library/busybox', '*'))
  t.notOk(matchesPattern('127.0.0.1:50001/x', '127.0.0.1:5000/*'), 'a longer port is another registry')
  t.notOk(matchesPattern('docker.io/libraryXbusybox', 'docker.io/library.busybox'), '. is literal')
  t.notOk(matchesPattern('evil.io/docker.io/library/busybox', 'docker.io/*'), 'anchored at the start')
})
