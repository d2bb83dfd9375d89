#!/bin/bash
# A Python TCP server checkpointed with --tcp-established while a client outside its tree stays
# connected: the conversation (and the server's counters) carries on over the same connection,
# a blob the server had not sent yet arrives complete, and the TCP packet hold exists exactly while
# the server is dumped. The client (tests/integration/data/tcp_python_client.py) drives it all.
set -u
CRYO="${CRYO:?}"
SRC="${CRYO_SOURCE_DIR:?}"
work=$(mktemp -d /tmp/ckpt-tcp-python.XXXXXX)
cleanup() {
  # The server (restored by cryo -d, so not our child) is the only process this test started
  # that outlives the client.
  if [ -f "$work/server.pid" ]; then kill -KILL "$(cat "$work/server.pid")" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
/usr/bin/python3 "$SRC/tests/integration/data/tcp_python_client.py" "$CRYO" \
  "$SRC/tests/integration/data/tcp_counting_server.py" "$work"
