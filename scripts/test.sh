#!/usr/bin/env bash
# Runs every test: unit tests, the zdtm-style checkpoint suite and the integration tests that drive
# the real cryo binary as root. Installs dependencies and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
bash scripts/build.sh
cd build
# cryo mounts its buffer pool (/run/cryo-buffers, docs/DESIGN.md) at first use and keeps it; a
# test run that brought it leaves the machine without it.
pool=/run/cryo-buffers
pool_was_there=false
if mountpoint -q "$pool" 2>/dev/null; then pool_was_there=true; fi
status=0
ctest --output-on-failure --timeout 900 "$@" || status=$?
if ! $pool_was_there && mountpoint -q "$pool" 2>/dev/null; then
  umount "$pool" 2>/dev/null && rmdir "$pool" 2>/dev/null || true
fi
exit $status
