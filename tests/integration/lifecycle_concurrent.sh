#!/usr/bin/env bash
# Concurrent commands on one store: 10 `run -d` at once all succeed with distinct names and IPs;
# two creates racing for one name: exactly one wins; 10 `rm -f` at once; then `run -d` processes
# killed (SIGKILL) at staggered moments: every state file that is left is whole JSON, `ps -a`
# works, and `rm -f -a` leaves no container, veth, netns, mount, monitor or temp file behind.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-concurrent-test
import_busybox

# --- 10 concurrent run -d ---
pids=()
for i in $(seq 10); do
  cryo run -d --name "c$i" busybox sleep 1000 >"$tmp/run-$i.out" 2>"$tmp/run-$i.err" &
  pids+=($!)
done
for i in $(seq 10); do
  wait "${pids[$((i - 1))]}" || fail "run -d c$i failed: $(cat "$tmp/run-$i.err")"
  [[ $(cat "$tmp/run-$i.out") =~ ^[0-9a-f]{64}$ ]] || fail "run -d c$i printed $(cat "$tmp/run-$i.out")"
done
expect_eq "$(cryo ps -q | wc -l)" "10" "running containers"
ips=$(for i in $(seq 10); do cryo inspect -f '{{.NetworkSettings.IPAddress}}' "c$i"; done)
expect_eq "$(sort -u <<<"$ips" | grep -c '^10\.88\.')" "10" "distinct IPs ($(tr '\n' ' ' <<<"$ips"))"
for i in $(seq 10); do
  expect_eq "$(cryo inspect -f '{{.State.Status}}' "c$i")" "running" "state of c$i"
done

# --- two creates racing for one name ---
cryo create --name same busybox true >"$tmp/a.out" 2>"$tmp/a.err" &
a=$!
cryo create --name same busybox true >"$tmp/b.out" 2>"$tmp/b.err" &
b=$!
rc_a=0 rc_b=0
wait $a || rc_a=$?
wait $b || rc_b=$?
expect_eq "$(printf '%s\n' $rc_a $rc_b | sort | tr '\n' ' ')" "0 125 " "exit codes of the racing creates"
grep -q 'the container name "same" is already in use' "$tmp/a.err" "$tmp/b.err" ||
  fail "name clash message: $(cat "$tmp/a.err" "$tmp/b.err")"
cryo rm same >/dev/null

# --- 10 concurrent rm -f ---
pids=()
for i in $(seq 10); do
  cryo rm -f -t 0 "c$i" >/dev/null 2>"$tmp/rm-$i.err" &
  pids+=($!)
done
for i in $(seq 10); do
  wait "${pids[$((i - 1))]}" || fail "rm -f c$i failed: $(cat "$tmp/rm-$i.err")"
done
[[ -z $(cryo ps -aq) ]] || fail "containers left after concurrent rm: $(cryo ps -a)"

# --- run -d processes killed mid-way ---
pids=()
for i in $(seq 8); do
  cryo run -d --name "k$i" busybox sleep 1000 >/dev/null 2>&1 &
  pids+=($!)
done
for i in $(seq 8); do
  sleep "0.0$i"
  kill -9 "${pids[$((i - 1))]}" 2>/dev/null || true
done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
for f in "$tmp"/root/containers/*/container.json; do
  [[ -e $f ]] || continue
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$f" || fail "torn state file $f"
done
cryo ps -a --format json | python3 -c 'import json, sys; json.load(sys.stdin)' || fail "ps -a --format json"
ids=$(cryo ps -aq --no-trunc)
cryo rm -f -t 0 -a >/dev/null
[[ -z $(cryo ps -aq) ]] || fail "containers left: $(cryo ps -a)"
[[ -z $(ls "$tmp/root/containers") ]] || fail "state left: $(ls "$tmp/root/containers")"
[[ -z $(ls "$tmp/run/netns" 2>/dev/null) ]] || fail "netns files left: $(ls "$tmp/run/netns")"
[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
! grep -q "$tmp/root/containers" /proc/mounts || fail "mounts left: $(grep "$tmp" /proc/mounts)"
for id in $ids; do
  ! ip link show "veth${id:0:11}" >/dev/null 2>&1 || fail "veth of $id left"
done
[[ -z $(find "$tmp/root" "$tmp/run" -name '*.tmp.*') ]] || fail "temp files left: $(find "$tmp" -name '*.tmp.*')"
echo "lifecycle_concurrent: all checks passed"
