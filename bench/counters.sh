#!/usr/bin/env bash
# Per-request counters of kvmjs itself (no HTTP): for each workload, ephemeral and
# non-ephemeral, `kvmjs run` prints mean/p50/p99 of total µs, reset µs, VM exits, dirty
# pages. Usage: bench/counters.sh [N requests, default 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
cargo build --release --workspace -q
js/renderer/build.sh >/dev/null
R=target/x86_64-unknown-linux-gnu/release
row() { # name, mode, args...
  local name=$1 mode=$2; shift 2
  local out
  out=$("$R/kvmjs" run --ephemeral "$mode" "$@" 2>/dev/null)
  local total exits dirty reset
  # Rows read "<name> <unit> mean p50 p99".
  total=$(awk '/^total µs/ {print $4" / "$5}' <<<"$out")
  reset=$(awk '/^reset µs/ {print $4}' <<<"$out")
  exits=$(awk '/^VM exits/ {print $4}' <<<"$out")
  dirty=$(awk '/^dirty pages/ {print $4}' <<<"$out")
  printf "| %-10s | %-13s | %14s | %6s | %8s | %8s |\n" "$name" "$mode" "$total" "$exits" "$dirty" "$reset"
}
echo "| workload   | ephemeral     | p50 / p99 µs   | exits  | dirty pg | reset µs |"
echo "|---|---|---|---|---|---|"
for mode in true false; do
  row echo "$mode" "$R/echo-guest" --url /hello -n "$n"
  for app in hello output renderer; do
    m=$n; [ "$app" = renderer ] && m=$(( n / 20 ))
    row "$app" "$mode" "$R/kvmjs-guest" --allow js -n "$m" -- "$PWD/js/$app.js"
  done
done
