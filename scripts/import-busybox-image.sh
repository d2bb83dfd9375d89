#!/usr/bin/env bash
# Imports the busybox test image as localhost/busybox:latest, once:
#   CRYO=build/cryo bash scripts/import-busybox-image.sh [--root DIR --runroot DIR ...]
# The arguments are cryo's global options. Builds build/busybox-rootfs.tar first when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cryo=${CRYO:-$here/build/src/cli/cryo}
tarball=${BUSYBOX_TAR:-${CRYO_BUILD_DIR:-$here/build}/busybox-rootfs.tar}

if "$cryo" "$@" image exists localhost/busybox:latest; then
  exit 0
fi
if [[ ! -s $tarball ]]; then
  mkdir -p "$(dirname "$tarball")"
  bash "$here/scripts/build-busybox-image.sh" "$tarball" >/dev/null
fi
"$cryo" "$@" import -q --change 'CMD ["sh"]' "$tarball" localhost/busybox:latest >/dev/null
