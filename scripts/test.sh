#!/usr/bin/env bash
# Runs every test: unit tests, the zdtm-style checkpoint suite and the integration tests that drive
# the real cryo binary as root. Installs dependencies and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
