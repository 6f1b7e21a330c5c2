// How requests are validated: every shared schema registered once (so the OpenAPI document names
// them), bodies validated as sent (a "8080" is not a port), query strings and params coerced from
// text. Two Ajv instances, because coercion is per instance.
import fp from 'fastify-plugin'
import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import type { TSchema } from 'typebox'

export default fp<{ schemas: TSchema[] }>(async (app, { schemas }) => {
  for (const schema of schemas) app.addSchema(schema)
  const options: AjvOptions = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false }
  const bodyAjv = addFormats.default(new Ajv({ ...options, coerceTypes: false }))
  const textAjv = addFormats.default(new Ajv({ ...options, coerceTypes: 'array' }))
  for (const schema of Object.values(app.getSchemas())) {
    bodyAjv.addSchema(schema as object)
    textAjv.addSchema(schema as object)
  }
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema))
  // JSON only: Fastify would otherwise hand a text/plain body to validation as a string.
  app.removeContentTypeParser('text/plain')
}, { name: 'berth-validation' })
