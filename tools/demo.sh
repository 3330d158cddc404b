#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, train on the built-in default
# corpus (the King James Bible) for a couple of minutes, and show a sample.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/install-deps.sh"
"$root/tools/get-default-corpus.sh"
"$root/tools/build.sh"
cd "$root"
exec ./build/cllm train "$@"   # a new run folder runs/<date-time> each time
