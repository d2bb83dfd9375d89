# Shared by the tests/integration/*.sh that drive the real cryo binary as root with a private
# --root/--runroot (sourced, not a test of its own): the binary, the temp dir, a cleanup that ends
# only what the test started (its containers, their monitors, mounts under its temp dir), and the
# assertion helpers. A test sources this file, then calls cryo_test_setup.
set -euo pipefail

src=${CRYO_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
tmp=
# Where the test's monitors work (their container's runtime directory); a test with several
# runroots widens it after cryo_test_setup.
monitor_cwd_under=

# cryo_test_setup TMP_PREFIX [TOOL...]: skips the test unless it runs as root and every TOOL is
# installed, makes $tmp (/tmp/TMP_PREFIX.XXXXXX) and installs the cleanup and failure traps.
cryo_test_setup() {
  local prefix=$1 tool
  shift
  [[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "SKIP: needs $tool"; exit 0; }
  done
  tmp=$(mktemp -d "/tmp/$prefix.XXXXXX")
  monitor_cwd_under=$tmp/run/
  trap cleanup EXIT
  trap 'exit 1' INT TERM
  trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
}

cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
# import_busybox [ROOT RUNROOT]: the busybox image the build made, into this test's store.
import_busybox() {
  BUSYBOX_TAR=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar} CRYO=$cryo_bin \
    bash "$src/scripts/import-busybox-image.sh" --root "${1:-$tmp/root}" --runroot "${2:-$tmp/run}"
}
# Monitors work in their container's runtime directory under $monitor_cwd_under.
monitor_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$monitor_cwd_under"* ]] && echo "${p#/proc/}"
  done
  return 0
}
kill_monitors() {
  local pid
  for pid in $(monitor_pids); do kill -9 "$pid" 2>/dev/null || true; done
}
unmount_under_tmp() {
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}
# Extra cleanup steps of a test (unmounts of its own mounts...), run before the common ones.
extra_cleanup() { :; }
cleanup() {
  extra_cleanup || true
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  kill_monitors
  unmount_under_tmp
  rm -rf "$tmp"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"; }
# Runs a command that must exit with the given code; its stdout and stderr are kept in $tmp/out
# and $tmp/err.
expect_exit() {
  local want=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc == "$want" ]] || fail "$*: exit code $rc, expected $want (stderr: $(cat "$tmp/err"))"
}
state_of() { cryo inspect -f '{{.State.Status}}' "$1"; }
pid_of() { cryo inspect -f '{{.State.Pid}}' "$1"; }
# A free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Waits (without a deadline that fails the test on a slow machine: 600 s) until "$@" succeeds.
wait_until() {
  for _ in $(seq 6000); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "gave up waiting for: $*"
}
