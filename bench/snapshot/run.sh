#!/usr/bin/env bash
# Cold start of QuickJS hello, boot from scratch vs restored from a snapshot file:
# bench/snapshot/run.sh [RUNS]   (default 30 runs per mode; at least 20 for a p99)
#
# Builds the release kvmjs (only that package) unless KVMJS names a binary, uses the
# release kvmjs-guest (built with `cargo build --release -p kvmjs-guest` if missing, or
# GUEST), writes the snapshot file once with `kvmjs snapshot`, then alternates fresh
# `kvmjs serve` processes in the two modes (bench/snapshot/coldstart.py says what each
# figure measures). Writes bench/snapshot/results.md; raw figures and logs go to out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
dir=bench/snapshot
rel=target/x86_64-unknown-linux-gnu/release
if [ -n "${KVMJS:-}" ]; then
  bin=$KVMJS
else
  cargo build --release -p kvmjs -q
  bin=$rel/kvmjs
fi
guest=${GUEST:-$rel/kvmjs-guest}
[ -x "$guest" ] || cargo build --release -p kvmjs-guest -q
python3 $dir/coldstart.py "$bin" "$guest" "$dir/out" "$runs" | tee "$dir/results.md"
