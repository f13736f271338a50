#!/usr/bin/env bash
# Builds the kvmjs image with podman and serves requests through it: hello and renderer on
# QuickJS, hello on the deno engine (tinykvm.json's hello-deno, booted by its first request).
# Then the Containerfile's `varnish` target, varnishd with the kvmjs VMOD: hello and
# renderer (and hello on deno) through Varnish. Settings that work on these machines
# (cgroup v1 hybrid, limited rlimits): runtime runc, lowered ulimits, --network host.
# Prints each image's size and the build and start times.
# Usage: tests/container.sh [PORT [VARNISH_PORT]] (default 18090 and PORT + 1)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-18090}
vport=${2:-$((port + 1))}
cargo build --release --workspace -q
js/renderer/build.sh >/dev/null
crates/vmod/build.sh >/dev/null
tests/container-root.sh
tests/container-root.sh varnish
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
vname=kvmjs-varnish-ci-$$
cleanup() { podman rm -f "$name" "$vname" >/dev/null 2>&1 || true; rm -rf "$conf"; }
trap cleanup EXIT
podman run -d --name "$name" --device /dev/kvm --network host localhost/kvmjs:dev --listen "127.0.0.1:$port" >/dev/null
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.05
done
t2=$(date +%s.%N)
# The container whose log a failure shows.
current=$name
fail() { echo "$1" >&2; podman logs "$current" >&2; exit 1; }
# expect_hello URL WHAT [curl args]: the body must be exactly js/hello.js's 14 bytes.
expect_hello() {
  local url=$1 what=$2
  shift 2
  curl -sf "$@" -o "$conf/body" "$url" || fail "$what: no answer"
  printf 'Hello, World!\n' | cmp -s - "$conf/body" || fail "$what answered $(od -c "$conf/body" | head -3)"
}
body=$(curl -sf "http://127.0.0.1:$port/hello/") || fail "hello: no answer"
[ "$body" = "Hello, World!" ] || fail "unexpected body: $body"
render=$(curl -sf "http://127.0.0.1:$port/renderer/" | wc -c)
[ "$render" -gt 30000 ] || fail "renderer answered $render bytes"
t3=$(date +%s.%N)
# The deno engine: the first request boots deno in a VM (loader and libraries from the
# image), warms it up and snapshots it; the body must be exactly js/hello.js's 14 bytes.
expect_hello "http://127.0.0.1:$port/hello-deno/" hello-deno --max-time 120
t4=$(date +%s.%N)
expect_hello "http://127.0.0.1:$port/hello-deno/" "hello-deno (warm)"
t5=$(date +%s.%N)
engine=$(curl -sf "http://127.0.0.1:$port/metrics" | grep -c 'kvmjs_program_info{program="hello-deno",engine="deno"}') || true
[ "$engine" = 1 ] || fail "metrics do not show hello-deno on the deno engine"
podman stop -t 10 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "container exited with $code"
size=$(podman image inspect localhost/kvmjs:dev --format '{{.Size}}')
awk -v s="$size" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" -v x="$code" 'BEGIN {
  printf "container: image %d bytes (%.1f MB), build %.2f s, start to healthy %.2f s, hello + renderer %.2f s, hello on deno: first (boot + warm-up) %.2f s, then %.3f s; exit code %s\n", s, s / 1e6, b - a, c - b, d - c, e - d, f - e, x }'

# varnishd with the kvmjs VMOD (Containerfile target `varnish`): it compiles the VCL with
# the image's gcc, loads tinykvm.json's programs in vcl_init and serves them by path.
t0=$(date +%s.%N)
podman build -q --pull=never --network=none --target varnish -f Containerfile -t localhost/kvmjs-varnish:dev . >/dev/null
t1=$(date +%s.%N)
current=$vname
podman run -d --name "$vname" --device /dev/kvm --network host localhost/kvmjs-varnish:dev -a "127.0.0.1:$vport" >/dev/null
# Up when /healthz answers 200 (routed by the VMOD, so the VCL and its vcl_init are in);
# a container that exits (a VCL or VMOD error) fails at once, with its log.
up=
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$vport/healthz")" = 200 ]; then
    up=1
    break
  fi
  [ "$(podman inspect "$vname" --format '{{.State.Running}}')" = true ] || fail "varnish container exited"
  sleep 0.1
done
[ -n "$up" ] || fail "varnish container: no 200 from /healthz on 127.0.0.1:$vport"
t2=$(date +%s.%N)
expect_hello "http://127.0.0.1:$vport/hello/" "varnish hello" -D "$conf/varnish-head"
# The VCL's mark: the answer came through vcl/kvmjs-vmod.vcl, not another listener.
grep -qi '^X-Served-By: varnish+kvmjs-vmod' "$conf/varnish-head" || fail "varnish hello: no X-Served-By from kvmjs-vmod.vcl: $(cat "$conf/varnish-head")"
render=$(curl -sf "http://127.0.0.1:$vport/renderer/" | wc -c)
[ "$render" -gt 30000 ] || fail "varnish renderer answered $render bytes"
t3=$(date +%s.%N)
# The config's deno program loads from the image's deno in varnishd's child too.
expect_hello "http://127.0.0.1:$vport/hello-deno/" "varnish hello-deno" --max-time 120
t4=$(date +%s.%N)
podman stop -t 10 "$vname" >/dev/null
t5=$(date +%s.%N)
code=$(podman inspect "$vname" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "varnish container exited with $code"
size=$(podman image inspect localhost/kvmjs-varnish:dev --format '{{.Size}}')
awk -v s="$size" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" -v x="$code" 'BEGIN {
  printf "container (varnish + VMOD): image %d bytes (%.1f MB), build %.2f s, start to healthy %.2f s, hello + renderer %.2f s, hello on deno (first) %.2f s, stop %.2f s; exit code %s\n", s, s / 1e6, b - a, c - b, d - c, e - d, f - e, x }'
