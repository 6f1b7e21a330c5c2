// The classic builder's stream as the engine writes it (lines recorded from dockerd 20.10), read into
// steps, output, cache hits and the image; and the failures it reports inside a 200.
import { PassThrough, Readable } from 'node:stream'
import t from 'tap'
import { BuildStreamReader, readBuildStream } from '../src/engine/docker/build-stream.ts'
import type { BuildProgress } from '../src/engine/types.ts'

const lines = (...objects: object[]) => objects.map(object => JSON.stringify(object) + '\n').join('')

t.test('steps, output (stdout and stderr), cache hits, base pulls and the image', async t => {
  const seen: BuildProgress[] = []
  const stream = Readable.from([lines(
    { stream: 'Step 1/4 : FROM 127.0.0.1:5000/base:1' }, { stream: '\n' },
    { status: 'Pulling from base', id: '1' }, { status: 'Downloading', id: 'abc', progressDetail: { current: 1, total: 9 } },
    { status: 'Downloading', id: 'abc', progressDetail: { current: 5, total: 9 } }, { status: 'Pull complete', id: 'abc' }, { status: 'Digest: sha256:x' },
    { stream: ' ---> aa5f14df4cba\n' },
    { stream: 'Step 2/4 : RUN echo a' }, { stream: '\n' }, { stream: ' ---> Using cache\n' }, { stream: ' ---> c57dceb715e5\n' },
    { stream: 'Step 3/4 : RUN printf' }, { stream: '\n' }, { stream: ' ---> Running in 17823a2884ff\n' },
    { stream: 'one\ntw' }, { stream: 'o\r\n' }, { stream: '\u001b[91moops\n\u001b[0m' }, { stream: 'x'.repeat(9000) },
    { stream: 'Removing intermediate container 17823a2884ff\n' }, { stream: ' ---> 6bdeff38d4ac\n' },
    { aux: { ID: 'sha256:6bdeff38d4ac' } },
    { stream: 'Step 4/4 : LABEL a=b' }, { stream: '\n' }, { stream: ' ---> Running in a071d0b91016\n' }, { stream: ' ---> ff93bb410b9e\n' },
    { aux: { ID: 'sha256:ff93bb410b9e' } }, { stream: 'Successfully built ff93bb410b9e\n' }, { stream: 'Successfully tagged x:1\n' }
  ) + 'not json\n'])
  const result = await readBuildStream(stream, undefined, new BuildStreamReader(progress => seen.push(progress)))
  t.same(result, { imageId: 'sha256:ff93bb410b9e', error: null, created: ['6bdeff38d4ac', 'ff93bb410b9e'], running: null, lastImage: 'ff93bb410b9e' })
  t.same(seen.filter(p => p.kind === 'step').map(p => (p as { number: number }).number), [1, 2, 3, 4])
  t.same(seen.filter(p => p.kind === 'status').map(p => (p as { message: string }).message), ['1: Pulling from base', 'abc: Downloading', 'abc: Pull complete', 'Digest: sha256:x'], 'one status per layer and phase')
  t.same(seen.filter(p => p.kind === 'layer'), [
    { kind: 'layer', step: 2, id: 'c57dceb715e5', cached: true },
    { kind: 'layer', step: 3, id: '6bdeff38d4ac', cached: false },
    { kind: 'layer', step: 4, id: 'ff93bb410b9e', cached: false }
  ])
  t.same(seen.filter(p => p.kind === 'output').map(p => { const o = p as { stream: string, line: string }; return [o.stream, o.line.length > 20 ? o.line.length : o.line] }),
    [['stdout', 'one'], ['stdout', 'two'], ['stderr', 'oops'], ['stdout', 8192], ['stdout', 808]], 'lines rejoined, long ones cut, stderr told apart')
})

t.test('a failing step: the error line, its step, its last output lines and exit code', async t => {
  const output = Array.from({ length: 50 }, (_, i) => ({ stream: `line ${i}\n` }))
  const stream = Readable.from([lines(
    { stream: 'Step 1/2 : FROM busybox' }, { stream: '\n' }, { stream: ' ---> aa5f14df4cba\n' },
    { stream: 'Step 2/2 : RUN exit 3' }, { stream: '\n' }, { stream: ' ---> Running in 81f41442d728\n' }, ...output,
    { errorDetail: { code: 3, message: "The command '/bin/sh -c exit 3' returned a non-zero code: 3" }, error: 'x' }
  )])
  const result = await readBuildStream(stream, undefined, new BuildStreamReader())
  t.match(result.error, { exitCode: 3, step: { number: 2, total: 2, instruction: 'RUN exit 3' }, message: /non-zero code: 3/ })
  t.equal(result.error?.output.length, 20)
  t.equal(result.error?.output.at(-1), 'line 49')
  t.equal(result.running, '81f41442d728', 'the step container, for a cleanup that must make sure it is gone')
})

t.test('a stream that breaks, and one that is cancelled', async t => {
  const broken = new PassThrough()
  const reading = readBuildStream(broken, undefined, new BuildStreamReader())
  broken.write(lines({ stream: 'Step 1/1 : FROM a' }, { stream: '\n' }))
  broken.destroy(new Error('socket hang up'))
  t.match((await reading).error, { message: /the build stream broke: socket hang up/ })
  const cancelled = new PassThrough()
  const controller = new AbortController()
  const pending = readBuildStream(cancelled, controller.signal, new BuildStreamReader())
  cancelled.write(lines({ stream: 'Step 1/1 : FROM a' }))
  controller.abort(new Error('cancelled'))
  await t.rejects(pending, { message: 'cancelled' })
})
