// What berth's logs must never show: credentials, tokens and environment values.
export const logRedactions = [
  'req.headers.authorization',
  'req.headers["x-registry-auth"]',
  '*.password', '*.identitytoken', '*.token', '*.env', '*.auth'
]
