// Lint: neostandard (standard style) with TypeScript support.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'coverage/**', '.tap/**', '.test-env/**', '.tools/**', '.swarm-env/**', 'node_modules/**']
  }),
  {
    // A schema constant and its Static<> type share a name on purpose (`RunRequest`).
    files: ['src/schemas/**/*.ts'],
    rules: { '@typescript-eslint/no-redeclare': 'off' }
  }
]
