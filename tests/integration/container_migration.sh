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

source "$(dirname "$0")/lib/migration_hosts.bash"
migration_hosts_setup cryo-migration-test mig mg 251 252

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
tar --zstd -xOf "$tmp/web.tar.zst" deleted.files | grep '"/etc/group"' >/dev/null || fail "deleted.files"

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

# gzip and none, --ignore-rootfs: from B back to A.
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
