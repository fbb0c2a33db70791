#!/usr/bin/env bash
# Installs what the browser end-to-end test (tests/browser.rs) needs:
#   - Debian's Chromium (/usr/bin/chromium); never a browser downloaded by playwright;
#   - player/'s npm packages (playwright-core, hls.js, axe-core) exactly as
#     player/package-lock.json pins them; npm's postinstall copies hls.min.js into
#     player/vendor/ (axe-core stays in node_modules: the tests inject it, pages never load it).
# Idempotent: does nothing when both are present and the lock file has not changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian's Chromium (/usr/bin/chromium).
bash deploy/apt-ensure.sh install-browser-deps chromium

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-browser-deps: node and npm are required (Node.js >= 20; playwright-core needs it)" >&2
  exit 1
fi

# npm writes node_modules/.package-lock.json on every install: older than the lock file
# means player/package-lock.json changed since the last `npm ci`.
if [ ! -f player/node_modules/.package-lock.json ] \
   || [ player/package-lock.json -nt player/node_modules/.package-lock.json ]; then
  echo "install-browser-deps: npm ci in player/"
  (cd player && npm ci --no-audit --no-fund)
elif [ ! -f player/vendor/hls.min.js ]; then
  (cd player && npm run --silent vendor)
fi
echo "install-browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium ?), node $(node --version), player/node_modules ready"
