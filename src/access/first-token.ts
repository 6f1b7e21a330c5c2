// The admin token berth makes for itself when started with none configured (the one-command run, as
// Jupyter prints its token URL): only its hash is kept, as a BERTH_TOKENS_FILE in the state directory
// where a restart finds it; its secret exists once, in what this answers, for the log.
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, hashToken } from '../config.ts'

export const FIRST_TOKEN_NAME = 'admin'

export interface FirstToken {
  /** The tokens file berth reads from now on, as if BERTH_TOKENS_FILE named it. */
  file: string
  /** The secret, when this start made it; null when an earlier start did (its secret is not kept). */
  secret: string | null
}

/** Makes `<dir>/tokens.json` with one admin token, unless a start before this one did. */
export async function firstToken (dir: string): Promise<FirstToken> {
  const file = join(dir, 'tokens.json')
  const secret = randomBytes(32).toString('hex')
  const entry = [{ name: FIRST_TOKEN_NAME, scopes: ['admin'], sha256: hashToken(secret) }]
  try {
    // wx: a file already there (an earlier start, or another berth on the same volume) is never replaced.
    await writeFile(file, JSON.stringify(entry, null, 2) + '\n', { flag: 'wx', mode: 0o600 })
    return { file, secret }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'EEXIST') {
      throw new ConfigError(`no token is configured, and berth cannot keep the one it would make in ${dir} (${code ?? String(error)}): ` +
        'mount a volume there (docker-compose.yml does), or set BERTH_TOKENS')
    }
  }
  await readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read the tokens berth made at its first start, ${file} (${error.code ?? String(error)})`)
  })
  return { file, secret: null }
}
