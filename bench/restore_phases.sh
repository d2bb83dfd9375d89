#!/usr/bin/env bash
# Where the time of an in-place restore (and of the checkpoint before it) goes, phase by phase,
# for the httpd container of bench/container_cr.sh: CRYO_PHASE_TRACE makes the CLI, the monitor
# and the restore helper append a wall-clock mark at each phase (common/phase_trace.h); this
# script adds its own marks (before each command starts, after it returned, the first HTTP
# answer) and prints, for each phase, the median (min, max) over CYCLES cycles of the time since
# the previous mark, and since the command started.
#   bash bench/restore_phases.sh [BUILD_DIR] [CYCLES]      (default: build, 10)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/bench/lib/http.bash"
bench_store "${1:-$src/build}" phases
cycles=${2:-10}
mark() { echo "${EPOCHREALTIME/./} $$ $1" >>"$tmp/trace.$2"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
BUSYBOX_TAR=${BUSYBOX_TAR:-$build/busybox-rootfs.tar} CRYO=$cryo_bin \
  bash "$src/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run"
port=$(free_port)
id=$(cryo run -dt -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
until http_answers "$port" 2>/dev/null; do sleep 0.01; done

for i in $(seq "$cycles"); do
  export CRYO_PHASE_TRACE=$tmp/trace.$i
  mark "bench: checkpoint command starts (exec)" "$i"
  cryo container checkpoint "$id" >/dev/null
  mark "bench: checkpoint command returned" "$i"
  mark "bench: restore command starts (exec)" "$i"
  cryo container restore "$id" >/dev/null
  mark "bench: restore command returned" "$i"
  until http_answers "$port" 2>/dev/null; do :; done
  mark "bench: first HTTP answer" "$i"
  unset CRYO_PHASE_TRACE
done
cryo rm -f -t 0 "$id" >/dev/null

python3 - "$tmp" "$cycles" <<'PY'
import collections, statistics, sys
tmp, cycles = sys.argv[1], int(sys.argv[2])
# Per cycle: the marks in time order; the same phase may appear in several processes (the
# "process loaded" mark of the CLI and of the monitor...): it is numbered by occurrence.
steps = collections.OrderedDict()
for i in range(1, cycles + 1):
    marks = []
    for line in open(f"{tmp}/trace.{i}"):
        t, pid, phase = line.rstrip("\n").split(" ", 2)
        marks.append((int(t), phase))
    marks.sort(key=lambda m: m[0])
    seen = collections.Counter()
    start = {"checkpoint": None, "restore": None}
    prev = marks[0][0]
    for t, phase in marks:
        seen[phase] += 1
        key = phase if seen[phase] == 1 else f"{phase} #{seen[phase]}"
        if phase == "bench: checkpoint command starts (exec)": start["cmd"] = t
        if phase == "bench: restore command starts (exec)": start["cmd"] = t
        steps.setdefault(key, []).append((t - prev, t - start.get("cmd", t)))
        prev = t
def med(v): return statistics.median(v) / 1000
print(f"{'phase':72s} {'step ms':>8s} {'(min-max)':>14s} {'since cmd':>9s}")
for key, values in steps.items():
    d = [v[0] for v in values]; s = [v[1] for v in values]
    print(f"{key[:72]:72s} {med(d):8.1f} {min(d)/1000:6.1f}-{max(d)/1000:<7.1f} {med(s):9.1f}  n={len(d)}")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
