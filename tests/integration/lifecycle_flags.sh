#!/usr/bin/env bash
# The run/create flags and commands the lifecycle test does not cover: `--` ending the options
# (before and after the image), --env-file, --entrypoint (word and JSON), --hostname, --ip,
# --mac-address, -p with /udp, --stop-signal, --stop-timeout and the image's StopSignal honoured
# by stop, stop -a, logs -f and --tail, start -a -i, ps --format json.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-flags-test
import_busybox

# --- `--` ends the options ---
expect_eq "$(cryo run --rm busybox -- echo -e 'a\tb')" "$(printf 'a\tb')" "IMAGE -- CMD"
expect_eq "$(cryo run --rm -e X=1 -- busybox sh -c 'echo $X "$@"' sh -l --name)" "1 -l --name" \
  "-- IMAGE CMD with option-like arguments"
expect_eq "$(cryo run --rm -- busybox -- echo --rm)" "--rm" "-- IMAGE -- CMD"
expect_eq "$(cryo run --rm busybox echo -d -- x)" "-d -- x" "a later -- belongs to the command"
id=$(cryo create --name dash -- busybox echo -p 80)
expect_eq "$(cryo inspect -f '{{.Args}}' dash)" "[-p 80]" "create -- IMAGE CMD"
cryo rm dash >/dev/null
expect_exit 125 cryo run --rm --
grep -q "requires at least 1 arg" "$tmp/err" || fail "run --: $(cat "$tmp/err")"
expect_exit 125 cryo run --rm --no-such-flag busybox true

# --- --env-file, --entrypoint, --hostname ---
printf '# comment\nA=from-file\n\nB=2\n' >"$tmp/env"
expect_eq "$(cryo run --rm --env-file "$tmp/env" -e B=3 busybox sh -c 'echo $A $B')" "from-file 3" \
  "--env-file, -e wins"
expect_eq "$(cryo run --rm --entrypoint echo busybox hello)" "hello" "--entrypoint word"
expect_eq "$(cryo run --rm --entrypoint '["sh", "-c", "echo $0-$1"]' busybox x y)" "x-y" \
  "--entrypoint JSON"
expect_eq "$(cryo run --rm --hostname box busybox hostname)" "box" "--hostname"

# --- --ip, --mac-address, -p .../udp ---
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cryo run -d --name net --ip 10.88.200.7 --mac-address 02:42:0a:58:c8:07 -p "127.0.0.1:$port:5353/udp" \
  busybox sleep 1000 >/dev/null
expect_eq "$(cryo inspect -f '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' net)" \
  "10.88.200.7 02:42:0a:58:c8:07" "--ip --mac-address"
expect_eq "$(cryo exec net cat /sys/class/net/eth0/address)" "02:42:0a:58:c8:07" "MAC inside"
expect_eq "$(cryo port net)" "5353/udp -> 127.0.0.1:$port" "udp port"
expect_eq "$(cryo ps --format '{{.Names}} {{.Ports}}')" "net 127.0.0.1:$port->5353/udp" "ps udp port"
cryo ps --format json | python3 -c '
import json, sys
(c,) = json.load(sys.stdin)
assert c["Names"] == ["net"] and c["State"] == "running", c
assert c["Ports"][0]["protocol"] == "udp" and c["Ports"][0]["container_port"] == 5353, c["Ports"]
'
expect_exit 125 cryo run --rm --ip 10.88.200.7 busybox true
cryo rm -f -t 0 net >/dev/null

# --- stop signals: --stop-signal, the image's StopSignal, --stop-timeout ---
# A shell as PID 1 that ends on SIGUSR1 only: stop with the right signal ends it at once (exit 0
# from its trap), a wrong one would leave it to SIGKILL (137) after the timeout.
trap_usr1='trap "exit 0" USR1; while :; do sleep 0.1; done'
cryo run -d --name sig --stop-signal USR1 busybox sh -c "$trap_usr1" >/dev/null
expect_eq "$(cryo inspect -f '{{.Config.StopSignal}}' sig)" "10" "--stop-signal recorded"
cryo stop -t 100 sig >/dev/null
expect_eq "$(cryo inspect -f '{{.State.ExitCode}}' sig)" "0" "stop used --stop-signal"
cryo rm sig >/dev/null
# An image whose config says STOPSIGNAL SIGUSR1 (import --change), and --stop-signal still wins.
mkdir -p "$tmp/rootfs" && tar -C "$tmp/rootfs" -xf "${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar}"
tar -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
cryo import -q --change 'STOPSIGNAL SIGUSR1' --change 'CMD ["sh"]' "$tmp/rootfs.tar" localhost/usr1 >/dev/null
cryo run -d --name imgsig localhost/usr1 sh -c "$trap_usr1" >/dev/null
expect_eq "$(cryo inspect -f '{{.Config.StopSignal}}' imgsig)" "10" "image StopSignal recorded"
cryo stop -t 100 imgsig >/dev/null
expect_eq "$(cryo inspect -f '{{.State.ExitCode}}' imgsig)" "0" "stop used the image's StopSignal"
cryo rm imgsig >/dev/null
cryo run -d --name override --stop-signal TERM --stop-timeout 1 localhost/usr1 sh -c "$trap_usr1" >/dev/null
expect_eq "$(cryo inspect -f '{{.Config.StopSignal}} {{.Config.StopTimeout}}' override)" "15 1" \
  "--stop-signal over the image's, --stop-timeout"
cryo stop override >/dev/null 2>&1
expect_eq "$(cryo inspect -f '{{.State.ExitCode}}' override)" "137" \
  "SIGTERM ignored by PID 1: SIGKILL after --stop-timeout"
cryo rm override >/dev/null
expect_exit 125 cryo run --rm --stop-signal NOSUCH busybox true
grep -q "invalid signal: NOSUCH" "$tmp/err" || fail "bad --stop-signal: $(cat "$tmp/err")"

# --- stop -a ---
cryo run -d --name s1 busybox sleep 1000 >/dev/null
cryo run -d --name s2 busybox sleep 1000 >/dev/null
cryo stop -a -t 0 >/dev/null
expect_eq "$(cryo ps -q | wc -l)" "0" "running after stop -a"
expect_eq "$(cryo ps -aq | wc -l)" "2" "containers after stop -a"
cryo rm s1 s2 >/dev/null

# --- logs --tail and -f ---
cryo run --name lines busybox sh -c 'for i in 1 2 3 4 5; do echo line$i; done' >/dev/null
expect_eq "$(cryo logs --tail 2 lines)" "line4
line5" "logs --tail 2"
cryo rm lines >/dev/null
cryo run -d --name follow busybox sh -c 'echo first; sleep 1; echo second' >/dev/null
expect_eq "$(cryo logs -f follow)" "first
second" "logs -f follows until the exit"
cryo rm follow >/dev/null

# --- start -a -i ---
cryo create -i --name cat busybox cat >/dev/null
expect_eq "$(echo through-start | cryo start -a -i cat)" "through-start" "start -a -i"
cryo rm cat >/dev/null

# --- -t: a pty of the container's own devpts (script(1) gives this test a terminal) ---
cryo_cmd="$cryo_bin --root $tmp/root --runroot $tmp/run"
expect_eq "$(script -qec "$cryo_cmd run --rm -t busybox sh -c 'tty; echo \$TERM'" /dev/null | tr -d '\r')" \
  "/dev/pts/0
xterm" "run -t"
cryo run -d --name tty busybox sleep 1000 >/dev/null
rc=0
echo | script -qec "$cryo_cmd exec -it tty sh -c 'exit 4'" /dev/null >/dev/null || rc=$?
expect_eq "$rc" "4" "exec -it exit code through script"
# `--` before the command ends the options; a later one is the command's.
expect_eq "$(cryo exec tty -- echo -n dashes)" "dashes" "exec CTR -- CMD"
expect_eq "$(cryo exec tty -- sh -c 'echo $1' sh --)" "--" "a later -- goes to the command"
cryo rm -f -t 0 tty >/dev/null

# --- -p with the container port only: a free host port is picked ---
cryo run -d --name anyport -p 8080 busybox sleep 1000 >/dev/null
[[ $(cryo port anyport) =~ ^8080/tcp\ -\>\ 0\.0\.0\.0:[0-9]+$ ]] || fail "port of -p 8080: $(cryo port anyport)"
cryo rm -f -t 0 anyport >/dev/null

# --- relative --root/--runroot: the monitor, which works from "/", finds the same store ---
rel_id=$(cd "$tmp" && "$cryo_bin" --root root --runroot ./run/ run -d --name relative busybox sleep 1000)
expect_eq "$(state_of "$rel_id")" "running" "run -d with a relative --root"
(cd "$tmp" && "$cryo_bin" --root root --runroot run container checkpoint relative >/dev/null)
expect_eq "$(state_of relative)" "exited" "checkpoint with a relative --root"
(cd "$tmp" && "$cryo_bin" --root root --runroot run container restore relative >/dev/null)
expect_eq "$(state_of relative)" "running" "restore with a relative --root"
cryo rm -f -t 0 relative >/dev/null

[[ -z $(cryo ps -aq) ]] || fail "containers left: $(cryo ps -a)"
echo "lifecycle_flags: all checks passed"
