#!/usr/bin/env bash
# Stages the system files of the kvmjs images from this machine (the Containerfile copies
# a staged root to /). Usage: tests/container-root.sh [varnish]
#
# Default, target/container-root/ for the kvmjs image: what the deno engine's VMs read.
#   - the deno CLI (.deno/bin/deno, from .ci/install-deps) as /kvmjs/.deno/bin/deno, where
#     kvmjs looks next to its config (/kvmjs/tinykvm.json);
#   - deno's dynamic loader and shared libraries, at the paths `ldd` resolves them to here
#     (kvmjs lets a deno VM read /lib, /lib64, /usr/lib, /usr/lib64: engine.rs
#     SYSTEM_LIB_PATHS), and /etc/ld.so.cache, which the loader reads first;
#   - /tmp (mode 1777): kvmjs writes the deno adapter to $TMPDIR/kvmjs-<uid>/.
# kvmjs and the QuickJS guest are static and need none of it.
#
# `varnish`, target/container-varnish-root/ for the image's `varnish` stage: varnishd with
# the kvmjs VMOD (crates/vmod/build.sh) serving /kvmjs/tinykvm.json. On top of deno (the
# config names a deno program, and loading it finds the CLI), that is:
#   - from the varnish package: varnishd, varnishadm, varnishlog and the bundled VMODs;
#   - the C toolchain varnishd runs at every VCL load (its cc_command: the gcc driver,
#     cc1, as, collect2, ld, the crt objects and link libraries), asked of gcc itself;
#   - the headers the production VCL's C includes (`varnishd -C` on vcl/kvmjs-vmod.vcl,
#     then `gcc -M` on its #include lines), not all of libc6-dev;
#   - /bin/sh and rm, which varnishd runs (`sh -c "exec gcc ..."`, `rm -rf vmod_cache`);
#   - catatonit (static), the entrypoint's init: it forwards SIGTERM to varnishd and
#     reaps the compiler's processes, so `podman stop` needs no --init;
#   - the shared libraries `ldd` lists for every one of those programs and the VMOD.
# This root mirrors this machine's merged /usr (/bin, /lib, ... as symlinks into /usr)
# and puts each file in its real directory: the linker finds libc.so.6 both as
# /lib/x86_64-linux-gnu/libc.so.6 (libc.so's script) and under /usr/lib (gcc's -L paths).
set -euo pipefail
cd "$(dirname "$0")/.."
deno=.deno/bin/deno
[ -x "$deno" ] || { echo "$deno is missing: run .ci/install-deps" >&2; exit 1; }

# The loader and shared libraries of ELF file $1, one path a line (none for a static
# file). `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader
# as "/lib64/ld-linux-x86-64.so.2 (0x...)", the vDSO with no path.
needed() {
  local out
  if ! out=$(ldd "$1" 2>&1); then
    grep -q 'not a dynamic executable' <<<"$out" && return 0
    echo "ldd $1 failed: $out" >&2
    return 1
  fi
  local libs
  libs=$(awk '
    /=> not found/ { print "MISSING " $1; next }
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }' <<<"$out")
  if grep -q '^MISSING' <<<"$libs"; then
    echo "$1 needs libraries this machine lacks: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')" >&2
    return 1
  fi
  printf '%s\n' "$libs"
}

if [ "${1:-}" != varnish ]; then
  root=target/container-root
  rm -rf "$root"
  mkdir -p "$root/kvmjs/.deno/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp -L "$deno" "$root/kvmjs/.deno/bin/deno"
  cp -L /etc/ld.so.cache "$root/etc/ld.so.cache"
  libs=$(needed "$deno")
  [ -n "$libs" ] || { echo "ldd found no loader for $deno (is it dynamically linked?)" >&2; exit 1; }
  # Each file is copied (symlinks resolved) to the very path the loader asks for, so the
  # image works whether or not this machine's /lib is a symlink to /usr/lib.
  for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  du -sb "$root" | awk '{ printf "container root: %d bytes (deno, /etc/ld.so.cache, the loader and %d libraries)\n", $1, n - 1 }' n="$(wc -w <<<"$libs" | tr -d ' ')"
  exit 0
fi

vmod=target/vmod/libvmod_kvmjs.so
[ -f "$vmod" ] || { echo "$vmod is missing: run crates/vmod/build.sh" >&2; exit 1; }
root=target/container-varnish-root
rm -rf "$root"
mkdir -p "$root/etc" "$root/tmp" "$root/kvmjs/.deno/bin"
chmod 1777 "$root/tmp"
for d in bin sbin lib lib64; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
done
cp -L /etc/ld.so.cache "$root/etc/ld.so.cache"
cp -L "$deno" "$root/kvmjs/.deno/bin/deno"

declare -A staged=()
elves=()
# stage PATH [elf]: copies PATH (symlinks resolved) into the root, in its real directory
# under its own name (x86_64-linux-gnu-gcc stays that, not gcc-12); `elf` queues it for ldd.
stage() {
  [ -e "$1" ] || { echo "$1 is missing on this machine" >&2; exit 1; }
  local dir to
  dir=$(readlink -f "$(dirname "$1")")
  to="$dir/$(basename "$1")"
  [ -z "${staged[$to]:-}" ] || return 0
  staged[$to]=1
  mkdir -p "$root$dir"
  cp -L "$1" "$root$to"
  if [ "${2:-}" = elf ]; then elves+=("$1"); fi
}

# varnishd and the tools that read its shared memory (podman exec NAME varnishlog -n
# /tmp/varnish), and the VMODs of the package (std and directors among them). Not the
# test-only vmod_debug and vmod_vtc.
pkg=$(dpkg -L varnish) || { echo "the varnish package is not installed" >&2; exit 1; }
for f in $(grep -E '^/usr/(sbin/varnishd|bin/varnishadm|bin/varnishlog|lib/.*/varnish/vmods/libvmod_[a-z0-9_]+\.so)$' <<<"$pkg" | grep -v -E 'vmod_(debug|vtc)\.so$'); do
  stage "$f" elf
done
[ -n "${staged[/usr/sbin/varnishd]:-}" ] || { echo "the varnish package has no /usr/sbin/varnishd" >&2; exit 1; }
vmods=$(dirname "$(grep -m1 '/libvmod_std\.so$' <<<"$pkg")")

# The compiler varnishd was built to run (cc_command "exec x86_64-linux-gnu-gcc ...").
cc=$(grep -aoE -m1 'exec [A-Za-z0-9_.-]*gcc[A-Za-z0-9_.-]*' /usr/sbin/varnishd | head -1 | cut -d' ' -f2)
[ -n "$cc" ] || { echo "no gcc command found in /usr/sbin/varnishd" >&2; exit 1; }
ccpath=$(command -v "$cc") || { echo "$cc (varnishd's compiler) is not installed" >&2; exit 1; }
stage "$ccpath" elf
for p in cc1 collect2 lto-wrapper as ld; do
  f=$("$cc" -print-prog-name="$p")
  case $f in /*) ;; *) f=$(command -v "$f") ;; esac
  stage "$f" elf
done
stage "$("$cc" -print-file-name=liblto_plugin.so)" elf
for f in crti.o crtn.o crtbeginS.o crtendS.o libgcc.a libgcc_s.so libgcc_s.so.1 libc.so \
  libc_nonshared.a libpthread.a; do
  p=$("$cc" -print-file-name="$f")
  [ "$p" != "$f" ] || { echo "$cc finds no $f" >&2; exit 1; }
  stage "$p"
done
stage "$(command -v sh)" elf
stage "$(command -v rm)" elf
init=$(command -v catatonit) || { echo "catatonit is missing (apt-get install catatonit)" >&2; exit 1; }
stage "$init" elf

# The headers: the #include lines of the C that varnishd makes of the production VCL.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! varnishd -C -j none -n "$work/varnish" -p "vmod_path=$PWD/target/vmod:$vmods" \
  -f "$PWD/vcl/kvmjs-vmod.vcl" >"$work/vgc.out" 2>&1; then
  echo "varnishd -C vcl/kvmjs-vmod.vcl failed:" >&2
  cat "$work/vgc.out" >&2
  exit 1
fi
grep -oE '^#include[[:space:]]*<[^>]+>' "$work/vgc.out" | sort -u >"$work/includes.c"
[ -s "$work/includes.c" ] || { echo "varnishd -C printed no #include lines" >&2; exit 1; }
headers=$("$cc" -M -x c "$work/includes.c" | tr -d '\\' | tr ' ' '\n' | grep '^/' | grep -v "^$work/")
for h in $headers; do stage "$h"; done

# The VMOD and deno themselves are copied elsewhere (the Containerfile; /kvmjs/.deno above).
elves+=("$vmod" "$deno")
for e in "${elves[@]}"; do
  libs=$(needed "$e")
  for lib in $libs; do stage "$lib"; done
done
du -sb "$root" | awk '{ printf "container varnish root: %d bytes (deno, varnishd, gcc and %d files in all)\n", $1, n }' n="${#staged[@]}"
