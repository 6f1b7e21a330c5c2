// The one registry of berth's error codes, and the RFC 9457 problem+json body each one becomes.

// status and title for every code berth answers with; clients switch on `code`, never on `title`.
// `example` is a detail (and the code's extension members) as berth words it: the OpenAPI document
// shows it for every operation that can answer the code.
export const errorCodes = {
  validation_failed: { status: 400, title: 'The request is not valid', example: { detail: 'body/Image is not a known field', errors: [{ location: 'body', path: '/Image', message: 'is not a known field' }] } },
  unauthorized: { status: 401, title: 'A valid bearer token is required', example: { detail: 'the bearer token is not valid' } },
  forbidden: { status: 403, title: 'The token lacks the scope this needs', example: { detail: 'this needs the "write" scope; token "ci" has read', scope: 'write' } },
  policy_denied: { status: 403, title: 'Denied by berth\'s policy', example: { detail: 'image registry.example.com/tools/app is not on the allow-list (BERTH_ALLOWED_IMAGES)', rule: 'images' } },
  quota_exceeded: { status: 403, title: 'The token\'s quota would be exceeded', example: { detail: 'the token holds 5 of its 5 containers; remove one first', limit: 'containers', quota: 5, used: 5 } },
  not_found: { status: 404, title: 'No such resource', example: { detail: 'container web was not found' } },
  image_not_found: { status: 404, title: 'No such image', example: { detail: 'image nginx:1.27 was not found', image: 'nginx:1.27' } },
  method_not_allowed: { status: 405, title: 'Method not allowed', example: { detail: 'DELETE is not allowed on /v1/containers: it answers GET, HEAD, POST', allow: ['GET', 'HEAD', 'POST'] } },
  not_acceptable: { status: 406, title: 'Cannot answer in the media type asked for', example: { detail: 'this answers in application/json or application/x-ndjson; the Accept header allows none of them', accepts: ['application/json', 'application/x-ndjson'] } },
  request_timeout: { status: 408, title: 'The request was not received in time', example: { detail: 'send the headers within 10000 ms and the whole request within 30000 ms' } },
  name_conflict: { status: 409, title: 'The name is already in use', example: { detail: 'the container name web is already in use', name: 'web' } },
  ambiguous_id: { status: 409, title: 'The id prefix matches more than one container', example: { detail: '3f2 matches 2 containers; give more of the id', matches: 2 } },
  port_conflict: { status: 409, title: 'The host port is already allocated', example: { detail: 'host port 8080 is already allocated by container web', port: 8080, holder: { id: '3f2a9c1e8b7d5a60c4e1f0b2d9a8c7e6f5d4c3b2a1908f7e6d5c4b3a29180f7e', name: 'web' } } },
  container_running: { status: 409, title: 'The container is running', example: { detail: 'container web is running; stop it first or remove it with force=true' } },
  image_in_use: { status: 409, title: 'The image is in use', example: { detail: 'image nginx:1.27 is in use: conflict: unable to remove repository reference "nginx:1.27" (must force) - container 3f2a9c1e8b7d is using its referenced image', image: 'nginx:1.27' } },
  payload_too_large: { status: 413, title: 'The request body is too large', example: { detail: 'the request body is larger than the limit' } },
  unsupported_media_type: { status: 415, title: 'Unsupported media type', example: { detail: 'send the body as application/json' } },
  upgrade_required: { status: 426, title: 'This needs a WebSocket upgrade', example: { detail: 'this is a WebSocket endpoint: send the upgrade request (Connection: Upgrade, Upgrade: websocket)' } },
  headers_too_large: { status: 431, title: 'The request headers are too large', example: { detail: 'the request headers exceed the size berth reads' } },
  rate_limited: { status: 429, title: 'Too many requests', example: { detail: 'rate limit of 600 requests a minute reached; retry in 12 seconds' } },
  internal_error: { status: 500, title: 'Internal error in berth', example: { detail: 'berth failed unexpectedly; the request id leads to the cause in its log' } },
  placement_failed: { status: 409, title: 'The cluster cannot place the container', example: { detail: 'the cluster has no node for the container: no suitable node (scheduling constraints not satisfied on 3 nodes)', reason: 'constraints' } },
  not_supported: { status: 501, title: 'The engine backend does not support this', example: { detail: 'GET /v1/volumes is not supported by the swarm backend: each node has its own volumes', backend: 'swarm' } },
  pull_failed: { status: 502, title: 'The image could not be pulled', example: { detail: 'pulling registry.example.com/tools/app:1 failed: unauthorized: authentication required', image: 'registry.example.com/tools/app:1', reason: 'registry_auth' } },
  pull_cancelled: { status: 409, title: 'The pull was cancelled', example: { detail: 'the pull of nginx:1.27 was cancelled: cancelled by its job', image: 'nginx:1.27' } },
  engine_error: { status: 502, title: 'The container engine reported an error', example: { detail: 'the engine answered 500: driver failed programming external connectivity', engineStatus: 500 } },
  engine_unavailable: { status: 503, title: 'The container engine is unavailable', example: { detail: 'cannot reach the container engine (ECONNREFUSED)' } },
  placement_timeout: { status: 504, title: 'The cluster did not start the container in time', example: { detail: 'the cluster did not run 2 replicas within 30000 ms: 1: running on node1, 2: preparing on node2', replicas: 2, running: 1 } },
  // ---- Environments (issue 14)
  volume_in_use: { status: 409, title: 'The volume is in use', example: { detail: 'volume data is in use by container web', volume: 'data', containers: [{ id: '3f2a9c1e8b7d5a60c4e1f0b2d9a8c7e6f5d4c3b2a1908f7e6d5c4b3a29180f7e', name: 'web' }] } },
  gpu_unavailable: { status: 409, title: 'The engine cannot give the container the GPUs asked for', example: { detail: 'the engine cannot give web the GPUs asked for: could not select device driver "" with capabilities: [[gpu]]' } },
  network_in_use: { status: 409, title: 'The network has containers attached', example: { detail: 'network backend has containers attached: web; disconnect or remove them first', network: 'backend', containers: [{ id: '3f2a9c1e8b7d5a60c4e1f0b2d9a8c7e6f5d4c3b2a1908f7e6d5c4b3a29180f7e', name: 'web' }] } },
  // Builds and pushes (issue 15).
  build_failed: { status: 422, title: 'The image could not be built', example: { detail: 'the build failed at step 2/3 (RUN make): The command \'/bin/sh -c make\' returned a non-zero code: 2', reason: 'step_failed', step: { number: 2, total: 3, instruction: 'RUN make' }, output: ['make: *** No targets specified and no makefile found.  Stop.'], exitCode: 2 } },
  invalid_build_context: { status: 400, title: 'The build context is not one berth sends to the engine', example: { detail: 'the build context has "Dockerfile" twice (a regular file, then a symbolic link): each path may appear once', reason: 'duplicate', entry: 'Dockerfile' } },
  build_cancelled: { status: 409, title: 'The build was cancelled', example: { detail: 'the build was cancelled: cancelled by its job' } },
  push_failed: { status: 502, title: 'The image could not be pushed', example: { detail: 'pushing registry.example.com/tools/app:1 failed: denied: requested access to the resource is denied', image: 'registry.example.com/tools/app:1', reason: 'registry_auth' } },
  container_not_running: { status: 409, title: 'The container is not running', example: { detail: 'container 3f2a9c1e8b7d is not running: start it first' } },
  expiry_not_set: { status: 409, title: 'The container was run without an expiry', example: { detail: 'container web was run without an expiry: there is no end to move' } },
  // Files in (issue 20).
  path_conflict: { status: 409, title: 'What is in the container is in the way of the upload', example: { detail: '/srv/in/lib is a symbolic link in container web (to /usr/lib): berth writes nothing through a link; remove it first, or upload its directory itself', path: '/srv/in/lib' } }
} as const satisfies Record<string, { status: number, title: string, example: { detail: string, [extension: string]: unknown } }>

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
