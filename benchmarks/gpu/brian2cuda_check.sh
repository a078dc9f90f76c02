#!/usr/bin/env bash
# Brian2CUDA part of the prepared GPU script (run from the repository root on the GPU machine).
# Needs: Python 3.12 with brainfly installed (pip install -e . --no-deps or the lead's step),
# nvcc + cuRAND (CUDA toolkit), make, the wheels of benchmarks/gpu/wheels.txt in .whl/.
# Output: $OUT/brian2cuda/ (pytest logs, bench CSV). DRY_RUN=1 prints the commands only.
set -uo pipefail
OUT="${OUT:-/tmp/brian2cuda-out}/brian2cuda"
PY="${PYTHON:-python}"
run() { echo "+ $*"; [ "${DRY_RUN:-0}" = 1 ] || "$@"; }
mkdir -p "$OUT"
rc=0
# 1. brian2 + brian2cuda and their pure-Python deps, offline
run "$PY" -m pip install --no-index --find-links .whl --pre -r <(grep -v '^#' benchmarks/gpu/wheels.txt) \
    > "$OUT/pip.log" 2>&1 || { echo "pip install failed (see pip.log)"; rc=1; }
run "$PY" -m pip check >> "$OUT/pip.log" 2>&1
# 2. what the machine offers (nvcc, curand, GPU) and the engine's own verdict
{ nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv; nvcc --version | tail -2
  "$PY" -c "from brainfly.engines import brian2cuda_engine as b; print(b.Brian2CUDAEngine().is_available(), b.Brian2CUDAEngine().versions())"
} > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"
# 3. the engine's GPU tests, then the conformance suite on brian2cuda (one build per case: minutes)
run timeout "${T_ENGINE:-240}" "$PY" -m pytest -q -p no:cacheprovider --run-gpu tests/test_brian2cuda_engine.py \
    -o addopts="-ra" > "$OUT/pytest_engine.log" 2>&1 || rc=1
tail -5 "$OUT/pytest_engine.log"
run timeout "${T_CONFORMANCE:-300}" "$PY" -m pytest -q -p no:cacheprovider --run-gpu --engine brian2cuda \
    --require-engine brian2cuda tests/test_conformance.py -o addopts="-ra" > "$OUT/pytest_conformance.log" 2>&1 || rc=1
tail -5 "$OUT/pytest_conformance.log"
# 4. benchmark rows: sugar GRNs, 1 trial x 1 s and 32 trials x 1 s, synthetic brain
run timeout "${T_BENCH:-240}" "$PY" main.py --brian2cuda-gpu --t_run 1 --n_run 1 32 --data synthetic \
    --csv "$OUT/bench.csv" --log_file "$OUT/bench_log.txt" --no-plot > "$OUT/bench.log" 2>&1 || rc=1
tail -5 "$OUT/bench.log"
exit $rc
