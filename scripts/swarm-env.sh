#!/usr/bin/env bash
# Brings up (or reuses) a real three-node Docker Swarm on this one machine for berth's Swarm
# backend tests, and tears it down completely, also after a crash or a half-failed `up`.
#
#   scripts/swarm-env.sh up     # progress on stderr; writes .swarm-env/env for the tests
#   scripts/swarm-env.sh down   # stops what `up` started, by process id, and proves nothing is left
#   scripts/swarm-env.sh stop-node nodeN    # SIGTERM its dockerd, as an operator stopping the engine
#   scripts/swarm-env.sh kill-node nodeN    # SIGKILL its dockerd, as a machine lost (its containers live on)
#   scripts/swarm-env.sh start-node nodeN   # start its dockerd again; returns once it answers
#
# The env file (KEY=VALUE, no quoting, lists are comma-separated NAME=VALUE pairs):
#   BERTH_TEST_SWARM_SOCKET        the manager's (node1) Docker socket
#   BERTH_TEST_SWARM_NODES         node1=10.250.0.11,node2=10.250.0.12,node3=10.250.0.13
#   BERTH_TEST_SWARM_NODE_SOCKETS  each node's own Docker socket
#   BERTH_TEST_SWARM_NETNS         each node's network namespace (for `ip netns exec`)
#   BERTH_TEST_SWARM_HUB_NETNS     the hub's (bridge and registry)
#   BERTH_TEST_SWARM_HOST_ADDR     10.250.0.254, the host's own address on the swarm's network
#   BERTH_TEST_SWARM_REGISTRY      10.250.0.1:5000 (plain HTTP; every node lists it as insecure)
#   BERTH_TEST_SWARM_AUTH_REGISTRY 10.250.0.1:5001, the same behind htpasswd (user/password below)
#   BERTH_TEST_SWARM_AUTH_USER / BERTH_TEST_SWARM_AUTH_PASSWORD
#   BERTH_TEST_SWARM_AUTH_IMAGE    10.250.0.1:5001/berth-test/private:1, on no node: a node must pull it
#   BERTH_TEST_SWARM_IMAGE         10.250.0.1:5000/berth-test/busybox:1, local on every node too
#   BERTH_TEST_SWARM_IMAGE_DIGEST  the same image pinned by its registry digest
#   BERTH_TEST_SWARM_LOCAL_IMAGE   berth-test/busybox:1 (local on every node, in no registry)
#   BERTH_TEST_SWARM_LABELS        node labels set: node2=gpu=true
#   BERTH_TEST_SWARM_STATE         the state dir: <node>/dockerd.pid and <node>/dockerd.log are there
#   BERTH_TEST_SWARM_AGENT_SECRET_FILE  the secret berth's agents (deploy/swarm/agent.yml, stack berth-agent) hold
#   BERTH_TEST_SWARM_AGENT_PORT    where they listen, on every node's address (7988)
#
# Shape (see /work/shared/CLUSTER-NOTES.md): a hub network namespace (berth-sw-hub) holds a bridge
# 10.250.0.1/24 and a registry on 10.250.0.1:5000; three node namespaces (berth-sw-node1..3,
# 10.250.0.11..13, no default route) each run a dockerd in a private mount and UTS namespace.
# node1 is the manager, node2 (label gpu=true) and node3 are workers.
#
# Reaching the nodes from the host: ONE veth pair, berth-sw-0 (10.250.0.254/24) in the host namespace
# and its peer on the hub bridge. It carries only that /24 (its connected route; IPv4 forwarding and
# IPv6 are off on it) and adds no iptables rule or bridge port in the host namespace, so a test on the
# host can GET http://10.250.0.12:PORT directly. Anything else can run inside a namespace:
# `ip netns exec berth-sw-node2 <cmd>` (names are in the env file).
#
# Nothing here touches the host's dockerd, its docker0 bridge or the host namespace's iptables:
# every dockerd runs in its own network namespace (its iptables rules live there), its own managed
# containerd, and a private /run, /etc/docker and /sys/fs/cgroup view.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
self="$root/scripts/swarm-env.sh"
state=$(realpath -m "${BERTH_SWARM_STATE:-$root/.swarm-env}")
host_socket=${BERTH_TEST_SOCKET:-/var/run/docker.sock}
image=berth-test/busybox:1
prefix=berth-sw
hub=$prefix-hub
net=10.250.0
registry=$net.1:5000
auth_registry=$net.1:5001
host_if=$prefix-0
host_addr=$net.254
nodes=(node1 node2 node3)

log() { printf '[swarm-env] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

node_ip() { echo "$net.1${1#node}"; }
dk() { local n=$1; shift; docker -H "unix://$state/$n.sock" "$@"; }

# wait_for SECONDS WHAT CMD…: polls CMD every 0.1 s until it succeeds, fails after SECONDS.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline; deadline=$(awk -v t="$(now)" -v l="$limit" 'BEGIN { printf "%d", t + l }')
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.1
  done
}

# The host's cgroup hierarchies (type mountpoint), and the one where each node's engine processes
# (dockerd, its containerd, shims, docker-proxy) are tracked so `down` finds them after any crash.
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts; }
track_root() {
  local m
  m=$(awk '$3 == "cgroup" && $4 ~ /(^|,)pids(,|$)/ { print $2; exit }' /proc/self/mounts)
  [ -n "$m" ] || m=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
  [ -n "$m" ] || die "no cgroup hierarchy found in /proc/self/mounts"
  echo "$m"
}

# ---------------------------------------------------------------------------------------------
# Inside a node: runs as `ip netns exec berth-sw-nodeN unshare --mount --uts -- swarm-env.sh _node …`
# and execs dockerd with the prepared view of the machine.
node_exec() {
  local n=$1; shift
  echo "$n" >/proc/sys/kernel/hostname # pitfall 2: every node would report the host's hostname
  # Pitfall 1: `ip netns exec` remounted /sys, hiding the cgroup hierarchies dockerd and runc need.
  local src mnt type opts
  while read -r src mnt type opts; do
    [ "$type" = tmpfs ] && opts=${opts/#ro,/rw,}
    mkdir -p "$mnt"
    mount -t "$type" -o "$opts" "$src" "$mnt"
  done <"$state/cgroup-mounts"
  # A private /run: no system containerd socket to share (each dockerd starts its own containerd),
  # and shim sockets, runc state and xtables.lock stay out of the host's /run.
  mount -t tmpfs -o mode=755 "$prefix-$n-run" /run
  # Pitfall 2: dockerd 20.10 keeps its engine identity in /etc/docker/key.json.
  mount --bind "$state/$n/etc-docker" /etc/docker
  exec "$@"
}

# ---------------------------------------------------------------------------------------------
# What is ours on this machine, found by name and cgroup (not by the state dir, which may be gone).
our_netns() { ip netns list 2>/dev/null | awk -v p="$prefix-" 'index($1, p) == 1 { print $1 }'; }
our_cgroups() {
  local m d
  for m in $(cgroup_mounts); do
    for d in "$m/$prefix"-*; do [ -d "$d" ] && echo "$d"; done
  done
  return 0
}
cgroup_pids() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null; }
# Every process in our cgroups or our network namespaces (orphaned containers keep their own
# network namespace but stay in the node's cgroup parent: pitfall 5).
our_pids() {
  {
    local d ns
    for d in $(our_cgroups); do cgroup_pids "$d"; done
    for ns in $(our_netns); do ip netns pids "$ns" 2>/dev/null; done
  } | sort -un
}
# A cluster started from another state dir (another checkout) must not be torn down from here.
check_owner() {
  local d pid sock
  for d in $(our_cgroups); do
    for pid in $(cgroup_pids "$d"); do
      sock=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | awk '/^unix:\/\// { print substr($0, 8); exit }') || true
      if [ -n "$sock" ] && [ "${sock%/*}" != "$state" ]; then
        [ -n "${BERTH_SWARM_FORCE:-}" ] && return 0
        die "a swarm from another state dir is running (${sock%/*}); run its down, or set BERTH_SWARM_FORCE=1"
      fi
    done
  done
}

# ---------------------------------------------------------------------------------------------
need_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io containerd runc iptables)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v curl >/dev/null || missing+=(curl)
  command -v sysctl >/dev/null || missing+=(procps)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

cluster_answering() {
  [ -f "$state/env" ] || return 1
  ip link show "$host_if" >/dev/null 2>&1 || return 1
  curl -sf -o /dev/null --max-time 2 "http://$registry/v2/" || return 1
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$auth_registry/v2/")" = 401 ] || return 1
  local n
  for n in "${nodes[@]}"; do dk "$n" version >/dev/null 2>&1 || return 1; done
  [ "$(dk node1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$')" = 3 ]
}

network_up() {
  if ip -4 route show "$net.0/24" | grep -qv "dev $host_if"; then
    die "$net.0/24 is already routed in the host namespace: $(ip -4 route show "$net.0/24")"
  fi
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" addr add "$net.1/24" dev br0
  ip -n "$hub" link set br0 up
  local n
  for n in "${nodes[@]}"; do
    ip netns add "$prefix-$n"
    # Created inside the hub namespace: no interface ever appears in the host's.
    ip -n "$hub" link add "v$n" type veth peer name eth0 netns "$prefix-$n"
    ip -n "$hub" link set "v$n" master br0 up
    ip -n "$prefix-$n" link set lo up
    ip -n "$prefix-$n" addr add "$(node_ip "$n")/24" dev eth0
    ip -n "$prefix-$n" link set eth0 up
    # No default route (pitfall 3): a failed image pull costs 0.1 s instead of ~20 s.
  done
  # The one link into the host namespace, so tests on the host reach node addresses directly.
  ip link add "$host_if" type veth peer name vhost netns "$hub"
  ip -n "$hub" link set vhost master br0 up
  sysctl -qw "net.ipv6.conf.$host_if.disable_ipv6=1" "net.ipv4.conf.$host_if.forwarding=0"
  ip addr add "$host_addr/24" dev "$host_if"
  ip link set "$host_if" up
}

# run_tracked CGROUP LOG CMD…: starts CMD detached, inside CGROUP from its first instruction on.
# With no descriptor but stdio: a dockerd started under `flock /work/coord/swarm.lock` (a test that
# restarts a node) would otherwise hold the lock for as long as it runs, and every later flock waits.
run_tracked() {
  local cg=$1 out=$2; shift 2
  mkdir -p "$cg"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$1/cgroup.procs"; shift
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
    exec "$@"' _ "$cg" "$@" >"$out" 2>&1 </dev/null &
  echo $!
}

# registry_up NAME ADDRESS [htpasswd-file]
registry_up() {
  local name=$1 addr=$2 htpasswd=${3:-}
  mkdir -p "$state/$name/data"
  {
    echo "version: 0.1"
    echo "log: { level: error, accesslog: { disabled: true } }"
    echo "storage: { filesystem: { rootdirectory: $state/$name/data }, delete: { enabled: true } }"
    echo "http: { addr: $addr }"
    if [ -n "$htpasswd" ]; then echo "auth: { htpasswd: { realm: berth-swarm, path: $htpasswd } }"; fi
  } >"$state/$name/config.yml"
  run_tracked "$(track_root)/$hub" "$state/$name.log" \
    ip netns exec "$hub" docker-registry serve "$state/$name/config.yml" >"$state/$name.pid"
}

node_up() {
  local n=$1 i=${1#node}
  mkdir -p "$state/$n/data" "$state/$n/exec" "$state/$n/etc-docker"
  run_tracked "$(track_root)/$prefix-$n-engine" "$state/$n/dockerd.log" \
    ip netns exec "$prefix-$n" unshare --mount --uts --propagation private -- "$self" _node "$n" \
    dockerd -H "unix://$state/$n.sock" \
    --data-root "$state/$n/data" --exec-root "$state/$n/exec" --pidfile "$state/$n/dockerd.pid" \
    --cgroup-parent "/$prefix-$n" --bip "172.30.$i.1/24" \
    --insecure-registry "$registry" --insecure-registry "$auth_registry" --swarm-default-advertise-addr "$(node_ip "$n")" \
    --shutdown-timeout 2 >"$state/$n/launch.pid"
}

node_answering() { dk "$1" version --format '{{.Server.Version}}'; }
wait_node() {
  local n=$1 pid; pid=$(cat "$state/$n/launch.pid")
  local deadline=$((SECONDS + 60))
  until node_answering "$n" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      log "dockerd of $n did not come up; its log:"; tail -n 20 "$state/$n/dockerd.log" >&2; return 1
    fi
    sleep 0.1
  done
}

three_ready() { [ "$(dk node1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = 3 ]; }

up() {
  local t0; t0=$(now)
  need_packages
  check_owner
  if cluster_answering; then
    log "reusing the swarm already answering ($state/env), checked in $(since "$t0") s"
    agent_up
    return
  fi
  if [ -d "$state" ] || [ -n "$(our_netns)" ] || [ -n "$(our_cgroups)" ] || ip link show "$host_if" >/dev/null 2>&1; then
    log "cleaning up what a previous run left"
    down
  fi
  docker -H "unix://$host_socket" image inspect "$image" >/dev/null 2>&1 ||
    die "$image is not on the host engine ($host_socket): run scripts/test-env.sh up first"

  case "$state" in /run/*|/var/run/*) die "the state dir cannot be under /run (each node mounts its own /run)" ;; esac
  mkdir -p "$state"
  awk '$2 == "/sys/fs/cgroup" || index($2, "/sys/fs/cgroup/") == 1 { print $1, $2, $3, $4 }' /proc/self/mounts >"$state/cgroup-mounts"
  [ -d /etc/docker ] || mkdir -p /etc/docker # bind target for each node's own /etc/docker
  network_up
  registry_up registry "$registry"
  # A registry behind htpasswd, to prove the credentials of a run reach the nodes that pull.
  local auth_password; auth_password=$(head -c 18 /dev/urandom | base64 | tr -d '+/=')
  echo "$auth_password" >"$state/auth-password"
  htpasswd -Bbn berth "$auth_password" >"$state/htpasswd"
  registry_up auth-registry "$auth_registry" "$state/htpasswd"
  local n
  for n in "${nodes[@]}"; do node_up "$n"; done
  docker -H "unix://$host_socket" save -o "$state/image.tar" "$image" &
  local save=$!
  log "network ready; dockerd starting on ${nodes[*]}"

  wait_node node1
  dk node1 swarm init --advertise-addr "$(node_ip node1)" --listen-addr "$(node_ip node1):2377" \
    --dispatcher-heartbeat 1s >/dev/null
  local token; token=$(dk node1 swarm join-token -q worker)
  local jobs=()
  for n in node2 node3; do
    (wait_node "$n" && dk "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" \
      --listen-addr "$(node_ip "$n"):2377" "$(node_ip node1):2377" >/dev/null) &
    jobs+=($!)
  done
  for n in "${jobs[@]}"; do wait "$n"; done
  wait_for 30 "three Ready nodes" three_ready
  dk node1 node update --label-add gpu=true node2 >/dev/null
  log "swarm of three Ready nodes after $(since "$t0") s"

  # The test image: loaded into every node, and held by the hub registry (so services can be
  # pinned by digest). node1 pushes; the workers pull it back to learn its repo digest.
  wait "$save"
  wait_for 10 "the registry on $registry" curl -sf -o /dev/null "http://$registry/v2/"
  jobs=()
  for n in "${nodes[@]}"; do
    (dk "$n" load -q -i "$state/image.tar" >/dev/null && dk "$n" tag "$image" "$registry/$image") &
    jobs+=($!)
  done
  for n in "${jobs[@]}"; do wait "$n"; done
  dk node1 push -q "$registry/$image" >/dev/null
  jobs=()
  for n in node2 node3; do (dk "$n" pull -q "$registry/$image" >/dev/null) & jobs+=($!); done
  for n in "${jobs[@]}"; do wait "$n"; done
  rm -f "$state/image.tar"
  local digest; digest=$(dk node1 image inspect --format '{{index .RepoDigests 0}}' "$registry/$image")
  # The private image: pushed by node1 with credentials kept in the state dir (not the host's
  # ~/.docker), then dropped there, so no node holds it and every task of it must pull.
  local private=$auth_registry/berth-test/private:1
  wait_for 10 "the registry on $auth_registry" curl -s -o /dev/null "http://$auth_registry/v2/"
  dk node1 tag "$image" "$private"
  DOCKER_CONFIG=$state/docker-config dk node1 login -u berth --password-stdin "$auth_registry" <<<"$(cat "$state/auth-password")" >/dev/null 2>&1
  DOCKER_CONFIG=$state/docker-config dk node1 push -q "$private" >/dev/null
  rm -rf "$state/docker-config"
  dk node1 rmi -f "$private" >/dev/null

  local list=() socks=() nss=()
  for n in "${nodes[@]}"; do
    list+=("$n=$(node_ip "$n")"); socks+=("$n=$state/$n.sock"); nss+=("$n=$prefix-$n")
  done
  local IFS=,
  cat >"$state/env" <<ENV
BERTH_TEST_SWARM_SOCKET=$state/node1.sock
BERTH_TEST_SWARM_NODES=${list[*]}
BERTH_TEST_SWARM_NODE_SOCKETS=${socks[*]}
BERTH_TEST_SWARM_NETNS=${nss[*]}
BERTH_TEST_SWARM_HUB_NETNS=$hub
BERTH_TEST_SWARM_HOST_ADDR=$host_addr
BERTH_TEST_SWARM_REGISTRY=$registry
BERTH_TEST_SWARM_AUTH_REGISTRY=$auth_registry
BERTH_TEST_SWARM_AUTH_USER=berth
BERTH_TEST_SWARM_AUTH_PASSWORD=$(cat "$state/auth-password")
BERTH_TEST_SWARM_AUTH_IMAGE=$private
BERTH_TEST_SWARM_IMAGE=$registry/$image
BERTH_TEST_SWARM_IMAGE_DIGEST=$digest
BERTH_TEST_SWARM_LOCAL_IMAGE=$image
BERTH_TEST_SWARM_LABELS=node2=gpu=true
BERTH_TEST_SWARM_STATE=$state
ENV
  agent_up
  log "ready in $(since "$t0") s: manager $state/node1.sock, registry $registry, image $digest"
}

# ---------------------------------------------------------------------------------------------
# berth's agent (deploy/swarm/agent.yml) on every node, from this checkout's src/, with a secret kept in
# the state dir for the tests. Idempotent: on a running cluster it adds what is missing and redeploys
# only when the agent's image (a hash of what it is made of) changed.
agent_image_repo=$registry/berth-test/agent
agent_port=7988

# An image of the agent from source: Node's base image (as the Dockerfile's), berth's src/ and its
# entrypoint, and dist/agent/main.js loading the TypeScript (Node strips the types) — the image's layout
# without a build, so nothing but the nodes' engines is needed. The real image compiles the same code.
agent_image() {
  local ctx hash base tag
  hash=$(cd "$root" && { find src -type f -name '*.ts' | sort | xargs sha256sum; sha256sum deploy/docker/entrypoint.sh package.json; } | sha256sum | cut -c1-16)
  tag=$agent_image_repo:$hash
  if curl -sf -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$registry/v2/berth-test/agent/manifests/$hash"; then
    echo "$tag"; return
  fi
  base=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$root/Dockerfile")
  if ! dk node1 image inspect "$base" >/dev/null 2>&1; then
    docker -H "unix://$host_socket" image inspect "$base" >/dev/null 2>&1 || "$root/scripts/base-image.sh" >/dev/null
    log "loading $base into node1"
    docker -H "unix://$host_socket" save "$base" | dk node1 load -q >/dev/null
  fi
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/berth-agent-image.XXXXXX")
  cp -r "$root/src" "$root/package.json" "$ctx/"
  cp "$root/deploy/docker/entrypoint.sh" "$ctx/entrypoint.sh"
  mkdir -p "$ctx/dist/agent"
  echo "import '../../src/agent/main.ts'" >"$ctx/dist/agent/main.js"
  printf '%s\n' "FROM $base" 'WORKDIR /app' 'COPY package.json ./' 'COPY src ./src' 'COPY dist ./dist' \
    'COPY entrypoint.sh /usr/local/bin/berth-entrypoint' 'USER 1000:1000' 'ENTRYPOINT ["/usr/local/bin/berth-entrypoint"]' >"$ctx/Dockerfile"
  local out; out=$(DOCKER_BUILDKIT=0 dk node1 build -q -t "$tag" "$ctx" 2>&1) || { rm -rf "$ctx"; die "building the agent image failed: $out"; }
  rm -rf "$ctx"
  dk node1 push -q "$tag" >/dev/null
  log "built and pushed the agent image $tag"
  echo "$tag"
}

agents_answering() {
  local n
  [ "$(dk node1 service ps berth-agent_agent --filter desired-state=running --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Running')" = "${#nodes[@]}" ] || return 1
  for n in "${nodes[@]}"; do timeout 2 bash -c "exec 3<>/dev/tcp/$(node_ip "$n")/$agent_port" 2>/dev/null || return 1; done
}

agent_up() {
  local t0 image; t0=$(now)
  # The secret: made once; the Swarm secret and the file must hold the same (a secret cannot be read back).
  if [ ! -s "$state/agent-secret" ] || ! dk node1 secret inspect berth-agent-secret >/dev/null 2>&1; then
    dk node1 stack rm berth-agent >/dev/null 2>&1 || true
    wait_for 30 "the old agents to go" sh -c "! docker -H unix://$state/node1.sock service inspect berth-agent_agent"
    dk node1 secret rm berth-agent-secret >/dev/null 2>&1 || true
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/agent-secret"
    dk node1 secret create berth-agent-secret "$state/agent-secret" >/dev/null
  fi
  image=$(agent_image)
  local deployed; deployed=$(dk node1 service inspect berth-agent_agent --format '{{index .Spec.Labels "com.docker.stack.image"}} {{(index .Spec.TaskTemplate.ContainerSpec.Mounts 0).Source}}' 2>/dev/null || true)
  if [ "$deployed" != "$image $state/{{.Node.Hostname}}.sock" ]; then
    # Each node's socket is in the state dir, named after the node (no node has /var/run/docker.sock):
    # Swarm fills in the node's name in the mount's source on each node.
    BERTH_IMAGE=$image BERTH_AGENT_DOCKER_SOCKET="$state/{{.Node.Hostname}}.sock" \
      docker -H "unix://$state/node1.sock" stack deploy --detach=true -c "$root/deploy/swarm/agent.yml" berth-agent >/dev/null
  fi
  wait_for 90 "berth's agent on every node" agents_answering
  # The tests' env: the secret and port (replaced, so a reused cluster's file gains them once).
  sed -i '/^BERTH_TEST_SWARM_AGENT_/d' "$state/env"
  printf '%s\n' "BERTH_TEST_SWARM_AGENT_SECRET_FILE=$state/agent-secret" "BERTH_TEST_SWARM_AGENT_PORT=$agent_port" >>"$state/env"
  log "berth's agent answers on every node ($image), in $(since "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# One node's engine going away and coming back, for tests of an outage and of a lost node.
node_known() {
  local n
  for n in "${nodes[@]}"; do [ "$n" = "$1" ] && return 0; done
  die "no node $1 (${nodes[*]})"
}
stop_node() {
  local n=$1 sig=$2 pid
  node_known "$n"
  [ -f "$state/env" ] || die "no swarm is up ($state/env is missing)"
  pid=$(cat "$state/$n/launch.pid" 2>/dev/null) || die "$n was not started from $state"
  if ! kill -0 "$pid" 2>/dev/null; then log "$n is not running"; return; fi
  kill "-$sig" "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "dockerd of $n did not exit within 30 s of SIG$sig"
    sleep 0.05
  done
  log "dockerd of $n is gone (SIG$sig)"
}
# The ports on a stopped node's bridges: sandboxes that outlived its dockerd (a namespace can be kept
# alive by a copy of its mount in another mount namespace) stay plugged in with their addresses. The
# dockerd that starts removes its stale sandboxes and hands their addresses out again — the agent's
# first, every time — and the bridge then delivers to whichever port spoke last: the node's agent
# answers "connection refused" from the dead copy. With dockerd down nothing on these bridges is live.
drop_bridge_ports() {
  local n=$1 br port
  for br in docker_gwbridge docker0; do
    for port in $(ip netns exec "$prefix-$n" ip -o link show master "$br" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip netns exec "$prefix-$n" ip link del "$port" 2>/dev/null || true
    done
  done
}
# An overlay's VXLAN device is made in the node's namespace and then moved into the overlay's own;
# one that a stopped dockerd left behind in the node's namespace makes every task on that overlay fail
# to start on the next one ("error creating vxlan interface: file exists": dockerd 20.10 does not clear
# it). The agent's stack is on an overlay, so the node's agent would never come back.
drop_vxlan_devices() {
  local n=$1 dev
  for dev in $(ip -n "$prefix-$n" -o link show type vxlan 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip -n "$prefix-$n" link del "$dev" 2>/dev/null || true
  done
}
start_node() {
  local n=$1 pid
  node_known "$n"
  [ -f "$state/env" ] || die "no swarm is up ($state/env is missing)"
  pid=$(cat "$state/$n/launch.pid" 2>/dev/null) || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then log "$n is already running"; return; fi
  drop_bridge_ports "$n"
  drop_vxlan_devices "$n"
  node_up "$n"
  wait_node "$n"
  log "dockerd of $n answers again"
}

kill_all() {
  local sig=$1 pid
  for pid in $(our_pids); do kill "-$sig" "$pid" 2>/dev/null || true; done
}

down() {
  local t0; t0=$(now)
  check_owner
  # 1. Ask each dockerd (found by its engine cgroup, whatever its pid file says) and the registry
  #    to stop, all at once, and give them 5 s: a dockerd stops its containers (--shutdown-timeout 2)
  #    and is gone in 2-5 s. Everything is thrown away after, so a slower one is not waited for.
  local m d pid stopping=()
  m=$(track_root)
  for d in "$m/$prefix"-*-engine "$m/$hub"; do
    [ -f "$d/cgroup.procs" ] || continue
    for pid in $(cgroup_pids "$d"); do
      case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        dockerd|docker-registry) kill -TERM "$pid" 2>/dev/null && stopping+=("$pid") ;;
      esac
    done
  done
  local deadline=$((SECONDS + 5))
  for pid in "${stopping[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  done
  # 2. KILL whatever is left: dockerds that did not stop, containerd, shims, and orphaned
  #    containers of a dockerd that was killed earlier (pitfall 5), until none is left.
  deadline=$((SECONDS + 10))
  while [ -n "$(our_pids)" ] && [ $SECONDS -lt $deadline ]; do kill_all KILL; sleep 0.1; done
  # 3. cgroups (deepest first), then namespaces and links, then mounts and files.
  for d in $(our_cgroups); do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$d" ] || break
      sleep 0.1
    done
  done
  ip link del "$host_if" 2>/dev/null || true
  for d in $(our_netns); do ip netns del "$d" 2>/dev/null || true; done
  if [ -d "$state" ]; then
    awk -v s="$state/" 'index($2, s) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
    case "$state" in /|"$root"|"") die "refusing to remove state dir '$state'" ;; esac
    rm -rf "$state"
  fi
  # 4. Prove it.
  local left=()
  [ -z "$(our_netns)" ] || left+=("netns: $(our_netns | tr '\n' ' ')")
  [ -z "$(our_cgroups)" ] || left+=("cgroups: $(our_cgroups | tr '\n' ' ')")
  [ -z "$(our_pids)" ] || left+=("processes: $(our_pids | tr '\n' ' ')")
  ! ip link show "$host_if" >/dev/null 2>&1 || left+=("link $host_if")
  ! grep -qF " $state" /proc/self/mounts || left+=("mounts under $state")
  local f args naming=()
  for f in /proc/[0-9]*/cmdline; do
    { mapfile -d '' args <"$f"; } 2>/dev/null || continue
    [[ "${args[*]}" != *"$state/"* ]] || naming+=("${f//[^0-9]/}")
  done
  [ ${#naming[@]} -eq 0 ] || left+=("processes naming $state: ${naming[*]}")
  [ ! -e "$state" ] || left+=("$state")
  if [ ${#left[@]} -gt 0 ]; then log "down left behind: ${left[*]}"; exit 1; fi
  log "down in $(since "$t0") s: no $prefix-* netns, link, cgroup, process or mount left"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  _node) shift; node_exec "$@" ;;
  stop-node) stop_node "${2:?node}" TERM ;;
  kill-node) stop_node "${2:?node}" KILL ;;
  start-node) start_node "${2:?node}" ;;
  *) echo "usage: $0 up|down|stop-node N|kill-node N|start-node N" >&2; exit 2 ;;
esac
