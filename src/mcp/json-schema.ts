// A tool's schemas are the REST operation's own: its params, query string and body merged into one
// argument object, with every reference to a shared schema (`{"$ref": "RunRequest"}`, resolved by
// berth through addSchema) written out in place. An MCP client gets each tool schema alone, without
// berth's components to resolve names against, and many agents read no `$ref` at all.

export type JsonSchema = Record<string, unknown>

/** Finds a shared schema by its $id (app.getSchema). */
export type SchemaLookup = (id: string) => unknown

/**
 * `schema` with every `$ref` to a shared schema replaced by that schema (its `$id` left out, so no
 * copy claims to be the original), and TypeBox's own symbols gone. A description beside a `$ref`
 * stays, over the referenced schema's.
 */
export function selfContained (schema: unknown, lookup: SchemaLookup, seen: readonly string[] = []): JsonSchema {
  return expand(plain(schema), lookup, seen) as JsonSchema
}

function expand (node: unknown, lookup: SchemaLookup, seen: readonly string[]): unknown {
  if (Array.isArray(node)) return node.map(item => expand(item, lookup, seen))
  if (typeof node !== 'object' || node === null) return node
  const { $ref, ...rest } = node as JsonSchema
  const expanded = Object.fromEntries(Object.entries(rest).map(([key, value]) => [key, expand(value, lookup, seen)]))
  if (typeof $ref !== 'string') return expanded
  // Shared schemas refer to each other by name; none refers to itself, and a cycle would never end here.
  if (seen.includes($ref)) throw new Error(`schema ${$ref} refers to itself (${[...seen, $ref].join(' → ')})`)
  const target = lookup($ref)
  if (target === undefined) throw new Error(`no shared schema ${$ref}`)
  const { $id: _id, ...resolved } = selfContained(target, lookup, [...seen, $ref])
  return { ...resolved, ...expanded }
}

/** A copy as JSON has it: TypeBox keeps its kind under symbol keys, which mean nothing elsewhere. */
function plain (schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema ?? {}))
}

/** The properties of an object schema, and which of them are required. */
export function propertiesOf (schema: JsonSchema): { properties: Record<string, JsonSchema>, required: string[] } {
  return { properties: (schema.properties ?? {}) as Record<string, JsonSchema>, required: (schema.required ?? []) as string[] }
}

/**
 * One object schema of the properties of several, as a tool takes them: no property is in two
 * (a tool argument goes to one place), and no other property is allowed.
 */
export function mergedObject (parts: JsonSchema[], description?: string): JsonSchema {
  const properties: Record<string, JsonSchema> = {}
  const required: string[] = []
  for (const part of parts) {
    const own = propertiesOf(part)
    for (const [name, property] of Object.entries(own.properties)) {
      if (name in properties) throw new Error(`tool argument ${name} would be two things`)
      properties[name] = property
    }
    required.push(...own.required)
  }
  return {
    type: 'object',
    ...(description === undefined ? {} : { description }),
    properties,
    ...(required.length === 0 ? {} : { required }),
    additionalProperties: false
  }
}
