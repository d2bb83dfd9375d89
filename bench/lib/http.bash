# Shared by the container benchmarks: a free loopback port and one HTTP request by bash itself.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# One HTTP/1.0 request by bash's /dev/tcp (no process start per attempt): succeeds when the
# status line came back.
http_answers() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET / HTTP/1.0\r\n\r\n' >&3
  IFS= read -r line <&3 || line=
  exec 3<&-
  [[ $line == HTTP/* ]]
}

# A private store for a benchmark: sets build, cryo_bin and tmp (under /tmp or CRYO_BENCH_DIR),
# defines cryo() on that store, and removes every container, mount and file of it at exit
# (bench_extra_cleanup, if the script defines it, runs first).
#   bench_store BUILD_DIR NAME
bench_store() {
  build=$(cd "$1" && pwd)
  cryo_bin=$build/src/cli/cryo
  tmp=$(mktemp -d "${CRYO_BENCH_DIR:-/tmp}/cryo-$2-bench.XXXXXX")
  trap bench_store_cleanup EXIT
}
cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
bench_store_cleanup() {
  if declare -F bench_extra_cleanup >/dev/null; then bench_extra_cleanup; fi
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
