#!/usr/bin/env bash
# What comes back with a restored container beyond its processes: the -t console as the
# controlling terminal of the init (same session), tmpfs contents (the spec's /dev/shm and a tmpfs
# mounted inside the container after it started, with its options), a refused checkpoint for
# other mounts made inside the container; and -k/--keep: dump.log, stats-dump, restore.log,
# stats-restore in the checkpoint directory only when asked for.
source "${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib/container_checkpoint_common.bash"

# --- the -t console: controlling terminal of the restored init, same session ---
# The init says each time whether it has a controlling terminal (/dev/tty opens only then).
tty_script='i=0; while true; do i=$((i+1)); if : >/dev/tty; then t=ctty; else t=noctty; fi; echo "$i $t"; sleep 0.1; done'
console=$(cryo run -dt busybox sh -c "$tty_script")
tty_lines() { cryo logs "$console" | tr -d '\r' | grep -E '^[0-9]+ '; }
tty_count_at_least() { [[ $(tty_lines | tail -n 1 | cut -d' ' -f1) -ge $1 ]]; }
wait_until tty_count_at_least 3
# Session id in the container's PID namespace, and tty_nr against the device of fd 0.
session_and_tty() {
  local pid dev
  pid=$(pid_of "$console")
  dev=$(stat -L -c '%t %T' /proc/"$pid"/fd/0)
  read -r major minor <<<"$dev"
  echo "sid=$(awk '/^NSsid/ {print $NF}' /proc/"$pid"/status) tty_nr=$(awk '{sub(/^.*\) /, ""); print $5}' /proc/"$pid"/stat) device=$(((16#$major << 8) | (16#$minor & 255) | ((16#$minor & ~255) << 12)))"
}
before=$(session_and_tty)
[[ $before =~ ^sid=1\ tty_nr=([0-9]+)\ device=([0-9]+)$ && ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" && ${BASH_REMATCH[1]} != 0 ]] ||
  fail "console before checkpoint: $before"
for cycle in 1 2; do
  cryo container checkpoint "$console" >/dev/null
  at=$(tty_lines | tail -n 1 | cut -d' ' -f1)
  cryo container restore "$console" >/dev/null
  after=$(session_and_tty)
  [[ $after =~ ^sid=1\ tty_nr=([0-9]+)\ device=([0-9]+)$ && ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" && ${BASH_REMATCH[1]} != 0 ]] ||
    fail "console after restore $cycle: $after (before: $before)"
  wait_until tty_count_at_least $((at + 3))
  tty_lines | awk -v at="$at" '$1 > at && $2 != "ctty" { print; exit 1 }' ||
    fail "the restored shell has no controlling terminal"
done
expect_eq "$(cryo exec -t "$console" tty | tr -d '\r')" "/dev/pts/1" "exec -t in a restored container"
cryo rm -f -t 0 "$console" >/dev/null

# --- tmpfs contents: /dev/shm of the spec and a tmpfs mounted inside the container ---
counter_script='i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'
shm=$(cryo run -d busybox sh -c "echo hello-shm >/dev/shm/data; mkdir /dev/shm/dir; echo nested >/dev/shm/dir/file; $counter_script")
wait_until count_at_least "$shm" 3
init=$(pid_of "$shm")
# A mount made inside the container after it started, as its application would (nsenter: the
# container has no CAP_SYS_ADMIN of its own).
nsenter -t "$init" -m sh -c 'mkdir -p /scratch && mount -t tmpfs -o size=2m,mode=750 scratch /scratch && echo app-data >/scratch/f'
# Any other kind of mount made inside is refused before anything is frozen.
nsenter -t "$init" -m sh -c 'mkdir -p /binder && mount --bind /etc /binder'
expect_exit 125 cryo container checkpoint "$shm"
grep -q "not supported yet: the container mounted .* on /binder itself" "$tmp/err" ||
  fail "bind mount made inside: $(cat "$tmp/err")"
expect_eq "$(state_of "$shm")" "running" "state after a refused checkpoint"
expect_eq "$(pid_of "$shm")" "$init" "same init after a refused checkpoint"
nsenter -t "$init" -m umount /binder
for cycle in 1 2; do
  cryo container checkpoint "$shm" >/dev/null
  at=$(last_count "$shm")
  cryo container restore "$shm" >/dev/null
  expect_eq "$(cryo exec "$shm" cat /dev/shm/data)" "hello-shm" "/dev/shm file after cycle $cycle"
  expect_eq "$(cryo exec "$shm" cat /dev/shm/dir/file)" "nested" "/dev/shm subdirectory after cycle $cycle"
  expect_eq "$(cryo exec "$shm" cat /scratch/f)" "app-data" "app tmpfs file after cycle $cycle"
  expect_eq "$(cryo exec "$shm" stat -c %a /scratch)" "750" "app tmpfs mode after cycle $cycle"
  cryo exec "$shm" grep -q ' /scratch .* - tmpfs scratch .*size=2048k' /proc/self/mountinfo ||
    fail "app tmpfs options after cycle $cycle: $(cryo exec "$shm" grep scratch /proc/self/mountinfo)"
  wait_until count_at_least "$shm" $((at + 3))
  counter_continuous "$shm" || fail "counter restarted after cycle $cycle"
done
cryo rm -f -t 0 "$shm" >/dev/null

# --- -k/--keep: the engine's logs and statistics files ---
keep=$(cryo run -d busybox sh -c "$counter_script")
wait_until count_at_least "$keep" 3
dir=$tmp/root/containers/$keep/checkpoint
cryo container checkpoint -k "$keep" >/dev/null
grep -q "checkpoint of container $keep" "$dir/dump.log" || fail "dump.log with -k: $(cat "$dir/dump.log" 2>&1)"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["frozen_time"] > 0 and s["pages_written"] > 0, s' "$dir/stats-dump"
# Its /dev/shm is empty: saved as an empty file, not a tar (no tar library in the freeze).
[[ -f $dir/tmpfs-0.tar && ! -s $dir/tmpfs-0.tar ]] || fail "empty /dev/shm: $(ls -l "$dir")"
cryo container restore -k "$keep" >/dev/null
[[ -f $dir/inventory.img ]] || fail "restore -k removed the checkpoint"
grep -q "restored at t=[0-9]*: " "$dir/restore.log" || fail "restore.log with -k: $(cat "$dir/restore.log" 2>&1)"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["restore_time"] > 0 and s["pages_restored"] > 0 and s["runtime_restore_duration"] > 0, s' "$dir/stats-restore"
# Without -k: no log or statistics file in the (new) checkpoint, and a restore removes it.
cryo container checkpoint "$keep" >/dev/null
[[ -f $dir/inventory.img ]] || fail "no checkpoint"
for f in dump.log stats-dump restore.log stats-restore; do
  [[ ! -e $dir/$f ]] || fail "$f kept without -k"
done
cryo container restore "$keep" >/dev/null
[[ ! -e $dir ]] || fail "restore without -k kept the checkpoint: $(ls "$dir")"
# The monitor removes the restored checkpoint after reporting the restore.
no_retired_checkpoint() { ! compgen -G "$tmp/root/containers/$keep/checkpoint*" >/dev/null; }
wait_until no_retired_checkpoint
expect_eq "$(state_of "$keep")" "running" "state after the restores"
cryo exec "$keep" sh -c 'echo x >/dev/shm/x' || fail "the restored empty /dev/shm is not writable"
cryo rm -f -t 0 "$keep" >/dev/null

[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
[[ -z $(cryo_processes) ]] || fail "cryo processes left: $(cryo_processes)"
echo PASS
