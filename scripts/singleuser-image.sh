#!/usr/bin/env bash
# Makes sure the JupyterHub single-user image the spawner's end-to-end test runs exists on this engine:
# nothing can be pulled here, so it is assembled from the files of the Debian packages installed on this
# machine (jupyterhub and the notebook server with every package they depend on), with no shell step.
# Never replaces an image that is there.
#
#   scripts/singleuser-image.sh        # prints the image name on stdout, progress on stderr
#
# The image runs `jupyterhub-singleuser` (Debian's jupyterhub, the hub's own version, so hub and server
# speak the same protocol) as uid 1000 in /home/jovyan, as the Jupyter Docker Stacks images do; port 8888.
set -euo pipefail

log() { printf '[singleuser-image] %s\n' "$*" >&2; }

for tool in jupyterhub-singleuser dpkg-query ldconfig docker; do
  command -v "$tool" >/dev/null || { log "needs $tool (scripts/test-env.sh installs Debian's jupyterhub)"; exit 1; }
done
version=$(dpkg-query -W -f='${Version}' jupyterhub)
# The upstream version (3.0.0+ds1-1 -> 3.0.0): the tag says which hub it speaks to.
image=${BERTH_SINGLEUSER_IMAGE:-berth-test/jupyterhub-singleuser:${version%%+*}}

present() { docker image inspect "$image" >/dev/null 2>&1; }

# Two runs at once must not both assemble it.
exec 9>"${TMPDIR:-/tmp}/berth-singleuser-image.lock"
flock 9

if present; then log "$image is present"; echo "$image"; exit 0; fi
log "assembling $image from the installed Debian packages"

# The packages: the closure of jupyterhub, the notebook server and a /bin/sh over Pre-Depends and
# Depends, read once from dpkg's database. An alternative takes its first installed choice (or an
# installed package that provides it). Left out: the hub's proxy (node, for the hub only) and what only
# package maintenance or debugging uses (dpkg, debconf, gdb): nothing in a notebook server runs them.
packages=$(awk -v roots='jupyterhub python3-notebook python3-ipykernel dash' \
  -v skip='node-configurable-http-proxy nodejs dpkg debconf gdb' '
  function field(line) { sub(/^[^:]*:[ \t]*/, "", line); return line }
  function flush() {
    if (pkg != "" && status ~ / installed$/) {
      installed[pkg] = 1; deps[pkg] = depends
      n = split(provides, list, /,/)
      for (i = 1; i <= n; i++) { split(list[i], words, " "); if (words[1] != "" && !(words[1] in provider)) provider[words[1]] = pkg }
    }
    pkg = status = depends = provides = ""
  }
  /^Package:/ { flush(); pkg = field($0) }
  /^Status:/ { status = field($0) }
  /^(Pre-)?Depends:/ { depends = depends (depends == "" ? "" : ", ") field($0) }
  /^Provides:/ { provides = field($0) }
  END {
    flush()
    split(skip, s, " "); for (i in s) skipped[s[i]] = 1
    tail = 0; head = 0
    split(roots, r, " "); for (i in r) queue[tail++] = r[i]
    while (head < tail) {
      p = queue[head++]
      if (p in seen) continue
      seen[p] = 1
      n = split(deps[p], items, /,/)
      for (i = 1; i <= n; i++) {
        chosen = ""
        m = split(items[i], alternatives, /\|/)
        for (j = 1; j <= m && chosen == ""; j++) {
          split(alternatives[j], words, " "); name = words[1]; sub(/:.*/, "", name)
          if (name in installed) chosen = name
          else if (name in provider) chosen = provider[name]
        }
        if (chosen != "" && !(chosen in skipped)) queue[tail++] = chosen
      }
    }
    for (p in seen) if (p in installed) print p
  }' /var/lib/dpkg/status | sort)
for root in jupyterhub python3-notebook python3-ipykernel dash; do
  grep -qx "$root" <<<"$packages" || { log "Debian package $root is not installed (scripts/test-env.sh installs it)"; exit 1; }
done

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/berth-singleuser.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
# Debian's merged /usr: packages still name /bin and /lib, which land in /usr through these links.
mkdir -p "$rootfs"/{etc,tmp,home/jovyan,usr/bin,usr/sbin,usr/lib,usr/lib64}
for dir in bin sbin lib lib64; do ln -s "usr/$dir" "$rootfs/$dir"; done
chmod 1777 "$rootfs/tmp"

# Every file, link and directory the packages installed, without documentation, and the byte code Debian
# compiled for their Python modules at install time (so a server starts without compiling, in an image
# whose modules its user cannot write). tar takes the list as it is: a directory that is a link here (/lib)
# is the same link in the image; a path the list names that is not here (a .pyc never compiled, a file
# dpkg was told not to install) is skipped, and the check at the end catches an image that does not run.
cache_tag=$(/usr/bin/python3 -c 'import sys; print(sys.implementation.cache_tag)')
files=$rootfs.files
trap 'rm -rf "$rootfs" "$files"' EXIT
for package in $packages; do
  list=/var/lib/dpkg/info/$package.list
  [ -f "$list" ] || list=$(ls /var/lib/dpkg/info/"$package":*.list 2>/dev/null | head -n 1)
  [ -n "$list" ] && [ -f "$list" ] && cat "$list"
done | grep -vE '^/\.$|^/usr/share/(doc|man|info|lintian|locale|bug)(/|$)' \
  | sed -E "p; s#^(.*)/([^/]*)\\.py\$#\\1/__pycache__/\\2.$cache_tag.pyc#; t; d" \
  | sed 's#^/##' | sort -u >"$files"
tar -C / --no-recursion --ignore-failed-read -cf - -T "$files" 2>/dev/null | tar -C "$rootfs" --keep-directory-symlink -xf -
# dash installs /bin/sh from its maintainer script, which nothing runs here.
[ -e "$rootfs/usr/bin/sh" ] || ln -s dash "$rootfs/usr/bin/sh"
ldconfig -r "$rootfs"

printf 'root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nusers:x:100:jovyan\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chown 1000:100 "$rootfs/home/jovyan"

count=$(wc -w <<<"$packages")
tar -C "$rootfs" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/jovyan LANG=C.UTF-8 SHELL=/bin/sh' \
  -c 'USER 1000:100' -c 'WORKDIR /home/jovyan' -c 'EXPOSE 8888' \
  -c 'CMD ["jupyterhub-singleuser"]' \
  -c "LABEL org.opencontainers.image.description=\"JupyterHub $version single-user server from $count Debian packages, made by berth's scripts/singleuser-image.sh\"" \
  - "$image" >/dev/null
# A file the server needs that did not make it in shows here, not as a spawn that never answers.
if ! check=$(docker run --rm --network none --entrypoint python3 "$image" -c 'import jupyterhub.singleuser, notebook.notebookapp, ipykernel; print(jupyterhub.__version__)' 2>&1); then
  docker image rm "$image" >/dev/null 2>&1 || true
  log "the assembled image cannot load the single-user server:"; printf '%s\n' "$check" >&2; exit 1
fi
log "made $image ($count packages, $(du -sh "$rootfs" | cut -f1)) in $SECONDS s"
echo "$image"
