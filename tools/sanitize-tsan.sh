#!/usr/bin/env bash
# ThreadSanitizer run of the actors tests (and of the core test of the weights' copy-on-write).
# Not part of CI (TSan slows the actor tests ~10x): run it by hand after changing actors/,
# messages/ or the thread-pool baselines.
#
#   tools/sanitize-tsan.sh          build build-tsan/ (clang, -O1) and run
#   tools/sanitize-tsan.sh test     run only
#
# Built for x86-64-v2 (CLLM_PORTABLE): clang's TSan instruments memory accesses of 1 to 16 bytes
# only, so the 32- and 64-byte accesses of AVX2/AVX-512 loops (-march=native) would go unchecked.
# CAF comes from Debian without instrumentation, so tools/tsan.supp drops reports with CAF frames
# (see there). Reports go to build-tsan/tsan-report.* (one file per process); the script prints
# how many there are and fails when there is any. Tests do not stop at the first report
# (halt_on_error=0) so that one run shows them all.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-tsan"
if [ "${1:-all}" = all ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCLLM_SANITIZE=thread -DCLLM_PORTABLE=ON \
    "${launcher[@]}" >/dev/null
  cmake --build "$build" -j"$(nproc)" --target cllm_actor_tests cllm_core_tests
fi
rm -f "$build"/tsan-report.*
export TSAN_OPTIONS="suppressions=$root/tools/tsan.supp:halt_on_error=0:second_deadlock_stack=1:log_path=$build/tsan-report"
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
