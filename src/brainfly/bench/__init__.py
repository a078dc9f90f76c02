"""The benchmark: engines x durations x trials, each point in its own process, to a CSV.

``brainfly bench`` and the seed-compatible ``main.py`` both end in :func:`run_bench`.
See :mod:`brainfly.bench.grid` for the grid, :mod:`.worker` for the per-point process with
its time limit, :mod:`.hardware` for the machine description, and :mod:`brainfly.store`
for the CSV and the file names of saved spikes.
"""

from __future__ import annotations

from .command import add_bench_arguments, config_from_args, run_bench_from_args
from .grid import (
    DEFAULT_LOG_FILE, DEFAULT_N_RUNS, DEFAULT_T_RUNS, DEFAULT_TIMEOUT_S, TARGETS, BenchConfig, BenchTarget, GridPoint,
    build_grid, load_network, parse_target, run_bench,
)
from .hardware import hardware_info, software_versions
from .worker import PointTask, run_point

__all__ = [
    "add_bench_arguments",
    "run_bench_from_args",
    "config_from_args",
    "run_bench",
    "BenchConfig",
    "BenchTarget",
    "TARGETS",
    "GridPoint",
    "build_grid",
    "parse_target",
    "load_network",
    "DEFAULT_T_RUNS",
    "DEFAULT_N_RUNS",
    "DEFAULT_LOG_FILE",
    "DEFAULT_TIMEOUT_S",
    "hardware_info",
    "software_versions",
    "PointTask",
    "run_point",
]
