#!/usr/bin/env bash
# Builds a busybox rootfs tarball from Debian's busybox-static, without network:
#   bash scripts/build-busybox-image.sh OUT.tar
# /bin/busybox plus a symlink per applet (sh, ls, cat, sleep, httpd, nc...), /etc/passwd with root
# and nobody, /etc/group, /www/index.html, and the usual empty dirs (/tmp /proc /sys /dev /root).
set -euo pipefail

out=${1:?usage: build-busybox-image.sh OUT.tar}
busybox=/bin/busybox
if [[ ! -x $busybox ]] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  if [[ -x /usr/bin/busybox ]]; then busybox=/usr/bin/busybox; fi
fi
[[ -x $busybox ]] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,www,tmp,proc,sys,dev,root,var/log,run,home}
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"

# `busybox --list-full` names each applet with its install directory ("usr/bin/wc").
"$busybox" --list-full | while read -r applet; do
  [[ -n $applet && $applet != bin/busybox ]] || continue
  dir=$(dirname "$applet")
  mkdir -p "$root/$dir"
  rel=$(realpath --relative-to="$root/$dir" "$root/bin/busybox")
  ln -sf "$rel" "$root/$applet"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo 'cryo' > "$root/etc/hostname"
: > "$root/etc/hosts"
: > "$root/etc/resolv.conf"
cat > "$root/www/index.html" <<'HTML'
<!DOCTYPE html>
<html><head><title>cryo busybox</title></head>
<body><h1>Hello from cryo busybox httpd</h1></body></html>
HTML

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
