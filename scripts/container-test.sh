#!/usr/bin/env bash
# `npm run test:container`: builds berth's image with the Dockerfile, runs it with docker-compose.yml as a user
# would, and drives it from outside through the published port: pull, run, reach, stop, start, list, SIGTERM.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/node.sh

started=$SECONDS
run_id="berthct$(date +%s)$RANDOM"
image="$run_id/berth:test"
project=$run_id
web="$run_id-web"
work=$(mktemp -d "${TMPDIR:-/tmp}/$run_id.XXXXXX")
registry=""
pushed=""
compose=(docker-compose --project-directory "$work" --file "$root/docker-compose.yml" --project-name "$project")

log() { printf '[container-test] %s\n' "$*"; }
ok() { printf '[container-test] ok   %s\n' "$*"; }
fail() {
  printf '[container-test] FAIL %s\n' "$*" >&2
  exit 1
}

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ] && [ -f "$work/.env" ]; then
    log "berth's log, for the failure above:"
    "${compose[@]}" logs --no-color --tail 40 >&2
  fi
  log "cleaning up $run_id"
  # What berth made on the engine, then berth itself (container and network), then the images.
  docker rm -f "$web" "$run_id-nogroup" >/dev/null 2>&1
  [ -f "$work/.env" ] && "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
  docker image rm "$image" >/dev/null 2>&1
  if [ -n "$pushed" ]; then
    docker image rm "$pushed" >/dev/null 2>&1
    # The registry allows deletes: take the manifest out again so the test env does not fill up.
    local digest
    digest=$(curl -s -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$registry/v2/$run_id/web/manifests/1" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')
    [ -n "$digest" ] && curl -s -o /dev/null -X DELETE "http://$registry/v2/$run_id/web/manifests/$digest"
  fi
  rm -rf "$work"
  if [ "${BERTH_TEST_KEEP_ENV:-}" != "1" ]; then bash scripts/test-env.sh down; fi
  log "$([ "$status" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'; }
# json FILE EXPRESSION: evaluates a JavaScript expression over the parsed file (as `j`) and prints it.
json() { node -e 'const j = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")); const v = (0, eval)("(j) => " + process.argv[2])(j); console.log(typeof v === "string" ? v : JSON.stringify(v))' "$1" "$2"; }

# api METHOD PATH [JSON]: calls berth with the run's token; the body lands in $work/body, the status is printed.
api() {
  local args=(-s -o "$work/body" -w '%{http_code}' -X "$1" -H "authorization: Bearer $token" --max-time 60)
  if [ $# -ge 3 ]; then args+=(-H 'content-type: application/json' --data "$3"); fi
  curl "${args[@]}" "http://127.0.0.1:$berth_port$2"
}
# expect STATUS METHOD PATH [JSON]: the call must answer STATUS.
expect() {
  local want=$1 got; shift
  got=$(api "$@") || true
  [ "$got" = "$want" ] || fail "$1 $2 answered $got, not $want: $(head -c 600 "$work/body")"
}

# --- the engine, the registry and the base image -----------------------------------------------------
bash scripts/test-env.sh up
set -a; source "${BERTH_TEST_STATE:-$root/.test-env}/env"; set +a
registry=$BERTH_TEST_REGISTRY
bash scripts/base-image.sh >/dev/null

# --- the image ---------------------------------------------------------------------------------------
log "building $image with the classic builder"
build_started=$SECONDS
# --force-rm: a failing step leaves no container behind. The stages' layers stay as the build cache.
# The source label records where this image was built from: the origin remote, or this checkout.
source_ref=$(git -C "$root" remote get-url origin 2>/dev/null || echo "file://$root@$(git -C "$root" rev-parse --short HEAD)")
DOCKER_BUILDKIT=0 docker build --force-rm --build-arg SOURCE="$source_ref" --tag "$image" . >"$work/build.log" 2>&1 ||
  { tail -n 40 "$work/build.log" >&2; fail "docker build"; }
ok "built in $((SECONDS - build_started)) s"

base=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
version=$(node -p 'require("./package.json").version')
docker image inspect "$image" >"$work/image.json"
[ "$(json "$work/image.json" 'j[0].Config.Labels["org.opencontainers.image.version"]')" = "$version" ] ||
  fail "label org.opencontainers.image.version differs from package.json's $version: update ARG VERSION in the Dockerfile"
[ "$(json "$work/image.json" 'j[0].Config.Labels["org.opencontainers.image.licenses"]')" = Apache-2.0 ] || fail "licence label"
[ -n "$(json "$work/image.json" 'j[0].Config.Labels["org.opencontainers.image.source"] ?? ""')" ] || fail "source label"
ok "OCI labels: version $version, licence Apache-2.0, source"
user=$(json "$work/image.json" 'j[0].Config.User')
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || fail "the image runs as '${user:-root}'"
[ "$(json "$work/image.json" 'j[0].Config.Healthcheck?.Test?.[0] ?? ""')" = CMD ] || fail "the image has no HEALTHCHECK"
ok "image user $user, with a HEALTHCHECK"

total=$(json "$work/image.json" 'j[0].Size')
base_size=$(docker image inspect --format '{{.Size}}' "$base")
own=$((total - base_size))
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
log "image $(mb "$total"), of which $base $(mb "$base_size") and berth's own layers $(mb "$own")"
# The budget was 40 MB until the Kubernetes backend: @kubernetes/client-node is ~27 MB of generated
# API models on its own (the image has none of its TypeScript, maps or docs).
[ "$own" -lt 64000000 ] || fail "berth's own layers are $(mb "$own"), over 64 MB"
ok "berth's own layers under 64 MB"

# Only what runs: no sources, tests, dev tools, secrets or local state in /app.
docker run --rm --entrypoint node "$image" -e '
  const fs = require("node:fs")
  const top = fs.readdirSync("/app").sort().join(" ")
  const dev = ["typescript", "tap", "eslint", "@types/dockerode"].filter(p => fs.existsSync("/app/node_modules/" + p))
  const unused = fs.readdirSync("/app", { recursive: true }).filter(f => /\.(ts|mts|cts|map)$/.test(f))
  console.log(JSON.stringify({ top, dev, unused }))' >"$work/contents.json"
[ "$(json "$work/contents.json" 'j.top')" = "dist node_modules package.json" ] || fail "/app holds $(json "$work/contents.json" 'j.top')"
[ "$(json "$work/contents.json" 'j.dev.length + j.unused.length')" = 0 ] || fail "dev files in the image: $(cat "$work/contents.json")"
ok "/app holds dist, node_modules (production only, no TypeScript or source maps) and package.json"

# --- a real image in the local registry, absent from the engine -------------------------------------
pushed="$registry/$run_id/web:1"
docker tag "$BERTH_TEST_IMAGE" "$pushed"
docker push --quiet "$pushed" >/dev/null
docker image rm "$pushed" >/dev/null
! docker image inspect "$pushed" >/dev/null 2>&1 || fail "$pushed is still on the engine"
ok "pushed $pushed and removed it locally"

# --- berth, as docker-compose.yml runs it -------------------------------------------------------------
berth_port=$(free_port)
# The bearer token is the secret itself; berth keeps only its hash.
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
docker_gid=$(stat -c %g /var/run/docker.sock)
cat >"$work/.env" <<ENV
BERTH_TOKENS=$run_id:read,write:$token
DOCKER_GID=$docker_gid
BERTH_PUBLISH_PORT=$berth_port
BERTH_IMAGE=$image
ENV
log "docker-compose up: project $project, port 127.0.0.1:$berth_port, socket group $docker_gid"
up_started=$SECONDS
"${compose[@]}" up --detach --no-build 2>"$work/up.log" || { cat "$work/up.log" >&2; fail "docker-compose up"; }
cid=$("${compose[@]}" ps -q berth)
[ -n "$cid" ] || fail "no berth container in project $project"

health=""
for _ in $(seq 1 120); do
  health=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.Status}}' "$cid")
  case $health in
    "healthy running") break ;;
    unhealthy*|*exited|*dead|*restarting) fail "berth is $health" ;;
  esac
  sleep 0.5
done
[ "$health" = "healthy running" ] || fail "berth did not become healthy in 60 s ($health)"
ok "healthy $((SECONDS - up_started)) s after docker-compose up (the image's healthcheck runs every 10 s)"

# What docker-compose.yml promises: init, restart policy, the socket's group, and nothing berth does not need.
docker inspect "$cid" >"$work/berth.json"
host_config=$(json "$work/berth.json" '[j[0].HostConfig.Init, j[0].HostConfig.RestartPolicy.Name, j[0].HostConfig.GroupAdd.join(","),
  j[0].HostConfig.ReadonlyRootfs, j[0].HostConfig.CapDrop.join(","), j[0].HostConfig.SecurityOpt.join(",")].join(" ")')
[ "$host_config" = "true unless-stopped $docker_gid true ALL no-new-privileges:true" ] || fail "berth's container runs with $host_config"
ok "init, restart unless-stopped, group $docker_gid, read-only root, no capabilities, no-new-privileges"

published=$(docker port "$cid" 8080/tcp)
[ "$published" = "127.0.0.1:$berth_port" ] || fail "port 8080 is published on $published, not 127.0.0.1:$berth_port only"
ok "published on 127.0.0.1 only"

# The server process (pid 1 is docker's init) runs as the image's user, with the socket's group added.
docker top "$cid" -eo pid,uid,args >"$work/top.txt"
server_uid=$(awk '$3 == "node" && /dist\/server.js/ && !/docker-init/ { print $2; exit }' "$work/top.txt")
[ -n "$server_uid" ] || fail "no node … dist/server.js process: $(cat "$work/top.txt")"
[ "$server_uid" != 0 ] || fail "berth runs as root"
awk 'NR > 1 && $2 == 0 { bad = 1 } END { exit bad }' "$work/top.txt" || fail "a process in berth's container runs as root: $(cat "$work/top.txt")"
grep -q docker-init "$work/top.txt" || fail "no init process in berth's container: $(cat "$work/top.txt")"
groups=$(docker exec "$cid" node -p 'process.getgroups().join(",")')
[[ ",$groups," = *",$docker_gid,"* ]] || fail "berth's groups $groups lack the socket's group $docker_gid"
ok "berth runs as uid $server_uid (groups $groups) under docker's init; nothing in the container is root"

expect 200 GET /readyz
ok "/readyz: engine $(json "$work/body" 'j.engine.version') reachable through the socket"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$berth_port/v1/containers")
[ "$code" = 401 ] || fail "GET /v1/containers without a token answered $code, not 401"
ok "no token, no API (401)"

# --- what a user does with it -------------------------------------------------------------------------
expect 200 POST /v1/images/pull "{\"image\":\"$pushed\"}"
digest=$(json "$work/body" 'j.digest')
[[ "$digest" = sha256:* ]] || fail "the pull reply has no registry digest: $(head -c 300 "$work/body")"
docker image inspect "$pushed" >/dev/null 2>&1 || fail "the engine does not have $pushed after the pull"
ok "pulled $pushed from the registry ($digest)"

web_port=$(free_port)
expect 201 POST /v1/containers "{\"image\":\"$pushed\",\"name\":\"$web\",\"pull\":\"never\",\"command\":[\"httpd\",\"-f\",\"-p\",\"80\",\"-h\",\"/www\"],\"ports\":[{\"container\":80,\"host\":$web_port,\"hostIp\":\"127.0.0.1\"}]}"
[ "$(json "$work/body" 'j.state')" = running ] || fail "the run reply says $(json "$work/body" 'j.state')"
[ "$(json "$work/body" 'j.ports.map(p => p.hostIp + ":" + p.host + "->" + p.container).join(" ")')" = "127.0.0.1:$web_port->80" ] ||
  fail "the run reply binds $(json "$work/body" 'j.ports')"
ok "ran $web with 127.0.0.1:$web_port->80"

reach() { curl -s --max-time 5 --retry 10 --retry-delay 0 --retry-connrefused "http://127.0.0.1:$web_port/"; }
[ "$(reach)" = "hello from berth-test" ] || fail "the container's server did not answer on 127.0.0.1:$web_port"
ok "its server answers on 127.0.0.1:$web_port"

listed() { expect 200 GET "/v1/containers$1"; json "$work/body" "j.filter(c => c.name === '$web').map(c => c.state).join(',')"; }
[ "$(listed '')" = running ] || fail "GET /v1/containers does not list $web as running"
expect 200 POST "/v1/containers/$web/stop?timeout=2"
[ "$(json "$work/body" 'j.changed + " " + j.container.state')" = "true exited" ] || fail "stop answered $(head -c 300 "$work/body")"
[ "$(listed '')" = "" ] || fail "GET /v1/containers still lists the stopped $web"
[ "$(listed '?all=true')" = exited ] || fail "GET /v1/containers?all=true does not list $web as exited"
ok "stopped: gone from the list, listed as exited with all=true"
expect 200 POST "/v1/containers/$web/start"
[ "$(json "$work/body" 'j.changed + " " + j.container.state')" = "true running" ] || fail "start answered $(head -c 300 "$work/body")"
[ "$(reach)" = "hello from berth-test" ] || fail "the restarted container's server did not answer"
[ "$(listed '')" = running ] || fail "GET /v1/containers does not list the started $web"
ok "started again: listed as running, its server answers"

# --- first-run mistakes: berth refuses to start, and its first log line says how to fix it ----------
# Without the socket's group (a wrong DOCKER_GID): no engine, no fallback to root, and exit 78.
first_line() {  # <what> <env…>: runs the image, which must exit 78; prints the message of its first log line
  local what=$1; shift
  local name="$run_id-$what"
  docker run --detach --name "$name" --init "$@" -v /var/run/docker.sock:/var/run/docker.sock "$image" >/dev/null
  local code; code=$(timeout 30 docker wait "$name") || fail "$what: berth still runs after 30 s"
  docker logs "$name" >"$work/$what.log" 2>&1
  docker rm -f "$name" >/dev/null
  [ "$code" = 78 ] || fail "$what: berth exited $code, not 78: $(cat "$work/$what.log")"
  [ "$(wc -l <"$work/$what.log")" = 1 ] || fail "$what: more than one line, a stack? $(cat "$work/$what.log")"
  json "$work/$what.log" 'j.msg'
}
msg=$(first_line nogroup -e "BERTH_TOKENS=$run_id:read:$token")
[[ "$msg" = *"permission denied on the Docker socket"*"DOCKER_GID"*"stat -c %g /var/run/docker.sock"* ]] || fail "without the socket's group berth said: $msg"
ok "without the socket's group: exit 78, one line naming DOCKER_GID and the command that prints it"
msg=$(first_line short --group-add "$docker_gid" -e "BERTH_TOKENS=$run_id:read:short")
[ "$msg" = "token \"$run_id\" is shorter than 16 characters" ] || fail "with a short secret berth said: $msg"
ok "a secret that is too short: exit 78, one line saying so"

# --- SIGTERM: a request in flight finishes, then berth exits 0 ---------------------------------------
# busybox httpd runs as pid 1 and ignores SIGTERM, so stopping it takes the whole timeout: a slow request,
# still in flight when berth gets its own SIGTERM (sent as `docker stop` and `docker-compose stop` send it).
since=$(date +%s)
api POST "/v1/containers/$web/stop?timeout=3" >"$work/inflight.status" &
inflight=$!
# berth logs a request when it completes; the engine's kill event says the stop has begun.
for _ in $(seq 1 40); do
  [ -n "$(docker events --since "$since" --until "$(date +%s.%N)" --filter "container=$web" --filter event=kill --format '{{.Action}}')" ] && break
  sleep 0.25
done
log "SIGTERM to berth with a stop request in flight"
docker kill --signal TERM "$cid" >/dev/null
# docker-compose.yml gives berth 15 s before SIGKILL; berth's own grace period is 10 s.
exit_code=$(timeout 15 docker wait "$cid") || fail "berth still runs 15 s after SIGTERM"
wait "$inflight" || true
[ "$(cat "$work/inflight.status")" = 200 ] || fail "the request in flight at SIGTERM answered $(cat "$work/inflight.status"): $(head -c 300 "$work/body")"
[ "$exit_code" = 0 ] || fail "berth exited with $exit_code after SIGTERM"

# berth's log and the engine's clock give the order: SIGTERM, the request in flight answered, berth gone.
docker logs "$cid" >"$work/berth.log" 2>&1
node -e '
  const lines = require("node:fs").readFileSync(process.argv[1], "utf8").split("\n").filter(l => l.startsWith("{")).map(l => JSON.parse(l))
  const closing = lines.find(l => l.signal === "SIGTERM")
  const request = lines.find(l => l.req?.url?.endsWith("stop?timeout=3"))
  const answered = request && lines.find(l => l.requestId === request.requestId && l.res)
  console.log(JSON.stringify({ closing: closing?.time, answered: answered?.time, exited: Date.parse(process.argv[2]) }))' \
  "$work/berth.log" "$(docker inspect --format '{{.State.FinishedAt}}' "$cid")" >"$work/shutdown.json"
[ "$(json "$work/shutdown.json" 'j.closing > 0')" = true ] || fail "berth's log does not show it closing on SIGTERM"
[ "$(json "$work/shutdown.json" 'j.answered > j.closing')" = true ] || fail "the stop request was not in flight at SIGTERM: $(cat "$work/shutdown.json")"
ok "the request in flight at SIGTERM was answered 200, $(json "$work/shutdown.json" 'j.answered - j.closing') ms after the signal"
# A generous bound, not a benchmark: once nothing is in flight, berth has nothing left to wait for.
after_ms=$(json "$work/shutdown.json" 'j.exited - j.answered')
[ "$after_ms" -lt 5000 ] || fail "berth took $after_ms ms to exit after its last request"
ok "berth exited 0, $after_ms ms after its last request ($(json "$work/shutdown.json" 'j.exited - j.closing') ms after SIGTERM)"
