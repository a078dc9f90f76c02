#!/usr/bin/env bash
# The one prepared GPU check of issue 12 and the screen target: run from the repository root on
# the GPU machine (no network). Carry: .whl/ (wheels of benchmarks/gpu/wheels.txt for the
# machine's Python, plus numpy/pytest if missing) and gpu_vendor/ (the NEST GPU tarball from
# ../shared/vendor). Writes everything under $OUT. Parts, each with its own time limit (the
# device budget is 15 minutes for everything, start-up included: keep the sum under ~12):
#   1. torch (CUDA): GPU tests and the quick benchmark, the 1,024-condition screen included
#      (GPU_QUICK=1 bash benchmarks/gpu_check.sh, BENCH_BUDGET s);
#   2. Brian2CUDA: its GPU tests, the conformance suite, bench rows 1x1s and 32x1s;
#   3. NEST GPU: build with brainfly's model, its GPU tests, the conformance suite, bench rows.
# DRY_RUN=1 prints the commands of parts 2 and 3 only.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OUT="${OUT:-$PWD/gpu_out}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # brainfly from the checkout (its dependencies: from .whl/ or the machine)
mkdir -p "$OUT"
rc=0
if [ "${SKIP_TORCH:-0}" != 1 ]; then
  OUT="$OUT/torch" GPU_QUICK=1 BENCH_BUDGET="${BENCH_BUDGET:-120}" timeout "${T_TORCH:-240}" \
      bash benchmarks/gpu_check.sh || rc=1
fi
[ "${SKIP_BRIAN2CUDA:-0}" = 1 ] || bash benchmarks/gpu/brian2cuda_check.sh || rc=1
[ "${SKIP_NESTGPU:-0}" = 1 ] || bash benchmarks/gpu/nestgpu_check.sh || rc=1
echo "gpu checks done (rc=$rc); results under $OUT"
exit "$rc"
