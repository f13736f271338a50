#!/usr/bin/env bash
# Builds the kvmjs image with podman and serves requests through it. Settings that work on
# these machines (cgroup v1 hybrid, limited rlimits): runtime runc, lowered ulimits,
# --network host. Prints the build and start times.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-18090}
cargo build --release --workspace -q
js/renderer/build.sh >/dev/null
conf=$(mktemp -d)
cat > "$conf/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF=$conf/containers.conf
t0=$(date +%s.%N)
podman build -q --pull=never --network=none -f Containerfile -t localhost/kvmjs:dev . >/dev/null
t1=$(date +%s.%N)
name=kvmjs-ci-$$
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$conf"; }
trap cleanup EXIT
podman run -d --name "$name" --device /dev/kvm --network host localhost/kvmjs:dev --listen "127.0.0.1:$port" >/dev/null
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.05
done
t2=$(date +%s.%N)
body=$(curl -sf "http://127.0.0.1:$port/hello/")
[ "$body" = "Hello, World!" ] || { echo "unexpected body: $body" >&2; podman logs "$name" >&2; exit 1; }
render=$(curl -sf "http://127.0.0.1:$port/renderer/" | wc -c)
[ "$render" -gt 30000 ] || { echo "renderer answered $render bytes" >&2; podman logs "$name" >&2; exit 1; }
t3=$(date +%s.%N)
podman stop -t 10 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || { echo "container exited with $code" >&2; podman logs "$name" >&2; exit 1; }
size=$(podman image inspect localhost/kvmjs:dev --format '{{.Size}}')
awk -v s="$size" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$code" 'BEGIN {
  printf "container: image %d bytes, build %.2f s, start to healthy %.2f s, hello + renderer %.2f s, exit code %s\n", s, b - a, c - b, d - c, e }'
