#!/bin/bash
# A real program, not one of ours: a multi-threaded python3 with a child process and a pipe
# between them is dumped (killed) and restored; its threads, its memory and the byte stream of the
# pipe must carry on where they were (every number the parent sent reaches the child exactly once,
# thread counters continue from their dumped values, a large object in memory is intact).
set -u
CRYO="${CRYO:?}"
command -v python3 >/dev/null || { echo "FAIL: python3 is missing (scripts/install-deps.sh)"; exit 1; }
source "$(dirname "$0")/lib/cr_tree_common.bash"
cr_test_setup ckpt-python
fail_details() {
  [ -f "$work/out" ] && sed 's/^/  out: /' "$work/out"
}

cat >"$work/prog.py" <<'PY'
import os, signal, sys, threading, time, zlib

out_path = sys.argv[1]
def report(line):
    with open(out_path, "a") as f:
        f.write(line + "\n")

data = [i * i for i in range(300000)]
data_crc = zlib.crc32(repr(data).encode())
read_fd, write_fd = os.pipe()
child = os.fork()
if child == 0:
    os.close(write_fd)
    total = count = 0
    with os.fdopen(read_fd, "r") as stream:
        for line in stream:
            total += int(line)
            count += 1
    report("CHILD total=%d count=%d" % (total, count))
    os._exit(0)
os.close(read_fd)

counters = [0, 0]
stop = threading.Event()
def work(index):
    while not stop.is_set():
        counters[index] += 1
        time.sleep(0.001)
threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
for t in threads:
    t.start()

state = {"sent": 0, "sum": 0}
snapshot = threading.Event()
terminate = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: snapshot.set())
signal.signal(signal.SIGTERM, lambda *_: terminate.set())
pipe = os.fdopen(write_fd, "w", buffering=1)
report("READY")
while not terminate.is_set():
    state["sent"] += 1
    state["sum"] += state["sent"]
    pipe.write("%d\n" % state["sent"])
    if snapshot.is_set():
        snapshot.clear()
        report("STATE t0=%d t1=%d sent=%d" % (counters[0], counters[1], state["sent"]))
    time.sleep(0.002)
stop.set()
for t in threads:
    t.join()
pipe.close()
os.waitpid(child, 0)
crc_ok = zlib.crc32(repr(data).encode()) == data_crc
report("PARENT total=%d count=%d crc=%s" % (state["sum"], state["sent"], "ok" if crc_ok else "BAD"))
PY

setsid python3 "$work/prog.py" "$work/out" </dev/null >"$work/stdout" 2>&1 &
pid=$!
pids+=("$pid")
until grep -q READY "$work/out" 2>/dev/null; do sleep 0.05; done
child=$(cat /proc/"$pid"/task/*/children | tr -s ' ' '\n' | grep -v '^$' | head -1)
[ -n "$child" ] && pids+=("$child")

# Counter values just before the dump.
kill -USR1 "$pid"
until grep -q STATE "$work/out" 2>/dev/null; do sleep 0.05; done
read -r before0 before1 before_sent < <(grep STATE "$work/out" | tail -1 |
  sed 's/.*t0=\([0-9]*\) t1=\([0-9]*\) sent=\([0-9]*\).*/\1 \2 \3/')
threads=$(ls /proc/"$pid"/task | wc -l)
[ "$threads" -ge 3 ] || fail "python3 runs $threads threads, expected 3"

"$CRYO" cr dump -t "$pid" -D "$work/img" || fail "dump"
{ wait "$pid"; } 2>/dev/null
kill -0 "$pid" 2>/dev/null && fail "the dumped tree still runs"
# The killed child is reaped by init; until then its PID (and its session, the root's PID) is taken.
for _ in $(seq 600); do [ -n "$child" ] && [ -e /proc/"$child" ] || break; sleep 0.05; done

"$CRYO" cr restore -D "$work/img" -d || fail "restore"
[ "$(ls /proc/"$pid"/task | wc -l)" -eq "$threads" ] || fail "threads after restore"
[ -n "$child" ] && { kill -0 "$child" || fail "the child was not restored"; }
sleep 0.5
kill -USR1 "$pid"
until [ "$(grep -c STATE "$work/out")" -ge 2 ]; do sleep 0.05; done
read -r after0 after1 after_sent < <(grep STATE "$work/out" | tail -1 |
  sed 's/.*t0=\([0-9]*\) t1=\([0-9]*\) sent=\([0-9]*\).*/\1 \2 \3/')
[ "$after0" -gt "$before0" ] && [ "$after1" -gt "$before1" ] ||
  fail "thread counters did not go on (before $before0/$before1, after $after0/$after1)"
[ "$after_sent" -gt "$before_sent" ] || fail "the parent stopped sending"

kill -TERM "$pid"
for _ in $(seq 600); do grep -q PARENT "$work/out" 2>/dev/null && break; sleep 0.05; done
parent_line=$(grep PARENT "$work/out") || fail "the parent did not finish"
child_line=$(grep CHILD "$work/out") || fail "the child did not finish"
echo "$parent_line" | grep -q "crc=ok" || fail "memory of the interpreter changed: $parent_line"
[ "${parent_line#PARENT }" = "${child_line#CHILD } crc=ok" ] ||
  fail "pipe stream broken: parent sent '${parent_line#PARENT }', child got '${child_line#CHILD }'"
echo "PASS: $parent_line, counters $before0/$before1 -> $after0/$after1"
