#!/usr/bin/python3
"""Drives ckpt_tcp_python.sh: starts the counting server as a process tree of its own, talks to it
from outside that tree, and checkpoints/restores the server with cryo between exchanges. Checks
that the same connection carries on with the server's state intact, that the TCP packet hold
(an nftables table) exists exactly while the server is dumped, that the client sees no reset, and
that a connection the client half-closed is restored half-closed. Prints the delay of the unsent bytes after restore."""
import os
import socket
import subprocess
import sys
import time

cryo, server_script, work = sys.argv[1], sys.argv[2], sys.argv[3]
port_file = os.path.join(work, "port")
server_log = open(os.path.join(work, "server.log"), "w")
server = subprocess.Popen(["/usr/bin/python3", server_script, port_file], start_new_session=True,
                          stdin=subprocess.DEVNULL, stdout=server_log, stderr=server_log)
with open(os.path.join(work, "server.pid"), "w") as f:
    f.write(str(server.pid))


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def hold_tables():
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "cryo_tcp_hold" in line]


def run(*args):
    result = subprocess.run([cryo, *args], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


while not os.path.exists(port_file):
    if server.poll() is not None:
        fail("the server exited")
    time.sleep(0.02)
port = int(open(port_file).read())
tables_before = hold_tables()

client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# A small receive buffer: the server's blob backs up in its send queue, mostly unsent.
client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
client.connect(("127.0.0.1", port))
reader = client.makefile("rb")
lines = 0
total = 0


def exchange(word):
    global lines, total
    line = b"%s hello from outside\n" % word
    client.sendall(line)
    lines += 1
    total += len(line)
    expect(word)


def expect(word):
    answer = reader.readline()
    want = b"ack %s lines=%d bytes=%d\n" % (word, lines, total)
    if answer != want:
        fail("expected %r, got %r" % (want, answer))


for i in range(50):
    exchange(b"%d" % i)

# The blob: the client does not read it yet, so most of it stays unsent in the server.
blob_size = 2 * 1024 * 1024
client.sendall(b"blob %d\n" % blob_size)
lines += 1
total += len(b"blob %d\n" % blob_size)
time.sleep(0.5)  # lets the server fill its send buffer (the checks below do not depend on it)

images = os.path.join(work, "images")
code, output = run("cr", "dump", "-t", str(server.pid), "-D", images, "--tcp-established")
if code != 0:
    fail("dump failed: " + output)
server.wait()  # the dumped server was killed; reap it so its PID is free
held = [t for t in hold_tables() if t not in tables_before]
if len(held) != 1:
    fail("expected one TCP hold table while the server is dumped, found %r" % held)

# A line sent while the server is gone: without the hold the kernel would answer with a reset.
gap_line = b"gap while dumped\n"
client.sendall(gap_line)
time.sleep(0.3)

code, output = run("cr", "restore", "-D", images, "--tcp-established", "-d")
if code != 0:
    fail("restore failed: " + output)
restored_at = time.monotonic()
if [t for t in hold_tables() if t not in tables_before]:
    fail("the TCP hold table is still there after restore")

pattern = bytes((i * 7) % 251 for i in range(251))
expected_blob = (pattern * (blob_size // 251 + 1))[:blob_size]
# Past the few KiB the client had received before the dump, the rest was in the server's send
# queue, mostly unsent: it must flow at once, not after a retransmission timeout.
head_size = 64 * 1024
blob = reader.read(head_size)
head_at = time.monotonic()
blob += reader.read(blob_size - head_size)
blob_done_at = time.monotonic()
if blob != expected_blob:
    fail("the blob differs after restore (%d bytes read)" % len(blob))
print("after restore: first %d KiB of the blob in %.1f ms, all %d KiB in %.1f ms"
      % (head_size // 1024, (head_at - restored_at) * 1000, blob_size // 1024,
         (blob_done_at - restored_at) * 1000))

lines += 1
total += len(gap_line)
expect(b"gap")
for i in range(50, 100):
    exchange(b"%d" % i)

# Leave-running dump: the hold is lifted again and the server goes on.
code, output = run("cr", "dump", "-t", str(server.pid), "-D", images + "-2", "--tcp-established",
                   "-R")
if code != 0:
    fail("dump -R failed: " + output)
if [t for t in hold_tables() if t not in tables_before]:
    fail("the TCP hold table is still there after dump -R")
for i in range(100, 110):
    exchange(b"%d" % i)

# The client closes its side: the server's end is half-closed (CLOSE_WAIT) by a peer outside the
# tree. It is dumped and restored still in CLOSE_WAIT (the restore injects the client's FIN), and
# when the server goes away its end closes cleanly: the client reads the end of the stream, not
# a reset.
client.shutdown(socket.SHUT_WR)
answer = reader.readline()
if answer != b"bye lines=%d bytes=%d\n" % (lines, total):
    fail("expected the server's bye, got %r" % answer)


def server_tcp_states():
    """States (hex, as in /proc/net/tcp) of the connections whose local port is the server's."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [row[3] for row in rows if int(row[1].split(":")[1], 16) == port and row[3] != "0A"]


close_wait = "08"
if server_tcp_states() != [close_wait]:
    fail("the server's end is not in CLOSE_WAIT before the dump: %r" % server_tcp_states())
code, output = run("cr", "dump", "-t", str(server.pid), "-D", images + "-3", "--tcp-established")
if code != 0:
    fail("dump of the connection half-closed by the outside peer failed: " + output)
while os.path.exists("/proc/%d" % server.pid):
    time.sleep(0.02)  # the killed server (restored, so not our child) is reaped by init
code, output = run("cr", "restore", "-D", images + "-3", "--tcp-established", "-d")
if code != 0:
    fail("restore of the connection half-closed by the outside peer failed: " + output)
if [t for t in hold_tables() if t not in tables_before]:
    fail("the TCP hold table is still there after the half-closed restore")
if not os.path.exists("/proc/%d" % server.pid):
    fail("the server is gone after the half-closed restore")
if server_tcp_states() != [close_wait]:
    fail("the server's end is not in CLOSE_WAIT after restore: %r" % server_tcp_states())
os.kill(server.pid, 9)  # restored with its PID by this test
try:
    rest = reader.read()
except ConnectionResetError:
    fail("the client got a reset when the restored server closed its half-closed end")
if rest != b"":
    fail("unexpected bytes after the bye: %r" % rest)
print("PASS")
