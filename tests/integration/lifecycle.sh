#!/usr/bin/env bash
# Container lifecycle through the real binary with private --root/--runroot: run -d, ps, logs,
# exec (exit codes, -u, -w, -e), stop of busybox httpd as PID 1 (ignores SIGTERM), restart, kill,
# wait, rm, --rm, exit codes 125/126/127, named volumes and bind mounts, cgroup limits, the
# namespaces of a container, and nothing left behind (mounts, cgroups, monitors, state).
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-lifecycle-test
import_busybox

# --- run -d, ps, inspect ---
id=$(cryo run -d --name web busybox httpd -f -p 8080)
[[ $id =~ ^[0-9a-f]{64}$ ]] || fail "run -d printed '$id', not a full ID"
cryo ps | grep -Eq "^${id:0:12} +localhost/busybox:latest +httpd -f -p 8080 +.* ago +Up .* +web$" ||
  fail "ps: $(cryo ps)"
expect_eq "$(cryo ps -q)" "${id:0:12}" "ps -q"
expect_eq "$(cryo ps -q --no-trunc)" "$id" "ps -q --no-trunc"
expect_eq "$(state_of web)" "running" "state after run -d"
pid=$(cryo inspect -f '{{.State.Pid}}' web)
[[ -d /proc/$pid ]] || fail "inspect Pid $pid is not a process"
expect_eq "$(tr '\0' ' ' </proc/"$pid"/cmdline)" "httpd -f -p 8080 " "container init command line"
cryo inspect web | python3 -c '
import json, sys
(c,) = json.load(sys.stdin)
assert c["Name"] == "web", c["Name"]
assert c["Path"] == "httpd" and c["Args"] == ["-f", "-p", "8080"], (c["Path"], c["Args"])
assert c["State"]["Running"] and c["State"]["Status"] == "running", c["State"]
assert c["ImageName"] == "localhost/busybox:latest", c["ImageName"]
assert c["NetworkSettings"]["IPAddress"].startswith("10.88."), c["NetworkSettings"]
assert "container=podman" in c["Config"]["Env"], c["Config"]["Env"]
assert c["State"]["Checkpointed"] is False
'
# Prefix and name lookups find the same container.
expect_eq "$(cryo inspect -f '{{.Id}}' "${id:0:8}")" "$id" "lookup by ID prefix"

# The container's namespaces are its own: pid, mnt, uts, ipc, cgroup, net, time.
for ns in pid mnt uts ipc cgroup net time; do
  [[ $(readlink /proc/"$pid"/ns/$ns) != $(readlink /proc/self/ns/$ns) ]] ||
    fail "container shares the host's $ns namespace"
done
# Capabilities: Podman's default set only.
expect_eq "$(awk '/^CapBnd/ {print $2}' /proc/"$pid"/status)" "00000000800405fb" "bounding set"
# One cgroup per container, with the init in it.
grep -q ":/cryo-[0-9a-f]*/$id$" /proc/"$pid"/cgroup || fail "init not in the container cgroup: $(cat /proc/"$pid"/cgroup)"

# --- exec ---
expect_eq "$(cryo exec web sh -c 'echo $((6*7))')" "42" "exec output"
expect_exit 7 cryo exec web sh -c 'exit 7'
expect_exit 127 cryo exec web nonexistent-command
grep -q "executable file \`nonexistent-command\` not found" "$tmp/err" || fail "exec 127 message: $(cat "$tmp/err")"
expect_exit 126 cryo exec web /etc/passwd
expect_eq "$(cryo exec -u 65534 -w /tmp -e FOO=bar web sh -c 'echo $(id -u) $PWD $FOO')" \
  "65534 /tmp bar" "exec -u -w -e"
expect_eq "$(cryo exec web sh -c 'cat /proc/self/cgroup | grep -c :/$')" \
  "$(cryo exec web sh -c 'cat /proc/self/cgroup | wc -l')" "exec joins the container cgroup namespace"
expect_eq "$(echo piped | cryo exec -i web cat)" "piped" "exec -i"
expect_eq "$(cryo exec web hostname)" "${id:0:12}" "hostname"

# --- stop: httpd as PID 1 ignores SIGTERM, so stop must end with SIGKILL after the timeout ---
start=$(date +%s)
expect_eq "$(cryo stop -t 1 web 2>/dev/null)" "web" "stop output"
elapsed=$(($(date +%s) - start))
expect_eq "$(state_of web)" "exited" "state after stop"
expect_eq "$(cryo inspect -f '{{.State.ExitCode}}' web)" "137" "exit code after stop"
[[ $elapsed -lt 60 ]] || fail "stop -t 1 took ${elapsed}s"
[[ ! -d /proc/$pid ]] || fail "init $pid still exists after stop"
cryo ps -a | grep -Eq "Exited \(137\) .* ago +web$" || fail "ps -a after stop: $(cryo ps -a)"

# --- start, restart, kill, wait ---
expect_eq "$(cryo start web)" "web" "start output"
expect_eq "$(state_of web)" "running" "state after start"
pid1=$(cryo inspect -f '{{.State.Pid}}' web)
expect_eq "$(cryo restart -t 0 web)" "$id" "restart output"
pid2=$(cryo inspect -f '{{.State.Pid}}' web)
[[ $pid1 != "$pid2" && -d /proc/$pid2 ]] || fail "restart did not start a new init ($pid1 -> $pid2)"
expect_exit 125 cryo rm web
grep -q "cannot remove container $id as it is running" "$tmp/err" || fail "rm running: $(cat "$tmp/err")"
cryo kill -s KILL web >/dev/null
expect_eq "$(cryo wait web)" "137" "wait after kill"
expect_exit 125 cryo kill web
expect_eq "$(cryo rm web)" "web" "rm output"
expect_exit 125 cryo inspect web
[[ -z $(cryo ps -aq) ]] || fail "ps -a after rm: $(cryo ps -a)"

# --- foreground run: output, exit code, logs ---
expect_exit 3 cryo run --name fg busybox sh -c 'echo out; echo err >&2; exit 3'
expect_eq "$(cat "$tmp/out")" "out" "foreground stdout"
expect_eq "$(cat "$tmp/err")" "err" "foreground stderr"
expect_eq "$(cryo logs fg 2>/dev/null)" "out" "logs stdout"
expect_eq "$(cryo logs fg 2>&1 >/dev/null)" "err" "logs stderr"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+\+00:00 stdout F out$' \
  "$tmp/root/containers/$(cryo inspect -f '{{.Id}}' fg)/ctr.log" || fail "ctr.log format"
expect_eq "$(cryo inspect -f '{{.State.ExitCode}}' fg)" "3" "exit code recorded"
cryo rm fg >/dev/null
expect_eq "$(echo hello | cryo run --rm -i busybox cat)" "hello" "run -i"
expect_eq "$(cryo run --rm -e A=1 -w /etc -u 1000:1000 busybox sh -c 'echo $A $PWD $(id -u):$(id -g) $container')" \
  "1 /etc 1000:1000 podman" "run -e -w -u"
ulimit_n=$(cryo run --rm busybox sh -c 'ulimit -n')
[[ $ulimit_n -le $(ulimit -Hn) && $ulimit_n -gt 0 ]] || fail "RLIMIT_NOFILE $ulimit_n"
masked=$(cryo run --rm busybox sh -c 'wc -c </proc/keys; (echo x >/proc/sys/kernel/domainname) 2>&1; true')
[[ $masked == 0*Read-only* ]] || fail "masked/readonly paths: $masked"

# --- exit codes ---
expect_exit 125 cryo run --rm no-such-image true
expect_exit 127 cryo run busybox nonexistent
grep -q 'executable file `nonexistent` not found in $PATH: No such file or directory' "$tmp/err" ||
  fail "127 message: $(cat "$tmp/err")"
expect_exit 126 cryo run busybox /etc/passwd
[[ -z $(cryo ps -aq) ]] || fail "a failed run left a container: $(cryo ps -a)"
cryo create --name taken busybox true >/dev/null
expect_exit 125 cryo run --name taken busybox true
grep -q 'the container name "taken" is already in use by' "$tmp/err" || fail "name in use: $(cat "$tmp/err")"
expect_exit 125 cryo start no-such-container
grep -q 'no container with name or ID "no-such-container" found: no such container' "$tmp/err" ||
  fail "no such container: $(cat "$tmp/err")"
expect_eq "$(cryo start -a taken; echo $?)" "0" "start -a of a created container"
cryo rm taken >/dev/null

# --- volumes ---
cryo run --rm -v data:/data busybox sh -c 'echo persisted >/data/file'
expect_eq "$(cryo run --rm -v data:/data:ro busybox cat /data/file)" "persisted" "named volume"
[[ -f $tmp/root/volumes/data/_data/file ]] || fail "named volume not under volumes/data/_data"
mkdir -p "$tmp/host"
echo from-host >"$tmp/host/f"
expect_eq "$(cryo run --rm -v "$tmp/host:/h:ro" busybox sh -c 'cat /h/f; (echo x >/h/g) 2>/dev/null || echo ro')" \
  "from-host
ro" "read-only bind mount"
cryo run --rm -v "$tmp/host:/h" busybox sh -c 'echo written >/h/g'
expect_eq "$(cat "$tmp/host/g")" "written" "read-write bind mount"

# --- limits ---
id=$(cryo run -d --memory 64m --pids-limit 32 busybox sleep 1000)
# The cgroup of a store other than the default one: cryo-<hash of its runroot>/<id>.
pid=$(cryo inspect -f '{{.State.Pid}}' "$id")
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  cg=$(awk -F: '$1 == "0" {print $3}' /proc/"$pid"/cgroup)
  [[ $cg == /cryo-*/"$id" ]] || fail "cgroup of $id: $cg"
  expect_eq "$(cat /sys/fs/cgroup"$cg"/memory.max)" "67108864" "memory.max"
  expect_eq "$(cat /sys/fs/cgroup"$cg"/pids.max)" "32" "pids.max"
else
  cg=$(awk -F: '$2 == "memory" {print $3}' /proc/"$pid"/cgroup)
  [[ $cg == /cryo-*/"$id" ]] || fail "memory cgroup of $id: $cg"
  expect_eq "$(cat /sys/fs/cgroup/memory"$cg"/memory.limit_in_bytes)" "67108864" "memory limit"
  expect_eq "$(cat /sys/fs/cgroup/pids"$cg"/pids.max)" "32" "pids limit"
fi
cryo rm -f -t 0 "$id" >/dev/null

# --- --rm and run/rm cycles leave nothing behind ---
cryo run --rm --name gone busybox true
expect_exit 125 cryo inspect gone
cycle_ids=()
for i in $(seq 50); do
  id=$(cryo run -d busybox sleep 1000)
  cycle_ids+=("$id")
  cryo rm -f -t 0 "$id" >/dev/null
done
[[ -z $(cryo ps -aq) ]] || fail "containers left: $(cryo ps -a)"
[[ -z $(ls "$tmp/root/containers") ]] || fail "state left: $(ls "$tmp/root/containers")"
[[ -z $(ls "$tmp/run/containers") ]] || fail "runtime state left: $(ls "$tmp/run/containers")"
[[ -z $(monitor_pids) ]] || fail "monitors left: $(monitor_pids)"
! grep -q "$tmp" /proc/mounts || fail "mounts left: $(grep "$tmp" /proc/mounts)"
for d in /sys/fs/cgroup/*/cryo* /sys/fs/cgroup/cryo*; do
  [[ -d $d ]] || continue
  for id in "${cycle_ids[@]}"; do
    [[ ! -d $d/$id ]] || fail "cgroup left: $d/$id"
  done
done
for id in "${cycle_ids[@]}"; do
  ! ip link show "veth${id:0:11}" >/dev/null 2>&1 || fail "veth of $id left"
done

echo "lifecycle: all checks passed"
