#!/usr/bin/env bash
# A hostile image whose mount targets are symlinks to host paths (/etc/hosts, /etc/resolv.conf,
# /proc, /dev, a volume's parent directory): the container still gets its mounts, inside its own
# root, and nothing outside the rootfs is created, changed or mounted on.
set -euo pipefail

src=${CRYO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cryo_bin=${CRYO:-$src/build/src/cli/cryo}
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
tmp=$(mktemp -d /tmp/cryo-hostile-test.XXXXXX)
cryo() { "$cryo_bin" --root "$tmp/root" --runroot "$tmp/run" "$@"; }
cleanup() {
  cryo rm -f -t 0 -a >/dev/null 2>&1 || true
  { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"; }

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
