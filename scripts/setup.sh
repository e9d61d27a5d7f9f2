#!/usr/bin/env bash
# Installs what specq builds with (Debian/Ubuntu packages). Idempotent; run as root or with sudo.
set -euo pipefail
packages=(cmake ninja-build g++ clang libclang-rt-14-dev libomp-14-dev pkg-config python3
          nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libicu-dev libgtest-dev libbenchmark-dev
          libcpp-httplib-dev python3-pip chromium chromium-driver zlib1g-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
