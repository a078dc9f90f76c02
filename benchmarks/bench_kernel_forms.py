"""The event engine's two kernel forms side by side: compiled ahead of time and numba's JIT.

Both are compiled from the same source (``brainfly.engines._event_kernels.run_trial``); this
checks that the compiled one is as fast and gives the same spikes. In one process, on the
same inputs (the sugar experiment on the full-size synthetic brain, or ``--data``), one
thread, alternating the two forms ``--repeat`` times: kernel time only (the engine's calls
of ``run_trial`` for all trials, with the building of their records), median and best of each,
and whether every trial's spikes are identical. Builds the compiled kernel first if need be.

Usage::

    python benchmarks/bench_kernel_forms.py --repeat 9
    python benchmarks/bench_kernel_forms.py --repeat 9 --out docs/benchmarks/kernel_forms_2core.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from brainfly.bench.hardware import hardware_info, hardware_summary
from brainfly.connectome import load_connectome
from brainfly.engines import _event_aot
from brainfly.engines import _event_records as R
from brainfly.engines.base import get_engine, prepare
from brainfly.experiment import builtin_experiment

__all__ = ["main"]


def _trials(kernel: Callable[..., tuple], eng: Any, plan: Any, ws: dict) -> tuple[float, list[tuple]]:
    """Kernel seconds for all trials of *plan*, and each trial's (neurons, steps)."""
    total, spikes = 0.0, []
    for lo, hi in plan.lo_hi:
        t0 = time.perf_counter()  # (the records are built inside the clock, the same for both forms)
        out = eng._kernel(kernel, plan, ws, lo, hi, plan.model.n_steps)
        total += time.perf_counter() - t0
        spikes.append((out[0][:out[2]].copy(), out[1][:out[2]].copy()))
    return total, spikes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", help="dataset name or folder (default synthetic)")
    ap.add_argument("--trials", type=int, default=30, help="trials of the sugar experiment (1 s each)")
    ap.add_argument("--repeat", type=int, default=9, help="alternating repeats of each form")
    ap.add_argument("--out", help="write the record (JSON) here")
    args = ap.parse_args(argv)

    compiled = _event_aot.trial_kernel()
    if compiled.kind != "aot":
        _event_aot.build()
        _event_aot._KERNEL = None
        compiled = _event_aot.trial_kernel()
    if compiled.kind != "aot":
        print(f"the compiled kernel is not available: {compiled.note}", file=sys.stderr)
        return 1
    net = load_connectome(args.data, progress=False)
    exp = builtin_experiment("sugar").with_(n_trials=args.trials)
    eng = get_engine("event", n_threads=1)
    plan = eng._plan(prepare(net, exp), list(range(args.trials)))
    ws = eng._ready(R.new_workspace(net.n_neurons, int(eng.options.ring_steps)), [plan])
    forms = {"aot": compiled, "jit": compiled.jit}
    for kernel in forms.values():  # first calls (numba loads or compiles) outside the clock
        _trials(kernel, eng, plan, ws)
    times: dict[str, list[float]] = {name: [] for name in forms}
    same = True
    for _ in range(args.repeat):
        got = {}
        for name, kernel in forms.items():
            secs, got[name] = _trials(kernel, eng, plan, ws)
            times[name].append(secs)
        same = same and all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                            for a, b in zip(got["aot"], got["jit"]))
    print(f"hardware: {hardware_summary()}")
    print(f"sugar {args.trials} x 1 s on {net.label}, one thread, {args.repeat} alternating repeats, kernel time:")
    for name in forms:
        print(f"  {name}: median {statistics.median(times[name]):.4f} s, best {min(times[name]):.4f} s")
    ratio = statistics.median(times["aot"]) / statistics.median(times["jit"])
    print(f"  compiled / JIT (medians): {ratio:.3f}; spikes identical in every trial: {same}")
    if args.out:
        record = {"what": "event kernel forms, kernel time of all trials in one process, alternating",
                  "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": "python benchmarks/bench_kernel_forms.py " + " ".join(argv or sys.argv[1:]),
                  "hardware": hardware_info(), "data": net.label, "trials": args.trials, "repeat": args.repeat,
                  "seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
                  "ratio_aot_over_jit": ratio, "spikes_identical": same, "module": str(compiled.path)}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"record written to {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
