#!/usr/bin/env bash
# Makes sure the base image the Dockerfile names exists on this engine: pulls it, or, where nothing can be
# pulled (CI here), assembles a labelled stand-in from Node 24 and busybox. Never replaces an image that is there.
#
#   scripts/base-image.sh            # prints the image name on stdout, progress on stderr
#
# The stand-in holds what berth's Dockerfile uses from node:24-bookworm-slim: node and npm under
# /usr/local, the `node` user (1000:1000), util-linux's setpriv (the entrypoint drops root with it), and
# a POSIX shell with the usual tools — busybox's rather than Debian's, so the Dockerfile's RUN lines keep
# to POSIX options both understand.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[base-image] %s\n' "$*" >&2; }

# The one name the Dockerfile builds from (its first FROM), so the two cannot drift apart.
image=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$root/Dockerfile")
[ -n "$image" ] || { log "no FROM line in $root/Dockerfile"; exit 1; }
major=$(sed -nE 's/^node:([0-9]+).*/\1/p' <<<"$image")
[ -n "$major" ] || { log "$image is not a node:<major>… image; the stand-in can only stand in for one"; exit 1; }

present() { docker image inspect "$image" >/dev/null 2>&1; }
# A stand-in made before the entrypoint needed setpriv lacks it: that one is made again.
stale_standin() {
  docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.description"}}' "$image" 2>/dev/null | grep -q "berth's scripts/base-image.sh" &&
    ! docker run --rm --entrypoint /bin/sh "$image" -c 'command -v setpriv' >/dev/null 2>&1
}

# Two runs at once must not both assemble it.
exec 9>"${TMPDIR:-/tmp}/berth-base-image.lock"
flock 9

if present && stale_standin; then log "$image is a stand-in without setpriv: making it again"
elif present; then log "$image is present"; echo "$image"; exit 0
fi
if ! present && timeout 300 docker pull -q "$image" >/dev/null 2>&1; then log "pulled $image"; echo "$image"; exit 0; fi
log "$image is absent and cannot be pulled: assembling a local stand-in"

# A Node $major binary: the one the npm package node@$major ships, as scripts/node.sh installs it.
node_bin=""
for candidate in "$root/.tools/node_modules/node/bin/node" "$(command -v node || true)"; do
  if [ -x "$candidate" ] && [ "$("$candidate" -p 'process.versions.node.split(".")[0]')" = "$major" ]; then
    node_bin=$(readlink -f "$candidate"); break
  fi
done
if [ -z "$node_bin" ]; then
  log "installing node@$major into .tools/"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$root/.tools" "node@$major" >/dev/null
  node_bin=$(readlink -f "$root/.tools/node_modules/node/bin/node")
fi
node_version=$("$node_bin" --version)
# npm is a plain JavaScript package: the machine's own copy runs on any Node it supports.
npm_dir=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
[ -f "$npm_dir/package.json" ] && [ "$(basename "$npm_dir")" = npm ] || { log "cannot find npm's package next to $(command -v npm)"; exit 1; }
npm_version=$("$node_bin" -p "require('$npm_dir/package.json').version")
busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || { log "needs a static $busybox (Debian's busybox-static)"; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/berth-base-image.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
# Debian's merged /usr: /bin and /lib are links, so `#!/usr/bin/env node` and /bin/sh both resolve.
mkdir -p "$rootfs"/{etc,root,tmp,home/node,usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,usr/local/lib/node_modules}
for dir in bin sbin lib lib64; do ln -s "usr/$dir" "$rootfs/$dir"; done
chmod 1777 "$rootfs/tmp"
chmod 700 "$rootfs/root"

install -m 755 "$node_bin" "$rootfs/usr/local/bin/node"
# The shared libraries node links against, at the paths the dynamic loader looks for them.
ldd "$node_bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

# util-linux's setpriv (busybox's cannot change users), with the libraries it links against.
setpriv=$(command -v setpriv) || { log "needs util-linux's setpriv"; exit 1; }
install -m 755 "$setpriv" "$rootfs/usr/bin/setpriv"
ldd "$setpriv" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  [ -e "$rootfs$lib" ] || cp -L "$lib" "$rootfs$lib"
done

cp "$busybox" "$rootfs/usr/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$rootfs/usr/bin/$applet" ] || ln -s busybox "$rootfs/usr/bin/$applet"
done

# A machine whose egress re-signs TLS (this CI's does) tells Node so with NODE_EXTRA_CA_CERTS; the stand-in
# trusts the same extra certificates, or `npm ci` in the build cannot reach the registry.
extra_ca=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  mkdir -p "$rootfs/usr/local/share/berth"
  cp -L "$NODE_EXTRA_CA_CERTS" "$rootfs/usr/local/share/berth/extra-ca-certs.pem"
  extra_ca=(-c 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/berth/extra-ca-certs.pem')
fi

printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chown 1000:1000 "$rootfs/home/node"

tar -C "$rootfs" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "ENV NODE_VERSION=${node_version#v}" \
  -c 'CMD ["node"]' "${extra_ca[@]}" \
  -c "LABEL org.opencontainers.image.description=\"Local stand-in for $image made by berth's scripts/base-image.sh (Node $node_version, npm $npm_version, busybox, setpriv); not the official image\"" \
  - "$image" >/dev/null
log "made $image (Node $node_version) in $SECONDS s"
echo "$image"
