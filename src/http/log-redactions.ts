// What berth's logs must never show: credentials, tokens and environment values — also when a
// client puts them in a URL. Every logger berth writes through is made by createLogger.
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'

export const REDACTED = '[redacted]'

/**
 * The keys whose value is a secret one level down whatever berth logs: `{ spec: { env } }`,
 * `{ registry: { auth } }`, an error's `token`. A request's headers (Authorization, X-Registry-Auth)
 * never reach a line: the req serializer keeps only the method and the URL, and cleans the URL.
 */
export const SECRET_KEYS = ['password', 'identitytoken', 'token', 'env', 'auth']

/**
 * The value, or a shallow copy of an object with every secret key's value censored when it has one.
 * The copy keeps the prototype, so a class's toJSON still decides what is written, as it did under
 * pino's redaction. Anything not an object (an error thrown as a string) is left as it is.
 */
function censored<T> (value: T): T {
  if (typeof value !== 'object' || value === null) return value
  let copy: Record<string, unknown> | null = null
  for (const key of SECRET_KEYS) {
    if (key in value) {
      copy ??= Object.assign(Object.create(Object.getPrototypeOf(value) as object | null) as object, value) as Record<string, unknown>
      copy[key] = REDACTED
    }
  }
  return (copy ?? value) as T
}

/**
 * A line's (or a child logger's) fields with each object field censored; `err` is censored by its
 * serializer, after it has made the error a plain object. This is pino's path redaction
 * (`*.password` …) written for these five keys: pino's re-parses every path for every field of
 * every line, and that was a fifth of what a request allocated (bench/, heap sampling).
 */
function censorFields (fields: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | null = null
  for (const key in fields) {
    const value = fields[key]
    if (key === 'err' || typeof value !== 'object' || value === null || !Object.hasOwn(fields, key)) continue
    const clean = censored(value)
    if (clean !== value) {
      copy ??= { ...fields }
      copy[key] = clean
    }
  }
  return copy ?? fields
}

// Query parameter names that carry credentials in the wild: access_token, id_token, api_key,
// X-Amz-Signature, client_secret, password, auth, session, jwt… Over-matching costs a readable value
// in a log line; under-matching leaks a secret, so the net is wide.
// buildArg: a build argument's value is whatever the client put there (a proxy with a password, say).
const SECRET_NAME = /token|passw|pwd|secret|key|auth|sig|credential|session|cookie|jwt|bearer|buildarg/i
// `;` counts as a separator here although berth's query parser does not split on it: the text after
// it is in the URL all the same. Values stop at whitespace and quotes so a URL inside a message is cut.
const QUERY_PARAMETER = /([?&;])([^=&?#;\s"'<>]+)=([^&#;\s"'<>]*)/g
// user:password@ in a URL (a registry address in an engine error, say).
const USERINFO = /(\/\/[^/\s:@"'<>]+):[^/\s@"'<>]+@/g

function isSecretName (raw: string): boolean {
  let name = raw
  try {
    name = decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    // A malformed escape: judge the name as written.
  }
  return SECRET_NAME.test(name)
}

/** The text with the values of credential-looking query parameters, and URL passwords, replaced. */
export function redactSecrets (text: string): string {
  let out = text
  if (out.includes('=')) out = out.replace(QUERY_PARAMETER, (whole, separator: string, name: string) => isSecretName(name) ? `${separator}${name}=${REDACTED}` : whole)
  if (out.includes('@')) out = out.replace(USERINFO, `$1:${REDACTED}@`)
  return out
}

/**
 * A logger with logOptions whose child loggers' bindings (child, setBindings) are censored as a
 * line's fields are (pino formats only the root's own bindings with formatters.bindings). Every
 * logger berth writes through is made here.
 */
export function createLogger (options: LoggerOptions, destination: DestinationStream): Logger {
  const logger = pino({ ...logOptions, ...options }, destination)
  // Children are made with Object.create(parent): every descendant, fastify's per request too, calls this.
  const { child, setBindings } = logger
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, censorFields(bindings), childOptions)
  } as Logger['child']
  logger.setBindings = function (this: Logger, bindings) {
    setBindings.call(this, censorFields(bindings))
  }
  return logger
}

/** pino options every berth logger uses (through createLogger): secret fields censored, and URLs and error texts cleaned of secrets. */
export const logOptions: LoggerOptions = {
  formatters: { log: censorFields, bindings: censorFields },
  serializers: {
    // Fastify logs `{ req: request }` in a few places of its own; berth's request line passes { method, url }.
    req: (req: { method?: string, url?: string }) => ({ method: req.method, url: typeof req.url === 'string' ? redactSecrets(req.url) : req.url }),
    err: (error: Error) => {
      const serialized = pino.stdSerializers.err(error)
      // Anything may be thrown: only an object has a message and fields to clean.
      if (typeof serialized !== 'object' || serialized === null) return serialized
      if (typeof serialized.message === 'string') serialized.message = redactSecrets(serialized.message)
      if (typeof serialized.stack === 'string') serialized.stack = redactSecrets(serialized.stack)
      return censored(serialized)
    }
  },
  hooks: {
    // Messages are text a framework may have built from a URL ("Route GET:/x?token=… not found").
    logMethod (args, method) {
      method.apply(this, args.map(arg => typeof arg === 'string' ? redactSecrets(arg) : arg) as Parameters<typeof method>)
    }
  }
}
