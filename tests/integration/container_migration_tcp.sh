#!/usr/bin/env bash
# Migration with an established TCP connection: two "hosts" (engines with their own --root and
# --runroot, each in its own network namespace) and a client in a third namespace connected to
# both. An echo server (busybox nc -ll -e cat) runs on A; the client connects to the container's
# IP through A; the container is exported with --tcp-established, imported on B with
# --tcp-established, the client's route to the containers' subnet switched to B, and the same
# connection carries the next round trip.
set -euo pipefail

src=${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: needs curl"; exit 0; }
command -v nsenter >/dev/null || { echo "SKIP: needs nsenter"; exit 0; }
tmp=$(mktemp -d /tmp/cryo-migration-tcp-test.XXXXXX)
tag=$$
nsA=cryo-mtA-$tag nsB=cryo-mtB-$tag nsC=cryo-mtC-$tag
client_pid=

# Each host runs cryo in its own netns only (not `ip netns exec`, whose private mount namespace
# would hide the engine's bind-mounted netns files from the next command).
cryoA() { nsenter --net=/run/netns/$nsA "$cryo_bin" --root "$tmp/A/root" --runroot "$tmp/A/run" "$@"; }
cryoB() { nsenter --net=/run/netns/$nsB "$cryo_bin" --root "$tmp/B/root" --runroot "$tmp/B/run" "$@"; }
inA() { nsenter --net=/run/netns/$nsA "$@"; }
inB() { nsenter --net=/run/netns/$nsB "$@"; }
inC() { nsenter --net=/run/netns/$nsC "$@"; }
monitor_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$tmp/"* ]] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  cryoA rm -f -t 0 -a >/dev/null 2>&1 || true
  cryoB rm -f -t 0 -a >/dev/null 2>&1 || true
  for pid in $(monitor_pids); do kill -9 "$pid" 2>/dev/null || true; done
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  for ns in "$nsA" "$nsB" "$nsC"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"; }
# expect_fail PATTERN CMD...: the command exits 125 and its stderr matches PATTERN.
expect_fail() {
  local pattern=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc == 125 ]] || fail "$*: exit code $rc, expected 125 (stderr: $(cat "$tmp/err"))"
  grep -q -- "$pattern" "$tmp/err" || fail "$*: stderr lacks '$pattern': $(cat "$tmp/err")"
}
# Waits (600 s at most, never a timing assertion) until "$@" succeeds.
wait_until() {
  for _ in $(seq 6000); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "gave up waiting for: $*"
}
# Nothing of a container on host B but what `ps -a` shows: records, netns files, veths, cgroups.
expect_nothing_on_B() {
  expect_eq "$(cryoB ps -a -q | wc -l)" "$1" "containers on B ($2)"
  local veths
  veths=$(inB ip -o link show type veth | grep -c 'veth' || true)
  expect_eq "$veths" "$1" "veths on B ($2)"
  [[ -z $(ls "$tmp/B/root/tmp" 2>/dev/null) ]] || fail "import staging left on B ($2)"
}

# --- the hosts and the client network ---
for ns in "$nsA" "$nsB" "$nsC"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip link add mtA type veth peer name mtA-c
ip link set mtA netns "$nsA"
ip link set mtA-c netns "$nsC"
ip link add mtB type veth peer name mtB-c
ip link set mtB netns "$nsB"
ip link set mtB-c netns "$nsC"
ip -n "$nsA" addr add 192.168.241.2/24 dev mtA
ip -n "$nsA" link set mtA up
ip -n "$nsB" addr add 192.168.242.2/24 dev mtB
ip -n "$nsB" link set mtB up
ip -n "$nsC" addr add 192.168.241.1/24 dev mtA-c
ip -n "$nsC" addr add 192.168.242.1/24 dev mtB-c
ip -n "$nsC" link set mtA-c up
ip -n "$nsC" link set mtB-c up
# The client reaches the containers' network through host A; each host routes back to both of
# the client's addresses.
ip -n "$nsC" route add 10.88.0.0/16 via 192.168.241.2
ip -n "$nsA" route add 192.168.242.0/24 via 192.168.241.1
ip -n "$nsB" route add 192.168.241.0/24 via 192.168.242.1

for h in A B; do
  BUSYBOX_TAR=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar} CRYO=$cryo_bin \
    bash "$src/scripts/import-busybox-image.sh" --root "$tmp/$h/root" --runroot "$tmp/$h/run"
done

# --- an established TCP connection survives the move ---
port=7000
echo_id=$(cryoA run -d --name echo busybox nc -ll -p $port -e cat)
eip=$(cryoA inspect -f '{{.NetworkSettings.IPAddress}}' echo)
wait_until inA sh -c "echo | busybox nc -w 1 $eip $port"
mkfifo "$tmp/to_client"
inC python3 - "$eip" "$port" "$tmp/to_client" "$tmp/client.out" <<'PY' &
import socket, sys
ip, port, control, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((ip, port))
s.settimeout(600)
def roundtrip(word):
    s.sendall((word + "\n").encode())
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            raise SystemExit("connection closed")
        got += chunk
    return got.decode().strip()
with open(out, "w") as f:
    f.write(roundtrip("before") + "\n")
    f.flush()
    for line in open(control):
        f.write(roundtrip(line.strip()) + "\n")
        f.flush()
PY
client_pid=$!
exec 9>"$tmp/to_client"
wait_until grep -qx before "$tmp/client.out"
kill -STOP "$client_pid"
cryoA container checkpoint --tcp-established -e "$tmp/echo.tar.zst" echo >/dev/null
cryoA rm echo >/dev/null
ip -n "$nsC" route replace 10.88.0.0/16 via 192.168.242.2
cryoB container restore --tcp-established -i "$tmp/echo.tar.zst" >/dev/null
expect_eq "$(cryoB inspect -f '{{.NetworkSettings.IPAddress}}' echo)" "$eip" "echo IP on B"
kill -CONT "$client_pid"
echo after >&9
exec 9>&-
# The client ends after this round trip (its control pipe is closed), or fails.
rc=0
wait "$client_pid" || rc=$?
client_pid=
if [[ $rc != 0 ]]; then
  # What the container's network namespace on B saw (for the failure report).
  epid=$(cryoB inspect -f '{{.State.Pid}}' echo)
  nsenter -t "$epid" -n nstat -az 2>/dev/null | grep -E 'TcpOutRsts|TcpEstabResets|TcpExtTCPAbort|TcpInErrs|TcpExtTCPACKSkipped|TcpExtPAWS|TcpExtTCPChallengeACK|TcpExtTCPSynChallenge|TcpExtTCPOFO' >&2 || true
  nsenter -t "$epid" -n ss -tnoi >&2 || true
  inC nstat -az 2>/dev/null | grep -E 'TcpOutRsts|TcpInErrs|TcpEstabResets' >&2 || true
  fail "the client's connection did not survive the migration (exit $rc)"
fi
expect_eq "$(tail -n 1 "$tmp/client.out")" "after" "round trip after the migration"
cryoB rm -f -t 0 echo >/dev/null

[[ -z $(monitor_pids) ]] || fail "processes left: $(monitor_pids)"
echo PASS
