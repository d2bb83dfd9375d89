#!/usr/bin/env bash
# The buffer pool (common/buffer_pool.h) with the real binary: an export, an import and an in-place
# checkpoint take their buffers from the pool's files (CRYO_BUFFER_POOL=DIR, here a huge-page tmpfs
# of the test's own), the container's memory went through them, and none of it is left there after
# each command: every pool file is all zeros. The restored container goes on counting.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-buffer-pool-test
import_busybox

mkdir "$tmp/pool"
mount -t tmpfs -o huge=always,size=256m,mode=0700 cryo-test-pool "$tmp/pool"
export CRYO_BUFFER_POOL=$tmp/pool

# Every pool file exists, holds something, and is all zeros.
expect_pool_used_and_zeroed() {
  local what=$1 file size count=0
  for file in "$tmp/pool"/buffer-*; do
    [[ -f $file ]] || continue
    size=$(stat -c %s "$file")
    ((size > 0)) || fail "$what: $file is empty"
    cmp -s -n "$size" "$file" /dev/zero || fail "$what: $file keeps data: $(tr -d '\0' <"$file" | head -c 80)"
    count=$((count + 1))
  done
  ((count > 0)) || fail "$what: no pool file: the pool was not used"
}

# A counter and a few MiB of a marker in the shell's memory.
id=$(cryo run -d busybox sh -c \
  'm=$(yes CRYO-POOL-MARK | head -c 4000000); i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done')
wait_until cryo exec "$id" test -s /tmp/n

cryo container checkpoint -e "$tmp/c.tar.zst" "$id" >/dev/null
expect_pool_used_and_zeroed "after the export"
tar --zstd -xOf "$tmp/c.tar.zst" --wildcards 'checkpoint/pages-*.img' >"$tmp/pages"
grep -q CRYO-POOL-MARK "$tmp/pages" || fail "the marker is not in the exported pages"

cryo rm -f "$id" >/dev/null
rm -f "$tmp/pool"/buffer-*
cryo container restore -i "$tmp/c.tar.zst" >/dev/null
expect_pool_used_and_zeroed "after the import"
before=$(cryo exec "$id" cat /tmp/n)

rm -f "$tmp/pool"/buffer-*
expect_eq "$(cryo container checkpoint "$id")" "$id" "in-place checkpoint"
expect_pool_used_and_zeroed "after the in-place checkpoint"
expect_eq "$(cryo container restore "$id")" "$id" "in-place restore"
sleep 0.3
after=$(cryo exec "$id" cat /tmp/n)
((after > before)) || fail "the counter did not go on: $before then $after"

cryo rm -f -t 0 "$id" >/dev/null
umount "$tmp/pool"
echo PASS
