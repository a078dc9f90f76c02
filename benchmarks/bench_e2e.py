"""End-to-end speed: what a user waits for, in fresh processes, beside Brian2 standalone.

Every figure here is the wall time of a whole command in a new process (interpreter
start, imports, loading the cached connectome, the engine's set-up, the simulation,
writing the spike and rate files), the median of ``--repeat`` runs, unless it says
"kernel" (the engine's own simulation time, ``meta['timings']['sim_s']``, read from the
spike file the same command wrote). The connectome is the full-size synthetic brain
(generated and cached by a warm-up run that is not timed; results on it are labelled
SYNTHETIC), or ``--data``.

Measured:

- ``import``: ``python -c "import brainfly"`` (target <= 0.05 s);
- ``sugar 30x1s``: ``brainfly run sugar --n-trials 30 --out X.parquet`` (target <= 1.0 s);
- ``sugar 1x1s`` and ``sugar 1x101s``: ``brainfly run sugar --n-trials 1 --t-run T``; the
  marginal cost per simulated second is (wall(101 s) - wall(1 s)) / 100 (target <= 0.012 s);
- Brian2 C++ standalone running the same commands (``--engine brian2-standalone``), once
  each, end to end as well (it compiles a program per run); ``--no-brian2`` skips it,
  ``--brian2-trials`` sets the trials of its 30-trial command (the ratio is then per
  trial-second and says so).

Usage::

    python benchmarks/bench_e2e.py                     # everything (Brian2 takes minutes)
    python benchmarks/bench_e2e.py --no-brian2 --repeat 5
    python benchmarks/bench_e2e.py --out docs/benchmarks/e2e_2core.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from brainfly.bench.hardware import hardware_info, hardware_summary
from brainfly.results import SpikeResult
from brainfly.store import update_fields

__all__ = ["main"]

TARGETS = {"import_s": 0.05, "sugar_30x1s_s": 1.0, "marginal_s_per_sim_s": 0.012}


def _brainfly() -> list[str]:
    exe = Path(sys.executable).with_name("brainfly")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "brainfly"]


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall


def _run_cmd(engine: str, n_trials: int, t_run: float, out: Path, data: str) -> list[str]:
    return [*_brainfly(), "run", "sugar", "--engine", engine, "--n-trials", str(n_trials), "--t-run", f"{t_run:g}",
            "--data", data, "--out", str(out), "--overwrite", "-q"]


def _measure(name: str, cmd: list[str], out: Path | None, repeat: int, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    walls, kernels = [], []
    for _ in range(repeat):
        walls.append(_timed(cmd, cwd, env))
        if out is not None:
            meta = SpikeResult.read_parquet(out).meta
            kernels.append(float(meta["timings"]["sim_s"]))
    row: dict[str, Any] = {"case": name, "command": " ".join(cmd[len(_brainfly()):]) if out else " ".join(cmd),
                           "wall_median_s": statistics.median(walls), "wall_all_s": walls}
    if kernels:
        row["kernel_median_s"] = statistics.median(kernels)
    print(f"  {name:<34} wall {row['wall_median_s']:8.3f} s (median of {repeat})"
          + (f"   kernel {row['kernel_median_s']:.4f} s" if kernels else ""), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print (and optionally save) the record."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic", help="dataset name or folder (default: synthetic)")
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per case (median reported)")
    ap.add_argument("--no-brian2", action="store_true", help="skip Brian2 standalone")
    ap.add_argument("--brian2-trials", type=int, default=30, help="trials of Brian2's sugar command (default 30)")
    ap.add_argument("--long-t-run", type=float, default=101.0, help="the long single trial, seconds (default 101)")
    ap.add_argument("--out", default=None, help="write the record as JSON here")
    ap.add_argument("--csv", default=None,
                    help="also set the e2e_s column of the event rows (sugar 30x1s, 1x1s, 1xT) in this bench CSV "
                         "(e.g. data/benchmark-results.csv)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="brainfly-e2e-"))
    env = dict(os.environ)
    out = work / "X.parquet"
    print(f"hardware: {hardware_summary()}", flush=True)
    print("warm-up (not timed): connectome, packed network and compiled kernels into their caches", flush=True)
    _timed(_run_cmd("event", 2, 0.1, out, args.data), work, env)

    rows = [_measure("import", [sys.executable, "-c", "import brainfly"], None, args.repeat, work, env)]
    rows.append(_measure("sugar 30x1s event", _run_cmd("event", 30, 1.0, out, args.data), out, args.repeat, work, env))
    rows.append(_measure("sugar 1x1s event", _run_cmd("event", 1, 1.0, out, args.data), out, args.repeat, work, env))
    rows.append(_measure(f"sugar 1x{args.long_t_run:g}s event", _run_cmd("event", 1, args.long_t_run, out, args.data),
                         out, args.repeat, work, env))
    by = {r["case"]: r for r in rows}
    long_case = by[f"sugar 1x{args.long_t_run:g}s event"]
    marginal = (long_case["wall_median_s"] - by["sugar 1x1s event"]["wall_median_s"]) / (args.long_t_run - 1.0)
    summary: dict[str, Any] = {
        "import_s": by["import"]["wall_median_s"],
        "sugar_30x1s_s": by["sugar 30x1s event"]["wall_median_s"],
        "marginal_s_per_sim_s": marginal,
    }
    if not args.no_brian2:
        print("Brian2 standalone, same commands, once each (it builds a C++ program per run):", flush=True)
        b1 = _measure("sugar 1x1s brian2-standalone", _run_cmd("brian2-standalone", 1, 1.0, out, args.data), out, 1,
                      work, env)
        bn = _measure(f"sugar {args.brian2_trials}x1s brian2-standalone",
                      _run_cmd("brian2-standalone", args.brian2_trials, 1.0, out, args.data), out, 1, work, env)
        rows += [b1, bn]
        per_trial_b = bn["wall_median_s"] / args.brian2_trials
        summary["brian2_sugar_1x1s_s"] = b1["wall_median_s"]
        summary[f"brian2_sugar_{args.brian2_trials}x1s_s"] = bn["wall_median_s"]
        summary["ratio_1x1s_end_to_end"] = b1["wall_median_s"] / by["sugar 1x1s event"]["wall_median_s"]
        summary["ratio_30x1s_end_to_end"] = (per_trial_b * 30) / summary["sugar_30x1s_s"]
        summary["ratio_30x1s_note"] = ("measured" if args.brian2_trials == 30 else
                                       f"Brian2's {args.brian2_trials}-trial wall time scaled to 30 trials")
    shutil.rmtree(work, ignore_errors=True)

    print("\nsummary (end to end, fresh process, median):")
    for key, target in TARGETS.items():
        value = summary[key]
        print(f"  {key:<24} {value:8.4f} s   target <= {target} s   {'met' if value <= target else 'NOT met'}")
    for key in ("ratio_1x1s_end_to_end", "ratio_30x1s_end_to_end"):
        if key in summary:
            print(f"  {key:<24} {summary[key]:8.1f}x  (Brian2 standalone wall / event wall)")
    record = {
        "what": "end-to-end wall time of whole commands in fresh processes (median); kernel = engine sim_s",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": hardware_info(),
        "data": args.data,
        "targets": TARGETS,
        "summary": summary,
        "rows": rows,
    }
    if args.csv:
        for (n_run, t_run), case in ((30, 1.0), "sugar 30x1s event"), ((1, 1.0), "sugar 1x1s event"), \
                ((1, args.long_t_run), f"sugar 1x{args.long_t_run:g}s event"):
            update_fields(args.csv, {"engine": "event", "experiment": "sugar", "n_run": n_run, "t_run": t_run},
                          {"e2e_s": by[case]["wall_median_s"]})
        print(f"e2e_s of the event rows set in {args.csv}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"record written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
