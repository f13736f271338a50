#!/usr/bin/env bash
# Builds the kvmjs VMOD for varnishd (release): target/vmod/libvmod_kvmjs.so, with the
# QuickJS guest beside it (name it in KVMJS_GUEST or kvmjs.library()). Start varnishd with
#   -p vmod_path=$PWD/target/vmod  (or import kvmjs from "$PWD/target/vmod/libvmod_kvmjs.so")
set -euo pipefail
cd "$(dirname "$0")/../.."
.ci/install-deps
cargo build --release -q -p kvmjs-vmod -p kvmjs-guest
rel=target/x86_64-unknown-linux-gnu/release
crates/vmod/link.sh "$rel/libkvmjs_vmod.a" target/vmod/libvmod_kvmjs.so
cp "$rel/kvmjs-guest" target/vmod/kvmjs-guest.tmp
mv target/vmod/kvmjs-guest.tmp target/vmod/kvmjs-guest
echo "target/vmod/libvmod_kvmjs.so ($(du -h target/vmod/libvmod_kvmjs.so | cut -f1)) and target/vmod/kvmjs-guest"
