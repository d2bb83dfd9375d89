#!/usr/bin/env bash
# Migration of what a container holds beyond its processes, between two "hosts" (engines with
# their own --root/--runroot in network namespaces of their own): the contents of its tmpfs
# mounts (the spec's /dev/shm and a tmpfs the application mounted itself, with its options) go
# with the archive; the archive's stats-dump carries the engine's dump figures; import --keep
# keeps the unpacked checkpoint with the logs and statistics; --ignore-volumes on export (no
# volume in the archive) and on import (the volume is created empty) leaves the volume's
# contents behind.
set -euo pipefail

source "$(dirname "$0")/lib/migration_hosts.bash"
migration_hosts_setup cryo-migration-state-test ms ms 231 232

id=$(cryoA run -d --name st -v stvol:/data busybox sh -c \
  'echo hello-shm >/dev/shm/data; mkdir /dev/shm/dir; echo nested >/dev/shm/dir/file; echo vol >/data/v; exec sleep 100000')
wait_until cryoA exec st test -s /dev/shm/dir/file
wait_until cryoA exec st test -s /data/v
init=$(cryoA inspect -f '{{.State.Pid}}' st)
# A tmpfs mounted inside the container after it started, as its application would (nsenter: the
# container has no CAP_SYS_ADMIN of its own).
nsenter -t "$init" -m sh -c 'mkdir -p /scratch && mount -t tmpfs -o size=2m,mode=750 scratch /scratch && echo app-data >/scratch/f'

cryoA container checkpoint -e "$tmp/st.tar.zst" st >/dev/null
tar --zstd -tf "$tmp/st.tar.zst" >"$tmp/list"
expect_eq "$(grep -c '^checkpoint/tmpfs-[0-9]*\.tar$' "$tmp/list")" "2" "tmpfs contents in the archive"

# stats-dump: the engine's figures of this dump.
tar --zstd -xOf "$tmp/st.tar.zst" stats-dump >"$tmp/stats-dump"
python3 - "$tmp/stats-dump" <<'PY' || fail "stats-dump: $(cat "$tmp/stats-dump")"
import json, sys
s = json.load(open(sys.argv[1]))
for key in ("freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned",
            "pages_written", "images", "image_bytes"):
    assert isinstance(s.get(key), int), key
assert s["pages_scanned"] > 0 and 0 < s["pages_written"] <= s["pages_scanned"], s
assert s["frozen_time"] > 0 and s["memdump_time"] > 0 and s["images"] > 0, s
assert s["image_bytes"] >= 4096 * s["pages_written"], s
assert s["leave_running"] is False, s
PY

# --- import with --keep on B: tmpfs contents and mounts are back, the checkpoint is kept ---
expect_eq "$(cryoB container restore -i "$tmp/st.tar.zst" --keep)" "$id" "restore -i --keep"
expect_eq "$(cryoB exec st cat /dev/shm/data)" "hello-shm" "/dev/shm file on B"
expect_eq "$(cryoB exec st cat /dev/shm/dir/file)" "nested" "/dev/shm subdirectory on B"
expect_eq "$(cryoB exec st cat /scratch/f)" "app-data" "app tmpfs file on B"
expect_eq "$(cryoB exec st stat -c %a /scratch)" "750" "app tmpfs mode on B"
cryoB exec st grep -q ' /scratch .* - tmpfs scratch .*size=2048k' /proc/self/mountinfo ||
  fail "app tmpfs options on B: $(cryoB exec st grep scratch /proc/self/mountinfo)"
expect_eq "$(cryoB exec st cat /data/v)" "vol" "the volume came along"
kept=$tmp/B/root/containers/$id/checkpoint
for f in inventory.img container.json tmpfs-0.tar restore.log stats-restore stats-dump; do
  [[ -s $kept/$f ]] || fail "--keep: $f missing from the kept checkpoint: $(ls "$kept" 2>&1 | tr '\n' ' ')"
done
cmp -s "$kept/stats-dump" "$tmp/stats-dump" || fail "--keep: stats-dump differs from the archive's"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["pages_restored"] > 0, s' \
  "$kept/stats-restore" || fail "stats-restore: $(cat "$kept/stats-restore")"

# Without -i, the import-only options are refused (Podman's rule).
expect_fail "can only be used with --import" cryoB container restore --ignore-volumes st
expect_fail "can only be used with --export" cryoB container checkpoint --ignore-volumes st

# --- export --ignore-volumes from B: the archive has no volume; the import creates it empty ---
cryoB container checkpoint -e "$tmp/novol.tar" -c none --ignore-volumes st >/dev/null
tar -tf "$tmp/novol.tar" >"$tmp/list"
if grep -q '^volumes/' "$tmp/list"; then fail "--ignore-volumes exported a volume"; fi
cryoA rm st >/dev/null
cryoA volume rm stvol >/dev/null
expect_eq "$(cryoA container restore -i "$tmp/novol.tar")" "$id" "import of an archive without volumes"
expect_eq "$(cryoA volume ls -q)" "stvol" "volume created on A"
if cryoA exec st test -e /data/v; then fail "export --ignore-volumes: the volume's file came along"; fi
# tmpfs contents survive a second move (B to A), without --keep: no checkpoint left.
expect_eq "$(cryoA exec st cat /dev/shm/dir/file)" "nested" "/dev/shm subdirectory back on A"
expect_eq "$(cryoA exec st cat /scratch/f)" "app-data" "app tmpfs file back on A"
[[ ! -e $tmp/A/root/containers/$id/checkpoint ]] || fail "checkpoint kept without --keep"

# --- import --ignore-volumes: the archive has the volume, the import leaves it out ---
cryoA exec st sh -c 'echo again >/data/v2'
cryoA container checkpoint -e "$tmp/withvol.tar.zst" st >/dev/null
tar --zstd -tf "$tmp/withvol.tar.zst" | grep -x 'volumes/stvol.tar' >/dev/null || fail "volume not exported"
cryoB rm st >/dev/null
cryoB volume rm stvol >/dev/null
expect_eq "$(cryoB container restore -i "$tmp/withvol.tar.zst" --ignore-volumes)" "$id" "restore -i --ignore-volumes"
expect_eq "$(cryoB volume ls -q)" "stvol" "volume created on B"
if cryoB exec st test -e /data/v2; then fail "import --ignore-volumes: the volume's file came along"; fi
expect_eq "$(cryoB exec st cat /dev/shm/data)" "hello-shm" "/dev/shm file after the third move"
cryoB rm -f -t 0 st >/dev/null

[[ -z $(monitor_pids) ]] || fail "processes left: $(monitor_pids)"
echo PASS
