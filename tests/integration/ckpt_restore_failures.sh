#!/bin/bash
# Restore failure paths of `cryo cr restore`:
#  - a second restore of the same images while the first tree runs fails with "pid N is in use"
#    and leaves no process behind;
#  - a corrupted page image (one flipped byte) is refused before the restored tree runs, and no
#    process of it is left;
#  - the images restore fine after the original was killed, and again after the failures.
set -u
CRYO="${CRYO:?CRYO must name the cryo binary}"
BUILD="${CRYO_BUILD_DIR:?}"
program="$BUILD/tests/zdtm/bin/counter"
source "$(dirname "$0")/lib/cr_tree_common.bash"
cr_test_setup ckpt-failures

dump_started "$program"
[ -e /proc/"$pid" ] && fail "the dumped process is still there"

# Restore after the original was killed.
"$CRYO" cr restore -D "$work/img" -d --pidfile "$work/pidfile" || fail "restore after kill"
[ "$(cat "$work/pidfile")" = "$pid" ] || fail "restored with another pid"

# A second restore of the same images while the first runs.
out=$("$CRYO" cr restore -D "$work/img" 2>&1) && fail "second restore succeeded"
echo "$out" | grep -q "pid $pid is in use" || fail "unclear error for a pid in use: $out"
kill -0 "$pid" || fail "the first restored tree was hurt by the second restore"
grep -q FAIL "$work/out" && fail "the first restored tree failed"

# Corrupt one byte of the page image: refused (checksum) before the tree runs; nothing is left.
kill -TERM "$pid"
while [ -e /proc/"$pid" ]; do sleep 0.02; done
grep -q PASS "$work/out" || fail "the restored process did not pass"
cp -a "$work/img" "$work/bad"
pages=$(ls "$work/bad"/pages-*.img)
size=$(stat -c %s "$pages")
offset=$((size / 2))
byte=$(dd if="$pages" bs=1 skip="$offset" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(( (byte + 1) % 256 )))" | dd of="$pages" bs=1 seek="$offset" conv=notrunc 2>/dev/null
out=$("$CRYO" cr restore -D "$work/bad" 2>&1) && fail "restore of a corrupted image succeeded"
echo "$out" | grep -qi "checksum" || fail "unclear error for a corrupted image: $out"
[ -e /proc/"$pid" ] && fail "a corrupted restore created pid $pid"

# The intact images still restore (the failures touched nothing).
: >"$work/out"
"$CRYO" cr restore -D "$work/img" -d || fail "restore after the failures"
kill -TERM "$pid"
while [ -e /proc/"$pid" ] && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ]; do sleep 0.02; done
sleep 0.05
grep -q PASS "$work/out" || fail "the last restored process did not pass"
echo PASS
