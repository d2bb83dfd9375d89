#!/usr/bin/env bash
# Container start and removal latency: `run -d` of busybox httpd published on 127.0.0.1 until its
# first HTTP answer, and `rm -f -t 0` of the running container; median (and min/max) of N runs.
# The first answer is asked for by bash itself (/dev/tcp, no process start per attempt: curl's own
# start cost ~36 ms of the figure); one curl request is printed for scale. Also prints the cost of
# one /dev/tcp request to an already running container (part of the first figure), of
# `cryo --version` (process start of the CLI), the load average, and the steps of one `run -d`
# (--log-level debug timings of create and start), all measured in the same run.
#   bash bench/run_rm.sh [N]        (CRYO=path of the binary, default build/src/cli/cryo)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/bench/lib/http.bash"
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
runs=${1:-20}
tmp=$(mktemp -d /tmp/cryo-bench-run-rm.XXXXXX)
cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
cleanup() {
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

BUSYBOX_TAR=${BUSYBOX_TAR:-$src/build/busybox-rootfs.tar} CRYO=$cryo_bin \
  bash "$src/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run"

median() { sort -n | awk '{a[NR]=$1} END {printf "%.1f ms (min %.1f, max %.1f, n=%d)", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000, NR}'; }

# Warm-up: the bridge, nftables table and page cache exist before the first measured run.
port=$(free_port)
id=$(cryo run -d -p 127.0.0.1:$port:8080 busybox httpd -f -p 8080)
until http_answers "$port" 2>/dev/null; do sleep 0.01; done
: >"$tmp/curl"
: >"$tmp/devtcp"
for i in $(seq "$runs"); do
  t0=${EPOCHREALTIME/./}
  curl -s -o /dev/null http://127.0.0.1:$port/
  t1=${EPOCHREALTIME/./}
  http_answers "$port"
  echo $((t1 - t0)) >>"$tmp/curl"
  echo $((${EPOCHREALTIME/./} - t1)) >>"$tmp/devtcp"
done
cryo rm -f -t 0 "$id" >/dev/null

# The steps of one run -d, as the engine times them.
port=$(free_port)
id=$(cryo --log-level debug run -d -p 127.0.0.1:$port:8080 busybox httpd -f -p 8080 2>"$tmp/steps")
until http_answers "$port" 2>/dev/null; do :; done
cryo rm -f -t 0 "$id" >/dev/null

: >"$tmp/version"
for i in $(seq "$runs"); do
  t0=${EPOCHREALTIME/./}
  "$cryo_bin" --version >/dev/null
  echo $((${EPOCHREALTIME/./} - t0)) >>"$tmp/version"
done

: >"$tmp/run_times"
: >"$tmp/rm_times"
for i in $(seq "$runs"); do
  port=$(free_port)
  t0=${EPOCHREALTIME/./}
  id=$(cryo run -d -p 127.0.0.1:$port:8080 busybox httpd -f -p 8080)
  until http_answers "$port" 2>/dev/null; do :; done
  t1=${EPOCHREALTIME/./}
  cryo rm -f -t 0 "$id" >/dev/null
  t2=${EPOCHREALTIME/./}
  echo $((t1 - t0)) >>"$tmp/run_times"
  echo $((t2 - t1)) >>"$tmp/rm_times"
done

echo "load average:                $(cut -d' ' -f1-3 /proc/loadavg)"
echo "run -d to first HTTP answer: $(median <"$tmp/run_times")  (answer polled by bash /dev/tcp)"
echo "rm -f -t 0 (running):        $(median <"$tmp/rm_times")"
echo "for scale, one /dev/tcp GET: $(median <"$tmp/devtcp")"
echo "for scale, one curl request:  $(median <"$tmp/curl")"
echo "for scale, cryo --version:    $(median <"$tmp/version")"
echo "steps of one run -d (engine debug timings):"
sed -n 's/.*timing \(.*\)$/  \1/p' "$tmp/steps"
