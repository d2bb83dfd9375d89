#!/usr/bin/env bash
# `cryo container checkpoint|restore` repeated and in bulk: 20 cycles in a row on one container
# (the counter keeps counting, the PIDs of its processes stay), a multi-process container (httpd
# serving, plus worker pairs talking over pipes) whose every process comes back with the same PID
# and goes on, and -a/-l on several containers at once.
source "${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib/container_checkpoint_common.bash"

# --- 20 cycles in a row ---
counter=$(cryo run -d busybox sh -c 'sleep 100000 & i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done')
wait_until count_at_least "$counter" 3
processes_before=$(stable_processes "$counter")
[[ $(wc -l <<<"$processes_before") == 2 ]] || fail "expected sh and sleep in the counter: $processes_before"
for cycle in $(seq 20); do
  cryo container checkpoint "$counter" >/dev/null
  expect_eq "$(state_of "$counter")" "exited" "state after checkpoint $cycle"
  at_checkpoint=$(last_count "$counter")
  cryo container restore "$counter" >/dev/null
  expect_eq "$(state_of "$counter")" "running" "state after restore $cycle"
  expect_eq "$(stable_processes "$counter")" "$processes_before" "processes (PIDs, command lines) after cycle $cycle"
  wait_until count_at_least "$counter" $((at_checkpoint + 2))
  counter_continuous "$counter" || fail "counter log not continuous after cycle $cycle"
done
cryo rm -f -t 0 "$counter" >/dev/null

# --- a multi-process container: httpd, and three producer | consumer pairs over pipes ---
port=$(free_port)
server=$(cryo run -d -p "127.0.0.1:$port:8080/tcp" busybox sh -c '
  for w in 1 2 3; do
    (i=0; while true; do i=$((i+1)); echo "$i"; sleep 0.1; done) |
      (while read n; do echo "w$w $n"; done) &
  done
  exec httpd -f -p 8080 -h /www')
wait_until curl -sf "http://127.0.0.1:$port/"
# The log is read whole first: a `grep -q` quitting early on a log bigger than a pipe's buffer
# would make `cryo logs` die of SIGPIPE, and the pipeline fail (pipefail) however far they count.
workers_counted() {
  local log w
  log=$(cryo logs "$server")
  for w in 1 2 3; do grep -q "^w$w $1\$" <<<"$log" || return 1; done
}
wait_until workers_counted 3
# Each worker's numbers follow on one by one, whatever the checkpoints in between.
workers_continuous() {
  local w
  for w in 1 2 3; do
    cryo logs "$server" | awk -v w="w$w" '$1 == w { if (seen && $2 != prev + 1) { print w " gap " prev " -> " $2; exit 1 } prev = $2; seen = 1 }' ||
      return 1
  done
}
before=$(stable_processes "$server")
# httpd as PID 1, three producers and three consumers.
[[ $(wc -l <<<"$before") -ge 7 ]] || fail "multi-process container has: $before"
page=$(curl -sf "http://127.0.0.1:$port/")
for cycle in 1 2 3; do
  cryo container checkpoint "$server" >/dev/null
  last=$(cryo logs "$server" | awk '$1 == "w1" { n = $2 } END { print n }')
  cryo container restore "$server" >/dev/null
  expect_eq "$(stable_processes "$server")" "$before" "processes of the multi-process container after cycle $cycle"
  expect_eq "$(curl -sf "http://127.0.0.1:$port/")" "$page" "httpd answers after cycle $cycle"
  wait_until workers_counted $((last + 3))
  workers_continuous || fail "a worker's count restarted after cycle $cycle"
done
cryo rm -f -t 0 "$server" >/dev/null

# --- -a and -l on several containers ---
ids=()
for n in 1 2 3; do
  ids+=("$(cryo run -d busybox sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done')")
done
stopped=$(cryo run -d busybox true)
is_exited() { [[ $(state_of "$1") == exited ]]; }
wait_until is_exited "$stopped"
for id in "${ids[@]}"; do wait_until count_at_least "$id" 2; done
cryo container checkpoint -a >"$tmp/all"
expect_eq "$(sort "$tmp/all")" "$(printf '%s\n' "${ids[@]}" | sort)" "checkpoint -a prints every running container"
for id in "${ids[@]}"; do
  expect_eq "$(state_of "$id")" "exited" "state of $id after checkpoint -a"
  expect_eq "$(cryo inspect -f '{{.State.Checkpointed}}' "$id")" "true" "Checkpointed of $id"
done
declare -A at
for id in "${ids[@]}"; do at[$id]=$(last_count "$id"); done
cryo container restore -a >"$tmp/all"
expect_eq "$(sort "$tmp/all")" "$(printf '%s\n' "${ids[@]}" | sort)" "restore -a prints every checkpointed container"
for id in "${ids[@]}"; do
  expect_eq "$(state_of "$id")" "running" "state of $id after restore -a"
  wait_until count_at_least "$id" $((at[$id] + 2))
  counter_continuous "$id" || fail "counter $id restarted after restore -a"
done
expect_eq "$(state_of "$stopped")" "exited" "a stopped container is left alone by -a"
# -l: the container created last.
latest=$(cryo run -d busybox sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done')
wait_until count_at_least "$latest" 2
expect_eq "$(cryo container checkpoint -l)" "$latest" "checkpoint -l acts on the latest container"
expect_eq "$(state_of "$latest")" "exited" "state of the latest after checkpoint -l"
for id in "${ids[@]}"; do expect_eq "$(state_of "$id")" "running" "-l leaves $id alone"; done
at_latest=$(last_count "$latest")
expect_eq "$(cryo container restore -l)" "$latest" "restore -l acts on the latest container"
wait_until count_at_least "$latest" $((at_latest + 2))
counter_continuous "$latest" || fail "latest counter restarted"
expect_exit 125 cryo container checkpoint -a "${ids[0]}"
cryo rm -f -t 0 -a >/dev/null

expect_nothing_left_of "$latest"
echo PASS
