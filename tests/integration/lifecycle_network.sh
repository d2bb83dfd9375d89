#!/usr/bin/env bash
# Containers on the network through the CLI, with private --root/--runroot: busybox httpd published
# with -p 127.0.0.1:HOSTPORT:8080 answers curl; ps/port/inspect show the mapping; container to
# container over the bridge; --network host and none; restart keeps the published port working;
# nothing (veth, netns file, container) is left after rm.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-lifecycle-net-test

# Waits (without a time limit of its own: ctest's applies) until the URL answers.
wait_http() {
  local i
  for i in $(seq 500); do
    if curl -s -o "$tmp/body" "$1"; then return 0; fi
    sleep 0.02
  done
  fail "no answer from $1"
}

import_busybox

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
