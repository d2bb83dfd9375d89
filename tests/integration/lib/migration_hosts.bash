# Shared by tests/integration/container_migration*.sh (sourced, not a test of its own): two
# "hosts" on one machine, engines with their own --root/--runroot ($tmp/A, $tmp/B), each in a
# network namespace of its own, and a client namespace C connected to both; the busybox image on
# both hosts, and a cleanup that also removes the namespaces.
# migration_hosts_setup TMP_PREFIX NS_PREFIX VETH_PREFIX NET_A NET_B: namespaces
# cryo-<NS_PREFIX>{A,B,C}-PID, veths <VETH_PREFIX>{A,B} (<VETH_PREFIX>{A,B}-c on the client side),
# host A on 192.168.NET_A.2/24, host B on 192.168.NET_B.2/24, the client on .1 of both.
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

nsA= nsB= nsC=
client_pid=

# Each host runs cryo in its own netns only (not `ip netns exec`, whose private mount namespace
# would hide the engine's bind-mounted netns files from the next command).
cryoA() { nsenter --net=/run/netns/$nsA "$cryo_bin" --root "$tmp/A/root" --runroot "$tmp/A/run" "$@"; }
cryoB() { nsenter --net=/run/netns/$nsB "$cryo_bin" --root "$tmp/B/root" --runroot "$tmp/B/run" "$@"; }
inA() { nsenter --net=/run/netns/$nsA "$@"; }
inB() { nsenter --net=/run/netns/$nsB "$@"; }
inC() { nsenter --net=/run/netns/$nsC "$@"; }
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  cryoA rm -f -t 0 -a >/dev/null 2>&1 || true
  cryoB rm -f -t 0 -a >/dev/null 2>&1 || true
  kill_monitors
  unmount_under_tmp
  local ns
  for ns in "$nsA" "$nsB" "$nsC"; do
    if [[ -n $ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
  done
  rm -rf "$tmp"
}
# expect_fail PATTERN CMD...: the command exits 125 and its stderr matches PATTERN.
expect_fail() {
  local pattern=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc == 125 ]] || fail "$*: exit code $rc, expected 125 (stderr: $(cat "$tmp/err"))"
  grep -q -- "$pattern" "$tmp/err" || fail "$*: stderr lacks '$pattern': $(cat "$tmp/err")"
}
# Nothing of a container on host B but what `ps -a` shows: records, netns files, veths, cgroups.
expect_nothing_on_B() {
  expect_eq "$(cryoB ps -a -q | wc -l)" "$1" "containers on B ($2)"
  local veths
  veths=$(inB ip -o link show type veth | grep -c 'veth' || true)
  expect_eq "$veths" "$1" "veths on B ($2)"
  [[ -z $(ls "$tmp/B/root/tmp" 2>/dev/null) ]] || fail "import staging left on B ($2)"
}

migration_hosts_setup() {
  local ns_prefix=$2 prefix=$3 net_a=$4 net_b=$5 ns h
  cryo_test_setup "$1" curl nsenter
  # The monitors of both hosts (under $tmp/A/run and $tmp/B/run).
  monitor_cwd_under=$tmp/
  nsA=cryo-${ns_prefix}A-$$ nsB=cryo-${ns_prefix}B-$$ nsC=cryo-${ns_prefix}C-$$

  for ns in "$nsA" "$nsB" "$nsC"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip link add "${prefix}A" type veth peer name "${prefix}A-c"
  ip link set "${prefix}A" netns "$nsA"
  ip link set "${prefix}A-c" netns "$nsC"
  ip link add "${prefix}B" type veth peer name "${prefix}B-c"
  ip link set "${prefix}B" netns "$nsB"
  ip link set "${prefix}B-c" netns "$nsC"
  ip -n "$nsA" addr add "192.168.$net_a.2/24" dev "${prefix}A"
  ip -n "$nsA" link set "${prefix}A" up
  ip -n "$nsB" addr add "192.168.$net_b.2/24" dev "${prefix}B"
  ip -n "$nsB" link set "${prefix}B" up
  ip -n "$nsC" addr add "192.168.$net_a.1/24" dev "${prefix}A-c"
  ip -n "$nsC" addr add "192.168.$net_b.1/24" dev "${prefix}B-c"
  ip -n "$nsC" link set "${prefix}A-c" up
  ip -n "$nsC" link set "${prefix}B-c" up
  # The client reaches the containers' network through host A; each host routes back to both of
  # the client's addresses.
  ip -n "$nsC" route add 10.88.0.0/16 via "192.168.$net_a.2"
  ip -n "$nsA" route add "192.168.$net_b.0/24" via "192.168.$net_a.1"
  ip -n "$nsB" route add "192.168.$net_a.0/24" via "192.168.$net_b.1"

  for h in A B; do
    import_busybox "$tmp/$h/root" "$tmp/$h/run"
  done
}
