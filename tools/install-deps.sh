#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs (build, tests, browser tests, default corpus).
set -euo pipefail
pkgs=(build-essential cmake libcaf-dev libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev bible-kjv)
# cllm report / serve (run/): HTTP server library; the browser tests: headless Chromium and a font.
pkgs+=(pkg-config libcpp-httplib-dev chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
