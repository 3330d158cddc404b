#!/usr/bin/env bash
# Builds CAF 0.17.6 (core, io and openssl: the cluster's TLS) with ThreadSanitizer into build-caf-tsan/prefix, for
# tools/sanitize-tsan.sh --caf-tsan. Debian's libcaf is not instrumented, so TSan cannot see
# CAF's own synchronisation (lock-free mailboxes, scheduler queues, reference counts) and
# reports every hand-off through CAF; an instrumented CAF makes those reports disappear at the
# source instead of being symbolised and suppressed one by one (which made the fault tests crawl).
#
# The source is Debian's own: package actor-framework 0.17.6, fetched with `apt-get source`
# from Debian's registry through a temporary deb-src list (the system's apt configuration is not
# touched). Debian's packaging patches are not applied; the one the build needs with clang 14
# (a missing #include <limits> in receive_buffer.hpp) is supplied with -include. A developer
# tool, not part of CI or of the product.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build-caf-tsan"
prefix="$out/prefix"
if [ -f "$prefix/lib/libcaf_core.so" ] && [ -f "$prefix/lib/libcaf_io.so" ] &&
  [ -f "$prefix/lib/libcaf_openssl.so" ]; then
  echo "build-caf-tsan: instrumented CAF already in $prefix"
  exit 0
fi
mkdir -p "$out/apt/lists/partial" "$out/apt/parts" "$out/src"
: > "$out/apt/none.list"
cat > "$out/apt/parts/debian-src.sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o "Dir::Etc::SourceList=$out/apt/none.list" -o "Dir::Etc::SourceParts=$out/apt/parts"
  -o "Dir::State::Lists=$out/apt/lists")
apt-get "${apt_opts[@]}" update >/dev/null
tarball="$out/src/actor-framework_0.17.6.orig.tar.gz"
if [ ! -f "$tarball" ]; then
  # Only the upstream tarball is needed; apt-get also asks for the Debian packaging files and
  # fails when the mirror lacks them, so its status is not what decides.
  (cd "$out/src" && apt-get "${apt_opts[@]}" source --download-only actor-framework=0.17.6-2.1 \
    >/dev/null 2>&1) || true
fi
[ -f "$tarball" ] || { echo "build-caf-tsan: could not fetch $tarball from Debian" >&2; exit 2; }
rm -rf "$out/src/actor-framework-0.17.6"
tar -xzf "$tarball" -C "$out/src"
cmake -S "$out/src/actor-framework-0.17.6" -B "$out/build" -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g -include limits" -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCAF_NO_AUTO_LIBCPP=yes -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_OPENCL=yes \
  -DCAF_NO_PYTHON=yes -DCAF_NO_TOOLS=yes -DCAF_NO_SUMMARY=yes \
  -DCAF_NO_COMPILER_CHECK=yes >/dev/null
cmake --build "$out/build" -j"$(nproc)"
cmake --install "$out/build" >/dev/null
echo "build-caf-tsan: instrumented CAF in $prefix"
