#!/bin/bash
# `cryo cr check` and `cryo cr show` on real images; `cryo cr restore` without -d waits for the
# restored root and exits with its exit status.
set -u
CRYO="${CRYO:?}"
BUILD="${CRYO_BUILD_DIR:?}"
source "$(dirname "$0")/lib/cr_tree_common.bash"
cr_test_setup ckpt-cli

out=$("$CRYO" cr check) || fail "cr check failed: $out"
echo "$out" | grep -q "^ptrace seize/interrupt *yes" || fail "cr check output: $out"
echo "$out" | grep -q "^xstate *yes *XCR0 0x" || fail "cr check output: $out"

dump_started "$BUILD/tests/zdtm/bin/counter"

show=$("$CRYO" cr show "$work/img") || fail "cr show"
echo "$show" | grep -q "== inventory.img" || fail "show lacks the inventory"
echo "$show" | grep -q "\"root_pid\": $pid" || fail "show lacks the root pid"
echo "$show" | grep -q "== pages-$pid.img" || fail "show lacks the page image"
echo "$show" | grep -q "raw page data" || fail "show does not describe page data"
echo "$show" | grep -q '"fs_base"' || fail "show lacks the registers"

# Attached restore: cryo waits and reports the tree's exit status (the counter exits 0 on PASS).
"$CRYO" cr restore -D "$work/img" &
restorer=$!
pids+=("$restorer")
until [ -e /proc/"$pid" ]; do sleep 0.02; done
sleep 0.2
kill -TERM "$pid"
wait "$restorer"
status=$?
[ "$status" = 0 ] || fail "attached restore exited with $status"
grep -q PASS "$work/out" || fail "the restored process did not pass"
echo PASS
