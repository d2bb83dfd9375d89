#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing, benchmarking and the demo need.
# Idempotent and non-interactive; run as root.
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang-format
  nlohmann-json3-dev libcli11-dev libarchive-dev libzstd-dev zlib1g-dev libssl-dev
  libseccomp-dev libcap-dev libxxhash-dev libnftables-dev libmnl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  busybox-static nftables iptables iproute2 curl zstd python3 procps psmisc util-linux
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Containers are routed through the host; port publishing answers on 127.0.0.1 via DNAT.
sysctl -qw net.ipv4.ip_forward=1 || true
modprobe overlay 2>/dev/null || true
modprobe veth 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true
echo "install-deps: all packages present"
