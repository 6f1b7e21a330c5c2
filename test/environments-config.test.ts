// The settings of issue 14, read from the environment: /dev/shm and GPU limits, the sweeper, and
// the size limits of files in and out. Mistakes stop berth at start, naming the variable.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { configFromEnv, defaults } from '../src/config.ts'

t.test('defaults, and every setting read', async t => {
  t.match(defaults, {
    policy: { maxShmBytes: null, quota: { gpus: null } },
    lifecycle: { sweepIntervalMs: 15_000, autoRemoveGraceMs: 300_000, concurrency: 8 },
    files: { maxUploadBytes: 256 * 1024 ** 2, maxDownloadBytes: 1024 ** 3 }
  })
  const dir = mkdtempSync(join(tmpdir(), 'berth-env-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const tokens = join(dir, 'tokens.json')
  writeFileSync(tokens, JSON.stringify([{ name: 'lab', scopes: ['write'], token: 'a-long-enough-token-1', quota: { gpus: 2 } }, { name: 'cpu-only', scopes: ['write'], token: 'a-long-enough-token-2', quota: { gpus: 0 } }]))
  const config = configFromEnv({
    BERTH_TOKENS_FILE: tokens,
    BERTH_MAX_SHM_SIZE: '2g',
    BERTH_QUOTA_GPUS: '4',
    BERTH_SWEEP_INTERVAL_MS: '0',
    BERTH_AUTO_REMOVE_GRACE_MS: '60000',
    BERTH_SWEEP_CONCURRENCY: '2',
    BERTH_MAX_UPLOAD: '16m',
    BERTH_MAX_DOWNLOAD: '512m'
  })
  t.match(config, {
    policy: { maxShmBytes: 2 * 1024 ** 3, quota: { gpus: 4 } },
    lifecycle: { sweepIntervalMs: 0, autoRemoveGraceMs: 60_000, concurrency: 2 },
    files: { maxUploadBytes: 16 * 1024 ** 2, maxDownloadBytes: 512 * 1024 ** 2 }
  })
  t.same(config.auth.tokens.map(token => [token.name, token.quota]), [['lab', { gpus: 2 }], ['cpu-only', { gpus: 0 }]])
})

t.test('mistakes name the variable', async t => {
  for (const [env, message] of [
    [{ BERTH_MAX_SHM_SIZE: 'lots' }, /BERTH_MAX_SHM_SIZE must be a size/],
    [{ BERTH_QUOTA_GPUS: '-1' }, /BERTH_QUOTA_GPUS must be an integer from 0 to 1024/],
    [{ BERTH_SWEEP_INTERVAL_MS: 'soon' }, /BERTH_SWEEP_INTERVAL_MS must be an integer/],
    [{ BERTH_SWEEP_CONCURRENCY: '0' }, /BERTH_SWEEP_CONCURRENCY must be an integer from 1 to 1000/],
    [{ BERTH_AUTO_REMOVE_GRACE_MS: '-5' }, /BERTH_AUTO_REMOVE_GRACE_MS must be an integer/],
    [{ BERTH_MAX_UPLOAD: '1x' }, /BERTH_MAX_UPLOAD must be a size/],
    [{ BERTH_MAX_DOWNLOAD: 'all' }, /BERTH_MAX_DOWNLOAD must be a size/]
  ] as const) {
    t.throws(() => configFromEnv(env), { name: 'ConfigError', message }, JSON.stringify(env))
  }
})
