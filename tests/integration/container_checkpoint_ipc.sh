#!/usr/bin/env bash
# The IPC namespace of a container comes back with its restore: a SysV shared memory segment (same
# id and key, same bytes), a semaphore set (same values), a SysV message queue and a POSIX message
# queue (same messages, in order, with their priorities). The objects are made and read from the
# host inside the container's IPC namespace (nsenter --ipc; python3 ctypes for the syscalls).
source "${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib/container_checkpoint_common.bash"
command -v python3 >/dev/null || fail "python3 is missing (scripts/install-deps.sh)"

ipc_tool=$tmp/ipc_tool.py
cat >"$ipc_tool" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.mq_receive.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                            ctypes.POINTER(ctypes.c_uint)]
libc.mq_receive.restype = ctypes.c_ssize_t
IPC_CREAT, IPC_NOWAIT, GETVAL, SETVAL = 0o1000, 0o4000, 12, 16
KEY = 0x43525930
def check(ok, what):
    if not ok:
        sys.exit("%s (errno %s)" % (what, os.strerror(ctypes.get_errno())))
class MsgBuf(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 64)]
if sys.argv[1] == "setup":
    shm = libc.shmget(KEY, 8192, IPC_CREAT | 0o600)
    check(shm >= 0, "shmget")
    at = libc.shmat(shm, None, 0)
    check(at not in (None, ctypes.c_void_p(-1).value), "shmat")
    ctypes.memmove(at + 4096, b"bytes in the segment", 20)
    sem = libc.semget(KEY, 3, IPC_CREAT | 0o600)
    check(sem >= 0, "semget")
    for n, value in enumerate((7, 0, 42)):
        check(libc.semctl(sem, n, SETVAL, ctypes.c_int(value)) == 0, "semctl SETVAL")
    msq = libc.msgget(KEY, IPC_CREAT | 0o600)
    check(msq >= 0, "msgget")
    for mtype, text in ((3, b"first"), (9, b"second")):
        m = MsgBuf(mtype, text)
        check(libc.msgsnd(msq, ctypes.byref(m), len(text), IPC_NOWAIT) == 0, "msgsnd")
    mq = libc.mq_open(b"/cryo-queue", os.O_RDWR | os.O_CREAT, 0o600, None)
    check(mq >= 0, "mq_open")
    for prio, text in ((1, b"low"), (5, b"high")):
        check(libc.mq_send(mq, text, len(text), prio) == 0, "mq_send")
    print(shm, sem, msq)
else:
    shm, sem, msq = (int(x) for x in sys.argv[2:5])
    check(libc.shmget(KEY, 0, 0) == shm, "the segment has another id")
    at = libc.shmat(shm, None, 0)
    check(at not in (None, ctypes.c_void_p(-1).value), "shmat after restore")
    check(ctypes.string_at(at + 4096, 20) == b"bytes in the segment", "segment bytes")
    check(libc.semget(KEY, 0, 0) == sem, "the semaphore set has another id")
    values = [libc.semctl(sem, n, GETVAL) for n in range(3)]
    check(values == [7, 0, 42], "semaphore values %s" % values)
    check(libc.msgget(KEY, 0) == msq, "the message queue has another id")
    got = []
    for _ in range(2):
        m = MsgBuf()
        n = libc.msgrcv(msq, ctypes.byref(m), 64, 0, IPC_NOWAIT)
        check(n > 0, "msgrcv")
        got.append((m.mtype, m.mtext[:n]))
    check(got == [(3, b"first"), (9, b"second")], "SysV messages %s" % got)
    mq = libc.mq_open(b"/cryo-queue", os.O_RDWR, 0, None)
    check(mq >= 0, "mq_open after restore")
    got = []
    for _ in range(2):
        buf = ctypes.create_string_buffer(8192)
        prio = ctypes.c_uint()
        n = libc.mq_receive(mq, buf, 8192, ctypes.byref(prio))
        check(n > 0, "mq_receive")
        got.append((prio.value, buf.raw[:n]))
    check(got == [(5, b"high"), (1, b"low")], "POSIX messages %s" % got)
    print("ipc ok")
PY

counter_script='i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'
ctr=$(cryo run -d busybox sh -c "$counter_script")
wait_until count_at_least "$ctr" 2
ids=$(nsenter -t "$(pid_of "$ctr")" --ipc python3 "$ipc_tool" setup) || fail "IPC setup in the container"
for cycle in 1 2; do
  cryo container checkpoint "$ctr" >/dev/null
  at=$(last_count "$ctr")
  cryo container restore "$ctr" >/dev/null
  wait_until count_at_least "$ctr" $((at + 2))
  counter_continuous "$ctr" || fail "the counter restarted (cycle $cycle)"
  if [[ $cycle == 1 ]]; then
    # Read (and consume) after the first restore; the second cycle then carries the emptied
    # queues and the same segment and set.
    out=$(nsenter -t "$(pid_of "$ctr")" --ipc python3 "$ipc_tool" check $ids 2>&1) ||
      fail "IPC after restore: $out"
    expect_eq "$out" "ipc ok" "IPC objects after restore"
  fi
done
expect_eq "$(nsenter -t "$(pid_of "$ctr")" --ipc ipcs -m | grep -c 0x43525930)" "1" "the segment after a second cycle"
cryo rm -f -t 0 "$ctr" >/dev/null
echo PASS
