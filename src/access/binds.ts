// Bind mounts that cannot be turned against the host. The engine follows symlinks in a bind
// source when it mounts, also on every later start, so a path is safe only when no container can
// write any of its components. berth's rule: a token may bind exactly its own directory
// `<root>/<deployment>/<token>` under an allowed root. No container ever has a root or a
// deployment directory mounted (only the per-token directories below them), so nothing a tenant
// runs can replace a component of a path berth mounts; links inside a token's directory resolve
// inside the container that sees them, never on the host.
import { lstat } from 'node:fs/promises'
import { ConfigError } from '../config.ts'
import { BerthError } from '../errors.ts'

export function bindDirectory (root: string, deployment: string, owner: string): string {
  return `${root}/${deployment}/${owner}`
}

/**
 * Each allowed root must be a real directory that berth can see, reached without a symlink. When
 * berth runs in a container it needs that view: the root mounted read-only at the same path.
 */
export async function verifyBindRoots (roots: string[]): Promise<void> {
  for (const root of roots) {
    const problem = await firstUnsafeComponent(root, false)
    if (problem !== null) {
      throw new ConfigError(`BERTH_ALLOWED_BIND_PATHS: ${problem}. berth must see each allowed root as a real directory; ` +
        'when berth runs in a container, mount each root read-only at the same path (see the README)')
    }
  }
}

/**
 * Refuses a token directory that exists as anything but a real directory reached without links.
 * Missing is fine: the engine creates it (and its deployment directory) when it mounts.
 */
export async function checkBindDirectory (path: string): Promise<void> {
  const problem = await firstUnsafeComponent(path, true)
  if (problem !== null) throw new BerthError('policy_denied', `bind-mounting host path ${path} is not allowed: ${problem}`, { rule: 'bindPaths' })
}

async function firstUnsafeComponent (path: string, missingAllowed: boolean): Promise<string | null> {
  let current = ''
  for (const segment of path.split('/').filter(Boolean)) {
    current += '/' + segment
    let stats
    try {
      stats = await lstat(current)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return missingAllowed ? null : `${current} does not exist (or berth cannot see it)`
      return `${current} cannot be examined (${(error as NodeJS.ErrnoException).code ?? 'error'})`
    }
    if (stats.isSymbolicLink()) return `${current} is a symbolic link`
    if (!stats.isDirectory()) return `${current} is not a directory`
  }
  return null
}
