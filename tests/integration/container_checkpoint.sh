#!/usr/bin/env bash
# `cryo container checkpoint` / `cryo container restore` of whole containers in place, through the
# real binary with private --root/--runroot: the tutorial flow (busybox httpd with a published port
# on a -t console answers curl before and after), a counter that continues counting in its log
# instead of restarting at 1, -R, Podman's errors for wrong states, exec/stop/rm on a restored
# container, --print-stats, and several cycles in a row; nothing left behind.
source "$(dirname "$0")/lib/container_checkpoint_common.bash"

# --- the tutorial flow: httpd on a -t console with a published port ---
port=$(free_port)
id=$(cryo run -dt -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
wait_until curl -sf "http://127.0.0.1:$port/"
before=$(curl -sf "http://127.0.0.1:$port/")
ip=$(cryo inspect -f '{{.NetworkSettings.IPAddress}}' "$id")
old_pid=$(cryo inspect -f '{{.State.Pid}}' "$id")
expect_eq "$(cryo container checkpoint "$id")" "$id" "checkpoint prints the ID"
[[ ! -d /proc/$old_pid ]] || fail "the container's init $old_pid still runs after checkpoint"
expect_eq "$(state_of "$id")" "exited" "state after checkpoint"
expect_eq "$(cryo inspect -f '{{.State.Checkpointed}}' "$id")" "true" "Checkpointed"
[[ -f $tmp/root/containers/$id/checkpoint/inventory.img ]] || fail "no checkpoint on disk"
if curl -sf --max-time 2 "http://127.0.0.1:$port/" >/dev/null 2>&1; then
  fail "httpd answers while checkpointed"
fi
expect_eq "$(cryo container restore "$id")" "$id" "restore prints the ID"
expect_eq "$(state_of "$id")" "running" "state after restore"
expect_eq "$(cryo inspect -f '{{.State.Restored}}' "$id")" "true" "Restored"
expect_eq "$(cryo inspect -f '{{.State.Checkpointed}}' "$id")" "false" "Checkpointed after restore"
expect_eq "$(cryo inspect -f '{{.NetworkSettings.IPAddress}}' "$id")" "$ip" "same IP"
new_pid=$(cryo inspect -f '{{.State.Pid}}' "$id")
expect_eq "$(tr '\0' ' ' </proc/"$new_pid"/cmdline)" "httpd -f -p 8080 -h /www " "restored init"
expect_eq "$(awk '/^NSpid/ {print $NF}' /proc/"$new_pid"/status)" "1" "restored init is PID 1"
expect_eq "$(readlink /proc/"$new_pid"/fd/1)" "/dev/pts/0" "console of the restored init"
expect_eq "$(curl -sf "http://127.0.0.1:$port/")" "$before" "httpd answers after restore"
# The container's /proc shows its own PID namespace.
expect_eq "$(cryo exec "$id" cat /proc/1/cmdline | tr '\0' ' ')" "httpd -f -p 8080 -h /www " \
  "exec sees the restored init as PID 1"

# --- wrong states: Podman's errors and exit codes ---
expect_exit 125 cryo container restore "$id"
grep -q "is running or paused, cannot restore: container state improper" "$tmp/err" ||
  fail "restore of a running container: $(cat "$tmp/err")"
cryo stop -t 0 "$id" >/dev/null
expect_exit 125 cryo container checkpoint "$id"
grep -q '"exited" is not running, cannot checkpoint: container state improper' "$tmp/err" ||
  fail "checkpoint of a stopped container: $(cat "$tmp/err")"
expect_exit 125 cryo container restore "$id"
grep -q "a complete checkpoint for this container cannot be found" "$tmp/err" ||
  fail "restore without a checkpoint: $(cat "$tmp/err")"
cryo rm "$id" >/dev/null

# --- a counter continues counting across cycles (pipes to the monitor, log continues) ---
counter=$(cryo run -d busybox sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done')
wait_until count_at_least "$counter" 5
for cycle in 1 2 3 4 5; do
  cryo container checkpoint "$counter" >/dev/null
  at_checkpoint=$(last_count "$counter")
  expect_eq "$(state_of "$counter")" "exited" "counter state after checkpoint $cycle"
  cryo container restore "$counter" >/dev/null
  expect_eq "$(state_of "$counter")" "running" "counter state after restore $cycle"
  wait_until count_at_least "$counter" $((at_checkpoint + 3))
  # Continues where it was: the numbers after the checkpoint follow on, never back to 1.
  cryo logs "$counter" | grep -E '^[0-9]+$' | awk 'NR > 1 && $1 != prev + 1 { print "gap " prev " -> " $1; exit 1 } { prev = $1 }' ||
    fail "counter log not continuous after cycle $cycle"
done

# --- -R leaves it running; --print-stats prints Podman's JSON with measured values ---
pid_before=$(cryo inspect -f '{{.State.Pid}}' "$counter")
cryo container checkpoint -R --print-stats "$counter" >"$tmp/stats.json"
python3 - "$tmp/stats.json" "$counter" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["podman_checkpoint_duration"] > 0, s
(c,) = s["container_statistics"]
assert c["Id"] == sys.argv[2], c
assert c["runtime_checkpoint_duration"] > 0, c
st = c["criu_statistics"]
assert st["pages_written"] > 0 and st["pages_scanned"] >= st["pages_written"], st
assert st["frozen_time"] > 0, st
PY
expect_eq "$(state_of "$counter")" "running" "state after checkpoint -R"
expect_eq "$(cryo inspect -f '{{.State.Pid}}' "$counter")" "$pid_before" "same init after -R"
at=$(last_count "$counter")
wait_until count_at_least "$counter" $((at + 2))

# --- restore statistics, then exec/stop/rm on the restored container ---
cryo container checkpoint "$counter" >/dev/null
cryo container restore --print-stats "$counter" >"$tmp/rstats.json"
python3 - "$tmp/rstats.json" "$counter" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["podman_restore_duration"] > 0, s
(c,) = s["container_statistics"]
assert c["Id"] == sys.argv[2], c
assert c["runtime_restore_duration"] > 0, c
st = c["criu_statistics"]
assert st["pages_restored"] > 0 and st["restore_time"] > 0 and st["forking_time"] > 0, st
PY
expect_eq "$(cryo exec "$counter" echo hello)" "hello" "exec in a restored container"
cryo stop -t 1 "$counter" >/dev/null
expect_eq "$(state_of "$counter")" "exited" "stop of a restored container"
cryo rm "$counter" >/dev/null

# --- rm of a checkpointed container ---
c2=$(cryo run -d busybox sleep 1000)
cryo container checkpoint "$c2" >/dev/null
cryo rm "$c2" >/dev/null
[[ ! -d $tmp/root/containers/$c2 ]] || fail "rm left the checkpointed container's directory"

[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
echo PASS
