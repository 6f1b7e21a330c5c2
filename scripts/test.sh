#!/usr/bin/env bash
# `npm test`: type-check, lint, then the tap suites against a real Docker engine and local registries
# that scripts/test-env.sh brings up (and takes down again if it started them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/node.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

bash scripts/test-env.sh up
if [ "${BERTH_TEST_KEEP_ENV:-}" != "1" ]; then trap 'bash scripts/test-env.sh down' EXIT; fi

echo "[test] type-check"; npx tsc --noEmit -p tsconfig.json
echo "[test] lint"; npx eslint .
echo "[test] tap"
# Node strips the types itself (no ts-node); tap runs only test/**/*.test.ts (.taprc).
TAP_TYPE_STRIP_ONLY=1 npx tap "$@"
