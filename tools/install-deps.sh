#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs (build, tests, browser tests, default corpus).
# The npm packages of the export tests are installed by `npm ci` in tools/js (.ci/run).
set -euo pipefail
# python3-torch: the reference GPT-2 of the export tests (tools/hf_gpt2_reference.py).
pkgs=(build-essential cmake libcaf-dev libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev bible-kjv
  python3-torch)
# Sanitizer build and fuzzing (tools/sanitize.sh, tools/fuzz.sh): clang with its sanitizer and
# libFuzzer runtimes (only recommended by clang, so named), llvm-symbolizer for readable reports.
pkgs+=(clang libclang-rt-14-dev llvm-14)
# cllm report / serve (run/): HTTP server library; the browser tests: headless Chromium and a font.
pkgs+=(pkg-config libcpp-httplib-dev chromium fonts-dejavu-core)
# The cluster's TLS (actors/cluster_transport): OpenSSL's headers (libcaf-dev does not pull them
# in) and its command line, which the TLS tests use to make a throw-away CA.
pkgs+=(libssl-dev openssl)
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
