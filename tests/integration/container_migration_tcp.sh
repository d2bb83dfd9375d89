#!/usr/bin/env bash
# Migration with an established TCP connection: two "hosts" (engines with their own --root and
# --runroot, each in its own network namespace) and a client in a third namespace connected to
# both. An echo server (busybox nc -ll -e cat) runs on A; the client connects to the container's
# IP through A; the container is exported with --tcp-established, imported on B with
# --tcp-established, the client's route to the containers' subnet switched to B, and the same
# connection carries the next round trip.
set -euo pipefail

source "$(dirname "$0")/lib/migration_hosts.bash"
migration_hosts_setup cryo-migration-tcp-test mt mt 241 242

# --- an established TCP connection survives the move ---
port=7000
echo_id=$(cryoA run -d --name echo busybox nc -ll -p $port -e cat)
eip=$(cryoA inspect -f '{{.NetworkSettings.IPAddress}}' echo)
wait_until inA sh -c "echo | busybox nc -w 1 $eip $port"
mkfifo "$tmp/to_client"
inC python3 - "$eip" "$port" "$tmp/to_client" "$tmp/client.out" <<'PY' &
import socket, sys
ip, port, control, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((ip, port))
s.settimeout(600)
def roundtrip(word):
    s.sendall((word + "\n").encode())
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            raise SystemExit("connection closed")
        got += chunk
    return got.decode().strip()
with open(out, "w") as f:
    f.write(roundtrip("before") + "\n")
    f.flush()
    for line in open(control):
        f.write(roundtrip(line.strip()) + "\n")
        f.flush()
PY
client_pid=$!
exec 9>"$tmp/to_client"
wait_until grep -qx before "$tmp/client.out"
kill -STOP "$client_pid"
cryoA container checkpoint --tcp-established -e "$tmp/echo.tar.zst" echo >/dev/null
cryoA rm echo >/dev/null
ip -n "$nsC" route replace 10.88.0.0/16 via 192.168.242.2
cryoB container restore --tcp-established -i "$tmp/echo.tar.zst" >/dev/null
expect_eq "$(cryoB inspect -f '{{.NetworkSettings.IPAddress}}' echo)" "$eip" "echo IP on B"
kill -CONT "$client_pid"
echo after >&9
exec 9>&-
# The client ends after this round trip (its control pipe is closed), or fails.
rc=0
wait "$client_pid" || rc=$?
client_pid=
if [[ $rc != 0 ]]; then
  # What the container's network namespace on B saw (for the failure report).
  epid=$(cryoB inspect -f '{{.State.Pid}}' echo)
  nsenter -t "$epid" -n nstat -az 2>/dev/null | grep -E 'TcpOutRsts|TcpEstabResets|TcpExtTCPAbort|TcpInErrs|TcpExtTCPACKSkipped|TcpExtPAWS|TcpExtTCPChallengeACK|TcpExtTCPSynChallenge|TcpExtTCPOFO' >&2 || true
  nsenter -t "$epid" -n ss -tnoi >&2 || true
  inC nstat -az 2>/dev/null | grep -E 'TcpOutRsts|TcpInErrs|TcpEstabResets' >&2 || true
  fail "the client's connection did not survive the migration (exit $rc)"
fi
expect_eq "$(tail -n 1 "$tmp/client.out")" "after" "round trip after the migration"
cryoB rm -f -t 0 echo >/dev/null

[[ -z $(monitor_pids) ]] || fail "processes left: $(monitor_pids)"
echo PASS
