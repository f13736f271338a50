#!/usr/bin/env bash
# The deno reference for the WPT Web API test (tests/wpt_webapi.rs): runs the same files with
# the same harness under the pinned deno CLI and prints passed / total per area.
#   tests/wpt-webapi-deno.sh [--out deno.json] [--compare kvmjs.json] [--filter streams/]
# kvmjs.json comes from the Rust test:
#   WPT_WEBAPI_OUT=/tmp/kvmjs.json cargo test --test wpt_webapi -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
deno=${KVMJS_DENO:-.deno/bin/deno}
wpt=$(cd ../shared/conformance/wpt-webapi && pwd)
exec "$deno" run --no-config --no-lock --no-remote --allow-read --allow-write --allow-run="$(realpath "$deno")" \
  tests/js/wpt_webapi_deno.js "$wpt" "$@"
