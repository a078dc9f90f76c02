"""Command line of the benchmark: ``brainfly bench`` and the seed-compatible ``main.py``.

Both accept the seed's spellings (``--t_run``, ``--n_run``, ``--log_file``,
``--no_log_file``, ``--brian2-cpu``, ``--brian2cuda-gpu``, ``--pytorch``, ``--nestgpu``)
and brainfly's (``--t-run``, ``--n-run``, ``--engines``, ``--event``, ``--torch-cpu``,
``--brian2-runtime``). Without an engine flag, every predefined target runs (those that
cannot run here are reported as skipped, with the reason).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Any

from ..errors import BrainflyError, ValidationError
from ..experiment import load_experiment
from ..store import DEFAULT_CSV, DEFAULT_RESULTS_DIR, format_t_run, spikes_file_name
from .grid import (
    DEFAULT_LOG_FILE, DEFAULT_N_RUNS, DEFAULT_T_RUNS, DEFAULT_TIMEOUT_S, TARGETS, BenchConfig, BenchTarget, build_grid,
    parse_target, run_bench,
)

__all__ = ["add_bench_arguments", "run_bench_from_args", "config_from_args", "targets_from_args"]


def _dest(flag: str) -> str:
    return "target_" + flag.lstrip("-").replace("-", "_")


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options to *parser* (returns it)."""
    parser.add_argument("--experiment", default="sugar",
                        help="built-in experiment (sugar, p9) or a TOML file (default: %(default)s)")
    parser.add_argument("--t-run", "--t_run", dest="t_run", type=float, nargs="+", default=None, metavar="S",
                        help=f"durations of one trial, s (default: {' '.join(f'{t:g}' for t in DEFAULT_T_RUNS)})")
    parser.add_argument("--n-run", "--n_run", dest="n_run", type=int, nargs="+", default=None, metavar="N",
                        help=f"numbers of trials (default: {' '.join(str(n) for n in DEFAULT_N_RUNS)})")
    parser.add_argument("--engines", nargs="+", default=None, metavar="TARGET",
                        help="targets: " + ", ".join(t.label for t in TARGETS)
                        + ", or ENGINE[:key=value,...] for any registered engine (default: all targets)")
    group = parser.add_argument_group("engine flags (combinable; none given: all targets)")
    for t in TARGETS:
        group.add_argument(t.flag, dest=_dest(t.flag), action="store_true",
                           help=f"{t.help} (target {t.label})")
    parser.add_argument("--data", default=None,
                        help="connectome: folder or dataset name (default: the best available)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="time limit of one grid point, s (default: %(default)g)")
    parser.add_argument("--seed", type=int, default=None, help="experiment seed (default: the experiment's)")
    parser.add_argument("--csv", default=str(DEFAULT_CSV), help="results table (default: %(default)s)")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR),
                        help="spike files and worker logs (default: %(default)s)")
    parser.add_argument("--log-file", "--log_file", dest="log_file", default=str(DEFAULT_LOG_FILE),
                        help="log file (default: %(default)s)")
    parser.add_argument("--no-log-file", "--no_log_file", dest="no_log_file", action="store_true",
                        help="log to the console only")
    parser.add_argument("--no-save-spikes", action="store_true", help="do not save spike trains")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the results plot")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None,
                        help="how workers start (default: fork where available)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the points the CSV already has with status ok (and their spikes)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    return parser


def targets_from_args(args: argparse.Namespace) -> list[BenchTarget]:
    """The targets chosen by ``--engines`` and the engine flags (all when none)."""
    chosen: list[BenchTarget] = []
    for t in TARGETS:
        if getattr(args, _dest(t.flag), False):
            chosen.append(t)
    for spec in getattr(args, "engines", None) or []:
        chosen.append(parse_target(spec))
    return chosen or list(TARGETS)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A :class:`BenchConfig` from parsed arguments (validates the experiment and grid).

    Raises
    ------
    BrainflyError
        Unknown experiment, impossible durations or trial counts, malformed targets.
    """
    exp = load_experiment(args.experiment)
    if args.seed is not None:
        exp = exp.with_(seed=args.seed)
    t_runs = list(args.t_run) if args.t_run else list(DEFAULT_T_RUNS)
    n_runs = list(args.n_run) if args.n_run else list(DEFAULT_N_RUNS)
    targets = targets_from_args(args)
    for point in build_grid(targets, t_runs, n_runs):
        exp.with_(t_run=point.t_run, n_trials=point.n_run)
    if not args.timeout > 0:
        raise ValidationError(f"bench --timeout: must be > 0 s (got {args.timeout})")
    return BenchConfig(
        targets=targets, t_runs=t_runs, n_runs=n_runs, experiment=exp,
        csv_path=Path(args.csv), results_dir=Path(args.results_dir),
        log_file=None if args.no_log_file else Path(args.log_file),
        timeout_s=float(args.timeout), save_spikes=not args.no_save_spikes,
        progress=not args.no_progress, plot=not args.no_plot, start_method=args.start_method,
        data=args.data, resume=bool(getattr(args, "resume", False)),
    )


def _print_grid(config: BenchConfig) -> None:
    points = build_grid(config.targets, config.t_runs, config.n_runs)
    exp = config.experiment
    print(f"benchmark grid: experiment {exp.name!r}, {len(points)} point(s), time limit {config.timeout_s:g} s "
          f"per point, data {config.data or 'best available'}")
    print(f"results: {config.csv_path}; spikes: {config.results_dir if config.save_spikes else 'not saved'}; "
          f"log: {config.log_file or 'console only'}")
    for p in points:
        opts = "" if not p.target.options else " " + ",".join(f"{k}={v}" for k, v in p.target.options)
        name = spikes_file_name(p.target.label, exp.name, p.t_run, p.n_run)
        print(f"  {p.target.label:<18s} engine {'|'.join(p.target.engines)}{opts:<14s} "
              f"t_run={format_t_run(p.t_run):>6s} s  n_run={p.n_run:<3d} -> {name}")


def run_bench_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed arguments.

    Returns
    -------
    int
        0 when every point ran, was skipped or timed out; 1 when a point failed or
        crashed (the grid still completed); 2 for invalid arguments.
    """
    try:
        config = config_from_args(args)
    except BrainflyError as exc:
        print(f"brainfly bench: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print_grid(config)
        return 0
    try:
        rows = run_bench(config)
    except BrainflyError as exc:
        print(f"brainfly bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainfly bench: interrupted; the rows measured so far are in " + str(config.csv_path),
              file=sys.stderr)
        return 130
    return 1 if any(r["status"] in ("failed", "crashed") for r in rows) else 0


def main(argv: list[str] | None = None, prog: str | None = None, description: str | None = None) -> int:
    """Stand-alone entry point (used by ``main.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or "brainfly benchmark grid")
    add_bench_arguments(parser)
    args: Any = parser.parse_args(argv)
    return run_bench_from_args(args)
