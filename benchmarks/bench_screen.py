"""Screen speed: a 1,000-condition silencing screen end to end, in-process and on Dask.

Every figure is the wall time of a whole ``brainfly screen`` command in a fresh process
(interpreter start, imports, loading the cached connectome, the base run that chooses the
neurons, every condition, the tables and the statistics), the median of ``--repeat`` runs
alternating between the schedulers, unless it says otherwise. The screen (written to a
spec file here) silences each of 1,000 neurons alone, on the sugar experiment, 1 trial x
1 s: the neurons within ``--hops`` synapses upstream of MN9, the most active in the base
first (on the synthetic brain the sugar base activates fewer than 1,000 neurons; the rest
are the nearest upstream neurons). Results on the synthetic brain are labelled SYNTHETIC.

Measured:

- ``in-process``: ``--scheduler in-process`` (no Dask; target <= 20 s on 2 cores);
- ``dask``: ``--scheduler local`` (the default: an embedded Dask cluster); its overhead
  over in-process (target <= 10 %);
- Brian2 C++ standalone on the first ``--brian2-conditions`` conditions of the same
  screen (end to end, one command), per condition; ``--brian2-conditions 0`` skips it.

Usage::

    python benchmarks/bench_screen.py --repeat 3 --out docs/benchmarks/screen_2core.json
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

__all__ = ["main"]

TARGETS = {"in_process_s": 20.0, "dask_overhead": 0.10}

SPEC = """\
name = "bench-silencing-{n}"
base = "sugar"
t_run = {t_run}
n_trials = {n_trials}
seed = 1
readout = ["MN9"]
max_conditions = 100000
[[vary]]
kind = "silence"
select = {{ upstream_of = ["MN9"], max_hops = {hops}, limit = {n} }}
"""


def _brainfly() -> list[str]:
    exe = Path(sys.executable).with_name("brainfly")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "brainfly"]


def _screen(spec: Path, out: Path, data: str, scheduler: str, env: dict[str, str], engine: str = "event",
            extra: list[str] | None = None) -> tuple[float, dict[str, Any]]:
    cmd = _brainfly() + ["screen", str(spec), "--data", data, "--out", str(out), "--scheduler", scheduler,
                         "--engine", engine, "--overwrite", "-q"] + (extra or [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "screen.json").read_text())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--conditions", type=int, default=1000, help="neurons silenced, one condition each")
    ap.add_argument("--hops", type=int, default=3)
    ap.add_argument("--t-run", type=float, default=1.0)
    ap.add_argument("--n-trials", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--brian2-conditions", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON record to write")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="brainfly-bench-screen-"))
    env = dict(os.environ)
    try:
        spec = work / "screen.toml"
        spec.write_text(SPEC.format(n=args.conditions, t_run=args.t_run, n_trials=args.n_trials, hops=args.hops))
        # warm-up (not timed): the connectome and the kernel in their caches
        _screen(spec, work / "warm", args.data, "in-process", env)
        walls: dict[str, list[float]] = {"in-process": [], "local": []}
        infos: dict[str, dict[str, Any]] = {}
        for k in range(args.repeat):
            for scheduler in (("in-process", "local") if k % 2 == 0 else ("local", "in-process")):
                wall, info = _screen(spec, work / scheduler, args.data, scheduler, env)
                walls[scheduler].append(wall)
                infos[scheduler] = info
                print(f"{scheduler:>10}: {wall:6.2f} s end to end ({info['n_conditions']} conditions; screen "
                      f"{info['timings']['total_s']:.2f} s inside the process)", file=sys.stderr)
        med = {s: statistics.median(w) for s, w in walls.items()}
        record: dict[str, Any] = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "hardware": hardware_info(),
            "what": "wall time of `brainfly screen` in a fresh process (median of runs alternating schedulers)",
            "screen": {"spec": SPEC.format(n=args.conditions, t_run=args.t_run, n_trials=args.n_trials,
                                           hops=args.hops),
                       "n_conditions": infos["in-process"]["n_conditions"],
                       "data": infos["in-process"]["data"]},
            "in_process_s": round(med["in-process"], 3),
            "dask_local_s": round(med["local"], 3),
            "dask_overhead": round(med["local"] / med["in-process"] - 1.0, 4),
            "runs_s": {s: [round(w, 3) for w in ws] for s, ws in walls.items()},
            "inside_process_s": {s: infos[s]["timings"] for s in infos},
            "targets": TARGETS,
        }
        if args.brian2_conditions > 0:
            small = work / "brian2.toml"
            n_b = max(1, args.brian2_conditions - 1)  # the base and n_b silenced neurons
            small.write_text(SPEC.format(n=n_b, t_run=args.t_run, n_trials=args.n_trials, hops=args.hops))
            wall, info = _screen(small, work / "brian2", args.data, "in-process", env, engine="brian2-standalone")
            _screen(small, work / "event-small", args.data, "in-process", env)  # same screen, event: warm
            wall_ev, _ = _screen(small, work / "event-small", args.data, "in-process", env)
            per = wall / info["n_conditions"]
            record["brian2_standalone"] = {
                "n_conditions": info["n_conditions"], "wall_s": round(wall, 3), "per_condition_s": round(per, 3),
                "event_same_screen_s": round(wall_ev, 3),
                "event_1000_per_condition_s": round(med["in-process"] / record["screen"]["n_conditions"], 5),
                "ratio_per_condition": round(per / (med["in-process"] / record["screen"]["n_conditions"]), 1),
            }
        print(json.dumps({k: v for k, v in record.items() if k not in ("hardware", "screen")}, indent=1))
        print(f"hardware: {hardware_summary(record['hardware'])}", file=sys.stderr)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(record, indent=1, default=str) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
