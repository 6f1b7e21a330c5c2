// The Dockerfile reader that policy relies on: every image a build may fetch is found, whatever the
// Dockerfile does to hide one (ARGs, continuations, escape directives, COPY --from, stage names).
/* eslint-disable no-template-curly-in-string -- Dockerfiles write ${VAR} literally */
import t from 'tap'
import { DockerfileError, instructions, parseDockerfile, substitute } from '../src/builds/dockerfile.ts'

const names = (text: string, args: Record<string, string> = {}, target?: string) =>
  parseDockerfile(text, args, target).images.map(use => `${use.line}:${use.ref.name}:${use.ref.tag ?? ''}${use.ref.digest ? '@' + use.ref.digest : ''}`)

t.test('FROM images, stage names, scratch and platforms', async t => {
  t.same(names('FROM busybox'), ['1:docker.io/library/busybox:latest'])
  t.same(names('from 127.0.0.1:5000/team/base:2 as Build\nFROM build\nFROM scratch\n'), ['1:127.0.0.1:5000/team/base:2'], 'a later FROM of a stage name (any case) is the stage')
  t.same(names('FROM --platform=linux/amd64 alpine:3 AS a'), ['1:docker.io/library/alpine:3'])
  t.same(names('FROM busybox@sha256:' + 'a'.repeat(64)), ['1:docker.io/library/busybox:@sha256:' + 'a'.repeat(64)])
  const parsed = parseDockerfile('FROM busybox AS one\nFROM one AS two\nFROM scratch')
  t.same(parsed.stages.map(stage => [stage.name, stage.base.kind]), [['one', 'image'], ['two', 'stage'], [null, 'scratch']])
})

t.test('ARGs before FROM: defaults, build args, ${} forms, undeclared args ignored', async t => {
  const text = 'ARG REG=127.0.0.1:5000\nARG NAME\nARG TAG=1\nFROM ${REG}/${NAME:-base}:$TAG\n'
  t.same(names(text), ['4:127.0.0.1:5000/base:1'])
  t.same(names(text, { NAME: 'evil', TAG: '9' }), ['4:127.0.0.1:5000/evil:9'], 'build args override defaults')
  t.same(names('ARG A=x\nFROM busybox${A:+-alt}'), ['2:docker.io/library/busybox-alt:latest'])
  t.same(names('FROM ${IMAGE:-busybox}', { IMAGE: 'alpine' }), ['1:docker.io/library/busybox:latest'], 'a build arg no ARG declares is not used')
  t.same(names('ARG A="busy box" B=2\nARG C=${A}\nFROM busybox:$B'), ['3:docker.io/library/busybox:2'], 'several per ARG, quoted values')
  t.same(names('ARG IMG=busybox\nFROM $IMG\nARG IMG\nCOPY --from=$IMG:2 /a /b'), ['2:docker.io/library/busybox:latest', '4:docker.io/library/busybox:2'], 'a stage re-declares a global ARG to use it')
  t.equal(substitute('\\$HOME and $ and ${X}', new Map([['X', 'y']]), 1), '$HOME and $ and y')
})

t.test('COPY and ADD --from: an image unless it is a stage (by name or index)', async t => {
  t.same(names('FROM busybox AS b\nCOPY --from=b /a /a\nCOPY --from=0 /a /a\nCOPY --chown=1 --from=127.0.0.1:5000/tools:1 /t /t\nADD --from=alpine /x /x\nCOPY a b'),
    ['1:docker.io/library/busybox:latest', '4:127.0.0.1:5000/tools:1', '5:docker.io/library/alpine:latest'])
})

t.test('continuations, comments, directives', async t => {
  t.same(names('# syntax=docker/dockerfile:1\n# escape=`\nFROM `\n  # a comment inside\n\n  busybox:1\nRUN echo \\\n'), ['3:docker.io/library/busybox:1'])
  t.same(names('\uFEFF# comment\r\nFROM \\\r\n busybox\r\n'), ['2:docker.io/library/busybox:latest'])
  t.same(instructions('FROM a\nRUN x \\\n  y\n').map(i => [i.keyword, i.rest, i.line]), [['FROM', 'a', 1], ['RUN', 'x  y', 2]])
})

t.test('target: only the stages up to it are built', async t => {
  const text = 'FROM busybox AS base\nFROM alpine AS test\nFROM evil/x AS release'
  t.same(names(text, {}, 'test'), ['1:docker.io/library/busybox:latest', '2:docker.io/library/alpine:latest'])
  t.same(names(text, {}, 'RELEASE').length, 3)
})

t.test('what cannot be read is an error naming the line', async t => {
  const cases: Array<[string, RegExp, number?]> = [
    ['', /no FROM/],
    ['RUN x\nFROM a', /RUN before the first FROM/, 1],
    ['FROM', /FROM takes an image/],
    ['FROM a b', /FROM takes an image/],
    ['FROM a AS', /FROM takes an image/],
    ['FROM a AS b c', /FROM takes an image/],
    ['ARG X\nFROM $X', /names no image/, 2],
    ['FROM Bad/Name', /invalid repository name/],
    ['FROM sha256:' + 'a'.repeat(64), /not by id/],
    ['FROM ${X', /missing }/],
    ['FROM ${X?err}', /bad substitution/],
    ['ARG =x\nFROM a', /ARG =x is not NAME/],
    ['ARG\nFROM a', /ARG needs a name/],
    ['# escape=x\nFROM a', /invalid escape/],
    ['FROM a\nCOPY --from=Bad/Ref /a /b', /COPY --from= Bad\/Ref/],
    ['FROM a AS one', /no stage is named two/]
  ]
  for (const [text, message, line] of cases) {
    const error = t.throws(() => parseDockerfile(text, {}, text === 'FROM a AS one' ? 'two' : undefined)) as DockerfileError
    t.ok(error instanceof DockerfileError, JSON.stringify(text))
    t.match(error.message, message, JSON.stringify(text))
    if (line !== undefined) t.equal(error.line, line)
  }
  t.throws(() => instructions('FROM a\n'.repeat(10_002)), /more than 10000 instructions/)
})

t.test('ONBUILD: the images its COPY/ADD --from will fetch in the builds FROM this image, named literally', async t => {
  t.same(names('FROM busybox\nONBUILD COPY --from=127.0.0.1:5000/tools:1 /t /t\nONBUILD ADD --from=0 /a /a\nONBUILD RUN make\nONBUILD COPY --from=scratch /a /a'),
    ['1:docker.io/library/busybox:latest', '2:127.0.0.1:5000/tools:1'])
  t.throws(() => parseDockerfile('FROM busybox\nARG T=x\nONBUILD COPY --from=$T /a /a'), { line: 3, message: /names its image with a variable/ })
  t.throws(() => parseDockerfile('ONBUILD COPY --from=a /a /a\nFROM busybox'), { message: /ONBUILD before the first FROM/ })
})

t.test('ADD sources the engine may fetch as URLs: any case, JSON form, after flags, with variables, in ONBUILD', async t => {
  const urls = (text: string, target?: string) => parseDockerfile(text, {}, target).urls.map(use => `${use.line}:${use.source}`)
  t.same(urls('FROM busybox\nADD http://a/x https://b/y /dst/\nADD --chown=1 ["HTTP://c/z", "/z"]\nADD [broken /w\nADD $SRC ${OTHER}.tgz /v\nONBUILD ADD https://d/t /t\nADD app.tar.gz /opt/\nCOPY http://e/f /f'),
    ['2:http://a/x', '2:https://b/y', '3:HTTP://c/z', '5:$SRC', '5:${OTHER}.tgz', '6:https://d/t'])
  t.same(urls('FROM busybox AS a\nADD local /l\nFROM busybox AS b\nADD http://x/y /y', 'a'), [], 'only the stages up to the target')
})

t.test('COPY --from scratch is nothing to fetch', async t => {
  t.same(names('FROM busybox\nCOPY --from=scratch /a /b'), ['1:docker.io/library/busybox:latest'])
})
