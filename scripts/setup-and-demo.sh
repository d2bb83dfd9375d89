#!/usr/bin/env bash
# Fresh machine to demo in one command: installs the dependencies, builds and installs cryo, imports
# the busybox image, and shows
#   1. a web server container that answers on a published port (cryo run -dt -p ...);
#   2. the checkpoint engine on a web server: it answers, is dumped (its processes end, their
#      state is on disk), is restored at exactly the same point (same PID, same listening socket,
#      same memory), and answers again.
# Whole-container checkpoint/restore (`cryo container checkpoint|restore`) is the next step of the
# project and will replace part 2 here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cmake --install build >/dev/null
CRYO=${CRYO:-/usr/local/bin/cryo}
export CRYO
bash scripts/import-busybox-image.sh

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
wait_http() {
  for _ in $(seq 1 200); do
    if curl -fsS --max-time 1 "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}

ctr_port=${DEMO_PORT:-8080}
srv_port=${DEMO_SERVER_PORT:-8081}
work=$(mktemp -d /tmp/cryo-demo.XXXXXX)
id="" server=""
cleanup() {
  [ -n "$id" ] && "$CRYO" rm -f "$id" >/dev/null 2>&1
  [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. a web server container"
say "cryo run -dt -p $ctr_port:8080/tcp busybox httpd -f -p 8080 -h /www"
id=$("$CRYO" run -dt -p "$ctr_port:8080/tcp" busybox httpd -f -p 8080 -h /www)
echo "$id"
wait_http "http://127.0.0.1:$ctr_port/"
run curl -fsS "http://127.0.0.1:$ctr_port/"
run "$CRYO" ps
run "$CRYO" rm -f "$id"
id=""

echo
echo "== 2. checkpoint and restore of a running web server"
mkdir -p "$work/www"
echo "<h1>served by the same process, before and after restore</h1>" >"$work/www/index.html"
setsid busybox httpd -f -p "127.0.0.1:$srv_port" -h "$work/www" </dev/null >/dev/null 2>&1 &
server=$!
wait_http "http://127.0.0.1:$srv_port/"
run curl -fsS "http://127.0.0.1:$srv_port/"
run "$CRYO" cr dump -t "$server" -D "$work/images"
wait "$server" 2>/dev/null || true
if curl -fsS --max-time 1 "http://127.0.0.1:$srv_port/" >/dev/null 2>&1; then
  echo "the dumped server still answers" >&2
  exit 1
fi
echo "(the server is gone; its state is in $work/images)"
run "$CRYO" cr restore -D "$work/images" -d
wait_http "http://127.0.0.1:$srv_port/"
run curl -fsS "http://127.0.0.1:$srv_port/"
say "ps -o pid,cmd -p $server"
ps -o pid,cmd -p "$server"
echo
echo "demo: the server was dumped, restored with the same PID and answers again"
