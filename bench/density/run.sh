#!/usr/bin/env bash
# Host memory per loaded program, user space and kernel: bench/density/run.sh [PROGRAMS]
# (default 200). Starts one `kvmjs serve` per configuration with PROGRAMS copies of
# js/hello.js (QuickJS), sends each program one request, waits until every VM of every
# pool runs, and divides what the machine lost by the program count:
#   - Pss of the kvmjs process (/proc/PID/smaps_rollup), what the density test asserts;
#   - /proc/meminfo deltas: AnonPages and Shmem (user space, including shared-memory
#     pages no process maps), and the kernel's own memory for the VMs (VmallocUsed:
#     KVM's per-memslot page tracking; SUnreclaim, PageTables, SecPageTables (KVM's
#     shadow/EPT tables), KernelStack), and MemFree itself.
# Configurations: concurrency 1 and 4 (the per-additional-VM figure is their difference
# over 3), each at the default address_space (256 MB) and at 64 MB. The machine's other
# activity moves the /proc/meminfo figures: run it on an idle host. KVMJS=path uses a
# given kvmjs binary. Writes bench/density/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200}
dir=bench/density
mkdir -p "$dir/out"
if [ -n "${KVMJS:-}" ]; then
  bin=$KVMJS
else
  cargo build --release -p kvmjs -q
  bin=target/x86_64-unknown-linux-gnu/release/kvmjs
fi
port=18390
rows=()
for as in 256 64; do
  for c in 1 4; do
    cfg=$dir/out/tinykvm-$as-$c.json
    python3 - "$n" "$c" "$as" "$PWD/js/hello.js" > "$cfg" <<'PY'
import json, sys
n, c, a, app = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print(json.dumps({f"p{i}": {"filename": app, "concurrency": c, "start_vms": c,
                            "prefix": f"/p{i}", "address_space": a, "max_memory": a}
                  for i in range(n)}))
PY
    "$bin" serve --config "$cfg" --listen 127.0.0.1:$port > "$dir/out/serve-$as-$c.log" 2>&1 &
    pid=$!
    for _ in $(seq 500); do curl -sf -o /dev/null http://127.0.0.1:$port/metrics && break; sleep 0.02; done
    sleep 1
    cp /proc/meminfo "$dir/out/meminfo-$as-$c-before"
    for i in $(seq 0 $((n - 1))); do
      code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/p$i/)
      [ "$code" = 200 ] || { echo "p$i answered $code (see $dir/out/serve-$as-$c.log)" >&2; kill $pid; exit 1; }
    done
    # Every pool starts all its VMs at once; wait until their threads all exist.
    want=$((n * c))
    for _ in $(seq 600); do
      have=$(cat /proc/$pid/task/*/comm 2>/dev/null | grep -c -- '-vm' || true)
      [ "$have" -ge "$want" ] && break
      sleep 0.05
    done
    [ "$have" -ge "$want" ] || { echo "only $have of $want VMs started" >&2; kill $pid; exit 1; }
    sleep 2
    cp /proc/meminfo "$dir/out/meminfo-$as-$c-after"
    pss=$(awk '/^Pss:/ {print $2}' /proc/$pid/smaps_rollup)
    kill $pid; wait $pid 2>/dev/null || true
    rows+=("$as $c $pss")
  done
done
python3 "$dir/report.py" "$n" "$dir/out" "${rows[@]}" | tee "$dir/results.md"
