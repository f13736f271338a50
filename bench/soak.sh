#!/usr/bin/env bash
# Soak: kvmjs serve (tinykvm.json) under 64 connections for N seconds (default 600),
# rotating hello/output/echo. Fails unless: 0 errors, RSS within ±10% of the value after
# warm-up, and no fd growth. Usage: bench/soak.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-600}
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --workspace -q
js/renderer/build.sh >/dev/null
R=target/x86_64-unknown-linux-gnu/release
port=18501
"$R/kvmjs" serve --config tinykvm.json --listen 127.0.0.1:$port 2>/tmp/kvmjs-soak.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
url=http://127.0.0.1:$port
rss() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
fds() { ls /proc/$pid/fd | wc -l; }
# Warm-up: boot the programs, fill the pools, let allocators settle.
wrk -t2 -c64 -d5s -s bench/soak.lua "$url" >/dev/null
sleep 1
rss0=$(rss); fd0=$(fds)
wrk -t2 -c64 -d${dur}s --timeout 10s -s bench/soak.lua "$url" > /tmp/kvmjs-soak.wrk &
wrk_pid=$!
peak=$rss0
while kill -0 $wrk_pid 2>/dev/null; do
  sleep $(( dur > 60 ? 10 : 2 ))
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
done
wait $wrk_pid
sleep 1
rss1=$(rss); fd1=$(fds)
line=$(sed -n 's/^JSON //p' /tmp/kvmjs-soak.wrk)
python3 - "$line" "$dur" "$rss0" "$rss1" "$peak" "$fd0" "$fd1" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
dur, rss0, rss1, peak, fd0, fd1 = (int(x) for x in sys.argv[2:])
drift = (rss1 - rss0) / rss0 * 100
print(f"soak: {dur} s, 64 connections, {r['requests']} requests ({r['requests']/dur:.0f}/s), "
      f"{r['errors']} errors ({r['non2xx']} non-2xx), p50 {r['p50_us']} µs, p99 {r['p99_us']} µs, "
      f"RSS {rss0} -> {rss1} kB ({drift:+.1f}%, peak {peak} kB), fds {fd0} -> {fd1}")
bad = []
if r["requests"] == 0 or r["errors"] > 0: bad.append("errors")
if abs(drift) > 10: bad.append("RSS drift over 10%")
if fd1 > fd0: bad.append("fd growth")
sys.exit(f"soak failed: {', '.join(bad)}" if bad else 0)
PY
