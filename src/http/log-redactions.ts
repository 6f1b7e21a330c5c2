// What berth's logs must never show: credentials, tokens and environment values — also when a
// client puts them in a URL. Every logger berth writes through takes logOptions.
import { pino, type LoggerOptions } from 'pino'

export const logRedactions = [
  'req.headers.authorization',
  'req.headers["x-registry-auth"]',
  '*.password', '*.identitytoken', '*.token', '*.env', '*.auth'
]

export const REDACTED = '[redacted]'

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

/** pino options every berth logger uses: redaction by path, and URLs and error texts cleaned of secrets. */
export const logOptions: LoggerOptions = {
  redact: { paths: logRedactions, censor: REDACTED },
  serializers: {
    // Fastify logs `{ req: request }` in a few places of its own; berth's request line passes { method, url }.
    req: (req: { method?: string, url?: string }) => ({ method: req.method, url: typeof req.url === 'string' ? redactSecrets(req.url) : req.url }),
    err: (error: Error) => {
      const serialized = pino.stdSerializers.err(error)
      if (typeof serialized.message === 'string') serialized.message = redactSecrets(serialized.message)
      if (typeof serialized.stack === 'string') serialized.stack = redactSecrets(serialized.stack)
      return serialized
    }
  },
  hooks: {
    // Messages are text a framework may have built from a URL ("Route GET:/x?token=… not found").
    logMethod (args, method) {
      method.apply(this, args.map(arg => typeof arg === 'string' ? redactSecrets(arg) : arg) as Parameters<typeof method>)
    }
  }
}
