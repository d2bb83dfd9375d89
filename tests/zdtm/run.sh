#!/bin/bash
# Runs one zdtm program under checkpoint/restore:
#   run.sh [--mode dump|leave-running|two-rounds] PROGRAM
# The program is started in its own session with its results going to a file; once it reports
# READY it is dumped (and killed, or left running with -R), restored with its PID, sent SIGTERM,
# and must report PASS. Environment: CRYO = the cryo binary.
set -u
mode=dump
while [ $# -gt 1 ]; do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    *) break ;;
  esac
done
program="$1"
name=$(basename "$program")
CRYO="${CRYO:-cryo}"
# Per-test options for dump and restore (e.g. --file-locks): static/NAME.opts beside the source.
opts=()
opts_file="$(dirname "$0")/static/$name.opts"
[ -f "$opts_file" ] && read -r -a opts <"$opts_file"
work=$(mktemp -d "/tmp/zdtm-$name.XXXXXX")
out="$work/out"
pids=()

# The program and every process descending from it (restored ones are re-parented to init, so
# the session and group started here are searched too): all of them were started by this test.
ours() {
  local list=("${pids[@]}") found=1 table=() line p rest
  # pid ppid pgid sid of every process (comm, which may hold spaces, cut off at its last ')').
  for stat in /proc/[0-9]*/stat; do
    line=$(cat "$stat" 2>/dev/null) || continue
    p=${line%% *}
    rest=${line##*) }
    read -r _ pp pg sid _ <<<"$rest"
    table+=("$p $pp $pg $sid")
  done
  for row in "${table[@]}"; do
    read -r p pp pg sid <<<"$row"
    for root in "${pids[@]}"; do
      if [ "$sid" = "$root" ] || [ "$pg" = "$root" ]; then list+=("$p"); fi
    done
  done
  while [ $found = 1 ]; do
    found=0
    for row in "${table[@]}"; do
      read -r p pp _ <<<"$row"
      case " ${list[*]} " in *" $p "*) continue ;; esac
      case " ${list[*]} " in *" $pp "*) list+=("$p"); found=1 ;; esac
    done
  done
  echo "${list[@]}"
}

cleanup() {
  for p in $(ours); do
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL ($name, $mode): $*"
  [ -f "$out" ] && sed 's/^/  out: /' "$out"
  exit 1
}

# Waits (without a time limit of its own: ctest's TIMEOUT bounds the test) for a line in $out.
wait_for_line() {
  local line="$1" pid="$2"
  until grep -q "^$line" "$out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.02
  done
}

# Waits until the process (restored by cryo -d, so not our child) has exited.
wait_gone() {
  while kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)" != Z ]; do
    sleep 0.02
  done
}

setsid "$program" "$out" </dev/null >"$work/stdout" 2>&1 &
pid=$!
pids+=("$pid")
wait_for_line READY "$pid" || fail "the program exited before it was ready"

rounds=1
[ "$mode" = two-rounds ] && rounds=2
for round in $(seq 1 $rounds); do
  images="$work/images-$round"
  # Every process of the test's session (and group) and every descendant (some start sessions of
  # their own): their PIDs must be free before the restore.
  members=$(ps -e -o pid=,ppid=,pgid=,sid= | awk -v root="$pid" '
    { parent[$1] = $2; group[$1] = $3; session[$1] = $4 }
    END {
      for (p in parent)
        for (q = p; q != "" && q > 1; q = parent[q])
          if (q == root || group[q] == root || session[q] == root) { print p; break }
    }')
  if [ "$mode" = leave-running ]; then
    "$CRYO" cr dump "${opts[@]}" -t "$pid" -D "$images" -R || fail "dump (leave running) failed"
    kill -0 "$pid" 2>/dev/null || fail "the original died after dump -R"
    # The original goes on and must still pass; then the images are restored.
    kill -TERM "$pid"
    { wait "$pid"; } 2>/dev/null
    grep -q '^PASS' "$out" || fail "the original did not pass after dump -R"
    : >"$out"
    for member in $members; do
      while [ -e /proc/"$member" ]; do sleep 0.02; done
    done
  else
    "$CRYO" cr dump "${opts[@]}" -t "$pid" -D "$images" || fail "dump failed (round $round)"
    if [ "$round" = 1 ]; then
      { wait "$pid"; } 2>/dev/null  # reap the dumped (killed) original: its PID must be free
    else
      wait_gone "$pid"
      # A restored process is reaped by init; wait until the PID is free.
      while [ -e /proc/"$pid" ]; do sleep 0.02; done
    fi
    # The killed processes are reaped by their parents (init for orphans), not by us.
    for member in $members; do
      while [ -e /proc/"$member" ]; do sleep 0.02; done
    done
  fi
  "$CRYO" cr restore "${opts[@]}" -D "$images" -d --pidfile "$work/pidfile" || fail "restore failed (round $round)"
  restored=$(cat "$work/pidfile")
  [ "$restored" = "$pid" ] || fail "restored pid $restored differs from $pid"
  kill -0 "$pid" 2>/dev/null || fail "the restored process is gone"
done

kill -TERM "$pid"
# The restored process is not our child: wait for its result line.
until grep -qE '^(PASS|FAIL)' "$out" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ] || break
  sleep 0.02
done
sleep 0.05
grep -q '^PASS' "$out" || fail "no PASS after restore"
echo "PASS ($name, $mode)"
exit 0
