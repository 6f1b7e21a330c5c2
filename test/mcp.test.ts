// Tools for agents: the Model Context Protocol on /mcp, driven by the SDK's own client over real HTTP
// against berth on the real engine — a container's whole life through tools, the refusals a token
// meets over REST met the same way (scope, ownership, policy, quota, size), one audit line per tool
// call naming the agent's token, and a call that ends when the agent goes away.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import type { Test } from 'tap'
import { tarOf } from './build-helpers.ts'
import { LogCapture, RUN, RUN_LABEL, TOKENS, build, cleanupAfter, env, name, waitFor, type App, type TokenName } from './helpers.ts'

cleanupAfter(t)

const TOOL_NAMES = ['exec', 'files_in', 'files_out', 'inspect', 'logs', 'ps', 'rm', 'run', 'start', 'stop', 'wait']

/** berth listening on a free loopback port: the SDK's client speaks HTTP. */
async function listening (t: Test, app: App): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return `http://127.0.0.1:${address.port}`
}

interface Agent {
  client: Client
  /** The x-request-id of each answer to a POST /mcp, in order. */
  requestIds: string[]
  call: (name: string, args: Record<string, unknown>) => Promise<CallToolResult>
}

/** An MCP client connected to berth's /mcp as `who`. */
async function agent (t: Test, url: string, who: TokenName): Promise<Agent> {
  const requestIds: string[] = []
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', url), {
    requestInit: { headers: { authorization: `Bearer ${TOKENS[who].token}` } },
    fetch: async (input, init) => {
      const response = await fetch(input, init)
      if (init?.method === 'POST') requestIds.push(response.headers.get('x-request-id') ?? '')
      return response
    }
  })
  const client = new Client({ name: `test-${who}`, version: '1.0.0' })
  await client.connect(transport)
  t.teardown(() => client.close())
  return { client, requestIds, call: async (tool, args) => await client.callTool({ name: tool, arguments: args }) as CallToolResult }
}

/** The problem a tool error carries. */
function problemOf (result: CallToolResult): Record<string, unknown> {
  if (result.isError !== true) throw new Error(`not a tool error: ${JSON.stringify(result)}`)
  const [first] = result.content
  return JSON.parse(first?.type === 'text' ? first.text : '{}')
}

function textOf (result: CallToolResult, index = 0): string {
  const block = result.content[index]
  if (block?.type !== 'text') throw new Error(`block ${index} is not text: ${JSON.stringify(result)}`)
  return block.text
}

const labels = { [RUN_LABEL]: RUN }

t.test('the tools, with the REST operations\' own schemas written out whole', async t => {
  const app = await build(t)
  const alice = await agent(t, await listening(t, app), 'alice')
  const info = alice.client.getServerVersion()
  t.equal(info?.name, 'berth')
  t.match(alice.client.getInstructions(), /run it, wait for it/)
  const { tools } = await alice.client.listTools()
  t.same(tools.map(tool => tool.name).sort(), TOOL_NAMES)
  t.notOk(JSON.stringify(tools).includes('$ref'), 'no reference an MCP client would have to resolve')
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  const run = tools.find(tool => tool.name === 'run')
  t.same(Object.keys(run?.inputSchema.properties ?? {}), Object.keys(doc.components.schemas.RunRequest.properties), 'run takes RunRequest')
  t.same(run?.inputSchema.required, ['image'])
  t.equal(run?.inputSchema.additionalProperties, false)
  t.same((run?.inputSchema.properties as Record<string, unknown>).restart, doc.components.schemas.RunRequest.properties.restart, 'each argument as the document declares it')
  t.same(Object.keys(run?.outputSchema?.properties ?? {}), Object.keys(doc.components.schemas.Container.properties), 'and answers a Container')
  const logs = tools.find(tool => tool.name === 'logs')
  t.same(Object.keys(logs?.inputSchema.properties ?? {}).sort(), ['idOrName', 'since', 'tail', 'timestamps', 'until'], 'logs: a tool answers once, so no follow')
  const exec = tools.find(tool => tool.name === 'exec')
  t.same(Object.keys(exec?.outputSchema?.properties ?? {}).sort(), ['exitCode', 'stderr', 'stdout', 'truncated'], 'exec answers an ExecResult')
  t.match(tools.find(tool => tool.name === 'rm')?.annotations, { destructiveHint: true, readOnlyHint: false })
  t.match(tools.find(tool => tool.name === 'ps')?.annotations, { readOnlyHint: true })
})

t.test('a container\'s life through tools: run, ps, logs, exec, files, stop, start, wait, rm', async t => {
  const logs = new LogCapture()
  const app = await build(t, { logs })
  const alice = await agent(t, await listening(t, app), 'alice')
  const container = name('mcp-life')
  // Says hello on both streams, then runs until /tmp/finish exists, and exits 5; a stop ends it at once.
  const command = ['sh', '-c', 'trap "exit 143" TERM; echo hello; echo oops >&2; while [ ! -e /tmp/finish ]; do sleep 0.1; done; exit 5']

  const run = await alice.call('run', { image: env.image, name: container, command, labels })
  t.notOk(run.isError, 'run')
  const ran = run.structuredContent as { id: string, name: string, state: string }
  t.match(ran, { name: container, state: 'running' })
  t.same(JSON.parse(textOf(run)), ran, 'the same JSON as text, for clients that read only text')

  const audit = logs.lines.filter(line => line.msg === 'audit' && line.requestId === alice.requestIds.at(-1))
  t.same(audit.map(line => line.audit), [{ actor: 'alice', action: 'POST /v1/containers', target: { container: { id: ran.id, name: container }, image: env.image, imageId: (audit[0]?.audit as { target: { imageId: string } })?.target.imageId, digest: null }, status: 201 }],
    'one audit line for the tool call: the REST route\'s, as the agent\'s token, under the /mcp request\'s id')
  t.notOk(logs.lines.some(line => line.msg === 'audit' && (line.req as { url?: string } | undefined)?.url === '/mcp'), '/mcp itself is not audited again')

  const ps = await alice.call('ps', { label: [`${RUN_LABEL}=${RUN}`] })
  t.same((ps.structuredContent as { containers: Array<{ id: string }> }).containers.map(c => c.id), [ran.id])

  const inspected = await alice.call('inspect', { idOrName: container })
  t.equal((inspected.structuredContent as { id: string }).id, ran.id)

  const output = await waitFor('both lines in the logs', async () => textOf(await alice.call('logs', { idOrName: container })), text => text.includes('oops'))
  t.same(output.split('\n').filter(Boolean).sort(), ['hello', 'oops'])

  const exec = await alice.call('exec', { idOrName: container, command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] })
  t.same(exec.structuredContent, { exitCode: 3, stdout: 'out\n', stderr: 'err\n', truncated: false })

  // A text file in and out, a binary one in and out (base64), a directory in as a tar and out as one.
  t.notOk((await alice.call('files_in', { idOrName: container, path: '/tmp/note.txt', content: 'héllo\nworld\n' })).isError)
  const note = await alice.call('files_out', { idOrName: container, path: '/tmp/note.txt' })
  t.match(JSON.parse(textOf(note, 0)), { path: '/tmp/note.txt', type: 'file', size: 13, encoding: 'text' })
  t.equal(textOf(note, 1), 'héllo\nworld\n')
  // Not UTF-8 (0xff never is), and no NUL in it: the decoder, not the NUL check, finds it binary.
  const bytes = Buffer.from(randomBytes(3000).map(byte => byte === 0 ? 1 : byte))
  bytes[0] = 0xff
  t.notOk((await alice.call('files_in', { idOrName: container, path: '/tmp/blob.bin', content: bytes.toString('base64'), encoding: 'base64', mode: '0600' })).isError)
  const blob = await alice.call('files_out', { idOrName: container, path: '/tmp/blob.bin' })
  t.match(JSON.parse(textOf(blob, 0)), { type: 'file', size: 3000, mode: '0600', encoding: 'base64' })
  const resource = blob.content[1]
  t.ok(resource?.type === 'resource' && 'blob' in resource.resource && Buffer.from(resource.resource.blob, 'base64').equals(bytes), 'the same bytes back')
  t.notOk((await alice.call('files_in', { idOrName: container, path: '/tmp/nul', content: 'AAEC', encoding: 'base64' })).isError)
  t.match(JSON.parse(textOf(await alice.call('files_out', { idOrName: container, path: '/tmp/nul' }), 0)), { size: 3, encoding: 'base64' }, 'a NUL makes it binary')
  const link = await alice.call('files_out', { idOrName: container, path: '/bin/sh' })
  t.match(JSON.parse(textOf(link, 0)), { type: 'symlink', linkTarget: 'busybox', encoding: 'tar', entries: [{ name: 'sh', type: 'symlink', size: 0, linkTarget: 'busybox' }] }, 'a link comes as a tar of the link')
  const tar = tarOf({ 'site/index.html': '<h1>hi</h1>\n', 'site/css/a.css': 'h1{}\n' })
  t.notOk((await alice.call('files_in', { idOrName: container, path: '/tmp', content: tar.toString('base64'), encoding: 'tar' })).isError)
  const site = await alice.call('files_out', { idOrName: container, path: '/tmp/site' })
  const listing = JSON.parse(textOf(site, 0)) as { type: string, encoding: string, entries: Array<{ name: string, type: string }> }
  t.match(listing, { type: 'directory', encoding: 'tar' })
  t.same(listing.entries.filter(entry => entry.type === 'file').map(entry => entry.name).sort(), ['site/css/a.css', 'site/index.html'])
  const archive = site.content[1]
  const archived = archive?.type === 'resource' && 'blob' in archive.resource ? Buffer.from(archive.resource.blob, 'base64') : Buffer.alloc(0)
  t.equal(execFileSync('tar', ['-xO', 'site/index.html'], { input: archived, encoding: 'utf8' }), '<h1>hi</h1>\n', 'a real tar')
  t.equal(textOf(await alice.call('exec', { idOrName: container, command: ['cat', '/tmp/site/css/a.css'] }), 0), JSON.stringify({ exitCode: 0, stdout: 'h1{}\n', stderr: '', truncated: false }))

  // Past what a tool moves, either way: the REST routes stream bigger files.
  t.match((await alice.call('exec', { idOrName: container, command: ['sh', '-c', 'head -c 9000000 /dev/zero > /tmp/large'] })).structuredContent, { exitCode: 0 })
  t.match(problemOf(await alice.call('files_out', { idOrName: container, path: '/tmp/large' })), { code: 'payload_too_large', detail: '/tmp/large is larger than 8388608 bytes, the most a tool moves: download it with GET /v1/containers/{idOrName}/archive' })
  t.match(problemOf(await alice.call('files_in', { idOrName: container, path: '/tmp/large', content: 'x'.repeat(8 * 1024 * 1024 + 1) })), { code: 'payload_too_large', detail: /^the content is 8388609 bytes; a tool moves at most 8388608/ })

  const stopped = await alice.call('stop', { idOrName: container, timeout: 5 })
  t.match(stopped.structuredContent, { changed: true, container: { state: 'exited', exitCode: 143 } })
  t.match((await alice.call('stop', { idOrName: container })).structuredContent, { changed: false }, 'stopping it again changes nothing')
  const started = await alice.call('start', { idOrName: container })
  t.match(started.structuredContent, { changed: true, container: { state: 'running' } })
  t.same((await alice.call('wait', { idOrName: container, timeout: 1 })).structuredContent, { stopped: false, exitCode: null, oomKilled: false, error: null, removed: false }, 'a wait that times out')
  t.match((await alice.call('exec', { idOrName: container, command: ['sh', '-c', ': > /tmp/finish'] })).structuredContent, { exitCode: 0 })
  t.same((await alice.call('wait', { idOrName: container, timeout: 30 })).structuredContent, { stopped: true, exitCode: 5, oomKilled: false, error: null, removed: false })

  const removed = await alice.call('rm', { idOrName: container })
  t.equal(textOf(removed), `removed ${container}`)
  t.match(problemOf(await alice.call('inspect', { idOrName: container })), { code: 'not_found', status: 404, detail: `container ${container} was not found` })

  const actions = logs.lines.filter(line => line.msg === 'audit' && (line.audit as { actor: string }).actor === 'alice').map(line => (line.audit as { action: string }).action)
  t.same(actions, [
    'POST /v1/containers', 'POST /v1/containers/:idOrName/exec',
    'PUT /v1/containers/:idOrName/files', 'PUT /v1/containers/:idOrName/files', 'PUT /v1/containers/:idOrName/files', 'PUT /v1/containers/:idOrName/archive',
    'POST /v1/containers/:idOrName/exec', 'POST /v1/containers/:idOrName/exec',
    'POST /v1/containers/:idOrName/stop', 'POST /v1/containers/:idOrName/stop', 'POST /v1/containers/:idOrName/start',
    'POST /v1/containers/:idOrName/wait', 'POST /v1/containers/:idOrName/exec', 'POST /v1/containers/:idOrName/wait',
    'DELETE /v1/containers/:idOrName'
  ], 'every mutation audited once, in order, as alice')
})

t.test('refusals: what a token cannot do over REST, it cannot do through a tool', async t => {
  const logs = new LogCapture()
  // A deployment of its own: the quota counts only what this test runs.
  const app = await build(t, { logs, config: { deployment: `${RUN}-mcp`, policy: { images: [`docker.io/${env.image.split(':')[0]}`], quota: { containers: 1 } }, files: { maxUploadBytes: 4096, maxDownloadBytes: 8192 } } })
  const url = await listening(t, app)
  const [alice, bob, reader] = await Promise.all([agent(t, url, 'alice'), agent(t, url, 'bob'), agent(t, url, 'reader')])
  const container = name('mcp-refused')
  t.notOk((await alice.call('run', { image: env.image, name: container, command: ['sleep', '300'], labels })).isError)

  const forbidden = problemOf(await reader.call('run', { image: env.image, name: name('mcp-reader'), labels }))
  t.match(forbidden, { code: 'forbidden', status: 403, scope: 'write', detail: 'this needs the "write" scope; token "reader" has read' })
  t.match(logs.lines.find(line => line.msg === 'audit' && line.requestId === reader.requestIds.at(-1))?.audit, { actor: 'reader', action: 'POST /v1/containers', status: 403 }, 'refused, and audited as the reader')
  t.same((await reader.call('ps', {})).structuredContent, { containers: [] }, 'reading is what a read token does')

  for (const [tool, args] of [['inspect', {}], ['logs', {}], ['exec', { command: ['true'] }], ['stop', {}], ['rm', { force: true }], ['files_out', { path: '/etc/hostname' }]] as const) {
    t.match(problemOf(await bob.call(tool, { idOrName: container, ...args })), { code: 'not_found', detail: `container ${container} was not found` }, `bob cannot ${tool} alice's container`)
  }
  t.same((await bob.call('ps', { all: true, label: [`${RUN_LABEL}=${RUN}`] })).structuredContent, { containers: [] }, 'nor see it')

  t.match(problemOf(await alice.call('run', { image: `${env.registry}/${RUN}/elsewhere:1`, labels })), { code: 'policy_denied', status: 403, rule: 'images' })
  t.match(problemOf(await alice.call('run', { image: env.image, name: name('mcp-second'), command: ['sleep', '300'], labels })), { code: 'quota_exceeded', status: 403, limit: 'containers', quota: 1, used: 1 })

  // Arguments: one the tool does not have, one its route refuses, as REST would.
  t.match(problemOf(await alice.call('logs', { idOrName: container, follow: true })), { code: 'validation_failed', detail: 'arguments/follow is not a known argument of this tool' })
  t.match(problemOf(await alice.call('logs', { idOrName: container, tail: 'lots' })), { code: 'validation_failed', detail: /^querystring\/tail must match pattern/ })
  t.match(problemOf(await alice.call('inspect', {})), { code: 'validation_failed', detail: 'arguments/idOrName is required, as a string' })
  t.match(problemOf(await alice.call('files_in', { idOrName: container, path: '/tmp/x', content: 'not base64!', encoding: 'base64' })), { code: 'validation_failed', detail: 'arguments/content is not base64' })
  t.match(problemOf(await alice.call('nothing', {})), { code: 'not_found', detail: 'berth has no tool nothing: tools/list says which it has' })

  // Sizes: BERTH_MAX_UPLOAD and BERTH_MAX_DOWNLOAD hold for tools as for REST.
  t.match(problemOf(await alice.call('files_in', { idOrName: container, path: '/tmp/big', content: 'x'.repeat(5000) })), { code: 'payload_too_large', status: 413, detail: 'the upload is larger than 4096 bytes (BERTH_MAX_UPLOAD)' })
  t.notOk((await alice.call('files_in', { idOrName: container, path: '/tmp/big', content: 'x'.repeat(4000) })).isError)
  t.match((await alice.call('exec', { idOrName: container, command: ['sh', '-c', 'head -c 20000 /dev/zero > /tmp/huge'] })).structuredContent, { exitCode: 0 })
  t.match(problemOf(await alice.call('files_out', { idOrName: container, path: '/tmp/huge' })), { code: 'payload_too_large', status: 413, detail: /8192 bytes/ })
  t.notOk((await alice.call('files_out', { idOrName: container, path: '/tmp/big' })).isError, 'a file within the limit comes out')
  // Output is read up to a bound, as an exec answered whole keeps it: what goes on past it is left unread.
  t.match((await alice.call('exec', { idOrName: container, command: ['sh', '-c', 'yes 0123456789abcdef | head -c 1500012'] })).structuredContent, { exitCode: 0, truncated: true, stderr: '' })
  t.notOk((await alice.call('rm', { idOrName: container, force: true })).isError)
  t.notOk((await alice.call('run', { image: env.image, name: container, command: ['sh', '-c', 'yes 0123456789abcdef | head -c 1500012; sleep 300'], labels })).isError)
  const long = await waitFor('all the output logged', async () => await alice.call('logs', { idOrName: container }), result => result.content.length === 2)
  t.equal(textOf(long, 0).length, 1024 * 1024, '1 MiB of it')
  t.equal(textOf(long, 1), '[the output goes on past 1048576 bytes: ask for less with tail or since]')
  t.equal(textOf(await alice.call('logs', { idOrName: container, tail: '2' })), '0123456789abcdef\n0123456789abcdef\n', 'the end of it with tail')
  t.notOk((await alice.call('rm', { idOrName: container, force: true })).isError)
})

t.test('/mcp takes the same bearer token as /v1, and POST only', async t => {
  const app = await build(t)
  const url = await listening(t, app)
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } }
  const post = async (headers: Record<string, string>) => await fetch(`${url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: JSON.stringify(initialize) })
  const anonymous = await post({})
  t.equal(anonymous.status, 401)
  t.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="berth"')
  t.match(await anonymous.json(), { code: 'unauthorized' })
  const wrong = await post({ authorization: 'Bearer not-a-token' })
  t.equal(wrong.status, 401)
  const ok = await post({ authorization: `Bearer ${TOKENS.reader.token}` })
  t.equal(ok.status, 200)
  t.match(await ok.json(), { jsonrpc: '2.0', id: 1, result: { serverInfo: { name: 'berth' }, capabilities: { tools: {} } } })
  t.equal(ok.headers.get('mcp-session-id'), null, 'stateless: no session to keep')
  const get = await fetch(`${url}/mcp`, { headers: { authorization: `Bearer ${TOKENS.reader.token}`, accept: 'text/event-stream' } })
  t.equal(get.status, 405, 'no stream of server messages: berth sends none')
  t.equal(get.headers.get('allow'), 'POST')
})

t.test('without authentication (BERTH_AUTH_DISABLED, loopback only), an agent needs no token either', async t => {
  const app = await build(t, { config: { auth: { disabled: true } } })
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', await listening(t, app)))
  const client = new Client({ name: 'test-anonymous', version: '1.0.0' })
  await client.connect(transport)
  t.teardown(() => client.close())
  const ps = await client.callTool({ name: 'ps', arguments: { label: [`${RUN_LABEL}=${RUN}-none`] } }) as CallToolResult
  t.same(ps.structuredContent, { containers: [] })
})

t.test('a tool call ends when the agent goes away: its wait at the engine ends too', async t => {
  const app = await build(t)
  const url = await listening(t, app)
  const alice = await agent(t, url, 'alice')
  const container = name('mcp-gone')
  t.notOk((await alice.call('run', { image: env.image, name: container, command: ['sleep', '300'], labels })).isError)
  const leaving = new AbortController()
  const call = fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKENS.alice.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'wait', arguments: { idOrName: container } } }),
    signal: leaving.signal
  }).catch((error: unknown) => error)
  // The /mcp request and the wait it made: both are tied to the agent's connection.
  await waitFor('the wait to be under way', () => app.streams.open, open => open === 2)
  leaving.abort()
  t.match(await call, { name: 'AbortError' })
  await waitFor('the wait to end', () => app.streams.open, open => open === 0)
  t.pass('nothing of the call is left')
  t.notOk((await alice.call('rm', { idOrName: container, force: true })).isError)
})

t.test('a backend without an operation\'s part does not offer its tool', async t => {
  const real = await build(t)
  // The same engine, lacking the parts a cluster lacks here: what the tools list follows is the parts the routes need.
  const lacking = new Set(['exec', 'files', 'wait'])
  const cluster = new Proxy(real.engine, {
    get: (target, property) => property === 'has'
      ? (part: string) => !lacking.has(part)
      : property === 'why' ? (part: string) => lacking.has(part) ? 'not in this test' : undefined : Reflect.get(target, property, target)
  })
  const app = await build(t, { engine: cluster })
  const alice = await agent(t, await listening(t, app), 'alice')
  const { tools } = await alice.client.listTools()
  t.same(tools.map(tool => tool.name).sort(), ['inspect', 'logs', 'ps', 'rm', 'run', 'start', 'stop'], 'no exec, files or wait')
})
