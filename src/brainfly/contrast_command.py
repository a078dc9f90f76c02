"""Command line of the two-condition contrast: ``brainfly contrast A.parquet B.parquet``.

Loads two spike files (:func:`brainfly.store.load_run`), calls
:func:`brainfly.effects.contrast`, prints :func:`brainfly.effects.format_contrast` and,
with ``--out``, writes the whole table (CSV or parquet by the suffix) atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ._io import atomic_write
from .effects import contrast, format_contrast
from .errors import DataError, ValidationError
from .results import SpikeResult
from .store import load_run

__all__ = ["add_contrast_arguments", "run_contrast_from_args", "write_contrast"]

_SUFFIXES = (".csv", ".parquet")


def add_contrast_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``brainfly contrast`` to an argparse parser (returns it)."""
    parser.add_argument("a", metavar="A.parquet", help="spike file of condition A (the baseline)")
    parser.add_argument("b", metavar="B.parquet", help="spike file of condition B (the manipulation); "
                                                       "differences are B - A")
    parser.add_argument("--top", type=int, default=20, help="neurons to print (default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="CSV_OR_PARQUET",
                        help="write the full table of every neuron active in A or B (.csv or .parquet)")
    parser.add_argument("--no-names", action="store_true", help="no neuron names or cell types")
    parser.add_argument("--t-run", "--t_run", dest="t_run", type=float, default=None,
                        help="trial duration, s, for files that do not record it (the paper's own output)")
    return parser


def _load(path: Path, t_run: float | None, which: str) -> SpikeResult:
    if not path.is_file():
        raise DataError(f"brainfly contrast: {which} file {path} does not exist; give a spike file written by "
                        "`brainfly run` (or the paper's code)")
    return load_run(path, t_run)


def write_contrast(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a contrast table atomically: CSV for ``.csv``, else parquet (``df.attrs`` in its metadata).

    Raises
    ------
    ValidationError
        For a suffix other than ``.csv`` or ``.parquet``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValidationError(f"brainfly contrast --out: {path} must end in .csv or .parquet (got {suffix!r})")
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def run_contrast_from_args(args: argparse.Namespace) -> int:
    """Run ``brainfly contrast`` from parsed arguments; returns the exit status (0)."""
    path_a, path_b = Path(args.a), Path(args.b)
    if args.out is not None and Path(args.out).suffix.lower() not in _SUFFIXES:
        raise ValidationError(f"brainfly contrast --out: {args.out} must end in .csv or .parquet")
    a = _load(path_a, args.t_run, "A")
    b = _load(path_b, args.t_run, "B")
    # two runs of one experiment (a file each) are told apart by their file names
    labels = (path_a.name, path_b.name) if a.exp_name == b.exp_name else None
    df = contrast(a, b, names=not args.no_names, t_run=args.t_run, labels=labels)
    print(format_contrast(df, top=args.top))
    if args.out is not None:
        print(f"wrote {write_contrast(df, args.out)} ({len(df):,} neurons)")
    return 0
