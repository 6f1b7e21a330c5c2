// How requests are validated: every shared schema registered once (so the OpenAPI document names
// them), bodies validated as sent (a "8080" is not a port), query strings and params coerced from
// text. Two Ajv instances, because coercion is per instance. A body that is not JSON says where.
import fp from 'fastify-plugin'
import type { FastifySchemaValidationError } from 'fastify'
import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import type { TSchema } from 'typebox'
import { BerthError } from '../errors.ts'

/** Whether `text` is JSON or could become JSON by going on: the error, if any, is at its end. */
function viable (text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch (error) {
    const message = (error as Error).message
    const at = /at position (\d+)/.exec(message)
    return /Unexpected end of JSON input/.test(message) || (at !== null && Number(at[1]) >= text.length)
  }
}

/**
 * Where JSON.parse stopped in `text`, as line and column (from 1). V8 names the position for some
 * mistakes only ("Unexpected token '}'" has none), so it is found as the end of the longest prefix
 * that could still become JSON: a prefix of such a prefix can too, so a binary search finds it.
 */
export function jsonErrorAt (text: string): { line: number, column: number } {
  // All of it could go on: the mistake is that it ends there.
  let good = viable(text) ? text.length : 0
  let bad = text.length
  while (bad - good > 1) {
    const middle = Math.floor((good + bad) / 2)
    if (viable(text.slice(0, middle))) good = middle
    else bad = middle
  }
  // text[good] is the first character that cannot be part of JSON here (or the end of the text).
  const before = text.slice(0, good)
  const line = before.split('\n').length
  return { line, column: good - before.lastIndexOf('\n') }
}

/** validation_failed for a body fastify's JSON parser refused, saying why (and where, for a syntax error). */
function whyNotJson (text: string): BerthError {
  try {
    JSON.parse(text)
  } catch (error) {
    return invalidJson(text, error as Error)
  }
  return new BerthError('validation_failed', 'the body has a __proto__ or constructor.prototype member, which berth refuses')
}

/** validation_failed for a body JSON.parse refuses, saying what and where. */
export function invalidJson (text: string, error: Error): BerthError {
  const { line, column } = jsonErrorAt(text)
  // V8's words without its own position (when it has one) or its quote of the text.
  const what = error.message.replace(/ at position \d+ \(line \d+ column \d+\)$/, '').replace(/ in JSON$/, '').replace(/, (\.\.\.)?"[^]*" is not valid JSON$/, '')
  const where = `line ${line} column ${column}`
  return new BerthError('validation_failed', `the body is not valid JSON (${where}): ${what}`, { errors: [{ location: 'body', path: '', message: `is not valid JSON (${where}): ${what}` }] })
}

export default fp<{ schemas: TSchema[] }>(async (app, { schemas }) => {
  for (const schema of schemas) app.addSchema(schema)
  const options: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }
  // verbose: a body's errors carry the schema and data they are about, so that an unknown field
  // beside a missing one can be named (plugins/problems.ts).
  const bodyAjv = addFormats.default(new Ajv({ ...options, coerceTypes: false, verbose: true }))
  const textAjv = addFormats.default(new Ajv({ ...options, coerceTypes: 'array' }))
  for (const schema of Object.values(app.getSchemas())) {
    bodyAjv.addSchema(schema as object)
    textAjv.addSchema(schema as object)
  }
  // Compiled when a route is first asked, not at start: a deployment uses a few of the routes, and
  // each compiled validator is code and strings kept for good (bench/: idle memory).
  app.setValidatorCompiler(({ schema, httpPart }) => lazyValidator(() => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema)))
  // JSON only: Fastify would otherwise hand a text/plain body to validation as a string.
  app.removeContentTypeParser('text/plain')
  // Fastify's own JSON parser (it refuses __proto__ and constructor.prototype), whose syntax errors
  // say where they are.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string
    parseJson(request, text, (error, parsed) => {
      done((error as { code?: string } | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? whyNotJson(text) : error, parsed)
    })
  })
}, { name: 'berth-validation' })

type Validate = ((data: unknown) => boolean) & { errors?: FastifySchemaValidationError[] | null }

/** A validator that compiles its schema on its first call, and carries the errors of each call as Ajv's do. */
export function lazyValidator (compile: () => Validate): Validate {
  let compiled: Validate | undefined
  const validate: Validate = (data) => {
    compiled ??= compile()
    const valid = compiled(data)
    validate.errors = compiled.errors
    return valid
  }
  return validate
}
