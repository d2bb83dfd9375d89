#!/usr/bin/env bash
# Checkpoint and restore of whole containers in place, against the targets of issue 5:
#   httpd container (busybox httpd, -t console, published port):
#     checkpoint (podman_checkpoint_duration)               <= 30 ms
#     restore until the first HTTP answer                   <= 50 ms
#     downtime seen by a client polling every millisecond
#       through checkpoint + restore                        <= 100 ms
#   container holding 1 GiB of touched memory: checkpoint   <= 1.5 s
# The first HTTP answer after a restore is asked for by bash itself (/dev/tcp: no process start
# per attempt; a curl start costs 20-40 ms, not the container's), timed with $EPOCHREALTIME.
# Prints the medians (min, max) of CYCLES cycles, each cycle's --print-stats figures, the machine's
# ceilings measured in the same run (bench/ceilings) and the load average: figures mean something
# only on a quiet machine.
#   bash bench/container_cr.sh [BUILD_DIR] [CYCLES]      (default: build, 10)
# CRYO_BENCH_HTTPD_ONLY=1 skips the 1 GiB container (e.g. to compare two builds one after the
# other under the same load).
# Uses its own --root/--runroot under /tmp (CRYO_BENCH_DIR to put them elsewhere) and free
# loopback ports. Run as root.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/bench/lib/http.bash"
bench_store "${1:-$src/build}" cr
cycles=${2:-10}
bench_extra_cleanup() { [[ -n ${poller:-} ]] && kill "$poller" 2>/dev/null || true; }
# Median (min, max) of the numbers (µs) in file $1, in ms.
summary() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%8.1f ms  (min %.1f, max %.1f, n=%d)", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000, NR}'; }
json_field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, {"d": d}))' "$1" "$2"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/bench/ceilings" --size-mib 256 --disk-dir "$tmp" || echo "(ceilings failed)"

BUSYBOX_TAR=${BUSYBOX_TAR:-$build/busybox-rootfs.tar} CRYO=$cryo_bin \
  bash "$src/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run"
port=$(free_port)
id=$(cryo run -dt -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.01; done
t0=${EPOCHREALTIME/./}
http_answers "$port"
t1=${EPOCHREALTIME/./}
echo "for scale: one /dev/tcp request to the running httpd: $((t1 - t0)) us"

# --- checkpoint, and restore until the first HTTP answer ---
: >"$tmp/ckpt" ; : >"$tmp/restore_answer" ; : >"$tmp/restore_cli"
printf "%5s %10s %10s %10s %10s %10s %12s\n" cycle ckpt_us freeze_us frozen_us pages restore_us answer_us
for i in $(seq "$cycles"); do
  c=$(cryo container checkpoint --print-stats "$id")
  t0=${EPOCHREALTIME/./}
  r=$(cryo container restore --print-stats "$id")
  until http_answers "$port" 2>/dev/null; do :; done
  t1=${EPOCHREALTIME/./}
  ckpt=$(json_field "$c" 'd["podman_checkpoint_duration"]')
  restore=$(json_field "$r" 'd["podman_restore_duration"]')
  echo "$ckpt" >>"$tmp/ckpt"
  echo "$restore" >>"$tmp/restore_cli"
  echo $((t1 - t0)) >>"$tmp/restore_answer"
  printf "%5s %10s %10s %10s %10s %10s %12s\n" "$i" "$ckpt" \
    "$(json_field "$c" 'd["container_statistics"][0]["criu_statistics"]["freezing_time"]')" \
    "$(json_field "$c" 'd["container_statistics"][0]["criu_statistics"]["frozen_time"]')" \
    "$(json_field "$c" 'd["container_statistics"][0]["criu_statistics"]["pages_written"]')" \
    "$restore" $((t1 - t0))
done

# --- downtime seen by a client polling every millisecond ---
# gap_us: the longest time between two answered attempts; gap_start: the start of the last
# attempt answered before it, from the checkpoint command's start (~ the freeze); then both
# commands' wall times, and the start of the first attempt answered after the gap, from the
# restore command's return (negative: an attempt made before the command had returned).
: >"$tmp/downtime"
printf "%5s %10s %14s %12s %12s %14s\n" cycle gap_us gap_start_us ckpt_cmd_us restore_cmd_us \
  answer_after_us
for i in $(seq "$cycles"); do
  rm -f "$tmp/stop" "$tmp/stop.ready"
  python3 - "$port" "$tmp/stop" >"$tmp/poll" <<'PY' &
import os, selectors, socket, sys, time
# A new connection attempt every millisecond, without waiting for the earlier ones (while the
# container is down a SYN goes unanswered for long): each answered attempt counts at the time it
# started, so the longest gap between answered attempts is the downtime, to the millisecond,
# whatever the latency of one request on a loaded machine.
import resource
port, stop = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
selector = selectors.DefaultSelector()
answered = []
request = b"GET / HTTP/1.0\r\n\r\n"
next_start = time.monotonic()
while not os.path.exists(stop):
    now = time.monotonic()
    if now >= next_start:
        next_start += 0.001
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        selector.register(s, selectors.EVENT_WRITE, {"start": now, "wall": time.time(), "sent": False})
    for key, _ in selector.select(timeout=max(0.0, next_start - time.monotonic())):
        s, state = key.fileobj, key.data
        try:
            if not state["sent"]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    raise OSError("connect failed")
                s.send(request)
                state["sent"] = True
                selector.modify(s, selectors.EVENT_READ, state)
                continue
            if s.recv(16).startswith(b"HTTP"):
                if not answered:
                    open(stop + ".ready", "w").close()
                answered.append((state["start"], state["wall"]))
        except OSError:
            pass
        selector.unregister(s)
        s.close()
    # Attempts older than 2 s are dropped (their SYN was lost while the container was down).
    for key in list(selector.get_map().values()):
        if time.monotonic() - key.data["start"] > 2:
            selector.unregister(key.fileobj)
            key.fileobj.close()
answered.sort()
# The longest gap, and the wall-clock times (µs) of the last attempt answered before it and the
# first answered after it, to set against the commands' own times.
gaps = [(b[0] - a[0], a[1], b[1]) for a, b in zip(answered, answered[1:])]
gap = max(gaps) if gaps else (-1e-6, 0, 0)
print(int(gap[0] * 1e6), int(gap[1] * 1e6), int(gap[2] * 1e6))
print("poller: %d answers, longest gap %s us" % (len(answered), int(gap[0] * 1e6)), file=sys.stderr)
PY
  poller=$!
  # The poller has had answers before the checkpoint.
  until [[ -e $tmp/stop.ready ]]; do sleep 0.01; done
  sleep 0.2
  # The poller's connections in flight inside httpd go with the container. The two commands
  # run back to back, as a user would; their start and end times only annotate the gap.
  c0=${EPOCHREALTIME/./}
  cryo container checkpoint --tcp-established "$id" >/dev/null
  c1=${EPOCHREALTIME/./}
  cryo container restore --tcp-established "$id" >/dev/null
  r1=${EPOCHREALTIME/./}
  until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; do :; done
  sleep 0.2
  touch "$tmp/stop"
  wait "$poller"
  poller=""
  read -r gap gap_from gap_to <"$tmp/poll"
  echo "$gap" >>"$tmp/downtime"
  printf "%5s %10s %14s %12s %12s %14s\n" "$i" "$gap" $((gap_from - c0)) $((c1 - c0)) $((r1 - c1)) \
    $((gap_to - r1))
done
cryo rm -f -t 0 "$id" >/dev/null

# --- a container holding 1 GiB of touched memory ---
if [[ -z ${CRYO_BENCH_HTTPD_ONLY:-} ]]; then
: >"$tmp/big_ckpt" ; : >"$tmp/big_restore"
# Random bytes: zero pages would not be dumped, nor restored, nor dumped again.
big=$(cryo run -d busybox sh -c 'dd if=/dev/urandom bs=1024M count=1 2>/dev/null | sleep 1000000')
rss_mib() { awk '/^Rss/ {s += $2} END {print int(s / 1024)}' /proc/"$1"/smaps_rollup; }
dd_pid=""
until [[ -n $dd_pid && $(rss_mib "$dd_pid") -ge 1024 ]]; do
  sleep 0.1
  dd_pid=$(for p in $(cat /sys/fs/cgroup/pids/cryo*/"$big"/cgroup.procs); do
    [[ $(cat /proc/"$p"/comm) == dd ]] && echo "$p"; done || true)
done
for i in 1 2 3; do
  c=$(cryo container checkpoint --print-stats "$big")
  json_field "$c" 'd["podman_checkpoint_duration"]' >>"$tmp/big_ckpt"
  echo "1 GiB cycle $i: checkpoint $(json_field "$c" 'd["podman_checkpoint_duration"]') us, frozen $(json_field "$c" 'd["container_statistics"][0]["criu_statistics"]["frozen_time"]') us, pages $(json_field "$c" 'd["container_statistics"][0]["criu_statistics"]["pages_written"]')"
  r=$(cryo container restore --print-stats "$big")
  json_field "$r" 'd["podman_restore_duration"]' >>"$tmp/big_restore"
done
cryo rm -f -t 0 "$big" >/dev/null
fi

echo
echo "httpd checkpoint (podman_checkpoint_duration) $(summary "$tmp/ckpt")   target <= 30 ms"
echo "httpd restore until first HTTP answer         $(summary "$tmp/restore_answer")   target <= 50 ms"
echo "httpd restore (podman_restore_duration)       $(summary "$tmp/restore_cli")"
echo "downtime seen by a 1 ms poller (ckpt+restore) $(summary "$tmp/downtime")   target <= 100 ms"
[[ -s $tmp/big_ckpt ]] && echo "1 GiB checkpoint (podman_checkpoint_duration) $(summary "$tmp/big_ckpt")   target <= 1.5 s"
[[ -s $tmp/big_restore ]] && echo "1 GiB restore (podman_restore_duration)       $(summary "$tmp/big_restore")"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
