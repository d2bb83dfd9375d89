#!/usr/bin/env bash
# A hostile image whose mount targets are symlinks to host paths (/etc/hosts, /etc/resolv.conf,
# /proc, /dev, a volume's parent directory): the container still gets its mounts, inside its own
# root, and nothing outside the rootfs is created, changed or mounted on.
set -euo pipefail

source "$(dirname "$0")/lib/common.bash"
cryo_test_setup cryo-hostile-test

tarball=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$src/build}/busybox-rootfs.tar}
[[ -s $tarball ]] || bash "$src/scripts/build-busybox-image.sh" "$tarball" >/dev/null

# The host side the image points at: one existing file, one existing directory, the rest absent.
host=$tmp/host
mkdir -p "$host/datadir"
echo original >"$host/existing-hosts"
snapshot() { (cd "$host" && find . -printf '%p %y %s %T@\n' | sort); }
before=$(snapshot)

rootfs=$tmp/rootfs
mkdir -p "$rootfs"
tar -C "$rootfs" -xf "$tarball"
rm -rf "$rootfs/etc/hosts" "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs/proc" \
  "$rootfs/dev" "$rootfs/data"
mkdir -p "$rootfs/etc"
ln -s "$host/existing-hosts" "$rootfs/etc/hosts"
ln -s "$host/created-resolv" "$rootfs/etc/resolv.conf"
ln -s "../../../../../../..$host/created-hostname" "$rootfs/etc/hostname"
ln -s "$host/proc" "$rootfs/proc"
ln -s "$host/dev" "$rootfs/dev"
ln -s "$host/datadir" "$rootfs/data"
tar -C "$rootfs" -cf "$tmp/hostile.tar" .
cryo import -q --change 'CMD ["sh"]' "$tmp/hostile.tar" localhost/hostile >/dev/null

out=$(cryo run --rm --name evil --hostname evilhost -v vol:/data/sub localhost/hostile sh -c '
  grep -c localhost /etc/hosts
  grep -c nameserver /etc/resolv.conf
  cat /etc/hostname
  echo written >/data/sub/file
  [ -c /dev/null ] && echo devnull
  [ -r /proc/1/cmdline ] && echo proc
  readlink /etc/hosts')
expect_eq "$out" "2
1
evilhost
devnull
proc
$host/existing-hosts" "the container's view of its mounts"

expect_eq "$(snapshot)" "$before" "the host paths the image points at"
expect_eq "$(cat "$host/existing-hosts")" "original" "the host file behind /etc/hosts"
expect_eq "$(cat "$tmp/root/volumes/vol/_data/file")" "written" "the volume under the symlinked /data"
! grep -q " $host" /proc/mounts || fail "a mount on the host side: $(grep " $host" /proc/mounts)"
echo "lifecycle_hostile_image: all checks passed"
