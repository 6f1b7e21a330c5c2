// One response serializer per distinct schema. Every route answers its problems with the same
// Problem schema: fastify would build that serializer once per route and status (149 builds, 14
// distinct). One per distinct shape saves 5 MB of resident memory and startup time (measured with
// bench/); descriptions do not serialise, so they do not make a shape distinct. Nor does the enum
// of codes an operation declares for a status: every problem+json body is a Problem.
import fp from 'fastify-plugin'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import { PROBLEM_JSON } from '../schemas/problems.ts'

export default fp(async (app) => {
  const buildSerializer = SerializerSelector()(app.getSchemas(), {})
  const serializers = new Map<string, (data: unknown) => string>()
  app.setSerializerCompiler((route) => {
    const problem = (route as { contentType?: string }).contentType === PROBLEM_JSON
    if (problem) route = { ...route, schema: { $ref: 'Problem' } as typeof route.schema }
    const { description: _, ...shape } = route.schema as Record<string, unknown>
    const key = JSON.stringify(shape)
    let serializer = serializers.get(key)
    if (serializer === undefined) {
      // Built when a response of this shape is first sent, not at start (bench/: idle memory).
      let built: ((data: unknown) => string) | undefined
      serializer = data => (built ??= buildSerializer({ schema: route.schema, method: route.method, url: route.url, httpStatus: route.httpStatus ?? 'default' }))(data)
      serializers.set(key, serializer)
    }
    return serializer
  })
}, { name: 'berth-serializers', dependencies: ['berth-validation'] })
