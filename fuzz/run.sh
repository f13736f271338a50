#!/usr/bin/env bash
# Builds and runs every fuzz target for N seconds each (default 300); fails on any crash.
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1 lets the stable toolchain provide
# them (only nightly-free machines are available here). Usage: fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q
export RUSTC_BOOTSTRAP=1
for t in ${FUZZ_TARGETS:-config_parser guest_calls http_front}; do
  work=$(mktemp -d)
  cp corpus/$t/* "$work"/
  log=$(mktemp)
  if ! cargo fuzz run -O "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $t FAILED (artifacts in fuzz/artifacts/$t)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz: $t: ${runs:-0} executions in $secs s, $cov, 0 crashes"
  rm -rf "$work" "$log"
done
