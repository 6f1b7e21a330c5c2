// POST /mcp: the Model Context Protocol (streamable HTTP transport), so that an agent drives
// containers with tools (src/mcp/tools.ts) rather than hand-written HTTP. It needs the same bearer
// token as /v1 (any scope lets an agent in; each tool needs what its REST route needs), and every
// tool call is a call of that route, as that token (src/mcp/rest.ts).
//
// Stateless: each POST is answered on its own, by a server made for it, in one JSON message — no
// session is kept, so behind a load balancer any berth answers any request, a restart loses
// nothing, and there is nothing to expire. berth sends no messages of its own (no progress, no
// notifications), so it offers no SSE stream: GET and DELETE on /mcp answer 405, as the protocol
// allows. Registered before the routes: it learns the operations its tools call as they are added.
import fp from 'fastify-plugin'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { Tool as ToolDefinition } from '@modelcontextprotocol/sdk/types.js'
import type { FastifyRequest } from 'fastify'
import { BerthError, problemOf } from '../errors.ts'
import { Operations } from '../mcp/operations.ts'
import type { Caller } from '../mcp/rest.ts'
import { MAX_FILE, TOOLS, runTool, toolError, type Tool } from '../mcp/tools.ts'
import { version } from '../version.ts'

const INSTRUCTIONS = 'berth runs containers on a Docker engine (or a cluster) for you, as docker would: run, ps, inspect, logs, exec, ' +
  'files_in/files_out (docker cp), stop, start, rm, wait. The containers you run are yours: nobody else\'s token sees them, and you see no one else\'s. ' +
  'For a job that ends: run it, wait for it (with a timeout), read its logs, then rm it. A refusal is a tool error whose text is a problem (JSON) ' +
  'with a stable `code` (port_conflict, policy_denied, quota_exceeded, forbidden, not_found…) and a `detail` that says what to change.'

/**
 * The SDK, loaded when an agent first comes: it makes zod schemas of the whole protocol as it is
 * imported, over a second here (and ~6 MB more resident), which a start, and a berth no agent uses,
 * need not pay. The first /mcp request waits for it.
 */
async function loadSdk () {
  const [{ Server }, { WebStandardStreamableHTTPServerTransport }, { AjvJsonSchemaValidator }, { CallToolRequestSchema, ListToolsRequestSchema }] = await Promise.all([
    import('@modelcontextprotocol/sdk/server/index.js'),
    import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'),
    import('@modelcontextprotocol/sdk/validation/ajv'),
    import('@modelcontextprotocol/sdk/types.js')
  ])
  // The SDK's server validates nothing berth uses it for: one validator, rather than one per request.
  return { Server, WebStandardStreamableHTTPServerTransport, CallToolRequestSchema, ListToolsRequestSchema, jsonSchemaValidator: new AjvJsonSchemaValidator() }
}
type Sdk = Awaited<ReturnType<typeof loadSdk>>

export default fp(async (app) => {
  const operations = new Operations()
  app.addHook('onRoute', route => { operations.collect(route) })
  let sdk: Promise<Sdk> | null = null

  // Known once every route is there: the tools this backend has, with their definitions.
  let offered: { tools: Map<string, Tool>, definitions: ToolDefinition[] } | null = null
  function tools (): NonNullable<typeof offered> {
    if (offered !== null) return offered
    const available = TOOLS.filter(tool => tool.operations.every(id => {
      if (!operations.has(id)) return false
      const part = operations.get(app, id).part
      return part === undefined || app.engine.has(part)
    }))
    const operation = (id: string) => operations.get(app, id)
    offered = { tools: new Map(available.map(tool => [tool.name, tool])), definitions: available.map(tool => tool.definition(operation)) }
    return offered
  }
  // Made at start, so that a tool whose schema cannot be made stops berth rather than its first agent.
  app.addHook('onReady', async () => { tools() })

  function server ({ Server, CallToolRequestSchema, ListToolsRequestSchema, jsonSchemaValidator }: Sdk, caller: Caller): Server {
    const mcp = new Server({ name: 'berth', title: 'berth', version }, { capabilities: { tools: { listChanged: false } }, instructions: INSTRUCTIONS, jsonSchemaValidator })
    mcp.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: tools().definitions }))
    mcp.setRequestHandler(CallToolRequestSchema, async (request) => {
      const tool = tools().tools.get(request.params.name)
      if (tool === undefined) {
        return toolError(problemOf(new BerthError('not_found', `berth has no tool ${request.params.name}: tools/list says which it has`), caller.requestId))
      }
      return await runTool(tool, request.params.arguments ?? {}, { app, caller, operation: id => operations.get(app, id) })
    })
    return mcp
  }

  app.post('/mcp', {
    config: { scope: 'read' },
    // A file an agent copies in travels in the body as base64.
    bodyLimit: Math.max(app.config.limits.bodyLimit, Math.ceil(MAX_FILE / 3) * 4 + 64 * 1024),
    // Not an operation of the OpenAPI document: MCP is a protocol of its own (JSON-RPC messages, whose
    // schemas are the protocol's), and a client generated from the document has no use for it. The
    // document's description points at it; docs/mcp.md says how to use it.
    schema: { hide: true }
  }, async (request, reply) => {
    const loaded = await (sdk ??= loadSdk())
    const caller: Caller = { authorization: request.headers.authorization, requestId: request.id, address: request.ip, signal: app.streams.signal(reply) }
    const transport = new loaded.WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true })
    const mcp = server(loaded, caller)
    try {
      await mcp.connect(transport)
      const answer = await transport.handleRequest(webRequest(request), { parsedBody: request.body })
      reply.code(answer.status)
      answer.headers.forEach((value, name) => { reply.header(name, value) })
      return await reply.send(answer.body === null ? '' : Buffer.from(await answer.arrayBuffer()))
    } finally {
      await mcp.close()
    }
  })
}, { name: 'berth-mcp', dependencies: ['berth-auth', 'berth-streams'] })

/** The request as the SDK's transport reads it: its method, URL and headers; the body is already parsed. */
function webRequest (request: FastifyRequest): Request {
  const headers = new Headers()
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue
    for (const one of [value].flat()) headers.append(name, one)
  }
  // The transport wants a URL; it reads nothing from it but the path.
  return new Request(new URL(request.url, 'http://berth'), { method: request.method, headers })
}
