#!/usr/bin/env bash
# NEST GPU part of the prepared GPU script (run from the repository root on the GPU machine).
# Needs: Python with brainfly installed, nvcc + cuRAND (CUDA toolkit), CMake >= 3.17, make, and the
# NEST GPU source tarball carried in a git-ignored folder (default gpu_vendor/, override with
# BRAINFLY_NESTGPU_SOURCE). Builds NEST GPU with brainfly_lif into $BRAINFLY_CACHE_DIR (default
# $OUT/cache), runs the engine's GPU tests, the conformance suite on nestgpu, and the bench rows
# sugar 1x1s and 32x1s. Output: $OUT/nestgpu/. DRY_RUN=1 prints the commands only.
set -uo pipefail
ROOT_OUT="${OUT:-/tmp/nestgpu-out}"
OUT="$ROOT_OUT/nestgpu"
PY="${PYTHON:-python}"
export BRAINFLY_NESTGPU_SOURCE="${BRAINFLY_NESTGPU_SOURCE:-gpu_vendor/nest-gpu-d3be46f99a54.tar.gz}"
export BRAINFLY_CACHE_DIR="${BRAINFLY_CACHE_DIR:-$ROOT_OUT/cache}"
run() { echo "+ $*"; [ "${DRY_RUN:-0}" = 1 ] || "$@"; }
mkdir -p "$OUT"
rc=0
# 1. what the machine offers
{ nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv; nvcc --version | tail -2; cmake --version | head -1
  ls -l "$BRAINFLY_NESTGPU_SOURCE"; } > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"
# 2. build NEST GPU with brainfly's model (about 3.5 CPU-minutes of nvcc; -j = cores)
start=$(date +%s)
run timeout "${T_BUILD:-420}" "$PY" -m brainfly.nestgpu_install --source "$BRAINFLY_NESTGPU_SOURCE" \
    --cuda-arch "${CUDA_ARCH:-90}" --jobs "${JOBS:-$(nproc)}" --work "$OUT/work" > "$OUT/build.log" 2>&1 \
    || { echo "NEST GPU build failed (see build.log, work/brainfly-build.log)"; rc=1; }
echo "build: $(( $(date +%s) - start )) s"; tail -12 "$OUT/build.log"
cp -f "$OUT/work/brainfly-build.log" "$OUT/brainfly-build.log" 2>/dev/null
rm -rf "$OUT/work/source" "$OUT/work/build"   # keep $OUT small
"$PY" -c "from brainfly.engines.nestgpu_engine import NestGpuEngine as E; print('available:', E().is_available(), E().versions())" \
    2>&1 | tee -a "$OUT/env.txt"
# 3. the engine's tests (GPU ones included), then the conformance suite on nestgpu
run timeout "${T_ENGINE:-240}" "$PY" -m pytest -q -p no:cacheprovider --run-gpu tests/test_nestgpu_engine.py \
    -o addopts="-ra" > "$OUT/pytest_engine.log" 2>&1 || rc=1
tail -8 "$OUT/pytest_engine.log"
run timeout "${T_CONFORMANCE:-300}" "$PY" -m pytest -q -p no:cacheprovider --run-gpu --engine nestgpu \
    --require-engine nestgpu tests/test_conformance.py -o addopts="-ra" > "$OUT/pytest_conformance.log" 2>&1 || rc=1
tail -8 "$OUT/pytest_conformance.log"
# 4. benchmark rows: sugar GRNs, 1 trial x 1 s and 32 trials x 1 s (one process per trial), synthetic brain
run timeout "${T_BENCH:-300}" "$PY" main.py --nestgpu --t_run 1 --n_run 1 32 --data synthetic \
    --csv "$OUT/bench.csv" --log_file "$OUT/bench_log.txt" --no-plot > "$OUT/bench.log" 2>&1 || rc=1
tail -5 "$OUT/bench.log"
exit $rc
