// The committed openapi/openapi.yaml is the product's contract: it must match what the app serves.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { renderOpenApi } from '../scripts/openapi-document.ts'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { errorCodes, type ErrorCode } from '../src/errors.ts'
import { exampleProblem } from '../src/schemas/common.ts'
import { PROBLEM_MEMBERS, problemSchemaName } from '../src/schemas/problems.ts'
import { build } from './helpers.ts'

t.test('openapi/openapi.yaml is up to date (regenerate with npm run openapi)', async t => {
  const committed = readFileSync(new URL('../openapi/openapi.yaml', import.meta.url), 'utf8')
  t.equal(committed, await renderOpenApi())
})

t.test('openapi/openapi.yaml reads the same in YAML 1.1 as in 1.2: `no` stays a string', async t => {
  const committed = readFileSync(new URL('../openapi/openapi.yaml', import.meta.url), 'utf8')
  const served = (await (await build(t)).inject({ method: 'GET', url: '/openapi.json' })).json()
  t.same(parse(committed), served, 'a YAML 1.2 reader')
  // A reader of YAML 1.1 takes yes/no/on/off/y/n for booleans and 2026-01-01 for a timestamp.
  t.same(parse(committed, { version: '1.1' }), served, 'a YAML 1.1 reader (yaml\'s 1.1 schema)')
  t.same(parse(committed, { version: '1.1' }).components.schemas.RunRequest.properties.restart.properties.policy.enum, ['no', 'always', 'unless-stopped', 'on-failure'])
  // PyYAML, the reader the contract was found wrong with; scripts/test-env.sh installs Debian's python3-yaml.
  const pyyaml = 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'
  t.same(JSON.parse(execFileSync('python3', ['-c', pyyaml], { input: committed, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })), served, 'PyYAML')
})

t.test('/openapi.json is OpenAPI 3.1 with named components, bearer security and every operation documented', async t => {
  const app = await build(t)
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(response.statusCode, 200)
  const doc = response.json()
  t.equal(doc.openapi, '3.1.0')
  t.same(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes.bearer.description })
  for (const name of ['Problem', 'Container', 'ContainerSummary', 'RunRequest', 'PortBinding', 'PullRequest', 'PulledImage', 'ImageSummary', 'ImageDetails', 'Event', 'StateChange']) {
    t.ok(doc.components.schemas[name], `components.schemas.${name}`)
  }
  t.notOk(JSON.stringify(doc).includes('def-'), 'no anonymous def-N components')
  const operations = Object.entries(doc.paths as Record<string, Record<string, { operationId?: string, summary?: string, tags?: string[], security?: unknown[] }>>)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, ...operation })))
  t.ok(operations.length >= 12, `${operations.length} operations`)
  for (const operation of operations) {
    t.ok(operation.operationId && operation.summary && operation.tags?.length, `${operation.method} ${operation.path} has operationId, summary, tags`)
    t.same(operation.security, operation.path.startsWith('/v1/') ? [{ bearer: [] }] : [], `${operation.method} ${operation.path}: bearer security exactly on /v1, none said explicitly elsewhere`)
  }
  t.same(doc.servers, [{ url: '/', description: 'The berth serving this document' }])
  const run = doc.paths['/v1/containers'].post
  t.equal(run.requestBody.content['application/json'].schema.$ref, '#/components/schemas/RunRequest')
  t.same(run.responses['409'].content['application/problem+json'].schema, {
    oneOf: ['GpuUnavailableProblem', 'NameConflictProblem', 'PlacementFailedProblem', 'PortConflictProblem', 'PullCancelledProblem'].map(name => ({ $ref: `#/components/schemas/${name}` }))
  })
})

/** The codes a problem answer's schema can carry: one code's schema, or one of several. */
function codesOf (schema: { $ref?: string, oneOf?: Array<{ $ref: string }> } | undefined): ErrorCode[] {
  const byName = new Map((Object.keys(errorCodes) as ErrorCode[]).map(code => [`#/components/schemas/${problemSchemaName(code)}`, code]))
  return (schema?.oneOf ?? (schema?.$ref === undefined ? [] : [{ $ref: schema.$ref }])).map(({ $ref }) => byName.get($ref) ?? `unknown ${$ref}` as ErrorCode)
}

t.test('every 4xx and 5xx is problem+json with the codes it can carry, and an example of each', async t => {
  const doc = (await (await build(t)).inject({ method: 'GET', url: '/openapi.json' })).json()
  type Media = { schema: { $ref?: string, oneOf?: Array<{ $ref: string }> }, examples?: Record<string, { value: { status: number, code: string } }> }
  const answered = new Set<string>()
  // Every mismatch, named; one assertion at the end, so a failure lists them all.
  const wrong: string[] = []
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, { content?: Record<string, Media> }> }>>)) {
    for (const [method, { responses }] of Object.entries(methods)) {
      const where = `${method} ${path}`
      if (!Object.keys(responses).some(status => /^4/.test(status))) wrong.push(`${where}: no 4xx`)
      if (responses['500'] === undefined || responses['4XX'] === undefined) wrong.push(`${where}: no 500 or 4XX`)
      for (const [status, response] of Object.entries(responses).filter(([status]) => /^[45]/.test(status))) {
        const types = Object.keys(response.content ?? {})
        if (types.join() !== 'application/problem+json') wrong.push(`${where} ${status}: ${types.join()}`)
        const media = response.content?.['application/problem+json']
        const codes = codesOf(media?.schema)
        if (codes.length === 0) wrong.push(`${where} ${status}: no codes`)
        if (Object.keys(media?.examples ?? {}).join() !== codes.join()) wrong.push(`${where} ${status}: examples ${Object.keys(media?.examples ?? {})} for codes ${codes}`)
        for (const code of codes) {
          answered.add(code)
          const example = media?.examples?.[code]?.value
          const declaredAs = status === '4XX' ? `4${String(errorCodes[code].status).slice(1)}` : status
          if (errorCodes[code].status !== Number(declaredAs) || example?.status !== errorCodes[code].status || example?.code !== code) {
            wrong.push(`${where} ${status}: ${code} (a ${errorCodes[code].status}) with the example ${JSON.stringify(example)}`)
          }
        }
      }
    }
  }
  t.same(wrong, [], 'every error response of every operation is a problem+json with its codes and their examples')
  // method_not_allowed is no operation's: a path answers it for a method it has no operation for.
  t.same([...answered, 'method_not_allowed'].sort(), Object.keys(errorCodes).sort(), 'every error code is answered by some operation')
  const examples = doc.components.schemas.Problem.examples as Array<{ code: ErrorCode, status: number }>
  t.same(examples.map(example => example.code), Object.keys(errorCodes), 'the Problem schema shows an example of every code')
  t.ok(examples.every(example => example.status === errorCodes[example.code].status), 'each with its status')
})

t.test('each code\'s problem is a schema of its own, declaring the members it adds, and every example is valid against it', async t => {
  const doc = (await (await build(t)).inject({ method: 'GET', url: '/openapi.json' })).json()
  const ajv = addFormats.default(new Ajv2020({ strict: false, allErrors: true }))
  ajv.addSchema(doc, 'doc')
  const base = Object.keys(doc.components.schemas.Problem.properties)
  const wrong: string[] = []
  for (const code of Object.keys(errorCodes) as ErrorCode[]) {
    const name = problemSchemaName(code)
    const schema = doc.components.schemas[name]
    const own = schema?.allOf?.[1]?.properties ?? {}
    if (own.code?.const !== code) wrong.push(`${name}: not the schema of ${code}`)
    const members = Object.keys(own).filter(key => key !== 'code')
    t.same(members, Object.keys(PROBLEM_MEMBERS[code] ?? {}), `${name} declares ${members.join(', ') || 'no members'}`)
    const example = exampleProblem(code, '/v1/containers')
    const undeclared = Object.keys(example).filter(key => !base.includes(key) && !members.includes(key))
    if (undeclared.length > 0) wrong.push(`${code}: its example has ${undeclared.join(', ')}, undeclared`)
    const validate = ajv.getSchema(`doc#/components/schemas/${name}`)
    if (validate === undefined || !validate(example)) wrong.push(`${code}: its example is not valid: ${ajv.errorsText(validate?.errors)}`)
    for (const other of ['not_found', 'port_conflict'] as const) {
      if (other !== code && validate?.({ ...exampleProblem(other) }) === true) wrong.push(`${name} takes a ${other} problem`)
    }
  }
  t.same(wrong, [])
})

t.test('response headers: X-Request-Id on every answer, WWW-Authenticate on 401, Retry-After on 429 and 503, Location where set, Allow on 405', async t => {
  const doc = (await (await build(t)).inject({ method: 'GET', url: '/openapi.json' })).json()
  t.same(Object.keys(doc.components.headers).sort(), ['Allow', 'Location', 'Retry-After', 'WWW-Authenticate', 'X-Request-Id'])
  const located: string[] = []
  const wrong: string[] = []
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, { operationId: string, responses: Record<string, { headers?: Record<string, { $ref: string }> }> }>>)) {
    for (const [method, { operationId, responses }] of Object.entries(methods)) {
      for (const [status, { headers = {} }] of Object.entries(responses)) {
        const expected = ['X-Request-Id', ...(status === '401' ? ['WWW-Authenticate'] : []), ...(status === '429' || status === '503' ? ['Retry-After'] : [])]
        const names = Object.keys(headers)
        if (names.includes('Location')) located.push(`${operationId} ${status}`)
        const missing = expected.filter(name => !names.includes(name))
        if (missing.length > 0) wrong.push(`${method} ${path} ${status}: no ${missing.join(', ')}`)
        for (const [name, header] of Object.entries(headers)) if (header.$ref !== `#/components/headers/${name}`) wrong.push(`${method} ${path} ${status}: ${name} is ${JSON.stringify(header)}`)
      }
    }
  }
  t.same(wrong, [])
  t.same(located.sort(), ['buildImage 202', 'createNetwork 201', 'createVolume 200', 'createVolume 201', 'pullImage 202', 'runContainer 201'], 'Location exactly where the routes set it')
  const notAllowed = doc.components.responses.MethodNotAllowed
  t.same(notAllowed.headers.Allow, { $ref: '#/components/headers/Allow' })
  t.same(notAllowed.content['application/problem+json'].schema, { $ref: '#/components/schemas/MethodNotAllowedProblem' })
  t.match(doc.info.description, /components\.responses\.MethodNotAllowed/, 'and the document says where a 405 is declared')
})

t.test('every stream declares its body one way: SSE a string naming its events\' schema, NDJSON that schema', async t => {
  const doc = (await (await build(t)).inject({ method: 'GET', url: '/openapi.json' })).json()
  const wrong: string[] = []
  let streams = 0
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }> }>>)) {
    for (const [method, { responses }] of Object.entries(methods)) {
      for (const [status, { content = {} }] of Object.entries(responses).filter(([status]) => /^2/.test(status))) {
        const where = `${method} ${path} ${status}`
        const sse = content['text/event-stream']?.schema
        if (sse !== undefined) {
          streams++
          const named = /^Server-sent events; each `data` is an? (\w+)/.exec(String(sse.description))?.[1]
          if (sse.type !== 'string' || Object.keys(sse).sort().join() !== 'description,type') wrong.push(`${where}: SSE body ${JSON.stringify(sse)}`)
          else if (named === undefined || doc.components.schemas[named] === undefined) wrong.push(`${where}: SSE names no schema of the document: ${String(sse.description)}`)
        }
        const ndjson = content['application/x-ndjson']?.schema
        if (ndjson !== undefined && !/^#\/components\/schemas\/\w+$/.test(String(ndjson.$ref))) wrong.push(`${where}: NDJSON body ${JSON.stringify(ndjson)}`)
      }
    }
  }
  t.same(wrong, [])
  t.ok(streams >= 7, `${streams} SSE streams`)
})

t.test('Swagger UI is served at /docs', async t => {
  const app = await build(t)
  const response = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /text\/html/)
  t.match(response.body, /swagger-ui/)
})
