#!/usr/bin/python3
"""A TCP server whose state lives in the process: it accepts one client and answers each line
"N text" with "ack N lines=<lines so far> bytes=<bytes of lines so far>"; "blob K" sends K bytes
of a known pattern (byte i = i*7 mod 251) at once; at the end of the client's stream it answers
"bye lines=... bytes=..." and keeps the connection open (half-closed) until killed."""
import os
import socket
import sys
import time

port_file = sys.argv[1]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
with open(port_file + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)

conn, _ = listener.accept()
lines = 0
total = 0
pending = b""
while True:
    data = conn.recv(65536)
    if not data:
        conn.sendall(b"bye lines=%d bytes=%d\n" % (lines, total))
        while True:
            time.sleep(3600)
    pending += data
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        lines += 1
        total += len(line) + 1
        words = line.split(b" ")
        if words[0] == b"blob":
            size = int(words[1])
            pattern = bytes((i * 7) % 251 for i in range(251))
            conn.sendall((pattern * (size // 251 + 1))[:size])
        else:
            conn.sendall(b"ack %s lines=%d bytes=%d\n" % (words[0], lines, total))
