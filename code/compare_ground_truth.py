"""Compare every engine's saved spikes with Brian2's (the ground truth), as ``brainfly compare``.

Usage::

    python code/compare_ground_truth.py --t_run 1 --n_run 1
    python code/compare_ground_truth.py --files reference.parquet candidate.parquet --t_run 1

Reads data/results/{engine}_{experiment}_t{t_run}_n{n_run}.parquet (written by main.py),
writes data/ground-truth-comparison.json and a figure beside it. See ``--help``.
"""

from __future__ import annotations

from pathlib import Path
import sys

try:
    import brainfly  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from brainfly.compare_command import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(prog="compare_ground_truth.py"))
