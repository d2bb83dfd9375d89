#!/bin/bash
# Container networking end to end, as root: the NetworkSetupTest cases (netns, bridge cryo0, veth,
# leases, NAT-published ports reached with curl through 127.0.0.1:HOSTPORT and the container IP,
# container to container, port conflicts, teardown down to the last veth/netns/nft element) run
# twice at the same time, which also exercises the locking of leases, port records, the bridge
# and nftables table creation by concurrent engines. Each run uses its own temporary
# --root/--runroot and random container ids. Until `cryo run` lands, the engine is driven through
# the GoogleTest binary rather than the CLI.
set -u
BUILD=${CRYO_BUILD_DIR:?build directory}
tests="$BUILD/tests/cryo_unit_tests"
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
[[ -x $tests ]] || { echo "FAIL: $tests not built"; exit 1; }
tmp=$(mktemp -d /tmp/cryo-network-it-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

veths_before=$(ip -o link show type veth | wc -l)
"$tests" --gtest_filter='NetworkSetupTest.*' >"$tmp/run1.log" 2>&1 &
pid1=$!
"$tests" --gtest_filter='NetworkSetupTest.*' >"$tmp/run2.log" 2>&1 &
pid2=$!
wait "$pid1"
rc1=$?
wait "$pid2"
rc2=$?
failures=0
for n in 1 2; do
  rc_var=rc$n
  if [[ ${!rc_var} != 0 ]] || ! grep -q "PASSED" "$tmp/run$n.log" || grep -q "SKIPPED" "$tmp/run$n.log"; then
    echo "FAIL: run $n (exit ${!rc_var}):"
    cat "$tmp/run$n.log"
    failures=$((failures + 1))
  else
    echo "ok: run $n: $(grep -c '^\[       OK' "$tmp/run$n.log") network tests passed"
  fi
done

# Nothing of the runs is left: no temporary state dirs, no netns mounts.
if ls -d /tmp/cryo-network-test-* >/dev/null 2>&1; then
  echo "FAIL: state directories left behind: $(ls -d /tmp/cryo-network-test-*)"
  failures=$((failures + 1))
fi
if grep -q "/tmp/cryo-network-test-" /proc/self/mountinfo; then
  echo "FAIL: mounts left behind:"
  grep "/tmp/cryo-network-test-" /proc/self/mountinfo
  failures=$((failures + 1))
fi
veths_after=$(ip -o link show type veth | wc -l)
echo "veth interfaces on the host: $veths_before before, $veths_after after (other engines may run)"

# The NAT table has its fixed shape (it is shared: only looked at, never flushed).
table=$(nft list table ip cryo 2>&1)
for part in "map tcp_any" "map tcp_addr" "map udp_any" "map udp_addr" "chain published" \
  "type nat hook prerouting" "type nat hook output" "type nat hook postrouting" \
  "type filter hook forward"; do
  grep -q "$part" <<<"$table" || { echo "FAIL: table ip cryo lacks \"$part\""; failures=$((failures + 1)); }
done
[[ $(cat /proc/sys/net/ipv4/ip_forward) == 1 ]] || { echo "FAIL: ip_forward is off"; failures=$((failures + 1)); }
[[ $(cat /proc/sys/net/ipv4/conf/cryo0/route_localnet) == 1 ]] ||
  { echo "FAIL: route_localnet is off on cryo0"; failures=$((failures + 1)); }

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "network: all passed"
