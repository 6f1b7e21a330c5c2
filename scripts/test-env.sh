#!/usr/bin/env bash
# Brings up (or reuses) the real Docker engine and local registries that berth's tests run against,
# makes the test images locally (nothing can be pulled from a public registry here), and tears down
# only what it started.
#
#   scripts/test-env.sh up     # prints nothing but progress; writes .test-env/env for the tests
#   scripts/test-env.sh down   # stops what `up` started, by process id, and removes its state
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${BERTH_TEST_STATE:-$root/.test-env}
registry_port=${BERTH_TEST_REGISTRY_PORT:-5000}
auth_registry_port=${BERTH_TEST_AUTH_REGISTRY_PORT:-5001}
socket=/var/run/docker.sock

log() { printf '[test-env] %s\n' "$*" >&2; }

need_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io containerd runc iptables)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v curl >/dev/null || missing+=(curl)
  # test/private-engine.ts makes a bridge for its dockerd; scripts/swarm-env.sh installs what else it needs.
  command -v ip >/dev/null || missing+=(iproute2)
  # test/swagger-ui.test.ts drives Swagger UI in a real headless browser (no browser download works here).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # test/jupyterhub.test.ts: Debian's JupyterHub (with its configurable-http-proxy and the single-user
  # server that scripts/singleuser-image.sh puts in an image) and pytest for the spawner's own tests.
  # Debian's python3, not whichever python3 comes first on the PATH.
  [ -x /usr/bin/jupyterhub ] && [ -x /usr/bin/configurable-http-proxy ] || missing+=(jupyterhub)
  /usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || missing+=(python3-pytest)
  # test/openapi.test.ts reads the committed document with PyYAML, a YAML 1.1 reader.
  python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Engineers share the machine: wait for another install to finish rather than fail on dpkg's lock.
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

engine_up() {
  if docker -H "unix://$socket" info >/dev/null 2>&1; then
    log "reusing the Docker engine already answering on $socket"
    return
  fi
  # A killed dockerd leaves its pid file behind and the next one refuses to start.
  if ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.pid; fi
  log "starting dockerd"
  setsid dockerd --host "unix://$socket" >"$state/dockerd.log" 2>&1 < /dev/null &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 120); do
    docker -H "unix://$socket" info >/dev/null 2>&1 && return
    sleep 0.5
  done
  log "dockerd did not answer within 60 s; its log:"; tail -n 30 "$state/dockerd.log" >&2
  exit 1
}

# registry_up NAME PORT [htpasswd-file]
registry_up() {
  local name=$1 port=$2 htpasswd=${3:-}
  if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null | grep -qE '200|401'; then
    if [ ! -f "$state/$name.pid" ]; then log "port $port is taken by a registry berth did not start"; exit 1; fi
    return
  fi
  mkdir -p "$state/$name/data"
  {
    echo "version: 0.1"
    echo "log: { level: error, accesslog: { disabled: true } }"
    echo "storage: { filesystem: { rootdirectory: $state/$name/data }, delete: { enabled: true } }"
    echo "http: { addr: 127.0.0.1:$port }"
    if [ -n "$htpasswd" ]; then echo "auth: { htpasswd: { realm: berth-test, path: $htpasswd } }"; fi
  } >"$state/$name/config.yml"
  setsid docker-registry serve "$state/$name/config.yml" >"$state/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
  for _ in $(seq 1 60); do
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null | grep -qE '200|401' && return
    sleep 0.25
  done
  log "registry $name did not answer on port $port"; cat "$state/$name.log" >&2; exit 1
}

# A ~2 MB image from Debian's static busybox: sh, sleep, httpd, echo, cat… enough for real containers.
image_up() {
  if docker image inspect berth-test/busybox:1 >/dev/null 2>&1; then return; fi
  log "making test image berth-test/busybox:1"
  local rootfs="$state/rootfs"
  rm -rf "$rootfs"; mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh sleep httpd echo cat ls env id printf true false kill wget nc seq head yes; do
    ln -s busybox "$rootfs/bin/$applet"
  done
  echo 'hello from berth-test' >"$rootfs/www/index.html"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - berth-test/busybox:1 >/dev/null
}

up() {
  mkdir -p "$state"
  need_packages
  engine_up
  local user=berth pass
  if [ -f "$state/auth-password" ]; then pass=$(cat "$state/auth-password"); else
    pass=$(head -c 18 /dev/urandom | base64 | tr -d '/+='); echo "$pass" >"$state/auth-password"; fi
  htpasswd -Bbn "$user" "$pass" >"$state/htpasswd" 2>/dev/null
  registry_up registry "$registry_port"
  registry_up auth-registry "$auth_registry_port" "$state/htpasswd"
  image_up
  # Made once per engine (a minute); test/jupyterhub.test.ts asks the script again for its name.
  bash "$root/scripts/singleuser-image.sh" >/dev/null
  cat >"$state/env" <<ENV
BERTH_TEST_SOCKET=$socket
BERTH_TEST_REGISTRY=127.0.0.1:$registry_port
BERTH_TEST_AUTH_REGISTRY=127.0.0.1:$auth_registry_port
BERTH_TEST_AUTH_USER=$user
BERTH_TEST_AUTH_PASSWORD=$pass
BERTH_TEST_IMAGE=berth-test/busybox:1
ENV
  log "ready: engine $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), registries on $registry_port and $auth_registry_port"
}

stop_pid() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  [ -d "$state" ] || return 0
  stop_pid "$state/registry.pid"
  stop_pid "$state/auth-registry.pid"
  if [ -f "$state/dockerd.pid" ]; then
    # We started this engine: leave nothing of ours on it before stopping it.
    docker image rm -f berth-test/busybox:1 >/dev/null 2>&1 || true
    docker image ls -q berth-test/jupyterhub-singleuser | xargs -r docker image rm -f >/dev/null 2>&1 || true
    stop_pid "$state/dockerd.pid"
  fi
  rm -rf "$state"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
