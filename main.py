"""Fruit-fly whole-brain benchmark runner (brainfly), compatible with the seed's command lines.

Usage::

    python main.py                                          # all engines, default grid, sugar
    python main.py --experiment p9                          # P9 forward-walking experiment
    python main.py --t_run 0.1 1 10 --n_run 1               # chosen durations (s) and trial counts
    python main.py --brian2-cpu --pytorch --t_run 1 --n_run 1 4
    python main.py --event --torch-cpu --brian2-runtime     # brainfly's own engines
    python main.py --no_log_file                            # console only
    python main.py --dry-run                                # print the grid and exit

Engine flags (combinable; none given: all): --brian2-cpu (Brian2 C++ standalone),
--brian2-runtime (Brian2 runtime), --brian2cuda-gpu, --pytorch (PyTorch on CUDA),
--torch-cpu, --nestgpu (NEST GPU only), --nest (NEST on the CPU), --event. An engine that cannot run here is reported as skipped
with the reason. Results: data/benchmark-results.csv (+ .png), spikes in data/results/,
log in data/results/benchmarks.log. Same as ``brainfly bench``; see ``--help``.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

os.environ.setdefault("PYTHONUNBUFFERED", "1")

try:
    import brainfly  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from brainfly.bench.command import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(prog="main.py", description="Drosophila whole-brain LIF benchmark (brainfly)"))
