// Lint: neostandard (standard style) with TypeScript support.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'coverage/**', '.tap/**', '.test-env/**', '.tools/**', '.swarm-env/**', 'node_modules/**',
      // The client's build output and the types openapi-typescript generates into it.
      'clients/typescript/dist/**', 'clients/typescript/src/generated/**']
  }),
  {
    // A schema constant and its Static<> type share a name on purpose (`RunRequest`).
    files: ['src/schemas/**/*.ts'],
    rules: { '@typescript-eslint/no-redeclare': 'off' }
  }
]
