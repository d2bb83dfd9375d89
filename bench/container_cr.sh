#!/bin/bash
# Checkpoint and restore of a whole container in place (busybox httpd with a published port),
# repeated: prints each cycle's `cryo container checkpoint|restore --print-stats` figures and the
# time until the restored httpd answers again.
#   bench/container_cr.sh [BUILD_DIR] [CYCLES]      (default: build, 10)
# Uses its own --root/--runroot under /tmp and a free loopback port. Run as root.
set -eu
build="${1:-build}"
cycles="${2:-10}"
src=$(cd "$(dirname "$0")/.." && pwd)
cryo_bin="$build/src/cli/cryo"
tmp=$(mktemp -d /tmp/cryo-cr-bench.XXXXXX)
cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
cleanup() {
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
now() { date +%s%N; }

CRYO=$cryo_bin bash "$src/scripts/import-busybox-image.sh" --root "$tmp/root" --runroot "$tmp/run"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
id=$(cryo run -dt -p "127.0.0.1:$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
until curl -sf "http://127.0.0.1:$port/" >/dev/null; do sleep 0.05; done

printf "%5s %12s %12s %12s %12s %12s %14s\n" cycle ckpt_us frozen_us pages restore_us rst_rt_us answers_after_us
for i in $(seq "$cycles"); do
  c=$(cryo container checkpoint --print-stats "$id")
  t0=$(now)
  r=$(cryo container restore --print-stats "$id")
  until curl -sf "http://127.0.0.1:$port/" >/dev/null; do sleep 0.01; done
  t1=$(now)
  python3 - "$i" "$c" "$r" $(((t1 - t0) / 1000)) <<'PY'
import json, sys
c, r = json.loads(sys.argv[2]), json.loads(sys.argv[3])
cs, rs = c["container_statistics"][0], r["container_statistics"][0]
print("%5s %12d %12d %12d %12d %12d %14s" % (sys.argv[1], c["podman_checkpoint_duration"],
      cs["criu_statistics"]["frozen_time"], cs["criu_statistics"]["pages_written"],
      r["podman_restore_duration"], rs["runtime_restore_duration"], sys.argv[4]))
PY
done
