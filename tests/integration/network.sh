#!/bin/bash
# Container networking end to end, as root: the NetworkSetupTest cases (netns, bridge cryo0, veth,
# leases, NAT-published ports reached with curl through 127.0.0.1:HOSTPORT and the container IP,
# container to container, port conflicts, teardown down to the last veth/netns/nft element) run
# twice at the same time, which also exercises the locking of leases, port records, the bridge
# and nftables table creation by concurrent engines. Each run uses its own temporary
# --root/--runroot and random container ids. Then, when the binary has `cryo run`, the same through
# the CLI with the busybox image: -p, port conflicts (exit 125, nothing left), none and host
# modes, the IP kept across stop/start, and rm removing veth, netns, NAT element and lease.
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

# ---- through the CLI ----
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
CRYO=${CRYO:-}
SRC=${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [[ -n $CRYO ]] && "$CRYO" run --help >/dev/null 2>&1 && [[ -f $SRC/scripts/import-busybox-image.sh ]]; then
  c() { "$CRYO" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
  cleanup_cli() {
    c rm -f -t 0 web web-clash >/dev/null 2>&1
    rm -rf "$tmp"
  }
  trap cleanup_cli EXIT
  CRYO=$CRYO bash "$SRC/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run" ||
    fail "importing busybox"
  mkdir -p "$tmp/www"
  echo "served by web" >"$tmp/www/index.html"
  id=$(c run -d --name web -p 127.0.0.1::80 -v "$tmp/www:/www:ro" -- busybox httpd -f -p 80 -h /www)
  [[ $id =~ ^[0-9a-f]{64}$ ]] || fail "run -d -p printed '$id'"
  mapping=$(c port web)
  port=${mapping##*:}
  [[ $mapping =~ ^80/tcp\ -\>\ 127\.0\.0\.1:[0-9]+$ ]] || fail "port web: '$mapping'"
  ip=$(c inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["IPAddress"])')
  fetch() {  # retries only while the connection is refused (httpd starting)
    local out rc
    for _ in $(seq 200); do
      out=$(curl -s --max-time 10 "$1")
      rc=$?
      [[ $rc == 7 ]] || break
      sleep 0.05
    done
    echo "$out"
  }
  [[ $(fetch "http://127.0.0.1:$port/index.html") == "served by web" ]] || fail "curl 127.0.0.1:$port"
  [[ $(fetch "http://$ip:80/index.html") == "served by web" ]] || fail "curl $ip:80"
  ok_count=$(ls "$tmp/run/netns" | wc -l)
  c run -d --name web-clash -p "127.0.0.1:$port:80" -- busybox true >/dev/null 2>"$tmp/clash.err"
  rc=$?
  [[ $rc == 125 ]] || fail "publishing a taken port exited $rc"
  grep -q "address already in use" "$tmp/clash.err" || fail "port clash message: $(cat "$tmp/clash.err")"
  [[ $(ls "$tmp/run/netns" | wc -l) == "$ok_count" ]] || fail "the failed run left a netns behind"
  c rm -f -t 0 web-clash >/dev/null 2>&1
  none=$(c run --rm --network none busybox cat /proc/net/dev)
  grep -q "lo:" <<<"$none" && ! grep -q "eth0" <<<"$none" || fail "--network none: $none"
  host=$(c run --rm --network host busybox cat /proc/net/dev)
  grep -q "cryo0:" <<<"$host" || fail "--network host does not see the host's interfaces"
  c stop -t 0 web >/dev/null
  c start web >/dev/null
  ip_again=$(c inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["IPAddress"])')
  [[ $ip_again == "$ip" ]] || fail "IP changed across stop/start: $ip -> $ip_again"
  veth="veth${id:0:11}"
  ip link show "$veth" >/dev/null 2>&1 || fail "no $veth while web runs"
  c rm -f -t 0 web >/dev/null
  ip link show "$veth" >/dev/null 2>&1 && fail "$veth left after rm"
  [[ -e $tmp/run/netns/$id ]] && fail "netns file left after rm"
  nft list map ip cryo tcp_addr | grep -q "127.0.0.1 . $port " && fail "NAT element left after rm"
  grep -q "$id" "$tmp/root/networks/cryo0/leases.json" && fail "lease kept after rm"
  echo "ok: the CLI checks ran"
else
  echo "SKIP: the CLI part (this cryo binary has no run command yet)"
fi

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "network: all passed"
