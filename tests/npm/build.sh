#!/usr/bin/env bash
# Bundles the npm test apps (hono, jose; versions pinned in package.json/package-lock.json)
# into dist/*.js with esbuild, one self-contained ES module each, as a Workers user would.
# Safe to run repeatedly: npm ci only runs when node_modules is missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # --ignore-scripts: esbuild's launcher works without its postinstall step.
  npm ci --no-audit --no-fund --ignore-scripts
fi
for app in hono_app jose_app; do
  ./node_modules/.bin/esbuild "$app.js" --bundle --format=esm --platform=browser \
    --log-level=warning --outfile="dist/$app.js"
done
echo "tests/npm/dist: $(ls dist | tr '\n' ' ')"
