"""Compare every engine's saved spikes with Brian2's (the ground truth), as ``brainfly compare``.

Usage::

    python code/compare_ground_truth.py --t_run 1 --n_run 1
    python code/compare_ground_truth.py --files reference.parquet candidate.parquet --t_run 1

Reads data/results/{engine}_{experiment}_t{t_run}_n{n_run}.parquet (written by main.py),
writes data/ground-truth-comparison.json and a figure beside it. See ``--help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

try:
    import brainfly  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from brainfly.compare import add_compare_arguments, run_compare_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the comparison."""
    parser = argparse.ArgumentParser(prog="compare_ground_truth.py",
                                     description="compare engines' saved spikes with Brian2's")
    add_compare_arguments(parser)
    return run_compare_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
