# Shared by tests/integration/container_checkpoint*.sh (sourced, not a test of its own): a private
# --root/--runroot under a temp dir with the busybox image, helpers, and a cleanup that ends only
# what the test started (its containers, their monitors, mounts under its temp dir).
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"
cryo_test_setup cryo-ckpt-test curl

# cryo processes of this test still there (CLIs, monitors, checkpoint guards), as "PID ARGS".
cryo_processes() {
  local p args
  for p in /proc/[0-9]*; do
    args=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    [[ $args == *"--root $tmp/root "* || $(readlink "$p/cwd" 2>/dev/null) == "$tmp/run/"* ]] &&
      echo "${p#/proc/} $args"
  done
  return 0
}
last_count() { cryo logs "$1" | grep -E '^[0-9]+$' | tail -n 1; }
# count_at_least CONTAINER N: the counter has logged N or more.
count_at_least() { [[ $(last_count "$1") -ge $2 ]]; }
# The counter's log holds consecutive numbers only (it never started again).
counter_continuous() {
  cryo logs "$1" | grep -E '^[0-9]+$' |
    awk 'NR > 1 && $1 != prev + 1 { print "gap " prev " -> " $1; exit 1 } { prev = $1 }'
}
# The processes of the container whose init is host pid $1, as "NSPID COMMAND-LINE" lines sorted
# (PIDs as the container sees them).
container_processes() {
  local init=$1 ns p
  ns=$(readlink /proc/"$init"/ns/pid)
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$ns" ]] || continue
    echo "$(awk '/^NSpid/ {print $NF}' "$p/status" 2>/dev/null) $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
  done | sort -n
}
# The processes of container $1 that live on (in two snapshots 0.3 s apart: a short-lived child,
# e.g. a `sleep 0.1` or a fork before its exec, is in one at most), sorted.
stable_processes() {
  local init a b
  init=$(pid_of "$1")
  a=$(container_processes "$init" | sort)
  sleep 0.3
  b=$(container_processes "$init" | sort)
  comm -12 <(echo "$a") <(echo "$b")
}
# Nothing of container $1 left on the host: no process in its cgroups, no cgroup directory, no
# veth or netns of it, no monitor.
expect_nothing_left_of() {
  local id=$1 dir
  for dir in /sys/fs/cgroup/*/cryo*/"$id" /sys/fs/cgroup/cryo*/"$id"; do
    [[ ! -e $dir ]] || fail "cgroup $dir left (procs: $(cat "$dir/cgroup.procs" 2>/dev/null | tr '\n' ' '))"
  done
  [[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
  [[ -z $(cryo_processes) ]] || fail "cryo processes left: $(cryo_processes)"
  ! ip -o link | grep -q "veth${id:0:11}" || fail "the veth of $id is left"
  ! grep -q " $tmp/run/netns/$id " /proc/mounts || fail "the netns of $id is left mounted"
  [[ ! -e $tmp/run/netns/$id ]] || fail "the netns file of $id is left"
}

# A test may put its --root on a tmpfs of this size (to fill it up).
if [[ -n ${ROOT_TMPFS_SIZE:-} ]]; then
  mkdir -p "$tmp/root"
  mount -t tmpfs -o size="$ROOT_TMPFS_SIZE" tmpfs "$tmp/root"
fi
import_busybox
