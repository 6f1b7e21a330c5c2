#!/usr/bin/env bash
# `npm run test:container`: builds berth's image with the Dockerfile, runs it with docker-compose.yml as a user
# would — one command in a clone with no .env, then with a .env — and drives it from outside through the
# published port: its own admin token, the socket's group found, no capability, pull, run, reach, stop,
# start, list, SIGTERM.
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
composed=""
# What a user has after `git clone`: the tracked files (and new ones not ignored), no .env.
clone=$work/clone
compose=(docker-compose --project-directory "$clone" --file "$clone/docker-compose.yml" --project-name "$project")

log() { printf '[container-test] %s\n' "$*"; }
ok() { printf '[container-test] ok   %s\n' "$*"; }
fail() {
  printf '[container-test] FAIL %s\n' "$*" >&2
  exit 1
}

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ] && [ -n "$composed" ]; then
    log "berth's log, for the failure above:"
    "${compose[@]}" logs --no-color --tail 40 >&2
  fi
  log "cleaning up $run_id"
  # What berth made on the engine, then berth itself (container and network), then the images.
  docker rm -f "$web" "$run_id-nogroup" "$run_id-short" "$run_id-gid" >/dev/null 2>&1
  [ -n "$composed" ] && "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
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

# --- docker-compose.yml passes every setting berth reads ------------------------------------------------
# It lists them (a missing .env must not stop `up`, so there is no env_file): a new one must be added there.
# The agent role's own settings (src/agent/) are deploy/swarm/agent.yml's to pass, not the API server's.
missing=$(grep -rhoE --exclude-dir=agent 'BERTH_[A-Z0-9_]*[A-Z0-9]' src | sort -u | while read -r name; do
  grep -qE "^ +$name:" docker-compose.yml || echo "$name"; done)
[ -z "$missing" ] || fail "docker-compose.yml does not pass $(echo $missing) from .env: add them to its environment"
ok "docker-compose.yml passes every BERTH_* setting src/ reads"

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
# 72 MB: this wave added the MCP SDK (tools for agents) and ws (the Kubernetes exec channel) at ~3 MB.
[ "$own" -lt 72000000 ] || fail "berth's own layers are $(mb "$own"), over 72 MB"
ok "berth's own layers under 72 MB"

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

# --- berth in one command, as docker-compose.yml runs it from a clone with no .env -------------------------
mkdir "$clone"
git -C "$root" ls-files -z --cached --others --exclude-standard |
  tar -C "$root" -c --null --no-recursion --ignore-failed-read -T - 2>/dev/null | tar -x -C "$clone"
[ ! -e "$clone/.env" ] && [ -f "$clone/docker-compose.yml" ] || fail "the clone is not one"
berth_port=$(free_port)
docker_gid=$(stat -c %g /var/run/docker.sock)
# The run's own image and a free port, from the shell rather than a .env (the image stands for the one the
# first `up` builds: this run built it above); everything else is what a user gets.
export BERTH_IMAGE=$image BERTH_PUBLISH_PORT=$berth_port

# up_and_healthy: `docker-compose up -d` (v2: `docker compose up -d --wait`), then wait for the healthcheck.
up_and_healthy() {
  local started=$SECONDS health=""
  composed=1
  "${compose[@]}" up --detach --no-build 2>"$work/up.log" || { cat "$work/up.log" >&2; fail "docker-compose up"; }
  cid=$("${compose[@]}" ps -q berth)
  [ -n "$cid" ] || fail "no berth container in project $project"
  for _ in $(seq 1 120); do
    health=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.Status}}' "$cid")
    case $health in
      "healthy running") break ;;
      unhealthy*|*exited|*dead|*restarting) fail "berth is $health" ;;
    esac
    sleep 0.5
  done
  [ "$health" = "healthy running" ] || fail "berth did not become healthy in 60 s ($health)"
  ok "healthy $((SECONDS - started)) s after docker-compose up (the image's healthcheck runs every 10 s)"
}
log "docker-compose up in a clone with no .env: project $project, port 127.0.0.1:$berth_port"
up_and_healthy

# The token berth made: its secret on the first line of the log, the one place it ever is.
docker logs "$cid" >"$work/first.log" 2>&1
first=$(head -n 1 "$work/first.log")
token=$(printf '%s' "$first" | grep -oE 'BERTH_TOKEN=[0-9a-f]{64}' | cut -d= -f2) || true
[ -n "$token" ] || fail "the first line of berth's log shows no BERTH_TOKEN: $first"
[ "$(grep -c 'BERTH_TOKEN=' "$work/first.log")" = 1 ] || fail "the secret is in the log more than once"
ok "no .env: berth made an admin token, its secret on the first line of its log"

# What docker-compose.yml promises: restart policy, and nothing berth does not need.
docker inspect "$cid" >"$work/berth.json"
host_config=$(json "$work/berth.json" '[j[0].Config.User, j[0].HostConfig.Init ?? false, j[0].HostConfig.RestartPolicy.Name, j[0].HostConfig.ReadonlyRootfs,
  j[0].HostConfig.CapDrop.join(","), j[0].HostConfig.CapAdd.map(c => c.replace(/^CAP_/, "")).sort().join(","), j[0].HostConfig.SecurityOpt.join(",")].join(" ")')
[ "$host_config" = "0:0 false unless-stopped true ALL SETGID,SETPCAP,SETUID no-new-privileges:true" ] || fail "berth's container runs with $host_config"
ok "starts as root with SETUID, SETGID and SETPCAP only, restart unless-stopped, read-only root, no-new-privileges"

published=$(docker port "$cid" 8080/tcp)
[ "$published" = "127.0.0.1:$berth_port" ] || fail "port 8080 is published on $published, not 127.0.0.1:$berth_port only"
ok "published on 127.0.0.1 only"

# The entrypoint dropped root before node started: PID 1 is node, as uid 1000 with the socket's group,
# holding no capability and unable to gain one. Read from inside the container, as that user.
proc_status() { docker exec --user 1000:1000 "$cid" cat /proc/1/status >"$work/status.txt" || fail "cannot read /proc/1/status"; }
field() { awk -v f="$1:" '$1 == f { $1 = ""; sub(/^ +/, ""); sub(/ +$/, ""); print }' "$work/status.txt"; }
check_process() {  # <gid the process must have>
  proc_status
  [ "$(tr '\0' ' ' </proc/"$(docker inspect --format '{{.State.Pid}}' "$cid")"/cmdline)" = "node --max-semi-space-size=4 /app/dist/server.js " ] ||
    fail "PID 1 is not berth's node: $(docker top "$cid" -eo pid,uid,args)"
  [ "$(field Uid)" = "1000 1000 1000 1000" ] || fail "berth runs with uids $(field Uid)"
  [ "$(field Gid)" = "1000 1000 1000 1000" ] || fail "berth runs with gids $(field Gid)"
  [[ " $(field Groups) " = *" $1 "* ]] || fail "berth's groups $(field Groups) lack the socket's group $1"
  for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
    [ "$(field $cap)" = 0000000000000000 ] || fail "berth holds capabilities: $cap $(field $cap)"
  done
  [ "$(field NoNewPrivs)" = 1 ] || fail "berth may gain privileges (NoNewPrivs $(field NoNewPrivs))"
  awk 'NR > 1 && /dist\/server.js/ && $2 != 1000 { bad = 1 } END { exit bad }' < <(docker top "$cid" -eo pid,uid,args) || fail "a berth process is not uid 1000"
  ok "PID 1 is node as uid 1000, groups $(field Groups) (the socket's $1 among them), no capability in any set, no new privileges"
}
check_process "$docker_gid"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "http://127.0.0.1:$berth_port/v1/containers")
[ "$code" = 200 ] || fail "the made token answered $code"
ok "the made token opens the API"

# A new container on the same volume (compose down keeps named volumes): the same token, never shown again.
"${compose[@]}" down --timeout 5 >/dev/null 2>&1 || fail "docker-compose down"
up_and_healthy
docker logs "$cid" >"$work/again.log" 2>&1
! grep -q 'BERTH_TOKEN=' "$work/again.log" || fail "a restart shows the secret again"
grep -q 'using the admin token berth made at its first start' "$work/again.log" || fail "a restart does not say which token it uses: $(head -n 3 "$work/again.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "http://127.0.0.1:$berth_port/v1/containers")
[ "$code" = 200 ] || fail "after a restart the made token answered $code"
ok "a new container finds the made token in the volume, and shows no secret"

# --- with a .env: what it says wins ---------------------------------------------------------------------
admin_token=$token
# The bearer token is the secret itself; berth keeps only its hash.
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$clone/.env" <<ENV
BERTH_TOKENS=$run_id:read,write:$token
DOCKER_GID=$docker_gid
ENV
log "a .env with BERTH_TOKENS and DOCKER_GID: docker-compose up again"
up_and_healthy
docker logs "$cid" >"$work/env.log" 2>&1
! grep -q 'no token' "$work/env.log" || fail "with BERTH_TOKENS berth still speaks of a token of its own: $(grep 'no token' "$work/env.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $admin_token" "http://127.0.0.1:$berth_port/v1/containers")
[ "$code" = 401 ] || fail "with BERTH_TOKENS the made token still answered $code"
check_process "$docker_gid"
ok "BERTH_TOKENS from .env is used and the made token is not"

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
# Started as root as compose starts it, DOCKER_GID wins over the socket's own group: a wrong one is used.
msg=$(first_line gid --user 0:0 --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add SETPCAP --security-opt no-new-privileges -e DOCKER_GID=4242 -e "BERTH_TOKENS=$run_id:read:$token")
[[ "$msg" = *"berth runs as uid 1000 with groups 1000, 4242;"* ]] || fail "with DOCKER_GID=4242 berth said: $msg"
ok "DOCKER_GID given wins over the socket's group (a wrong one: exit 78, groups 1000, 4242)"
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
