#!/usr/bin/env bash
# libarchive, libnftables and libcrypto are loaded on first use (src/common/lazy_library.h): a
# command that does not need them (ps, inspect) does not load them; image save/load, a published
# port and image digests do, and work; a library that cannot be loaded gives a clear error
# (exit 125) naming it, and the commands that do not need it still work.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-lazy-libs-test unshare curl
import_busybox

# LD_DEBUG=files names every library the loader maps, at start and by dlopen.
loaded_by() { LD_DEBUG=files "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@" 2>&1 >/dev/null |
  grep -o 'file=lib[a-z0-9+_]*\.so[.0-9]*' | sort -u | sed 's/file=//'; }

libs=$(loaded_by ps)
for lib in libarchive libnftables libcrypto libxml2; do
  if grep -q "^$lib" <<<"$libs"; then fail "cryo ps loads $lib: $libs"; fi
done
grep -q '^libstdc++' <<<"$libs" || fail "LD_DEBUG shows no library at all: $libs"

# --- the commands that need them load them, and work ---
libs=$(loaded_by image save -o "$tmp/busybox.tar" localhost/busybox:latest)
grep -q '^libarchive' <<<"$libs" || fail "image save does not load libarchive: $libs"
# (No `tar | grep -q` under pipefail: grep's early exit would fail the pipeline.)
tar -tf "$tmp/busybox.tar" >"$tmp/listing"
grep -q manifest.json "$tmp/listing" || fail "image save wrote no image archive"
cryo image rm localhost/busybox:latest >/dev/null
cryo image load -i "$tmp/busybox.tar" >/dev/null
cryo image exists localhost/busybox:latest || fail "image load"
# The image ID is a sha256 (libcrypto).
expect_eq "$(cryo images -q --no-trunc | head -1 | cut -c1-7)" "sha256:" "image ID"

port=$(free_port)
id=$(cryo run -d -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
answered=""
for _ in $(seq 500); do
  if curl -sf -o /dev/null "http://127.0.0.1:$port/"; then answered=1; break; fi
  sleep 0.02
done
[[ -n $answered ]] || fail "published port (nftables rules) does not answer"
cryo rm -f -t 0 "$id" >/dev/null

# --- a library that cannot be loaded: an empty file over it, in a mount namespace of our own ---
archive_file=$(readlink -f "$(ldconfig -p | awk '/libarchive\.so\.13 .*x86-64/ {print $NF; exit}')")
[[ -f $archive_file ]] || fail "libarchive.so.13 not found by ldconfig"
rc=0
unshare -m bash -c "mount --bind /dev/null '$archive_file' &&
  '$cryo_bin' --root '$tmp/root' --runroot '$tmp/run' image save -o '$tmp/no.tar' localhost/busybox:latest" \
  >"$tmp/out" 2>"$tmp/err" || rc=$?
expect_eq "$rc" "125" "image save without libarchive: exit code"
grep -q "cannot load the shared library libarchive.so.13 (needed for archive_" "$tmp/err" ||
  fail "image save without libarchive: $(cat "$tmp/err")"
[[ ! -e $tmp/no.tar ]] || fail "image save without libarchive left $tmp/no.tar"
unshare -m bash -c "mount --bind /dev/null '$archive_file' &&
  '$cryo_bin' --root '$tmp/root' --runroot '$tmp/run' ps -a" >"$tmp/out" 2>"$tmp/err" ||
  fail "ps without libarchive: $(cat "$tmp/err")"
echo "PASS"
