#!/usr/bin/env bash
# Fuzzes the readers of untrusted input with libFuzzer (targets in fuzz/, built by
# `tools/sanitize.sh build` into build-asan/fuzz/, under ASan + UBSan).
#
#   tools/fuzz.sh                 30 s per target, every target (CI runs this: about 2 minutes)
#   tools/fuzz.sh 3600            the long run: an hour per target
#   tools/fuzz.sh 600 fuzz_config one target
#   tools/fuzz.sh --seeds         rewrite the seed inputs in fuzz/corpus/ (cllm_fuzz_seeds)
#
# Each target starts from its committed inputs (fuzz/corpus/<target>/, read only) and keeps what
# it finds in build-asan/fuzz-work/<target>/ (not committed), so repeated runs go on from there.
# A finding (crash, sanitizer report, violated property, a leak, an input slower than 10 s or
# above 2 GB of memory) is written to build-asan/fuzz-work/<target>-crash-* and the script fails.
# Keep a fixed finding as a regression input: copy that file into fuzz/corpus/<target>/; every
# build then replays it (ctest label "fuzz").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-asan"
if [ "${1:-}" = "--seeds" ]; then
  "$build/fuzz/cllm_fuzz_seeds" "$root/fuzz/corpus"
  exit 0
fi
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_safetensors fuzz_checkpoint fuzz_config fuzz_corpus fuzz_cluster fuzz_sum_pack)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
total=0
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is missing; run tools/sanitize.sh build" >&2; exit 2; }
  work="$build/fuzz-work/$t"
  mkdir -p "$work"
  log="$build/fuzz-work/$t.log"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/fuzz-work/$t-" "$work" "$root/fuzz/corpus/$t" \
    >"$log" 2>&1; then
    result=ok
  else
    result=FINDING
    status=1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
  total=$((total + ${runs:-0}))
  echo "fuzz: $t: $result, ${runs:-?} executions in ${seconds} s, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) inputs"
  if [ "$result" != ok ]; then tail -40 "$log" >&2; fi
done
echo "fuzz: $total executions in total"
exit $status
