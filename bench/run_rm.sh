#!/usr/bin/env bash
# Container start and removal latency: `run -d` of busybox httpd published on 127.0.0.1 until its
# first HTTP answer, and `rm -f -t 0` of the running container; median (and min/max) of N runs.
# Also prints the cost of one curl request to an already running container (part of the first
# figure) and of `cryo --version` (process start of the CLI), measured in the same run.
#   bash bench/run_rm.sh [N]        (CRYO=path of the binary, default build/src/cli/cryo)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
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

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.1f ms (min %.1f, max %.1f, n=%d)", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000, NR}'; }

# Warm-up: the bridge, nftables table and page cache exist before the first measured run.
port=$(free_port)
id=$(cryo run -d -p 127.0.0.1:$port:8080 busybox httpd -f -p 8080)
until curl -s -o /dev/null http://127.0.0.1:$port/; do sleep 0.01; done
: >"$tmp/curl"
for i in $(seq "$runs"); do
  t0=$(now_us)
  curl -s -o /dev/null http://127.0.0.1:$port/
  echo $(($(now_us) - t0)) >>"$tmp/curl"
done
cryo rm -f -t 0 "$id" >/dev/null

: >"$tmp/version"
for i in $(seq "$runs"); do
  t0=$(now_us)
  "$cryo_bin" --version >/dev/null
  echo $(($(now_us) - t0)) >>"$tmp/version"
done

: >"$tmp/run_times"
: >"$tmp/rm_times"
for i in $(seq "$runs"); do
  port=$(free_port)
  t0=$(now_us)
  id=$(cryo run -d -p 127.0.0.1:$port:8080 busybox httpd -f -p 8080)
  until curl -s -o /dev/null http://127.0.0.1:$port/; do :; done
  t1=$(now_us)
  cryo rm -f -t 0 "$id" >/dev/null
  t2=$(now_us)
  echo $((t1 - t0)) >>"$tmp/run_times"
  echo $((t2 - t1)) >>"$tmp/rm_times"
done

echo "run -d to first HTTP answer: $(median <"$tmp/run_times")"
echo "rm -f -t 0 (running):        $(median <"$tmp/rm_times")"
echo "for scale, one curl request:  $(median <"$tmp/curl")"
echo "for scale, cryo --version:    $(median <"$tmp/version")"
