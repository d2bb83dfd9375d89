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
