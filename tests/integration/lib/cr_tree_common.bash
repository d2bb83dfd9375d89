# Shared by the tests/integration/ckpt_*.sh that dump and restore process trees with `cryo cr`
# (sourced, not a test of its own): a work directory, the PIDs the test started (killed at exit),
# and fail.
work=
pids=()

# cr_test_setup WORK_PREFIX: makes $work (/tmp/WORK_PREFIX.XXXXXX) and installs the cleanup.
cr_test_setup() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  trap cleanup EXIT
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
# What a test adds to a failure report (its program's output...).
fail_details() { :; }
fail() {
  echo "FAIL: $*"
  fail_details
  exit 1
}
# dump_started PROGRAM: starts PROGRAM (a zdtm program writing $work/out) in a session of its own,
# waits until it is READY, dumps it into $work/img (which kills it) and reaps it; $pid is its PID.
dump_started() {
  setsid "$1" "$work/out" </dev/null >/dev/null 2>&1 &
  pid=$!
  pids+=("$pid")
  until grep -q READY "$work/out" 2>/dev/null; do sleep 0.02; done
  "$CRYO" cr dump -t "$pid" -D "$work/img" || fail "dump"
  { wait "$pid"; } 2>/dev/null
}
