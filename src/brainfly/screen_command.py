"""Command line of screens: ``brainfly screen SPEC.toml --engine event --data D --out DIR``.

Parses the options, calls :func:`brainfly.screens.screen`, prints where the tables are and
the strongest effects.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import ValidationError
from .screens import ScreenResult, screen

__all__ = ["add_screen_arguments", "run_screen_from_args", "format_screen"]

_EXAMPLE = """\
example spec (TOML):
  name = "sugar-silencing"
  base = "sugar"              # built-in, experiment file, or an inline [base] table
  n_trials = 8
  readout = ["MN9"]
  [[vary]]
  kind = "silence"            # silence | activate | rate | param
  neurons = ["type:LB3", "720575940622838154"]
  [controls]
  shuffles = 2
"""


def add_screen_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``brainfly screen`` to an argparse parser (returns it)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EXAMPLE
    parser.add_argument("spec", help="screen spec (TOML)")
    parser.add_argument("--engine", default="event", help="engine (default: %(default)s)")
    parser.add_argument("--data", default=None, help="connectome folder or dataset name (default: best available)")
    parser.add_argument("--out", default=None, help="screen folder (default: screens/<name>)")
    parser.add_argument("--scheduler", default="local",
                        help="'local' (embedded Dask cluster, default), 'in-process' (no Dask), the address of a "
                             "running Dask scheduler (tcp://HOST:PORT), or a batch system (slurm, pbs, sge, lsf: "
                             "workers started by dask-jobqueue, pip install 'brainfly[cluster]')")
    parser.add_argument("--workers", type=int, default=1, help="worker jobs for a batch-system scheduler")
    parser.add_argument("--save-spikes", action="store_true", help="also write every condition's spikes")
    parser.add_argument("--yes", action="store_true", help="run more conditions than the spec's max_conditions")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder holding another or a finished screen")
    parser.add_argument("--no-resume", action="store_true", help="start again even if finished chunks exist")
    parser.add_argument("--chunk-conditions", type=int, default=None, help="conditions per chunk (default: by engine)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="engine option (repeatable), e.g. --option n_threads=2")
    parser.add_argument("--top", type=int, default=10, help="effects to print (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"--option {pair!r}: give KEY=VALUE (e.g. n_threads=2)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def format_screen(result: ScreenResult, top: int = 10) -> str:
    """A few lines on a finished screen: where, how long, how many effects, the strongest."""
    info = result.info
    data = info.get("data", {})
    lines = [f"screen {info.get('name')!r}: {len(result.conditions)} conditions x {info['spec']['base']['n_trials']} "
             f"trial(s) on {info.get('engine')} ({data.get('name')}"
             f"{', SYNTHETIC connectome' if data.get('synthetic') else ''}) in "
             f"{info.get('timings', {}).get('total_s', float('nan')):.1f} s -> {result.folder}"]
    eff = result.top(top)
    if eff.empty:
        lines.append("no effects (a screen of the base alone, or a single trial per condition: no statistics)")
        return "\n".join(lines)
    n_sig = int((result.effects["q_value"] < 0.05).sum())
    lines.append(f"{n_sig} condition x readout pair(s) with q < 0.05; strongest:")
    for row in eff.itertuples():
        name = f"{row.name} {row.flywire_id}" if row.name else str(row.flywire_id)
        lines.append(f"  {row.label:<36.36} {name:<24.24} {row.base_mean_hz:8.2f} -> {row.mean_hz:8.2f} Hz "
                     f"(diff {row.diff_hz:+.2f}, 95% CI {row.ci_low_hz:+.2f}..{row.ci_high_hz:+.2f}, q {row.q_value:.2g})")
    return "\n".join(lines)


def run_screen_from_args(args: argparse.Namespace) -> int:
    """Run ``brainfly screen`` from parsed arguments."""
    result = screen(args.spec, data=args.data, engine=args.engine, out=args.out, scheduler=args.scheduler,
                    resume=not args.no_resume, overwrite=args.overwrite, yes=args.yes, save_spikes=args.save_spikes,
                    progress=not args.quiet, chunk_conditions=args.chunk_conditions, workers=args.workers,
                    **_options(args.option))
    print(format_screen(result, args.top), file=sys.stdout)
    return 0
