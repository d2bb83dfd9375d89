#!/usr/bin/env bash
# Fresh machine to demo in one command: installs the dependencies, builds and installs cryo, imports
# the busybox image, and runs the seed flow of Podman's checkpoint tutorial: a web server container
# answers on a published port, is checkpointed (its processes end, their state is on disk), is
# restored at exactly the same point (same PIDs, same memory, same listening socket), and answers
# again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cmake --install build >/dev/null
CRYO=${CRYO:-/usr/local/bin/cryo}
export CRYO
bash scripts/import-busybox-image.sh

port=${DEMO_PORT:-8080}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
wait_http() {
  for _ in $(seq 1 200); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$port/" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "no answer on 127.0.0.1:$port" >&2
  return 1
}

say "cryo run -dt -p $port:8080/tcp busybox httpd -f -p 8080 -h /www"
id=$("$CRYO" run -dt -p "$port:8080/tcp" busybox httpd -f -p 8080 -h /www)
echo "$id"
cleanup() { "$CRYO" rm -f -t 0 "$id" >/dev/null 2>&1 || true; }
trap cleanup EXIT
wait_http
run curl -fsS "http://127.0.0.1:$port/"
run "$CRYO" ps
run "$CRYO" container checkpoint "$id"
run "$CRYO" ps -a
if curl -fsS --max-time 1 "http://127.0.0.1:$port/" >/dev/null 2>&1; then
  echo "the checkpointed container still answers" >&2
  exit 1
fi
echo "(the container's processes are gone; their state is on disk)"
run "$CRYO" container restore "$id"
wait_http
run curl -fsS "http://127.0.0.1:$port/"
run "$CRYO" ps
echo
echo "demo: the container was checkpointed, restored at the same point, and answers again"
