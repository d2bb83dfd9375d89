#!/usr/bin/env bash
# Containers on the network through the CLI, with private --root/--runroot: busybox httpd published
# with -p 127.0.0.1:HOSTPORT:8080 answers curl; ps/port/inspect show the mapping; container to
# container over the bridge; --network host and none; restart keeps the published port working;
# nothing (veth, netns file, container) is left after rm.
set -euo pipefail

src=${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
tmp=$(mktemp -d /tmp/cryo-lifecycle-net-test.XXXXXX)
cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
cleanup() {
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (without a time limit of its own: ctest's applies) until the URL answers.
wait_http() {
  local i
  for i in $(seq 500); do
    if curl -s -o "$tmp/body" "$1"; then return 0; fi
    sleep 0.02
  done
  fail "no answer from $1"
}

BUSYBOX_TAR=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar} CRYO=$cryo_bin \
  bash "$src/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run"

port=$(free_port)
id=$(cryo run -d --name web -p "127.0.0.1:$port:8080" busybox \
  sh -c 'mkdir -p /www && echo hello-from-cryo >/www/index.html && exec httpd -f -p 8080 -h /www')
wait_http "http://127.0.0.1:$port/"
expect_eq "$(cat "$tmp/body")" "hello-from-cryo" "published port answer"
cryo ps | grep -q "127.0.0.1:$port->8080/tcp" || fail "ps PORTS: $(cryo ps)"
expect_eq "$(cryo port web)" "8080/tcp -> 127.0.0.1:$port" "port"
ip=$(cryo inspect -f '{{.NetworkSettings.IPAddress}}' web)
[[ $ip == 10.88.* ]] || fail "container IP '$ip'"
veth="veth${id:0:11}"
ip link show "$veth" >/dev/null || fail "no host veth $veth"

# Container to container over the bridge.
expect_eq "$(cryo run --rm busybox wget -q -O - "http://$ip:8080/")" "hello-from-cryo" \
  "container to container"

# --network host shares the host's namespace; none has only loopback.
expect_eq "$(cryo run --rm --network host busybox readlink /proc/1/ns/net)" \
  "$(readlink /proc/self/ns/net)" "--network host"
expect_eq "$(cryo run --rm --network none busybox sh -c 'ls /sys/class/net | tr "\n" " "')" "lo " \
  "--network none"

# restart: the same port answers again.
cryo restart -t 0 web >/dev/null
wait_http "http://127.0.0.1:$port/"
expect_eq "$(cat "$tmp/body")" "hello-from-cryo" "answer after restart"

# A second container cannot take the same host port, and leaves nothing behind.
rc=0
cryo run -d -p "127.0.0.1:$port:8080" busybox httpd -f -p 8080 >/dev/null 2>"$tmp/err" || rc=$?
expect_eq "$rc" "125" "port conflict exit code"
expect_eq "$(cryo ps -aq | wc -l)" "1" "containers after the port conflict"

cryo rm -f -t 0 web >/dev/null
! ip link show "$veth" >/dev/null 2>&1 || fail "veth $veth left after rm"
[[ -z $(ls "$tmp/run/netns" 2>/dev/null) ]] || fail "netns files left: $(ls "$tmp/run/netns")"
! curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" || fail "port still answers after rm"
echo "lifecycle_network: all checks passed"
