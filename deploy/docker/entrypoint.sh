#!/bin/sh
# berth's entrypoint. Started as root (docker-compose.yml does), it finds the group of the Docker socket
# itself, then becomes uid 1000 with that group and no capabilities at all before node starts, so no
# person looks up a gid. Started as anyone else (the image's own user, with --group-add), it starts node.
#   berth-entrypoint                     berth itself
#   berth-entrypoint agent               berth's agent on a Swarm node (deploy/swarm/agent.yml)
#   berth-entrypoint healthcheck         the image's HEALTHCHECK: GET /healthz, as uid 1000 too
#   berth-entrypoint healthcheck agent   the agent's: it accepts connections on its port
set -eu

# compose passes every setting it knows, set or not: an empty one is no setting.
for name in $(env | sed -n 's/^\(BERTH_[A-Z0-9_]*\)=$/\1/p'); do unset "$name"; done

# glibc gives each thread that allocates its own malloc arena, and node runs a dozen threads (V8's
# compilers and GC, libuv's pool): two arenas keep berth's native memory 2-4 MiB smaller idle, with
# throughput within the bench's noise (docs/benchmarks.md). Set MALLOC_ARENA_MAX to choose otherwise.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

if [ "${1:-}" = healthcheck ] && [ "${2:-}" = agent ]; then
  # Only berth can speak to the agent (it holds the key): a connection accepted is what can be checked.
  set -- node -e "require('node:net').connect(Number(process.env.BERTH_AGENT_PORT || 7988), '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"
elif [ "${1:-}" = healthcheck ]; then
  # Node's own fetch: the image has no curl, and needs none.
  set -- node -e "fetch('http://127.0.0.1:' + (process.env.BERTH_PORT || 8080) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
elif [ "${1:-}" = agent ]; then
  shift
  set -- node --max-semi-space-size=4 /app/dist/agent/main.js "$@"
else
  # --max-semi-space-size=4: V8's young generation defaults to 16 MiB a half, and an idle berth keeps
  # both halves resident; 4 keeps it about 25 MiB smaller with no throughput lost (bench/).
  set -- node --max-semi-space-size=4 /app/dist/server.js "$@"
fi

[ "$(id -u)" = 0 ] || exec "$@"

# One line that berth's log readers take as its own (a fatal pino line), and exit 78 as berth does.
refuse() {
  printf '{"level":60,"time":%s,"msg":"%s"}\n' "$(date +%s)000" "$1"
  exit 78
}

socket=${BERTH_DOCKER_SOCKET:-/var/run/docker.sock}
# DOCKER_GID, when given, wins over what the socket says (a socket reached through a proxy, say).
gid=${DOCKER_GID:-}
if [ -z "$gid" ]; then
  # A socket that is not there yet is an engine that is down: berth starts, and says so on /readyz.
  gid=$(stat -c %g "$socket" 2>/dev/null || true)
fi
case $gid in
  '') groups=1000 ;;
  *[!0-9]*) refuse "DOCKER_GID must be a group id, a number such as the one \`stat -c %g /var/run/docker.sock\` prints, not $gid" ;;
  *) groups=1000,$gid ;;
esac

# By its path: a busybox shell would run its own setpriv applet, which cannot change users.
# Dropping the bounding set as well leaves nothing to regain: CapPrm, CapEff, CapInh, CapAmb and CapBnd
# are all 0 in node's /proc/self/status (scripts/container-test.sh reads them).
exec /usr/bin/setpriv --reuid=1000 --regid=1000 --groups="$groups" --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"
