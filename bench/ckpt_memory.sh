#!/bin/bash
# Dump/restore throughput of the checkpoint engine on a process holding touched memory, next to
# the machine's ceilings measured in the same run.
#   bench/ckpt_memory.sh [BUILD_DIR] [MIB...]      (default: build, 1024 4096)
# Images go to tmpfs (/dev/shm). Figures: dump GB/s = bytes of the process's memory / time of
# `cryo cr dump`; restore GB/s = same bytes / time of `cryo cr restore -d`; frozen time from
# --print-stats. Run as root.
set -eu
build="${1:-build}"
shift || true
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(1024 4096)
cryo="$build/src/cli/cryo"
helper="$build/bench/ckpt_memory"
dir=$(mktemp -d /dev/shm/ckpt-bench.XXXXXX)
holder=""
cleanup() {
  if [ -n "$holder" ]; then kill -KILL "$holder" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f", b / t / 1e9 }'; }

echo "== load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
echo "== ceilings (1 GiB)"
"$helper" ceilings 1024 "$dir"

for mib in "${sizes[@]}"; do
  for zero in 0 50; do
    rm -rf "$dir/img" "$dir/out"
    setsid "$helper" hold "$mib" "$zero" "$dir/out" </dev/null >/dev/null 2>&1 &
    holder=$!
    until grep -q READY "$dir/out" 2>/dev/null; do sleep 0.05; done
    bytes=$((mib * 1048576))
    # The ceiling of the same memory state: as many bytes written into tmpfs by dd while the
    # process holds its memory, kept during the dump so that the dump, too, needs memory nobody
    # used lately. This VM backs such memory only on first touch, at well under 1 GB/s
    # (4 GiB: 9-13 s by dd, after which a dump into the memory dd freed took 0.8 s).
    fresh_t0=$(now)
    dd if=/dev/zero of="$dir/fresh" bs=2M count=$((mib / 2)) status=none
    fresh_t1=$(now)
    fresh_rate=$(rate "$bytes" "$(awk -v a="$fresh_t0" -v b="$fresh_t1" 'BEGIN { print b - a }')")
    t0=$(now)
    stats=$("$cryo" cr dump -t "$holder" -D "$dir/img" --print-stats)
    t1=$(now)
    rm -f "$dir/fresh"
    { wait "$holder"; } 2>/dev/null || true
    dump_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    frozen_us=$(echo "$stats" | awk '/^frozen_time/ { print $2 }')
    written=$(echo "$stats" | awk '/^pages_written/ { print $2 }')
    image=$(du -sb "$dir/img" | awk '{ print $1 }')
    t0=$(now)
    rstats=$("$cryo" cr restore -D "$dir/img" -d --print-stats)
    t1=$(now)
    restore_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    kill -TERM "$holder"
    while [ -e /proc/"$holder" ] && [ "$(awk '{print $3}' /proc/"$holder"/stat 2>/dev/null)" != Z ]; do sleep 0.05; done
    sleep 0.1
    result=$(grep -E '^(PASS|FAIL)' "$dir/out" || echo "no result")
    holder=""
    printf "%5d MiB, %2d%% zero pages: dump %5.2f GB/s (%.3f s, frozen %.1f ms, %d pages written, image %d MiB), restore %5.2f GB/s (%.3f s), check: %s\n" \
      "$mib" "$zero" "$(rate "$bytes" "$dump_s")" "$dump_s" "$(awk -v f="$frozen_us" 'BEGIN{print f/1000}')" \
      "$written" $((image / 1048576)) "$(rate "$bytes" "$restore_s")" "$restore_s" "$result"
    echo "    ceiling: dd of $mib MiB into tmpfs beside the process, just before the dump $fresh_rate GB/s"
    echo "$rstats" | sed 's/^/    restore /' | tr '\n' ' '
    echo
  done
done

# Per-process frozen cost: trees of 1 and N small processes; the difference of their frozen times
# divided by N-1 is what each more process costs while the tree is frozen.
tree_frozen_ms() {
  rm -rf "$dir/img" "$dir/out"
  setsid "$helper" tree "$1" "$dir/out" </dev/null >/dev/null 2>&1 &
  holder=$!
  until grep -q READY "$dir/out" 2>/dev/null; do sleep 0.05; done
  local stats
  stats=$("$cryo" cr dump -t "$holder" -D "$dir/img" --leave-running --print-stats)
  kill -TERM "$holder"
  { wait "$holder"; } 2>/dev/null || true
  holder=""
  grep -q PASS "$dir/out" || echo "tree of $1: the tree did not survive the dump" >&2
  echo "$stats" | awk '/^frozen_time/ { printf "%.2f", $2 / 1000 }'
}
tree_size=${TREE_SIZE:-50}
one=$(tree_frozen_ms 1)
many=$(tree_frozen_ms "$tree_size")
echo "frozen time: 1 process $one ms, $tree_size processes $many ms: $(awk -v a="$one" -v b="$many" -v n="$tree_size" 'BEGIN { printf "%.2f", (b - a) / (n - 1) }') ms per extra process (target <= 2 ms)"

# Per-process overhead: a tiny process (the counter zdtm program if built).
small="$build/tests/zdtm/bin/counter"
if [ -x "$small" ]; then
  rm -rf "$dir/img" "$dir/out"
  setsid "$small" "$dir/out" </dev/null >/dev/null 2>&1 &
  holder=$!
  until grep -q READY "$dir/out" 2>/dev/null; do sleep 0.05; done
  stats=$("$cryo" cr dump -t "$holder" -D "$dir/img" --print-stats)
  { wait "$holder"; } 2>/dev/null || true
  echo "small process (4 MiB): $(echo "$stats" | tr '\n' ' ')"
  holder=""
fi
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
