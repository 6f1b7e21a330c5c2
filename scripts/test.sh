#!/usr/bin/env bash
# `npm test`: type-check, lint, then the tap suites against a real Docker engine and local registries
# that scripts/test-env.sh brings up, and a three-node Swarm that scripts/swarm-env.sh brings up (both
# taken down again at the end unless BERTH_TEST_KEEP_ENV=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/node.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The client package (clients/typescript) keeps its own dependencies and lockfile; its build generates
# the types from openapi/openapi.yaml and compiles them, before the type-check and its tests see it.
client=clients/typescript
if [ ! -d $client/node_modules ] || [ $client/package-lock.json -nt $client/node_modules/.package-lock.json ]; then
  npm ci --prefix $client --no-audit --no-fund --loglevel=error
fi
echo "[test] client build"; npm run --prefix $client --silent build

bash scripts/test-env.sh up
# Down in reverse order, the cluster first; set before the cluster comes up, so a half-made one goes too.
if [ "${BERTH_TEST_KEEP_ENV:-}" != "1" ]; then trap 'bash scripts/swarm-env.sh down || true; bash scripts/test-env.sh down' EXIT; fi
# A real three-node Swarm for the swarm backend's suites (test/contract.test.ts, test/swarm.test.ts).
bash scripts/swarm-env.sh up

echo "[test] type-check"; npx tsc --noEmit -p tsconfig.json
echo "[test] lint"; npx eslint .
# The committed contract, with Redocly's recommended rules (redocly.yaml); offline, nothing sent.
echo "[test] openapi lint"; REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx redocly lint --format=summary openapi/openapi.yaml
echo "[test] tap"
# The Kubernetes backend's suites need a real cluster, named by BERTH_TEST_KUBECONFIG (docs/testing.md: "Testing on
# Kubernetes"); no script here builds one. Without it they say they skipped, and the backend's modules
# that only a cluster can exercise are left out of the coverage count (its pure mapping is tested anyway).
coverage=()
if [ -z "${BERTH_TEST_KUBECONFIG:-}" ]; then
  echo "[test] no Kubernetes cluster (BERTH_TEST_KUBECONFIG unset): test/kubernetes*.test.ts and the kubernetes contract skip"
  for module in client cache events logs shared containers placement removal reading lifecycle nodes exec-channel exec files stats volumes puller images; do coverage+=("--coverage-exclude=src/engine/kubernetes/$module.ts"); done
fi
# Node strips the types itself (no ts-node); tap runs only test/**/*.test.ts (.taprc).
TAP_TYPE_STRIP_ONLY=1 npx tap "${coverage[@]}" "$@"
