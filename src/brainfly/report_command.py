"""Command line of the HTML report: ``brainfly report PATH --out REPORT.html``.

Parses the options, calls :func:`brainfly.report.write_report` and prints where the page is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .report import write_report

__all__ = ["add_report_arguments", "run_report_from_args"]


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``brainfly report`` to an argparse parser (returns it)."""
    parser.add_argument("path", help="a run's spike file (.parquet) or a screen's folder (holding screen.json)")
    parser.add_argument("--out", required=True, help="the HTML page to write (one self-contained file)")
    parser.add_argument("--versus", default=None, metavar="B.parquet",
                        help="a second run's spike file: add the contrast of PATH (A) with it (B)")
    parser.add_argument("--data", default=None, metavar="DIR_OR_NAME",
                        help="the run's connectome (folder or dataset name) for path lengths from the stimulated "
                             "neurons; default: the dataset the run records, when it is on disk")
    parser.add_argument("--top", type=int, default=40,
                        help="neurons, cell types and effects shown (default: %(default)s)")
    return parser


def run_report_from_args(args: argparse.Namespace) -> int:
    """Run ``brainfly report`` from parsed arguments; returns the exit status (0: page written)."""
    out = write_report(Path(args.path), Path(args.out), versus=args.versus, data=args.data, top=args.top)
    print(f"report written to {out}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Stand-alone entry point: ``python -m brainfly.report_command PATH --out REPORT.html``."""
    parser = argparse.ArgumentParser(prog=prog, description="self-contained HTML report of a run or a screen folder")
    add_report_arguments(parser)
    return run_report_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover - the console script goes through brainfly.cli
    raise SystemExit(main())
