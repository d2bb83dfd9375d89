#!/usr/bin/env bash
# Migration of a running container between two "hosts" on one machine: two engines with their own
# --root/--runroot, each in a network namespace of its own (hostA, hostB), and a client in a third
# one connected to both. The container is exported on A (`checkpoint -e`), the archive copied,
# imported on B (`restore -i`): httpd answers on B, rootfs changes (added and deleted files) and a
# named volume came along, and with --tcp-established a client connection to the container's IP
# survives once the client routes that IP to B (container_migration_tcp.sh). Also: -n (a copy beside the original), -c gzip /
# none, --ignore-rootfs, refusals (missing image, truncated or corrupted archive: nothing created),
# and a disk full during export (error, no partial file, the container still running).
set -euo pipefail

src=${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: needs curl"; exit 0; }
command -v nsenter >/dev/null || { echo "SKIP: needs nsenter"; exit 0; }
tmp=$(mktemp -d /tmp/cryo-migration-test.XXXXXX)
tag=$$
nsA=cryo-migA-$tag nsB=cryo-migB-$tag nsC=cryo-migC-$tag
client_pid=

# Each host runs cryo in its own netns only (not `ip netns exec`, whose private mount namespace
# would hide the engine's bind-mounted netns files from the next command).
cryoA() { nsenter --net=/run/netns/$nsA "$cryo_bin" --root "$tmp/A/root" --runroot "$tmp/A/run" "$@"; }
cryoB() { nsenter --net=/run/netns/$nsB "$cryo_bin" --root "$tmp/B/root" --runroot "$tmp/B/run" "$@"; }
inA() { nsenter --net=/run/netns/$nsA "$@"; }
inB() { nsenter --net=/run/netns/$nsB "$@"; }
inC() { nsenter --net=/run/netns/$nsC "$@"; }
monitor_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$tmp/"* ]] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
  cryoA rm -f -t 0 -a >/dev/null 2>&1 || true
  cryoB rm -f -t 0 -a >/dev/null 2>&1 || true
  for pid in $(monitor_pids); do kill -9 "$pid" 2>/dev/null || true; done
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  for ns in "$nsA" "$nsB" "$nsC"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"; }
# expect_fail PATTERN CMD...: the command exits 125 and its stderr matches PATTERN.
expect_fail() {
  local pattern=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc == 125 ]] || fail "$*: exit code $rc, expected 125 (stderr: $(cat "$tmp/err"))"
  grep -q -- "$pattern" "$tmp/err" || fail "$*: stderr lacks '$pattern': $(cat "$tmp/err")"
}
# Waits (600 s at most, never a timing assertion) until "$@" succeeds.
wait_until() {
  for _ in $(seq 6000); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "gave up waiting for: $*"
}
# Nothing of a container on host B but what `ps -a` shows: records, netns files, veths, cgroups.
expect_nothing_on_B() {
  expect_eq "$(cryoB ps -a -q | wc -l)" "$1" "containers on B ($2)"
  local veths
  veths=$(inB ip -o link show type veth | grep -c 'veth' || true)
  expect_eq "$veths" "$1" "veths on B ($2)"
  [[ -z $(ls "$tmp/B/root/tmp" 2>/dev/null) ]] || fail "import staging left on B ($2)"
}

# --- the hosts and the client network ---
for ns in "$nsA" "$nsB" "$nsC"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip link add mgA type veth peer name mgA-c
ip link set mgA netns "$nsA"
ip link set mgA-c netns "$nsC"
ip link add mgB type veth peer name mgB-c
ip link set mgB netns "$nsB"
ip link set mgB-c netns "$nsC"
ip -n "$nsA" addr add 192.168.251.2/24 dev mgA
ip -n "$nsA" link set mgA up
ip -n "$nsB" addr add 192.168.252.2/24 dev mgB
ip -n "$nsB" link set mgB up
ip -n "$nsC" addr add 192.168.251.1/24 dev mgA-c
ip -n "$nsC" addr add 192.168.252.1/24 dev mgB-c
ip -n "$nsC" link set mgA-c up
ip -n "$nsC" link set mgB-c up
# The client reaches the containers' network through host A; each host routes back to both of
# the client's addresses.
ip -n "$nsC" route add 10.88.0.0/16 via 192.168.251.2
ip -n "$nsA" route add 192.168.252.0/24 via 192.168.251.1
ip -n "$nsB" route add 192.168.251.0/24 via 192.168.252.1

for h in A B; do
  BUSYBOX_TAR=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar} CRYO=$cryo_bin \
    bash "$src/scripts/import-busybox-image.sh" --root "$tmp/$h/root" --runroot "$tmp/$h/run"
done

# --- httpd with rootfs changes and a named volume moves from A to B ---
id=$(cryoA run -d --name web -v webdata:/data busybox sh -c \
  'echo migrated > /www-index; rm /etc/group; echo vol > /data/v; mkdir -p /www; cp /www-index /www/index.html; exec httpd -f -p 8080 -h /www')
ip=$(cryoA inspect -f '{{.NetworkSettings.IPAddress}}' web)
wait_until inA curl -sf "http://$ip:8080/"
expect_eq "$(inC curl -sf "http://$ip:8080/")" "migrated" "httpd on A through the client network"
cryoA container checkpoint -e "$tmp/web.tar.zst" web >"$tmp/out"
expect_eq "$(cat "$tmp/out")" "$id" "checkpoint -e prints the ID"
[[ -s $tmp/web.tar.zst ]] || fail "no archive"
[[ -z $(ls "$tmp" | grep partial) ]] || fail "partial file left after export"
expect_eq "$(cryoA inspect -f '{{.State.Status}}' web)" "exited" "state on A after export"
[[ $(head -c 4 "$tmp/web.tar.zst" | od -An -tx1 | tr -d ' ') == 28b52ffd ]] || fail "not zstd"
tar --zstd -tf "$tmp/web.tar.zst" >"$tmp/list"
for entry in export.json config.dump spec.dump network.status rootfs-diff.tar deleted.files \
  volumes/webdata.tar checkpoint/inventory.img checkpoint/container.json stats-dump \
  checksums.json; do
  grep -qx "$entry" "$tmp/list" || fail "archive lacks $entry: $(tr '\n' ' ' <"$tmp/list")"
done
tar --zstd -xOf "$tmp/web.tar.zst" deleted.files | grep -q '"/etc/group"' || fail "deleted.files"

# Host B lacks the image: a clear error, nothing created.
cryoB rmi localhost/busybox:latest >/dev/null
expect_fail "image localhost/busybox:latest .* does not exist on this host" cryoB container restore -i "$tmp/web.tar.zst"
expect_nothing_on_B 0 "missing image"
BUSYBOX_TAR=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar} CRYO=$cryo_bin \
  bash "$src/scripts/import-busybox-image.sh" --root "$tmp/B/root" --runroot "$tmp/B/run"

# Truncated and corrupted archives: a clear error, nothing created.
size=$(stat -c %s "$tmp/web.tar.zst")
head -c $((size / 2)) "$tmp/web.tar.zst" >"$tmp/cut.tar.zst"
expect_fail "truncated\|damaged" cryoB container restore -i "$tmp/cut.tar.zst"
expect_nothing_on_B 0 "truncated archive"
tar --zstd -xf "$tmp/web.tar.zst" -C "$tmp" checkpoint/inventory.img
cp "$tmp/web.tar.zst" "$tmp/bad.tar.zst"
# One byte flipped inside the uncompressed stream: rebuild a plain tar with a changed image byte.
mkdir "$tmp/x"
tar --zstd -xf "$tmp/web.tar.zst" -C "$tmp/x"
python3 - "$tmp/x/checkpoint/inventory.img" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[40] ^= 0x01
open(p, 'wb').write(b)
PY
(cd "$tmp/x" && tar --format=pax -cf "$tmp/bad.tar" export.json config.dump spec.dump network.status userdata checkpoint rootfs-diff.tar deleted.files volumes stats-dump checksums.json)
expect_fail "corrupted\|checksum" cryoB container restore -i "$tmp/bad.tar"
expect_nothing_on_B 0 "corrupted archive"
rm -rf "$tmp/x" "$tmp/checkpoint"

# The real import on B.
cp "$tmp/web.tar.zst" "$tmp/copied.tar.zst"
expect_eq "$(cryoB container restore -i "$tmp/copied.tar.zst")" "$id" "restore -i keeps the ID"
expect_eq "$(cryoB inspect -f '{{.State.Status}}' web)" "running" "state on B"
expect_eq "$(cryoB inspect -f '{{.NetworkSettings.IPAddress}}' web)" "$ip" "same IP on B"
expect_eq "$(inB curl -sf "http://$ip:8080/")" "migrated" "httpd answers on B"
expect_eq "$(cryoB exec web cat /data/v)" "vol" "the volume came along"
expect_eq "$(cryoB volume ls -q)" "webdata" "volume created on B"
if cryoB exec web test -e /etc/group; then fail "deleted /etc/group is back on B"; fi
expect_eq "$(cryoB exec web cat /www-index)" "migrated" "added file on B"

# -n: a second copy beside the original on B, new ID, new address.
copy=$(cryoB container restore -i "$tmp/copied.tar.zst" -n web2 --ignore-static-ip --ignore-static-mac -p 127.0.0.1:18080:8080)
[[ $copy != "$id" && ${#copy} == 64 ]] || fail "-n gives a new ID: $copy"
ip2=$(cryoB inspect -f '{{.NetworkSettings.IPAddress}}' web2)
[[ -n $ip2 && $ip2 != "$ip" ]] || fail "copy has its own IP: '$ip2'"
expect_eq "$(inB curl -sf "http://$ip2:8080/")" "migrated" "the copy answers"
expect_eq "$(inB curl -sf "http://127.0.0.1:18080/")" "migrated" "the copy's new published port"
expect_eq "$(cryoB inspect -f '{{.Name}}' "$copy")" "web2" "the copy's name"
expect_eq "$(inB curl -sf "http://$ip:8080/")" "migrated" "the original still answers"
cryoB rm -f -t 0 web2 >/dev/null
expect_fail "already exists on this host" cryoB container restore -i "$tmp/copied.tar.zst"

# gzip and none, --ignore-rootfs: from B back to A. Engines on one machine share the cgroup
# hierarchy (cryo/<id>), so a container's record is removed only while no engine runs that ID.
cryoB container checkpoint -e "$tmp/web.tar.gz" -c gzip web >/dev/null
[[ $(head -c 2 "$tmp/web.tar.gz" | od -An -tx1 | tr -d ' ') == 1f8b ]] || fail "not gzip"
cryoA rm web >/dev/null
cryoA volume rm webdata >/dev/null
expect_eq "$(cryoA container restore -i "$tmp/web.tar.gz")" "$id" "gzip import on A"
expect_eq "$(inA curl -sf "http://$ip:8080/")" "migrated" "httpd answers back on A"
cryoA container checkpoint -e "$tmp/web.tar" -c none --ignore-rootfs web >/dev/null
tar -tf "$tmp/web.tar" >"$tmp/list"
if grep -q rootfs-diff.tar "$tmp/list"; then fail "--ignore-rootfs exported the rootfs"; fi
cryoA rm web >/dev/null
cryoB rm web >/dev/null
cryoB volume rm webdata >/dev/null
cryoB container restore -i "$tmp/web.tar" >/dev/null
page=$(inB curl -sf "http://$ip:8080/")
[[ -n $page && $page != migrated ]] || fail "--ignore-rootfs: the image's page expected, got '$page'"
if cryoB exec web test -e /www-index; then fail "--ignore-rootfs: an added file came along"; fi
cryoB exec web test -e /etc/group || fail "--ignore-rootfs: a deletion came along"
cryoB rm -f -t 0 web >/dev/null

# --- disk full during export: an error, no partial file, the container still running ---
mkdir "$tmp/small"
mount -t tmpfs -o size=256k tmpfs "$tmp/small"
big=$(cryoA run -d busybox sh -c 'dd if=/dev/urandom of=/big bs=1M count=4 2>/dev/null; exec sleep 100000')
wait_until cryoA exec "$big" test -s /big
expect_fail "No space left on device" cryoA container checkpoint -e "$tmp/small/big.tar.zst" "$big"
expect_eq "$(ls -A "$tmp/small")" "" "nothing left on the full disk"
expect_eq "$(cryoA inspect -f '{{.State.Status}}' "$big")" "running" "the container still runs"
expect_eq "$(cryoA exec "$big" echo alive)" "alive" "exec after a failed export"
umount "$tmp/small"
cryoA rm -f -t 0 "$big" >/dev/null

[[ -z $(monitor_pids) ]] || fail "processes left: $(monitor_pids)"
echo PASS
