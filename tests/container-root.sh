#!/usr/bin/env bash
# Stages the system files of the kvmjs image into target/container-root/ (the Containerfile
# copies it to /): what the deno engine's VMs read, found on this machine at build time.
#   - the deno CLI (.deno/bin/deno, from .ci/install-deps) as /kvmjs/.deno/bin/deno, where
#     kvmjs looks next to its config (/kvmjs/tinykvm.json);
#   - deno's dynamic loader and shared libraries, at the paths `ldd` resolves them to here
#     (kvmjs lets a deno VM read /lib, /lib64, /usr/lib, /usr/lib64: engine.rs
#     SYSTEM_LIB_PATHS), and /etc/ld.so.cache, which the loader reads first;
#   - /tmp (mode 1777): kvmjs writes the deno adapter to $TMPDIR/kvmjs-<uid>/.
# kvmjs and the QuickJS guest are static and need none of it. Usage: tests/container-root.sh
set -euo pipefail
cd "$(dirname "$0")/.."
deno=.deno/bin/deno
[ -x "$deno" ] || { echo "$deno is missing: run .ci/install-deps" >&2; exit 1; }
root=target/container-root
rm -rf "$root"
mkdir -p "$root/kvmjs/.deno/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
cp -L "$deno" "$root/kvmjs/.deno/bin/deno"
cp -L /etc/ld.so.cache "$root/etc/ld.so.cache"
# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader as
# "/lib64/ld-linux-x86-64.so.2 (0x...)", the vDSO with no path. Each file is copied
# (symlinks resolved) to the very path the loader asks for, so the image works whether or
# not this machine's /lib is a symlink to /usr/lib.
libs=$(ldd "$deno" | awk '
  /=> not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')
if grep -q '^MISSING' <<<"$libs"; then
  echo "deno needs libraries this machine lacks: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')" >&2
  exit 1
fi
[ -n "$libs" ] || { echo "ldd found no loader for $deno (is it dynamically linked?)" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
du -sb "$root" | awk '{ printf "container root: %d bytes (deno, /etc/ld.so.cache, the loader and %d libraries)\n", $1, n - 1 }' n="$(wc -w <<<"$libs" | tr -d ' ')"
