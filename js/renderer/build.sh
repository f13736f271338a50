#!/usr/bin/env bash
# Builds ../renderer.js (React SSR example for kvmjs) from entry.jsx.
#
# The output is one self-contained ES module (React bundled in, no bare
# imports), which is what kvmjs can load. Safe to run repeatedly: npm ci only
# runs when node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# npm ci writes node_modules/.package-lock.json, so it doubles as a stamp.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # --ignore-scripts: esbuild's postinstall only swaps its JS launcher for the
  # native binary; the launcher works without it.
  npm ci --no-audit --no-fund --ignore-scripts
fi

./node_modules/.bin/esbuild entry.jsx \
  --bundle \
  --format=esm \
  --platform=browser \
  --jsx=automatic \
  --define:process.env.NODE_ENV='"production"' \
  --minify \
  --log-level=warning \
  --outfile=../renderer.js

echo "renderer.js: $(wc -c < ../renderer.js) bytes"
