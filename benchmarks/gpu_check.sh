#!/usr/bin/env bash
# One prepared GPU check of the torch engine: GPU tests, then the full-size benchmark.
#
# Run from the repository root on the CUDA machine (no network needed):
#
#     bash benchmarks/gpu_check.sh            # writes into $OUT (default ./gpu_check_out)
#     GPU_QUICK=1 bash benchmarks/gpu_check.sh   # short: a subset of the GPU tests, then
#         gpu_check.py --quick (default and synced modes, 1 and 32 trials x 1 s, float64
#         exactness, the 100-condition screen); about 2 minutes on an H100
#
# Needs python3 (3.11/3.12) with torch (CUDA build) installed. numpy and pytest are
# installed from wheels in .whl/ if missing (pip --no-index). brainfly runs from src/
# (PYTHONPATH), not installed. Writes to $OUT: gpu_check.log (everything printed),
# gpu_tests.xml (JUnit), gpu_bench.json (figures, appended as measured).
# Time: tests (at most TEST_TIMEOUT=120 s) + benchmark (network generation and compilation
# included; items that would not fit in BENCH_BUDGET=200 s are skipped, hard stop at +60 s):
# at most about 6.5 minutes, 4-5 expected. Both limits can be set in the environment.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
PY="${PYTHON:-python3}"
GPU_QUICK="${GPU_QUICK:-0}"
if [ "$GPU_QUICK" = "1" ]; then
    TEST_TIMEOUT="${TEST_TIMEOUT:-60}"
    BENCH_BUDGET="${BENCH_BUDGET:-80}"
    TEST_SELECT=(-k "float64_matches_cpu_exact or fused_kernel or gpu_mixed_batch")
    QUICK_ARG=(--quick)
else
    TEST_TIMEOUT="${TEST_TIMEOUT:-120}"
    BENCH_BUDGET="${BENCH_BUDGET:-200}"
    TEST_SELECT=()
    QUICK_ARG=()
fi
echo "== gpu_check.sh $(date -u +%FT%TZ) in $PWD; OUT=$OUT; GPU_QUICK=$GPU_QUICK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "(nvidia-smi unavailable)"
$PY -V
if ! $PY -c 'import torch' 2>/dev/null; then
    if ls .whl/torch-*.whl >/dev/null 2>&1; then
        $PY -m pip install --no-index --find-links .whl torch || { echo "FATAL: torch install from .whl/ failed"; exit 2; }
    else
        echo "FATAL: torch is not installed and .whl/ holds no torch wheel"; exit 2
    fi
fi
for mod in numpy pytest; do
    if ! $PY -c "import $mod" 2>/dev/null; then
        echo "installing $mod from .whl/"
        $PY -m pip install --no-index --find-links .whl "$mod" || echo "WARNING: $mod unavailable"
    fi
done
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY - <<'PYEOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("numpy", "pandas", "pyarrow", "pytest", "triton", "brainfly"):
    try:
        mod = importlib.import_module(m)
        print(f"  {m} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"  {m}: missing ({type(exc).__name__})")
PYEOF

echo "== 1. GPU tests (timeout ${TEST_TIMEOUT}s)"
PLUGIN=()
if ! $PY -c "import sys, importlib.metadata as m; sys.exit(0 if any(e.value.startswith('brainfly.testing.plugin') for e in m.entry_points(group='pytest11')) else 1)" 2>/dev/null; then
    PLUGIN=(-p brainfly.testing.plugin)
fi
timeout "$TEST_TIMEOUT" $PY -m pytest tests/test_torch_engine.py -m gpu --run-gpu "${PLUGIN[@]}" "${TEST_SELECT[@]}" -v -rfE \
    -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" 2>&1 | tail -80
echo "pytest exit status: ${PIPESTATUS[0]}"

echo "== 2. benchmark on the full-size synthetic brain (budget ${BENCH_BUDGET}s)"
timeout $((BENCH_BUDGET + 40)) $PY benchmarks/gpu_check.py --out "$OUT" --budget-s "$BENCH_BUDGET" "${QUICK_ARG[@]}"
echo "benchmark exit status: $?"
echo "== done $(date -u +%FT%TZ); files in $OUT:"
ls -la "$OUT"
