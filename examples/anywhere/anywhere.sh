#!/usr/bin/env bash
# Build once, run anywhere: build an environment through the berth on your machine, push it to the
# registry your cluster pulls from, run it, and reproduce the very same image (by digest), env,
# ports, limits and command on the cluster's berth from its spec -- then back. Uses the `berth`
# command (clients/typescript); see README.md next to this file.
#
#   LOCAL_URL, LOCAL_TOKEN       the berth on your machine (BERTH_ENGINE=docker)
#   CLUSTER_URL, CLUSTER_TOKEN   the berth of your cluster (BERTH_ENGINE=swarm or kubernetes)
#   IMAGE                        a repository in your push namespace, in the registry the cluster's
#                                nodes pull from: REGISTRY/DEPLOYMENT/TOKEN-NAME/site
#   PORT                         the host port to publish (default 18080)
#   BASE                         the base image (default busybox:1.36; on a cluster, one its nodes can pull)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${LOCAL_URL:?}" "${LOCAL_TOKEN:?}" "${CLUSTER_URL:?}" "${CLUSTER_TOKEN:?}" "${IMAGE:?}"
port=${PORT:-18080}
base=${BASE:-busybox:1.36}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
local_berth() { berth --url "$LOCAL_URL" --token "$LOCAL_TOKEN" "$@"; }
cluster_berth() { berth --url "$CLUSTER_URL" --token "$CLUSTER_TOKEN" "$@"; }

echo "== build and share, on the machine"
local_berth build -q --build-arg "BASE=$base" -t "$IMAGE:1" "$here/site"
local_berth push "$IMAGE:1"

echo "== run it on the machine"
id=$(local_berth run -d -e MODEL=small -e SEED=42 -p "$port:80" -m 64m --cpus 0.5 "$IMAGE:1")
local_berth spec "$id" > "$work/env.json"
digest=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).image.digest)' "$work/env.json")
echo "pinned by $digest"
# The machine gives its port back before the cluster publishes it (drop this on two hosts).
local_berth rm -f "$id" >/dev/null

echo "== the same environment on the cluster"
cid=$(cluster_berth run -d --from "$work/env.json")
cluster_berth inspect --type container --format '{{.imageDigest}}' "$cid"
cluster_berth spec "$cid" > "$work/cluster-env.json"

echo "== and back to the machine"
cluster_berth rm -f "$cid" >/dev/null
back=$(local_berth run -d --from "$work/cluster-env.json")
local_berth inspect --type container --format '{{.imageDigest}}' "$back"
local_berth rm -f "$back" >/dev/null
