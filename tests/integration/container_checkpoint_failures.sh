#!/usr/bin/env bash
# Nothing lost when a container checkpoint or restore fails. A checkpoint that fails (an fd the
# engine cannot dump, the checkpoint store full, the CLI killed half way) leaves the container
# running as before and answering. A restore that fails (a corrupted image, a published host port
# taken meanwhile, the restoring process killed half way) leaves no process, cgroup, veth, netns
# or monitor behind, and the checkpoint stays so that a second restore works.
# The test's --root is a 160 MiB tmpfs: a container holding more memory cannot be checkpointed.
ROOT_TMPFS_SIZE=160m
source "${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib/container_checkpoint_common.bash"

counter_script='i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'
# A container holding $1 MiB of random bytes in a blocked dd (its buffer), counting.
big_container() {
  cryo run -d busybox sh -c "(dd if=/dev/urandom bs=${1}M count=1 2>/dev/null | sleep 100000) & $counter_script"
}
# The dd of big container $1 holds $2 MiB.
dd_holds() {
  local p
  for p in $(cat /sys/fs/cgroup/pids/cryo*/"$1"/cgroup.procs); do
    [[ $(cat /proc/"$p"/comm 2>/dev/null) == dd ]] || continue
    [[ $(awk '/^Rss/ {s += $2} END {print int(s / 1024)}' /proc/"$p"/smaps_rollup) -ge $2 ]] && return 0
  done
  return 1
}
# Container $1 runs with the same init as before ($2), counts on and its log has no restart.
expect_running_as_before() {
  local id=$1 init=$2 at
  expect_eq "$(state_of "$id")" "running" "state of $id"
  expect_eq "$(pid_of "$id")" "$init" "init of $id"
  [[ -d /proc/$init ]] || fail "init $init of $id is gone"
  at=$(last_count "$id")
  wait_until count_at_least "$id" $((at + 3))
  counter_continuous "$id" || fail "counter of $id restarted"
}
expect_no_checkpoint_dirs() {
  local d
  for d in checkpoint checkpoint.tmp checkpoint.old; do
    [[ ! -e $tmp/root/containers/$1/$d ]] || fail "$d left for $1"
  done
}

# --- checkpoint fails: an fd the engine cannot dump yet (a FIFO removed while open) ---
bad=$(cryo run -d busybox sh -c "mkfifo /dev/shm/f; exec 3<>/dev/shm/f; rm /dev/shm/f; $counter_script")
wait_until count_at_least "$bad" 3
init=$(pid_of "$bad")
expect_exit 125 cryo container checkpoint "$bad"
grep -q "not supported yet" "$tmp/err" || fail "unsupported fd: $(cat "$tmp/err")"
expect_running_as_before "$bad" "$init"
expect_no_checkpoint_dirs "$bad"
# The engine's log of the failed dump is kept for diagnosis.
grep -q "checkpoint of container $bad" "$tmp/root/containers/$bad/dump.log" ||
  fail "no dump.log of the failed checkpoint"
cryo rm -f -t 0 "$bad" >/dev/null

# --- checkpoint fails: the checkpoint store (the tmpfs --root) is full ---
big=$(big_container 200)
wait_until count_at_least "$big" 3
wait_until dd_holds "$big" 200
init=$(pid_of "$big")
expect_exit 125 cryo container checkpoint "$big"
grep -qi "no space left on device" "$tmp/err" || fail "disk full: $(cat "$tmp/err")"
expect_running_as_before "$big" "$init"
expect_no_checkpoint_dirs "$big"
cryo rm -f -t 0 "$big" >/dev/null

# --- checkpoint killed half way: the CLI dies by SIGKILL once the memory images of the first
# process are written (fault injection: the same as a kill from outside at that moment, without
# the race of timing one) ---
killed=$(big_container 40)
wait_until count_at_least "$killed" 3
wait_until dd_holds "$killed" 40
init=$(pid_of "$killed")
expect_exit 137 env CRYO_FAULT_KILL_AT=dump-first-memory-written \
  "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" container checkpoint "$killed"
grep -q "fault injection: SIGKILL at dump-first-memory-written" "$tmp/err" ||
  fail "the checkpoint was not killed at the injected point: $(cat "$tmp/err")"
compgen -G "$tmp/root/containers/$killed/checkpoint.tmp/pages-*" >/dev/null ||
  fail "the killed checkpoint had written no page image"
expect_running_as_before "$killed" "$init"
# A second checkpoint works after the killed one, and so does its restore.
cryo container checkpoint "$killed" >/dev/null
expect_eq "$(state_of "$killed")" "exited" "checkpoint after a killed one"
[[ ! -e $tmp/root/containers/$killed/checkpoint.tmp ]] || fail "checkpoint.tmp left"
at=$(last_count "$killed")
cryo container restore "$killed" >/dev/null
wait_until count_at_least "$killed" $((at + 3))
counter_continuous "$killed" || fail "counter restarted after the killed checkpoint"
cryo rm -f -t 0 "$killed" >/dev/null

# --- checkpoint killed while the container's cgroup is frozen: its tracer's death does not thaw
# it, the helper that outlives the CLI does ---
frozen=$(cryo run -d busybox sh -c "$counter_script")
wait_until count_at_least "$frozen" 3
init=$(pid_of "$frozen")
expect_exit 137 env CRYO_FAULT_KILL_AT=dump-cgroup-frozen \
  "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" container checkpoint "$frozen"
grep -q "fault injection: SIGKILL at dump-cgroup-frozen" "$tmp/err" ||
  fail "the checkpoint was not killed with the cgroup frozen: $(cat "$tmp/err")"
expect_running_as_before "$frozen" "$init"
for f in /sys/fs/cgroup/freezer/cryo*/"$frozen"/freezer.state /sys/fs/cgroup/cryo*/"$frozen"/cgroup.freeze; do
  [[ -e $f ]] || continue
  grep -qx -e THAWED -e 0 "$f" || fail "$f after the killed checkpoint: $(cat "$f")"
done
cryo rm -f -t 0 "$frozen" >/dev/null

# --- checkpoint interrupted: Ctrl-C, a kill or a hangup reaches the CLI while the container's
# init runs its injected syscalls (its registers are the injection's), or while the pages are
# copied. The checkpoint stops where it can be undone: the container runs on as before, no
# checkpoint or archive is left, and the CLI then ends by the signal it got ---
interrupted=$(big_container 20)
wait_until count_at_least "$interrupted" 3
wait_until dd_holds "$interrupted" 20
init=$(pid_of "$interrupted")
for case in "INT 130 dump-in-injected-syscalls" "TERM 143 dump-in-injected-syscalls -R" \
  "HUP 129 dump-first-memory-written" "TERM 143 dump-first-memory-written -e"; do
  read -r sig code point flag <<<"$case"
  args=(container checkpoint)
  case $flag in
  -R) args+=(-R) ;;
  -e) args+=(-e "$tmp/interrupted.tar.zst") ;;
  esac
  expect_exit "$code" env CRYO_FAULT_SIGNAL_AT="$point:$sig" \
    "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "${args[@]}" "$interrupted"
  grep -q "fault injection: SIG$sig at $point" "$tmp/err" ||
    fail "SIG$sig was not sent at $point: $(cat "$tmp/err")"
  grep -q "^Error: .*interrupted by SIG$sig" "$tmp/err" ||
    fail "no error naming SIG$sig at $point: $(cat "$tmp/err")"
  expect_running_as_before "$interrupted" "$init"
  dd_holds "$interrupted" 20 || fail "the dd lost its pages after SIG$sig at $point"
  expect_no_checkpoint_dirs "$interrupted"
  ! compgen -G "$tmp/interrupted.tar.zst*" >/dev/null || fail "archive left: $(ls "$tmp")"
done
# The same checkpoint uninterrupted works, and so does its restore.
cryo container checkpoint "$interrupted" >/dev/null
at=$(last_count "$interrupted")
cryo container restore "$interrupted" >/dev/null
wait_until count_at_least "$interrupted" $((at + 3))
counter_continuous "$interrupted" || fail "counter restarted after the interrupted checkpoints"
cryo rm -f -t 0 "$interrupted" >/dev/null

# --- restore fails: a corrupted image; the checkpoint stays and a second restore works ---
victim=$(cryo run -d busybox sh -c "$counter_script")
wait_until count_at_least "$victim" 3
cryo container checkpoint "$victim" >/dev/null
at=$(last_count "$victim")
image=$(ls "$tmp/root/containers/$victim/checkpoint"/pages-*.img | head -n 1)
cp "$image" "$tmp/pages.good"
size=$(stat -c %s "$image")
printf 'corrupted' | dd of="$image" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_exit 125 cryo container restore "$victim"
expect_eq "$(state_of "$victim")" "exited" "state after a failed restore"
expect_eq "$(cryo inspect -f '{{.State.Checkpointed}}' "$victim")" "true" "still checkpointed"
expect_nothing_left_of "$victim"
cp "$tmp/pages.good" "$image"
cryo container restore "$victim" >/dev/null
wait_until count_at_least "$victim" $((at + 3))
counter_continuous "$victim" || fail "counter restarted after the second restore"
cryo rm -f -t 0 "$victim" >/dev/null

# --- restore fails: the published host port is taken meanwhile ---
port=$(free_port)
web=$(cryo run -d -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
wait_until curl -sf "http://127.0.0.1:$port/"
cryo container checkpoint "$web" >/dev/null
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("ready", flush=True); time.sleep(600)' "$port" >"$tmp/squatter" &
squatter=$!
wait_until grep -q ready "$tmp/squatter"
expect_exit 125 cryo container restore "$web"
grep -q "address already in use" "$tmp/err" || fail "port taken: $(cat "$tmp/err")"
expect_eq "$(state_of "$web")" "exited" "state after a restore with the port taken"
expect_nothing_left_of "$web"
kill "$squatter"
wait "$squatter" || true
cryo container restore "$web" >/dev/null
curl -sf "http://127.0.0.1:$port/" >/dev/null || fail "httpd does not answer after the second restore"
cryo rm -f -t 0 "$web" >/dev/null

# --- restore killed half way: the restore helper dies by SIGKILL once it has forked the tree
# (fault injection, as above) ---
slow=$(big_container 40)
wait_until count_at_least "$slow" 3
wait_until dd_holds "$slow" 40
cryo container checkpoint "$slow" >/dev/null
at=$(last_count "$slow")
expect_exit 125 env CRYO_FAULT_KILL_AT=restore-tree-forked \
  "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" container restore "$slow"
grep -q "died without reporting" "$tmp/err" || fail "killed restore: $(cat "$tmp/err")"
expect_eq "$(state_of "$slow")" "exited" "state after a killed restore"
expect_nothing_left_of "$slow"
[[ -f $tmp/root/containers/$slow/checkpoint/inventory.img ]] || fail "checkpoint lost"
cryo container restore "$slow" >/dev/null
wait_until count_at_least "$slow" $((at + 3))
counter_continuous "$slow" || fail "counter restarted after a killed restore"
dd_holds "$slow" 40 || fail "the restored dd lost its 40 MiB"
cryo rm -f -t 0 "$slow" >/dev/null

[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
[[ -z $(cryo_processes) ]] || fail "cryo processes left: $(cryo_processes)"
echo PASS
