// A shell, stats and files on a real Kubernetes cluster (BERTH_TEST_KUBECONFIG; skipped without one):
// exec through the apiserver's exec subresource streamed as NDJSON and SSE with the exit code last,
// the WebSocket terminal (ended at once by a revoked token; a hang-up leaves no process behind),
// files in and out as tar through exec with docker's refusals (a refused upload writes nothing), and
// stats from the kubelet's summary — or a 501 naming what to enable when berth's role may not.
import { execFileSync } from 'node:child_process'
import t from 'tap'
import WebSocket from 'ws'
import { TAR_END, padding, tarHeader } from '../src/access/files.ts'
import { TokenStore } from '../src/access/token-store.ts'
import { tokensFromEnv } from '../src/config.ts'
import { RUN, TOKENS, auth, runBody, waitFor } from './helpers.ts'
import { KUBE_SKIP, berthIdentity, buildKube, kubeEnv, leftoversIn, namespaceFor, type KubeEnv } from './kubernetes-env.ts'
import { listen } from './stream-client.ts'

type App = Awaited<ReturnType<typeof buildKube>>

if (kubeEnv === null) {
  t.test('kubernetes exec, terminal, files and stats', { skip: KUBE_SKIP }, async () => {})
} else {
  const cluster: KubeEnv = kubeEnv
  const body = (suffix: string, extra: Record<string, unknown> = {}) =>
    runBody({ image: cluster.image, name: `${RUN}-${suffix}`, command: cluster.httpd, stopTimeout: 1, restart: { policy: 'always' }, ...extra })
  const run = async (app: App, suffix: string, extra: Record<string, unknown> = {}, who: 'alice' | 'bob' = 'alice') => {
    const response = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth(who), payload: body(suffix, extra) })
    if (response.statusCode !== 201) throw new Error(response.body)
    return response.json() as { id: string, name: string }
  }
  const exec = async (app: App, container: string, payload: object, accept = 'application/x-ndjson', who: 'alice' | 'bob' = 'alice') =>
    await app.inject({ method: 'POST', url: `/v1/containers/${container}/exec`, headers: { ...auth(who), accept }, payload })
  const shell = async (app: App, container: string, script: string): Promise<string> =>
    (await exec(app, container, { command: ['sh', '-c', script] }, 'application/json')).json().stdout
  const lines = (text: string) => text.trim().split('\n').map(line => JSON.parse(line))
  /** The command lines of the processes in the container, but for the shell that lists them. */
  const processes = async (app: App, container: string) =>
    (await shell(app, container, 'for p in /proc/[0-9]*; do [ $p = /proc/$$ ] || { busybox tr "\\0" " " < $p/cmdline 2>/dev/null; echo; }; done')).split('\n').map(line => line.trim()).filter(line => line !== '')

  t.test('exec: NDJSON and SSE with the exit code last, a whole answer, a TTY; what the exec subresource cannot do is 501', async t => {
    const namespace = await namespaceFor(t, 'exec')
    const app = await buildKube(t, { namespace })
    const { id, name } = await run(app, 'shell')
    const started = performance.now()
    const ndjson = await exec(app, name, { command: ['sh', '-c', 'echo out; sleep 0.2; echo err >&2; sleep 0.2; printf "no newline"; exit 5'] })
    t.comment(`kubernetes: an exec answered whole in ${(performance.now() - started).toFixed(0)} ms`)
    t.equal(ndjson.statusCode, 200, ndjson.body)
    t.match(ndjson.headers['content-type'], /application\/x-ndjson/)
    t.same(lines(ndjson.body), [
      { type: 'output', stream: 'stdout', line: 'out' },
      { type: 'output', stream: 'stderr', line: 'err' },
      { type: 'output', stream: 'stdout', line: 'no newline' },
      { type: 'exit', exitCode: 5 }
    ])
    const sse = await exec(app, id, { command: ['sh', '-c', 'echo one'] }, 'text/event-stream')
    t.equal(sse.statusCode, 200)
    t.same(sse.body.split('\n\n').filter(block => block.startsWith('data: ')).map(block => JSON.parse(block.slice(6))), [{ type: 'output', stream: 'stdout', line: 'one' }, { type: 'exit', exitCode: 0 }])
    const whole = await exec(app, name, { command: ['sh', '-c', 'busybox id -u; echo oops >&2'] }, 'application/json')
    t.same(whole.json(), { exitCode: 0, stdout: '1000\n', stderr: 'oops\n', truncated: false }, 'as the container\'s user')
    const big = await exec(app, name, { command: ['sh', '-c', 'head -c 3000000 /dev/zero | busybox tr "\\0" y'] }, 'application/json')
    t.equal(big.json().stdout.length, 1024 * 1024, 'a whole answer keeps 1 MiB of a stream')
    t.equal(big.json().truncated, true)
    const tty = await exec(app, name, { command: ['sh', '-c', 'echo a; echo b >&2'], tty: true })
    t.same(lines(tty.body), [{ type: 'output', stream: 'stdout', line: 'a' }, { type: 'output', stream: 'stdout', line: 'b' }, { type: 'exit', exitCode: 0 }], 'a terminal has one stream')
    const missing = await exec(app, name, { command: ['no-such-command'] }, 'application/json')
    t.equal(missing.json().exitCode, 127, 'no such executable: 127, as docker exec')
    t.match(missing.json().stderr, /no-such-command/)

    for (const [what, extra, field] of [['env', { env: { A: 'b' } }, /env/], ['a working directory', { workingDir: '/tmp' }, /workingDir/], ['a user', { user: '1000' }, /user/]] as const) {
      const refused = await exec(app, name, { command: ['true'], ...extra })
      t.equal(refused.statusCode, 501, what)
      t.match(refused.json(), { code: 'not_supported', detail: field }, what)
    }
    t.equal((await exec(app, name, { command: ['true'] }, undefined, 'bob')).statusCode, 404, 'another token\'s container has no exec')
    const finished = await app.inject({ method: 'POST', url: '/v1/containers', headers: auth('alice'), payload: runBody({ image: cluster.image, name: `${RUN}-done`, command: ['sh', '-c', 'exit 0'] }) })
    t.equal(finished.statusCode, 201, finished.body)
    await app.inject({ method: 'POST', url: `/v1/containers/${finished.json().id}/wait`, headers: auth('alice') })
    const notRunning = await exec(app, finished.json().id, { command: ['true'] })
    t.equal(notRunning.statusCode, 409)
    t.equal(notRunning.json().code, 'container_not_running')
    t.same(await processes(app, name), ['httpd -f -p 8080 -h /www'], 'no exec left a process behind')
    for (const container of [id, finished.json().id]) t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container}?force=true`, headers: auth('alice') })).statusCode, 204)
    t.same(await leftoversIn(namespace), [])
  })

  /** A WebSocket to berth, with what it received. */
  async function terminal (base: string, container: string, query: string, who: 'alice' | 'bob' = 'alice') {
    const socket = new WebSocket(`${base.replace('http', 'ws')}/v1/containers/${container}/exec?${query}`, { headers: auth(who) })
    const received: { output: Buffer[], text: Array<Record<string, unknown>> } = { output: [], text: [] }
    socket.on('error', () => {})
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) received.output.push(data)
      else received.text.push(JSON.parse(data.toString()))
    })
    const closed = new Promise<{ code: number, reason: string }>(resolve => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('unexpected-response', (_request, response) => reject(new Error(`refused: ${response.statusCode}`)))
    })
    const stdout = () => Buffer.concat(received.output.filter(frame => frame[0] === 1).map(frame => frame.subarray(1))).toString()
    return { socket, received, closed, stdout }
  }

  t.test('the WebSocket terminal: stdin, TTY, resize, exit code; a hang-up leaves no process; a revoked token ends it at once', async t => {
    const namespace = await namespaceFor(t, 'terminal')
    const tokens = new TokenStore(tokensFromEnv({ BERTH_TOKENS: `alice:write:${TOKENS.alice.token};bob:write:${TOKENS.bob.token}` }))
    const app = await buildKube(t, { namespace, tokens })
    const base = await listen(app)
    const { name } = await run(app, 'term')
    const bobs = await run(app, 'term-bob', {}, 'bob')

    const started = performance.now()
    const session = await terminal(base, name, 'command=sh&tty=true&cols=80&rows=24')
    session.socket.send(Buffer.from('busybox stty size; echo "hello-$((6*7))"\n'))
    await waitFor('the first answer', () => session.stdout(), out => out.includes('hello-42'))
    t.comment(`kubernetes: a terminal's first answer after ${(performance.now() - started).toFixed(0)} ms`)
    t.match(session.stdout(), /24 80/, 'the terminal started at the size asked for')
    session.socket.send(JSON.stringify({ type: 'resize', cols: 132, rows: 43 }))
    await waitFor('the resize to reach the terminal', async () => {
      session.socket.send(Buffer.from('busybox stty size\n'))
      await new Promise(resolve => setTimeout(resolve, 100))
      return session.stdout()
    }, out => out.includes('43 132'))
    session.socket.send(Buffer.from('exit 3\n'))
    t.same(await session.closed, { code: 1000, reason: 'exited' })
    t.same(session.received.text, [{ type: 'exit', exitCode: 3 }], 'the exit code, last')
    t.ok(session.received.output.every(frame => frame[0] === 1), 'a terminal has one stream')

    // cat waits on stdin for ever: only the end of the connection ends it.
    const hangup = await terminal(base, name, 'command=cat&tty=false')
    hangup.socket.send(Buffer.from('ready\n'))
    await waitFor('the echo', () => hangup.stdout(), out => out.includes('ready'))
    t.ok((await processes(app, name)).includes('cat'), 'cat runs while the client is there')
    hangup.socket.terminate()
    await waitFor('the session to be released', () => app.streams.open, open => open === 0)
    t.same(await waitFor('cat to have ended', () => processes(app, name), list => !list.includes('cat')), ['httpd -f -p 8080 -h /www'], 'nothing is left running')

    const alices = await terminal(base, name, 'command=sh&tty=true')
    const bobsSession = await terminal(base, bobs.name, 'command=sh&tty=true', 'bob')
    await waitFor('both sessions', () => app.streams.open, open => open === 2)
    tokens.replace(tokensFromEnv({ BERTH_TOKENS: `bob:write:${TOKENS.bob.token}` }))
    t.same(await alices.closed, { code: 1001, reason: 'session ended' }, 'alice\'s session ends at once')
    bobsSession.socket.send(Buffer.from('echo still-here\n'))
    await waitFor('bob\'s answer', () => bobsSession.stdout(), out => out.includes('still-here'))
    bobsSession.socket.send(Buffer.from('exit\n'))
    t.same(await bobsSession.closed, { code: 1000, reason: 'exited' })
    tokens.replace(tokensFromEnv({ BERTH_TOKENS: `alice:write:${TOKENS.alice.token};bob:write:${TOKENS.bob.token}` }))
    t.same(await waitFor('alice\'s shell to have ended', () => processes(app, name), list => list.length === 1), ['httpd -f -p 8080 -h /www'], 'her shell has ended too')
  })

  /** A tar made by hand, entry by entry: what a hostile client can send. */
  const archive = (entries: Array<{ name: string, data?: string }>) => Buffer.concat([...entries.flatMap(entry => {
    const data = Buffer.from(entry.data ?? '')
    return [tarHeader({ name: entry.name, size: data.length }), data, Buffer.alloc(padding(data.length))]
  }), TAR_END])

  t.test('files in and out as tar through exec, with docker\'s refusals and limits; a refused upload writes nothing', async t => {
    const namespace = await namespaceFor(t, 'files')
    const app = await buildKube(t, { namespace, config: { files: { maxUploadBytes: 64 * 1024, maxDownloadBytes: 200 * 1024 } } })
    // The test image has no writable directory of its own: /dev/shm is one (an emptyDir).
    const { id, name } = await run(app, 'cp', { shmSize: 16 * 1024 * 1024 })
    const put = async (url: string, payload: Buffer, type = 'application/x-tar') =>
      await app.inject({ method: 'PUT', url, headers: { ...auth('alice'), 'content-type': type }, payload })
    await shell(app, name, 'mkdir -p /dev/shm/in')

    const started = performance.now()
    const upload = await put(`/v1/containers/${name}/archive?path=/dev/shm/in`, archive([{ name: 'data/a.txt', data: 'alpha\n' }, { name: 'data/sub/b.txt', data: 'beta\n' }]))
    t.comment(`kubernetes: a tar in answered in ${(performance.now() - started).toFixed(0)} ms`)
    t.equal(upload.statusCode, 204, upload.body)
    t.equal(await shell(app, name, 'cat /dev/shm/in/data/a.txt /dev/shm/in/data/sub/b.txt'), 'alpha\nbeta\n')
    const file = await put(`/v1/containers/${id}/files?path=/dev/shm/in/run.sh&mode=0755`, Buffer.from('#!/bin/sh\necho ran\n'), 'application/octet-stream')
    t.equal(file.statusCode, 204, file.body)
    t.equal(await shell(app, name, '/dev/shm/in/run.sh'), 'ran\n', 'written, with the mode asked for')

    const out = await app.inject({ method: 'GET', url: `/v1/containers/${name}/archive?path=/dev/shm/in/data`, headers: auth('alice') })
    t.equal(out.statusCode, 200, out.body)
    t.equal(out.headers['content-type'], 'application/x-tar')
    t.match(JSON.parse(out.headers['x-berth-path-stat'] as string), { name: 'data', mode: 2 ** 31 + 0o755, mtime: /^\d{4}-/ })
    t.same(execFileSync('tar', ['-t'], { input: out.rawPayload, encoding: 'utf8' }).trim().split('\n').sort(), ['data/', 'data/a.txt', 'data/sub/', 'data/sub/b.txt'])
    const single = await app.inject({ method: 'GET', url: `/v1/containers/${name}/archive?path=/dev/shm/in/data/a.txt`, headers: auth('alice') })
    t.match(JSON.parse(single.headers['x-berth-path-stat'] as string), { name: 'a.txt', size: 6 })
    t.equal(execFileSync('tar', ['-x', '-O'], { input: single.rawPayload, encoding: 'utf8' }), 'alpha\n')

    const hostile = await put(`/v1/containers/${name}/archive?path=/dev/shm/in`, archive([{ name: 'ok.txt', data: 'fine' }, { name: '../escaped.txt', data: 'x' }]))
    t.equal(hostile.statusCode, 400)
    t.match(hostile.json(), { code: 'validation_failed', detail: /has a "\.\." segment/ })
    const tooBig = await put(`/v1/containers/${name}/files?path=/dev/shm/in/big`, Buffer.alloc(100 * 1024, 'a'), 'application/octet-stream')
    t.equal(tooBig.statusCode, 413)
    t.equal(await shell(app, name, 'ls /dev/shm/in; ls /dev/shm/escaped.txt 2>&1'), 'data\nrun.sh\nls: /dev/shm/escaped.txt: No such file or directory\n', 'refused uploads wrote nothing, not even the entries before the refused one')

    await shell(app, name, 'head -c 300000 /dev/zero > /dev/shm/large')
    const cut = await fetch(`${await listen(app)}/v1/containers/${name}/archive?path=/dev/shm/large`, { headers: auth('alice') })
    t.equal(cut.status, 200)
    await t.rejects(cut.arrayBuffer(), 'a download past BERTH_MAX_DOWNLOAD ends in an error, not as a shorter archive')

    const missing = await app.inject({ method: 'GET', url: `/v1/containers/${name}/archive?path=/no/such`, headers: auth('alice') })
    t.equal(missing.statusCode, 404, missing.body)
    t.match(missing.json(), { code: 'not_found', detail: `no such path /no/such in container ${id}` })
    t.equal((await put(`/v1/containers/${name}/archive?path=/no/such`, archive([{ name: 'x' }]))).statusCode, 404, 'unpacking needs the directory')
    const denied = await put(`/v1/containers/${name}/archive?path=/etc`, archive([{ name: 'x' }]))
    t.equal(denied.statusCode, 400, denied.body)
    t.match(denied.json(), { code: 'validation_failed', detail: /container's \(non-root\) user/ })
    const bobs = await app.inject({ method: 'GET', url: `/v1/containers/${name}/archive?path=/etc/passwd`, headers: auth('bob') })
    t.equal(bobs.statusCode, 404, 'another tenant\'s files do not exist for bob')
    t.same(await processes(app, name), ['httpd -f -p 8080 -h /www'], 'no tar is left behind')
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${id}?force=true`, headers: auth('alice') })).statusCode, 204)
    t.same(await leftoversIn(namespace), [])
  })

  t.test('stats from the kubelet\'s summary through the apiserver; without the role for it, 501 naming what to enable', async t => {
    const namespace = await namespaceFor(t, 'stats')
    const app = await buildKube(t, { namespace })
    const { id, name } = await run(app, 'busy', { command: ['sh', '-c', 'sleep 300 & while :; do :; done'], resources: { cpus: 0.5, memory: 64 * 1024 * 1024 } })
    const started = performance.now()
    const one = await app.inject({ method: 'GET', url: `/v1/containers/${name}/stats`, headers: auth('alice') })
    t.comment(`kubernetes: one stats reading in ${(performance.now() - started).toFixed(0)} ms`)
    t.equal(one.statusCode, 200, one.body)
    const reading = one.json()
    t.comment(`berth: ${JSON.stringify(reading)}`)
    t.equal(reading.memory.limit, 64 * 1024 * 1024, 'the pod\'s memory limit')
    t.ok(reading.memory.used > 0 && reading.memory.used < reading.memory.limit, `memory in use (${reading.memory.used})`)
    t.ok(reading.cpuPercent > 1 && reading.cpuPercent < 65, `a busy loop capped at half a core (${reading.cpuPercent} %)`)
    t.ok(reading.cpuSeconds > 0)
    const stream = await fetch(`${await listen(app)}/v1/containers/${id}/stats`, { headers: { ...auth('alice'), accept: 'application/x-ndjson' } })
    t.equal(stream.status, 200)
    const readings: Array<{ time: string }> = []
    let text = ''
    for await (const chunk of stream.body as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString()
      const complete = text.split('\n').slice(0, -1).filter(line => line !== '')
      if (complete.length >= 2) {
        readings.push(...complete.map(line => JSON.parse(line)))
        break
      }
    }
    t.ok(readings.length >= 2 && readings.every(entry => /^\d{4}-/.test(entry.time)), 'a stream of readings')
    t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${id}/stats`, headers: auth('bob') })).statusCode, 404)

    // berth as the committed manifests make it: no metrics-server here, and no right to the kubelets.
    const identity = await berthIdentity(t, 'stats-role')
    const limited = await buildKube(t, { namespace: identity.tenants, token: identity.token })
    const its = await run(limited, 'limited')
    const refused = await limited.inject({ method: 'GET', url: `/v1/containers/${its.id}/stats`, headers: auth('alice') })
    t.equal(refused.statusCode, 501, refused.body)
    t.match(refused.json(), { code: 'not_supported', detail: /install metrics-server.*kubelet-stats\.yaml/ })
    const granted = await berthIdentity(t, 'stats-granted', ['kubelet-stats.yaml'])
    const allowed = await buildKube(t, { namespace: granted.tenants, token: granted.token })
    const theirs = await run(allowed, 'allowed')
    const reads = await allowed.inject({ method: 'GET', url: `/v1/containers/${theirs.id}/stats`, headers: auth('alice') })
    t.equal(reads.statusCode, 200, `with deploy/kubernetes/kubelet-stats.yaml: ${reads.body}`)
    t.ok(reads.json().memory.used > 0)
  })
}
