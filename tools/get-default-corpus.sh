#!/usr/bin/env bash
# Prepares the built-in default corpus: the King James Bible (public domain) from Debian's
# bible-kjv package, written to data/kjv.txt beside this repository's sources.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/data/kjv.txt"
if [ -s "$out" ]; then exit 0; fi
if ! command -v bible >/dev/null 2>&1; then
  echo "get-default-corpus: the 'bible' program is missing; install it with: sudo apt-get install bible-kjv" >&2
  exit 1
fi
mkdir -p "$root/data"
bible Gen1:1-Rev22:21 > "$out.tmp"
mv "$out.tmp" "$out"
echo "default corpus: $out ($(wc -c < "$out") bytes)"
