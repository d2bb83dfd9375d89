#!/bin/bash
# `cryo cr dump` returns once the dumped tree has been sent SIGKILL, without waiting for the kernel
# to tear its memory down (DumpOptions::wait_for_exit); its PIDs may still be held by the exiting
# tasks when the dump returns. Checks:
#  - a restore started right after the dump (the original not reaped by us first) succeeds: restore
#    waits for PIDs held by exiting tasks, and the process comes back with its memory;
#  - the pages written with zeros are not in the page images (their sizes), and read zero after
#    restore (the program checks);
#  - a PID held by a live process (the restored tree) still fails cleanly, at once;
#  - `cr show` lists every page image.
set -u
CRYO="${CRYO:?CRYO must name the cryo binary}"
BUILD="${CRYO_BUILD_DIR:?}"
program="$BUILD/tests/zdtm/bin/memory_zero_pages"
source "$(dirname "$0")/lib/cr_tree_common.bash"
cr_test_setup ckpt-exiting-pid
fail_details() { [ -f "$work/out" ] && sed 's/^/  out: /' "$work/out"; }

setsid "$program" "$work/out" </dev/null >/dev/null 2>&1 &
pid=$!
pids+=("$pid")
until grep -q READY "$work/out" 2>/dev/null; do sleep 0.02; done
"$CRYO" cr dump -t "$pid" -D "$work/img" || fail "dump"
# No wait for the original here: restore must cope with its PID still being held while it exits.
: >"$work/out"
"$CRYO" cr restore -D "$work/img" -d --pidfile "$work/pidfile" || fail "restore right after the dump"
[ "$(cat "$work/pidfile")" = "$pid" ] || fail "restored with another pid"
{ wait "$pid"; } 2>/dev/null  # the original (our child), long gone: reaped by now or here

# 96 MiB touched, of which 32 MiB (every fourth page) + 8 MiB (a stretch) less what overlaps are
# zero: the page images hold the other pages and the rest of the process (a few MiB), not the
# zero ones.
data_bytes=$(( (96 - 24 - 6) * 1048576 ))
stored=0
for image in "$work/img"/pages-"$pid".img "$work/img"/pages-"$pid".*.img; do
  [ -e "$image" ] || continue
  stored=$((stored + $(stat -c %s "$image")))
done
[ "$stored" -ge "$data_bytes" ] || fail "page images hold $stored bytes, less than the $data_bytes of data"
[ "$stored" -lt $((data_bytes + 8 * 1048576)) ] ||
  fail "page images hold $stored bytes: zero pages were stored ($data_bytes bytes of data)"
show=$("$CRYO" cr show "$work/img") || fail "cr show"
for image in "$work/img"/pages-"$pid"*.img; do
  echo "$show" | grep -q "== $(basename "$image")" || fail "cr show lacks $(basename "$image")"
done

# A live holder of the PID: refused at once and cleanly.
out=$("$CRYO" cr restore -D "$work/img" 2>&1) && fail "a restore over a live tree succeeded"
echo "$out" | grep -q "pid $pid is in use" || fail "unclear error for a pid in use: $out"
kill -0 "$pid" || fail "the restored process was hurt by the refused restore"

kill -TERM "$pid"
until grep -qE '^(PASS|FAIL)' "$work/out" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.02
done
grep -q '^PASS' "$work/out" || fail "the restored process did not pass"
echo PASS
