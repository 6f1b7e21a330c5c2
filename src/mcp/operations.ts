// The REST operations the tools call, as the routes declared them: method, path, and the schemas of
// their params, query string, body and success answer — collected from the routes themselves (by
// operationId), so a tool takes exactly what its route takes and the OpenAPI document says.
import type { FastifyInstance, RouteOptions } from 'fastify'
import { BerthError } from '../errors.ts'
import type { PartName } from '../engine/parts.ts'
import { mergedObject, propertiesOf, selfContained, type JsonSchema } from './json-schema.ts'

export interface Operation {
  operationId: string
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** The route's path, with `:name` parameters. */
  url: string
  params: JsonSchema
  querystring: JsonSchema
  /** The JSON body, when the route takes one. */
  body: JsonSchema | null
  /** The part of a backend it needs; undefined for containers, which every backend has. */
  part: PartName | undefined
  /** The schema of a success answer in `media` (or the route's only one). */
  answer (status: number, media?: string): JsonSchema
}

/** Collects the routes as they are added (an onRoute hook): register it before the routes. */
export class Operations {
  readonly #routes = new Map<string, RouteOptions>()
  readonly #resolved = new Map<string, Operation>()

  collect (route: RouteOptions): void {
    const id = route.schema?.operationId
    // fastify adds a HEAD beside each GET, with the same schema.
    if (id === undefined || route.method === 'HEAD' || this.#routes.has(id)) return
    this.#routes.set(id, route)
  }

  has (id: string): boolean {
    return this.#routes.has(id)
  }

  /** The operation, its schemas written out with the app's shared ones (known once the app is ready). */
  get (app: FastifyInstance, id: string): Operation {
    const known = this.#resolved.get(id)
    if (known !== undefined) return known
    const route = this.#routes.get(id)
    if (route === undefined) throw new Error(`no operation ${id}`)
    const lookup = (ref: string) => app.getSchema(ref)
    const schema = route.schema ?? {}
    const part = (value: unknown): JsonSchema => value === undefined ? { type: 'object', properties: {} } : selfContained(value, lookup)
    const body = schema.body as { content?: unknown } | undefined
    const responses = (schema.response ?? {}) as Record<string, { content?: Record<string, { schema: unknown }> }>
    const operation: Operation = {
      operationId: id,
      method: [route.method].flat()[0] as Operation['method'],
      url: route.url,
      params: part(schema.params),
      querystring: part(schema.querystring),
      // A body declared by its media types (a file, a tar) is not JSON a tool could pass.
      body: body === undefined || body.content !== undefined ? null : part(body),
      part: (route.config as { part?: PartName } | undefined)?.part,
      answer: (status, media) => {
        const response = responses[String(status)]
        if (response === undefined) throw new Error(`${id} declares no ${status}`)
        return selfContained(media === undefined ? response : response.content?.[media]?.schema, lookup)
      }
    }
    this.#resolved.set(id, operation)
    return operation
  }
}

/** A tool's argument schema: the operation's params, query string and body as one object, less `omit`. */
export function argumentsOf (operation: Operation, options: { omit?: string[], extra?: JsonSchema[] } = {}): JsonSchema {
  const omit = new Set(options.omit ?? [])
  const without = (schema: JsonSchema): JsonSchema => {
    const { properties, required } = propertiesOf(schema)
    return { properties: Object.fromEntries(Object.entries(properties).filter(([name]) => !omit.has(name))), required: required.filter(name => !omit.has(name)) }
  }
  return mergedObject([operation.params, operation.querystring, ...(operation.body === null ? [] : [operation.body]), ...(options.extra ?? [])].map(without))
}

export interface RouteRequest {
  url: string
  query: Record<string, string | string[]>
  /** The JSON body, for a route that takes one. */
  body: Record<string, unknown> | undefined
}

/**
 * A tool's arguments as the route's request: each argument goes where the route takes it (its path,
 * query string or body). The route validates them all, as it does any request; this only refuses
 * what it could not place, naming it as a tool argument.
 */
export function requestOf (operation: Operation, args: Record<string, unknown>, options: { omit?: string[], own?: string[] } = {}): RouteRequest {
  const params = Object.keys(propertiesOf(operation.params).properties)
  const query = Object.keys(propertiesOf(operation.querystring).properties)
  const body = operation.body === null ? [] : Object.keys(propertiesOf(operation.body).properties)
  const own = new Set(options.own ?? [])
  const omit = new Set(options.omit ?? [])
  const unknown = Object.keys(args).filter(name => omit.has(name) || !(params.includes(name) || query.includes(name) || body.includes(name) || own.has(name)))
  if (unknown.length > 0) throw invalidArgument(unknown[0] as string, 'is not a known argument of this tool')
  const url = operation.url.replace(/:(\w+)/g, (_, name: string) => {
    const value = args[name]
    if (typeof value !== 'string') throw invalidArgument(name, 'is required, as a string')
    return encodeURIComponent(value)
  })
  const queryValues: Record<string, string | string[]> = {}
  for (const name of query) {
    const value = args[name]
    if (value === undefined || value === null) continue
    queryValues[name] = Array.isArray(value) ? value.map(String) : String(value)
  }
  return {
    url,
    query: queryValues,
    body: operation.body === null ? undefined : Object.fromEntries(Object.entries(args).filter(([name]) => body.includes(name)))
  }
}

export function invalidArgument (name: string, message: string): BerthError {
  return new BerthError('validation_failed', `arguments/${name} ${message}`, { errors: [{ location: 'arguments', path: `/${name}`, message }] })
}
