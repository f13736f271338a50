#!/usr/bin/env bash
# Links the VMOD's static library (cargo build -p kvmjs-vmod) into the shared object
# varnishd imports. Only the VMOD's descriptor is exported: every other symbol (Rust's
# std, tokio, ...) stays local, so nothing in it can clash with varnishd's own, and
# the linker drops what the descriptor does not reach.
#   crates/vmod/link.sh target/<triple>/<profile>/libkvmjs_vmod.a OUT/libvmod_kvmjs.so
set -euo pipefail
lib=${1:?usage: link.sh LIBKVMJS_VMOD.a OUT.so}
out=${2:?usage: link.sh LIBKVMJS_VMOD.a OUT.so}
map=$(mktemp)
trap 'rm -f "$map"' EXIT
echo '{ global: Vmod_kvmjs_Data; local: *; };' >"$map"
mkdir -p "$(dirname "$out")"
cc -shared -o "$out.tmp" \
  -Wl,--undefined=Vmod_kvmjs_Data -Wl,--gc-sections -Wl,--version-script="$map" \
  -Wl,-z,relro,-z,now,-z,nodelete -Wl,--no-undefined-version \
  "$lib" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
mv "$out.tmp" "$out"
