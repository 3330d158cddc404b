#!/usr/bin/env bash
# cllm-bench-step against PyTorch on the same model, batch, optimizer and thread count (one),
# in interleaved rounds on one CPU, with the ratio per round and the median.
#
#   bash bench/vs-pytorch.sh [--build DIR] [--rounds N] [--steps N] [--warmup N] [--model small]
#                            [--d-model D --layers L --heads H] [--batch 16] [--micro-batch M]
#                            [--context 128] [--cpu C] [--coretype auto|NAME] [--baseline DIR]
#                            [--precision fp32|bf16|fp32,bf16]
#
# --d-model/--layers/--heads override the preset on both sides (the model's context grows to
# --context): the GPT-2 body is `--model small --d-model 768 --layers 12 --heads 12 --context
# 1024`; bench/vs-pytorch-gpt2.sh runs it and `gpt2`. --micro-batch (default: --batch) is cllm's
# shard size; PyTorch always takes the whole batch in one pass (its best case).
# --baseline DIR adds another build's cllm-bench-step (an older commit, say) to every round, so
# a before/after comparison shares the same rounds. --precision bf16 times cllm's opt-in bf16
# products against PyTorch in fp32 (the baseline build, if any, keeps fp32); a list
# (fp32,bf16) times each in every round against the same PyTorch run.
#
# The end of the table puts the figures against the core's fp32 multiply-add peak
# (cllm-bench-gemm --peak): the share of the peak each reaches, and the share 2x PyTorch needs.
# Installs nothing: it needs Debian's python3-torch (with OpenBLAS: libopenblas0-pthread) and
# says so when they are missing. Not part of CI. On a shared machine, hold a lock around it
# (e.g. `flock -x /work/cpu.lock bash bench/vs-pytorch.sh`).
#
# PyTorch is compared at its best: Debian's OpenBLAS picks its kernels from the CPU id and falls
# back to slow generic ones on CPUs it does not know (an Intel AVX-512 part in a VM, say), so
# with --coretype auto (the default) every OPENBLAS_CORETYPE of the candidates below is timed
# briefly first and the fastest is used for the rounds. The probe runs the `small` preset
# whatever the shape (the kernel is chosen by the CPU, not the shape; at GPT-2 sizes a probe
# would take minutes).
set -euo pipefail

build=build rounds=5 steps=8 warmup=2 model=small batch=16 micro= context=128 cpu=0
coretype=auto baseline= precision=fp32 shape=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --d-model|--layers|--heads) shape+=("$1" "$2"); shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --micro-batch) micro=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "vs-pytorch.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

[ -n "$micro" ] || micro=$batch
IFS=, read -r -a precisions <<<"$precision"
here=$(cd "$(dirname "$0")/.." && pwd)
bench="$build/bench/cllm-bench-step"
[ -x "$bench" ] || { echo "vs-pytorch.sh: $bench not found (build first, or --build DIR)" >&2; exit 2; }
if [ -n "$baseline" ]; then
  base_bench="$baseline/bench/cllm-bench-step"
  [ -x "$base_bench" ] || { echo "vs-pytorch.sh: $base_bench not found" >&2; exit 2; }
fi
py=/usr/bin/python3
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "vs-pytorch.sh: PyTorch not found for $py (apt-get install python3-torch libopenblas0-pthread)" >&2
  exit 2
fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
pin=(taskset -c "$cpu")
torch_run() {  # $1 = OPENBLAS_CORETYPE ('' = OpenBLAS's own choice), $2 = steps
  OPENBLAS_CORETYPE="$1" "${pin[@]}" "$py" "$here/tools/torch_step.py" --model "$model" \
    "${shape[@]}" --batch "$batch" --context "$context" --steps "$2" --warmup "$warmup" --threads 1
}
torch_probe() {  # $1 = OPENBLAS_CORETYPE: a few steps of `small`, whatever the shape timed
  OPENBLAS_CORETYPE="$1" "${pin[@]}" "$py" "$here/tools/torch_step.py" --model small \
    --batch 16 --context 128 --steps 4 --warmup 2 --threads 1
}
value() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), pinned to CPU $cpu"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2' | sort -u | tr '\n' ' ')"

if [ "$coretype" = auto ]; then
  best="" best_tps=0
  for ct in "" SkylakeX Cooperlake SapphireRapids Haswell Zen; do
    out=$(torch_probe "$ct" 2>&1) || { echo "  OPENBLAS_CORETYPE='$ct': failed"; continue; }
    tps=$(echo "$out" | value torch_tokens_per_s)
    kern=$(echo "$out" | sed -n 's/^openblas kernel: \([^ ]*\).*/\1/p')
    printf "  probe OPENBLAS_CORETYPE=%-15s kernel %-15s %8.0f tokens/s\n" "'$ct'" "$kern" "$tps"
    if awk -v a="$tps" -v b="$best_tps" 'BEGIN{exit !(a>b)}'; then best=$ct best_tps=$tps; fi
  done
  coretype=$best
fi
echo "PyTorch uses OPENBLAS_CORETYPE='$coretype': $(torch_probe "$coretype" 2>&1 | sed -n 's/^openblas kernel: //p')"
echo "model $model ${shape[*]}, batch ${batch}x${context}, cllm micro-batch $micro, AdamW +" \
  "clipping, one thread; $warmup warm-up + $steps timed steps each (median)"
echo

printf "%-6s" round
for p in "${precisions[@]}"; do printf " %14s %8s" "cllm $p tok/s" ratio; done
printf " %14s" "torch tok/s"
[ -n "$baseline" ] && printf " %14s %8s" "baseline tok/s" ratio
echo
# One timed run of a cllm-bench-step binary: its training tokens/s. Its whole output goes to
# $log (the FLOP count of the ceiling comes from there, not from another step at GPT-2 sizes).
log=$(mktemp) && trap 'rm -f "$log"' EXIT
run_cllm() {  # $1 = binary, $2 = precision
  local extra=()
  "$1" --help | grep -q -- --compare-micro && extra=(--compare-micro 0)
  [ "$2" != fp32 ] && extra+=(--precision "$2")
  "${pin[@]}" "$1" --model "$model" "${shape[@]}" --batch "$batch" --micro-batch "$micro" \
    --context "$context" --steps "$steps" --repeats 1 --warmup "$warmup" --gen-tokens 0 \
    "${extra[@]}" >"$log"
  value train_tokens_per_s <"$log"
}
run_torch() { torch_run "$coretype" "$steps" 2>&1 | value torch_tokens_per_s; }
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
med() { printf "%s\n" "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
declare -A ours ratios  # key "precision round"
theirs=() bases=() bratios=()
for r in $(seq 1 "$rounds"); do
  # Alternate who goes first, so a drift in machine speed favours neither.
  declare -A c=()
  t="" bl=""
  if [ $((r % 2)) -eq 1 ]; then
    for p in "${precisions[@]}"; do c[$p]=$(run_cllm "$bench" "$p"); done
    t=$(run_torch)
    [ -n "$baseline" ] && bl=$(run_cllm "$base_bench" fp32)
  else
    [ -n "$baseline" ] && bl=$(run_cllm "$base_bench" fp32)
    t=$(run_torch)
    for ((i = ${#precisions[@]} - 1; i >= 0; i--)); do
      p=${precisions[$i]}; c[$p]=$(run_cllm "$bench" "$p")
    done
  fi
  theirs+=("$t")
  printf "%-6s" "$r"
  for p in "${precisions[@]}"; do
    ours[$p $r]=${c[$p]} ratios[$p $r]=$(ratio_of "${c[$p]}" "$t")
    printf " %14.1f %8s" "${c[$p]}" "${ratios[$p $r]}"
  done
  printf " %14.1f" "$t"
  if [ -n "$baseline" ]; then
    br=$(ratio_of "$bl" "$t")
    bases+=("$bl") bratios+=("$br")
    printf " %14.1f %8s" "$bl" "$br"
  fi
  echo
done
of() {  # the values of precision $2 in array $1, one per round
  local -n arr=$1
  for r in $(seq 1 "$rounds"); do printf "%s\n" "${arr[$2 $r]}"; done
}
printf "%-6s" median
for p in "${precisions[@]}"; do
  printf " %14.1f %8.2f" "$(med $(of ours "$p"))" "$(med $(of ratios "$p"))"
done
printf " %14.1f" "$(med "${theirs[@]}")"
[ -n "$baseline" ] && printf " %14.1f %8.2f" "$(med "${bases[@]}")" "$(med "${bratios[@]}")"
echo

# The ceiling: tokens/s at the core's fp32 FMA peak, and where both sides stand against it.
peak=$("${pin[@]}" "$build/bench/cllm-bench-gemm" --peak | value fma_peak_gflops)
fpt=$(sed -n 's/^FLOP\/token = .* = \([0-9]*\) (fwd+bwd.*/\1/p' "$log")
awk -v p="$peak" -v f="$fpt" -v c="$(med $(of ours "${precisions[0]}"))" -v cp="${precisions[0]}" \
  -v t="$(med "${theirs[@]}")" 'BEGIN{
  top = p * 1e9 / f
  printf "ceiling: fp32 FMA peak %.1f GFLOP/s, %d FLOP/token: %.1f tokens/s at 100%% of the peak\n", p, f, top
  printf "cllm %s reaches %.1f%% of it, PyTorch %.1f%%; 2x PyTorch would need %.1f%%\n", cp, 100*c/top, 100*t/top, 200*t/top
}'
