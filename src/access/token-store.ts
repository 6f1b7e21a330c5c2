// The tokens in use, which change without a restart: the auth plugin reads the store on every
// request, and server.ts reloads it on SIGHUP and when BERTH_TOKENS_FILE changes (watchTokens).
import { timingSafeEqual } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { ConfigError, type TokenConfig } from '../config.ts'

export interface StoredToken extends TokenConfig {
  /** The sha256 as bytes, for the constant-time comparison. */
  digest: Buffer
}

/** Token names, by what a reload did to them. */
export interface TokenChanges {
  added: string[]
  removed: string[]
  /** Same name, another secret or other scopes. */
  changed: string[]
}

export class TokenStore {
  #tokens: StoredToken[]
  readonly #listeners = new Set<(changes: TokenChanges) => void>()

  constructor (tokens: TokenConfig[]) {
    this.#tokens = stored(tokens)
  }

  get size (): number {
    return this.#tokens.length
  }

  /** The token with this sha256 digest. Compares against every token, without stopping at a match, so timing says nothing. */
  find (digest: Buffer): StoredToken | undefined {
    let found: StoredToken | undefined
    for (const token of this.#tokens) {
      if (timingSafeEqual(digest, token.digest) && found === undefined) found = token
    }
    return found
  }

  /** The token in use under this name, if any. */
  named (name: string): StoredToken | undefined {
    return this.#tokens.find(token => token.name === name)
  }

  /** Puts `tokens` in use, and tells the listeners what changed (when anything did). */
  replace (tokens: TokenConfig[]): TokenChanges {
    const before = new Map(this.#tokens.map(token => [token.name, token]))
    const after = stored(tokens)
    const names = new Set(after.map(token => token.name))
    const changes: TokenChanges = {
      added: after.filter(token => !before.has(token.name)).map(token => token.name),
      removed: [...before.keys()].filter(name => !names.has(name)),
      changed: after.filter(token => {
        const old = before.get(token.name)
        return old !== undefined && (old.sha256 !== token.sha256 || old.scopes.join() !== token.scopes.join())
      }).map(token => token.name)
    }
    this.#tokens = after
    if (changes.added.length + changes.removed.length + changes.changed.length > 0) {
      for (const listener of [...this.#listeners]) listener(changes)
    }
    return changes
  }

  /** Calls `listener` after each reload that changed something; answers the function that stops it. */
  onChange (listener: (changes: TokenChanges) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }
}

function stored (tokens: TokenConfig[]): StoredToken[] {
  return tokens.map(token => ({ ...token, digest: Buffer.from(token.sha256, 'hex') }))
}

export interface TokenReloader {
  /** Re-reads the tokens now; answers what changed, or null when they could not be read (the ones in use stay). */
  reload (trigger: string): TokenChanges | null
  /** Stops watching the file. */
  close (): void
}

export interface WatchTokensOptions {
  store: TokenStore
  /** Reads the tokens as at start (configFromEnv's tokensFromEnv); throws ConfigError when they are not valid. */
  load: () => TokenConfig[]
  /** The file to watch, or null to reload only when asked. */
  file: string | null
  log: FastifyBaseLogger
  /** Changes closer together than this are read once: an editor saving is several file events. */
  settleMs?: number
}

export function watchTokens (options: WatchTokensOptions): TokenReloader {
  const { store, load, file, log } = options
  const settleMs = options.settleMs ?? 100

  function reload (trigger: string): TokenChanges | null {
    let tokens: TokenConfig[]
    try {
      tokens = load()
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      log.warn({ trigger, reason: error.message }, 'tokens not reloaded: the ones in use stay')
      return null
    }
    const changes = store.replace(tokens)
    const changed = changes.added.length + changes.removed.length + changes.changed.length > 0
    log.info({ trigger, ...changes, tokens: store.size }, changed ? 'tokens reloaded' : 'tokens re-read: no change')
    if (store.size === 0) log.warn('no token is configured now: every call that needs one is refused')
    return changes
  }

  let watcher: FSWatcher | null = null
  let timer: NodeJS.Timeout | null = null
  if (file !== null) {
    // The directory, not the file: editors replace a file (write another, rename it over), which
    // ends a watch on the file itself; Kubernetes swaps the `..data` symlink of a mounted secret.
    const name = basename(file)
    try {
      watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name && !changed.startsWith('..')) return
        if (timer !== null) clearTimeout(timer)
        timer = setTimeout(() => {
          timer = null
          reload('file changed')
        }, settleMs)
        timer.unref()
      })
      watcher.on('error', (error) => { log.warn({ err: error }, 'stopped watching BERTH_TOKENS_FILE: reload it with SIGHUP') })
    } catch (error) {
      log.warn({ err: error }, 'cannot watch BERTH_TOKENS_FILE: reload it with SIGHUP')
    }
  }

  return {
    reload,
    close () {
      watcher?.close()
      if (timer !== null) clearTimeout(timer)
    }
  }
}
