#!/usr/bin/env bash
# Sourced by the project's scripts: makes sure a Node.js that berth supports (22 or newer) is first
# on PATH. A machine with an older one gets Node 24 from the npm registry into .tools/, once.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ -x "$root/.tools/node_modules/.bin/node" ]; then export PATH="$root/.tools/node_modules/.bin:$PATH"; fi
if [ "$(node_major)" -lt 22 ]; then
  echo "[node] Node $(node --version 2>/dev/null || echo none) is too old for berth: installing Node 24 into .tools/" >&2
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$root/.tools" node@24 >/dev/null
  export PATH="$root/.tools/node_modules/.bin:$PATH"
fi
