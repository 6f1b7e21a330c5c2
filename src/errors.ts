// The one registry of berth's error codes, and the RFC 9457 problem+json body each one becomes.

// status and title for every code berth answers with; clients switch on `code`, never on `title`.
export const errorCodes = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  unauthorized: { status: 401, title: 'A valid bearer token is required' },
  forbidden: { status: 403, title: 'The token lacks the scope this needs' },
  policy_denied: { status: 403, title: 'Denied by berth\'s policy' },
  quota_exceeded: { status: 403, title: 'The token\'s quota would be exceeded' },
  not_found: { status: 404, title: 'No such resource' },
  image_not_found: { status: 404, title: 'No such image' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  not_acceptable: { status: 406, title: 'Cannot answer in the media type asked for' },
  request_timeout: { status: 408, title: 'The request was not received in time' },
  name_conflict: { status: 409, title: 'The name is already in use' },
  ambiguous_id: { status: 409, title: 'The id prefix matches more than one container' },
  port_conflict: { status: 409, title: 'The host port is already allocated' },
  container_running: { status: 409, title: 'The container is running' },
  image_in_use: { status: 409, title: 'The image is in use' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal error in berth' },
  placement_failed: { status: 409, title: 'The cluster cannot place the container' },
  not_supported: { status: 501, title: 'The engine backend does not support this' },
  pull_failed: { status: 502, title: 'The image could not be pulled' },
  pull_cancelled: { status: 409, title: 'The pull was cancelled' },
  engine_error: { status: 502, title: 'The container engine reported an error' },
  engine_unavailable: { status: 503, title: 'The container engine is unavailable' },
  placement_timeout: { status: 504, title: 'The cluster did not start the container in time' },
  // ---- Environments (issue 14)
  volume_in_use: { status: 409, title: 'The volume is in use' },
  gpu_unavailable: { status: 409, title: 'The engine cannot give the container the GPUs asked for' },
  network_in_use: { status: 409, title: 'The network has containers attached' },
  // Builds and pushes (issue 15).
  build_failed: { status: 422, title: 'The image could not be built' },
  build_cancelled: { status: 409, title: 'The build was cancelled' },
  push_failed: { status: 502, title: 'The image could not be pushed' },
  container_not_running: { status: 409, title: 'The container is not running' },
  expiry_not_set: { status: 409, title: 'The container was run without an expiry' }
} as const satisfies Record<string, { status: number, title: string }>

export type ErrorCode = keyof typeof errorCodes

export const PROBLEM_TYPE_BASE = 'https://berth.dev/problems/'

/** Extra, code-specific members of a problem (RFC 9457 "extension members"). */
export type ProblemExtensions = Record<string, unknown>

export class BerthError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly extensions: ProblemExtensions
  readonly headers: Record<string, string>

  constructor (code: ErrorCode, detail: string, extensions: ProblemExtensions = {}, options: { cause?: unknown, headers?: Record<string, string> } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'BerthError'
    this.code = code
    this.statusCode = errorCodes[code].status
    this.extensions = extensions
    this.headers = options.headers ?? {}
  }
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  instance?: string
  requestId: string
  [extension: string]: unknown
}

export function problemOf (error: BerthError, requestId: string, instance?: string): Problem {
  const { status, title } = errorCodes[error.code]
  return {
    ...error.extensions,
    type: PROBLEM_TYPE_BASE + error.code,
    title,
    status,
    detail: error.message,
    code: error.code,
    ...(instance === undefined ? {} : { instance }),
    requestId
  }
}
