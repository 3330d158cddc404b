#!/usr/bin/env bash
# ThreadSanitizer run of the actors tests (and of the core test of the weights' copy-on-write).
# Not part of CI yet (docs/robustness.md says why). Run it by hand, with --caf-tsan, after
# changing actors/, messages/ or the thread-pool baselines.
#
#   tools/sanitize-tsan.sh                  build build-tsan/ (clang, -O1) and run
#   tools/sanitize-tsan.sh test             run only
#   tools/sanitize-tsan.sh --caf-tsan [test]
#       the same against a CAF built with TSan itself (tools/build-caf-tsan.sh: Debian's source
#       of the same CAF 0.17.6), in build-tsan-caf/, with tools/tsan-caf.supp: TSan then sees
#       CAF's synchronisation, so nothing of CAF's needs suppressing and the fault tests run at
#       TSan's normal speed. The recommended way.
#
# Built for x86-64-v2 (CLLM_PORTABLE): clang's TSan instruments memory accesses of 1 to 16 bytes
# only, so the 32- and 64-byte accesses of AVX2/AVX-512 loops (-march=native) would go unchecked.
# CAF comes from Debian without instrumentation, so tools/tsan.supp drops reports with CAF frames
# (see there). Reports go to build-tsan/tsan-report.* (one file per process); the script prints
# how many there are and fails when there is any. Tests do not stop at the first report
# (halt_on_error=0) so that one run shows them all.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-tsan" supp="$root/tools/tsan.supp" caf=()
if [ "${1:-}" = --caf-tsan ]; then
  shift
  build="$root/build-tsan-caf" supp="$root/tools/tsan-caf.supp"
  caf=(-DCMAKE_PREFIX_PATH="$root/build-caf-tsan/prefix")
  [ "${1:-all}" = all ] && "$root/tools/build-caf-tsan.sh"
fi
if [ "${1:-all}" = all ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCLLM_SANITIZE=thread -DCLLM_PORTABLE=ON \
    "${caf[@]}" "${launcher[@]}" >/dev/null
  cmake --build "$build" -j"$(nproc)" --target cllm_actor_tests cllm_core_tests
fi
if [ "$supp" = "$root/tools/tsan-caf.supp" ]; then
  # The canary: a real race between an actor and the main thread must be reported, the same
  # writes ordered by a request and its reply must not.
  prefix="$root/build-caf-tsan/prefix"
  clang++ -std=c++17 -fsanitize=thread -O1 -g -include limits -Wno-deprecated-declarations -I"$prefix/include" \
    "$root/tools/tsan_canary.cpp" -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -lcaf_core -lpthread \
    -o "$build/tsan_canary"
  racy=$(TSAN_OPTIONS= "$build/tsan_canary" racy 2>&1 | grep -c "WARNING: ThreadSanitizer: data race" || true)
  ordered=$(TSAN_OPTIONS= "$build/tsan_canary" 2>&1 | grep -c "WARNING: ThreadSanitizer" || true)
  echo "tsan canary: racy actors $racy report(s) (must be > 0), ordered actors $ordered (must be 0)"
  [ "$racy" -gt 0 ] && [ "$ordered" -eq 0 ] || { echo "tsan canary failed: TSan cannot be trusted here" >&2; exit 1; }
fi
rm -f "$build"/tsan-report.*
export TSAN_OPTIONS="suppressions=$supp:halt_on_error=0:second_deadlock_stack=1:log_path=$build/tsan-report"
cd "$build"
set +e
ctest --output-on-failure -j2 -L actors --timeout 3600
rc_actors=$?
./tests/cllm_core_tests "an in-place weight update is ordered after the last reader's reads"
rc_core=$?
set -e
reports=$(cat "$build"/tsan-report.* 2>/dev/null | grep -c "WARNING: ThreadSanitizer" || true)
echo "tsan: $reports reports (after suppressions); actors tests rc $rc_actors, core test rc $rc_core"
[ "$reports" -eq 0 ] && [ $rc_actors -eq 0 ] && [ $rc_core -eq 0 ]
