"""Speed of the event-driven engine on the full-size brain, next to Brian2 standalone.

Cases (the connectome is the full-size synthetic one unless ``--data`` says otherwise;
results on a generated connectome are labelled SYNTHETIC):

- ``load``: loading the connectome from brainfly's CSR cache (in this process);
- ``sugar 1x1s 1thr``: 21 sugar GRNs at 200 Hz, 1 trial x 1 s on one thread
  (target: < 0.01 s of simulation, i.e. 100x faster than real time);
- ``sugar 30x1s 2thr``: 30 trials x 1 s on 2 threads (target < 0.2 s);
- ``broad 1x1s 1thr``: a high-activity case, ``--broad-n`` random neurons at
  ``--broad-rate`` Hz, which drives the brain to a runaway-like state of ~400k spikes/s
  (target: faster than real time);
- peak memory (resident set of this process after the event-engine runs, before Brian2).

Each case is run ``--repeat`` times after a warm-up (numba's compiled kernels come from
its on-disk cache); the best time is reported. ``sim_s`` is the engine's own simulation
time (``meta['timings']['sim_s']``: the trial kernels' wall time), ``setup_s`` its
preparation (Poisson draws, tables, assembling the result; ``meta['timings']``), ``run_s``
the whole ``Engine.run``. The first run of a fresh process also reports ``build_s`` (numba
loading its compiled kernels from the on-disk cache, or compiling them).

Brian2 standalone runs the same experiments (the same Poisson kicks, replayed as an input
schedule) for ``--brian2-t-run`` seconds of model time (1 trial; it is slow on the full
brain), its simulation rate is compared with the event engine's as a ratio, and the
event engine's spikes over the same window are checked to be identical. For 30 trials the
Brian2 time is extrapolated from its 1-trial rate (marked ``~``).

``--fresh N`` adds what a new process pays before its first trial, each measured in N
fresh processes (median), the connectome loaded beforehand and not counted:

- ``pack``: packing the connections (``brainfly.engines.event._pack``), as a process does
  when the event engine's on-disk cache has no entry for the connectome;
- ``load``: loading them from that cache (memory map, checksums checked);
- ``first run``: one sugar trial of 1 s with an empty numba cache (``NUMBA_CACHE_DIR`` a new
  empty folder), numba's JIT kernel (``BRAINFLY_EVENT_KERNEL=jit``: as the first run in an
  environment, without starting the compiled kernel's build) and no packed-connection
  entry: numba's compilation (``build_s``) and the whole run (the first ``brainfly run`` in
  a fresh environment, but for the connectome);
- ``cached run``: the same run once the caches hold it (the compiled kernel where it is built).

Usage::

    python benchmarks/bench_event.py                      # everything, Brian2 for 0.1 s
    python benchmarks/bench_event.py --no-brian2          # event engine only
    python benchmarks/bench_event.py --no-brian2 --cases sugar1,sugar30 --repeat 9
    python benchmarks/bench_event.py --no-brian2 --cases none --fresh 5
    python benchmarks/bench_event.py --brian2-t-run 1.0 --out bench_event.json
"""

from __future__ import annotations

import os

# idle OpenBLAS threads spin for a while after any BLAS call in the process: on
# a machine of two cores they would compete with the trial threads being timed
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from brainfly.bench.hardware import hardware_info, hardware_summary  # noqa: E402
from brainfly.connectome.datasets import load_connectome  # noqa: E402
from brainfly.engines.base import get_engine, prepare  # noqa: E402
from brainfly.experiment import Experiment, StimulusSet, builtin_experiment  # noqa: E402

__all__ = ["main"]


def _sugar(n_trials: int, t_run: float, seed: int) -> Experiment:
    return builtin_experiment("sugar").with_(n_trials=n_trials, t_run=t_run, seed=seed)


def _broad(net: Any, n: int, rate: float, n_trials: int, t_run: float, seed: int) -> Experiment:
    rng = np.random.default_rng(12345)
    ids = net.flywire_ids[np.sort(rng.choice(net.n_neurons, n, replace=False))]
    return Experiment(name=f"broad-{n}@{rate:g}Hz", stimuli=(StimulusSet(tuple(int(i) for i in ids), rate, "broad"),),
                      t_run=t_run, n_trials=n_trials, seed=seed)


def _time_event(net: Any, exp: Experiment, n_threads: int, repeat: int) -> dict[str, Any]:
    eng = get_engine("event", n_threads=n_threads)
    best: dict[str, Any] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = eng.run(net, exp)
        run_s = time.perf_counter() - t0
        timings = res.meta.get("timings") or {"sim_s": res.meta["timings_s"]["simulate"]}
        sim_s = timings["sim_s"]
        if not best or sim_s < best["sim_s"]:
            n_trial_s = exp.n_trials * exp.t_run
            best = {
                "sim_s": sim_s, "run_s": run_s, "setup_s": timings.get("setup_s"), "spikes_per_trial_s": res.n_spikes / n_trial_s,
                "active": int(res.active_idx().size), "events": res.meta["n_events"],
                "runaway_trials": len(res.meta["runaway"]),
                "x_real_time": n_trial_s / sim_s,
            }
    return best


def _brian2(net: Any, exp: Experiment, t_run: float, tmp: Path) -> dict[str, Any]:
    """Brian2 standalone on the same kicks for t_run seconds; spike identity with the event engine."""
    exp1 = exp.with_(n_trials=1, t_run=t_run)
    sim = prepare(net, exp1)
    path = sim.kicks([0]).write(tmp / f"{exp.name}-kicks.parquet", net.flywire_ids)
    exp_s = exp1.with_(input_schedule=str(path))
    b2 = get_engine("brian2-standalone")
    t0 = time.perf_counter()
    ref = b2.run(net, exp_s)
    wall = time.perf_counter() - t0
    timings = ref.meta.get("timings", {})
    sim_s = float(timings.get("sim_s") or wall)
    ev = get_engine("event", n_threads=1).run(net, exp_s)
    a = set(zip(ev.idx.tolist(), ev.step.tolist()))
    b = set(zip(ref.idx.tolist(), ref.step.tolist()))
    return {"t_run": t_run, "wall_s": wall, "sim_s": sim_s, "build_s": float(timings.get("build_s", 0.0)),
            "sim_s_per_trial_s": sim_s / t_run, "spikes": ref.n_spikes, "identical": a == b,
            "n_differ": len(a ^ b)}


_FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from brainfly.connectome.datasets import load_connectome
from brainfly.engines import event
from brainfly.engines.base import get_engine
from brainfly.experiment import builtin_experiment
net = load_connectome(sys.argv[2], progress=False)
w_syn = 2.75e-4
key = event._full_key(net, w_syn)
what = sys.argv[1]
t = time.perf_counter()
if what == "pack":
    event._pack(net, w_syn, key)
    out = {"s": time.perf_counter() - t}
elif what == "load":
    packed = event._load_disk(key, net)
    out = {"s": time.perf_counter() - t, "hit": packed is not None}
else:
    res = get_engine("event", n_threads=1).run(net, builtin_experiment("sugar").with_(n_trials=1, t_run=1.0))
    out = {"s": time.perf_counter() - t, **res.meta["timings"]}
print(json.dumps(out))
"""


def _fresh(what: str, data: str, n: int, env: dict[str, str] | None = None,
           before: Any = None) -> dict[str, float]:
    """Median over *n* fresh processes of the figures the snippet above prints for *what*."""
    runs = []
    for _ in range(n):
        extra = before() if before is not None else {}
        out = subprocess.run([sys.executable, "-c", _FRESH, what, data], capture_output=True, text=True,
                             env={**os.environ, **(env or {}), **extra}, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}


def _fresh_figures(data: str, n: int, tmp: Path) -> dict[str, dict[str, float]]:
    import shutil

    from brainfly.connectome.cache import cache_dir
    from brainfly.engines import event

    figs = {"pack": _fresh("pack", data, n)}
    event.packed_network(load_connectome(data, progress=False), 2.75e-4)  # the disk entry exists
    figs["load"] = _fresh("load", data, n)
    counter = iter(range(10 ** 6))

    def empty_caches() -> dict[str, str]:
        shutil.rmtree(cache_dir() / "event", ignore_errors=True)
        folder = tmp / f"numba-{next(counter)}"
        folder.mkdir()
        return {"NUMBA_CACHE_DIR": str(folder), "BRAINFLY_EVENT_KERNEL": "jit"}

    figs["first run"] = _fresh("run", data, n, before=empty_caches)
    figs["cached run"] = _fresh("run", data, n)
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", help="dataset name or folder (default synthetic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions per case (best is kept)")
    ap.add_argument("--broad-n", type=int, default=3000, help="neurons driven in the high-activity case")
    ap.add_argument("--broad-rate", type=float, default=100.0, help="their rate, Hz")
    ap.add_argument("--no-brian2", action="store_true", help="skip Brian2 standalone")
    ap.add_argument("--brian2-t-run", type=float, default=0.1, help="model seconds for Brian2 (default 0.1)")
    ap.add_argument("--cases", default="sugar1,sugar30,broad",
                    help="comma-separated cases among sugar1, sugar30, broad (or none)")
    ap.add_argument("--fresh", type=int, default=0, metavar="N",
                    help="also measure packing, loading and the first run in N fresh processes each")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    wanted = {c for c in args.cases.split(",") if c and c != "none"}
    unknown = wanted - {"sugar1", "sugar30", "broad"}
    if unknown:
        ap.error(f"--cases: unknown {sorted(unknown)}; choose among sugar1, sugar30, broad, none")

    rows: list[tuple[str, str, str, str]] = []
    record: dict[str, Any] = {"python": sys.version.split()[0], "machine": platform.machine(),
                              "hardware": hardware_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "command": "python benchmarks/bench_event.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    t0 = time.perf_counter()
    net = load_connectome(args.data, progress=False)
    load_s = time.perf_counter() - t0
    record["load_s"] = load_s
    record["connectome"] = net.label
    record["cache"] = net.meta.get("cache")
    print(f"connectome {net.label}: {net.n_neurons:,} neurons, {net.n_connections:,} connections")
    rows.append(("load (CSR cache)", f"{load_s:.3f} s", "", f"cache: {net.meta.get('cache', '?')}"))

    t0 = time.perf_counter()
    warm = get_engine("event", n_threads=1).run(net, _sugar(1, 0.01, args.seed))  # numba kernels from cache
    record["warmup_s"] = time.perf_counter() - t0
    record["build_s"] = (warm.meta.get("timings") or {}).get("build_s")
    print(f"warm-up {record['warmup_s']:.3f} s (numba build/cache load {record['build_s'] or 0.0:.3f} s, "
          f"packing the connections included)")

    sugar1 = _sugar(1, 1.0, args.seed)
    broad = _broad(net, args.broad_n, args.broad_rate, 1, 1.0, args.seed)
    cases = [
        ("sugar 1x1s 1thr", sugar1, 1, 0.01),
        ("sugar 30x1s 2thr", _sugar(30, 1.0, args.seed), 2, 0.2),
        ("broad 1x1s 1thr", broad, 1, 1.0),
    ]
    cases = [c for c, key in zip(cases, ("sugar1", "sugar30", "broad")) if key in wanted]
    record["cases"] = {}
    for name, exp, threads, target in cases:
        fig = _time_event(net, exp, threads, args.repeat if exp.n_trials == 1 else max(1, args.repeat - 1))
        fig["target_s"] = target
        record["cases"][name] = fig
        print(f"{name}: sim {fig['sim_s']:.4f} s, setup {fig['setup_s'] or 0.0:.4f} s, run {fig['run_s']:.4f} s, "
              f"{fig['spikes_per_trial_s']:,.0f} spikes "
              f"per trial-second, {fig['events']:,} events, {fig['x_real_time']:.1f}x real time", flush=True)
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    if args.fresh:
        with tempfile.TemporaryDirectory(prefix="bench_event_") as tmp:
            record["fresh"] = _fresh_figures(args.data, args.fresh, Path(tmp))
        for name, fig in record["fresh"].items():
            extra = ", ".join(f"{k} {v:.3f} s" for k, v in fig.items() if k.endswith("_s"))
            rows.append((f"fresh process: {name}", f"{fig['s']:.3f} s", f"median of {args.fresh}", extra))
            print(f"fresh process, {name}: {fig}", flush=True)

    if not args.no_brian2:
        with tempfile.TemporaryDirectory(prefix="bench_event_") as tmp:
            b2_sugar = _brian2(net, sugar1, args.brian2_t_run, Path(tmp))
            print(f"brian2-standalone sugar {args.brian2_t_run} s: {b2_sugar}", flush=True)
            b2_broad = _brian2(net, broad, args.brian2_t_run, Path(tmp))
            print(f"brian2-standalone broad {args.brian2_t_run} s: {b2_broad}", flush=True)
        record["brian2"] = {"sugar": b2_sugar, "broad": b2_broad}

    for name, exp, threads, target in cases:
        fig = record["cases"][name]
        ok = "ok" if fig["sim_s"] < target else "MISSED"
        ratio = ""
        if "brian2" in record:
            b2 = record["brian2"]["broad" if name.startswith("broad") else "sugar"]
            b2_s = b2["sim_s_per_trial_s"] * exp.n_trials * exp.t_run
            approx = "~" if exp.t_run != b2["t_run"] or exp.n_trials != 1 else ""
            ratio = (f"brian2 {approx}{b2_s:.1f} s -> {approx}{b2_s / fig['sim_s']:.0f}x faster; "
                     f"spikes identical over {b2['t_run']} s: {b2['identical']}")
        rows.append((name, f"{fig['sim_s']:.4f} s (run {fig['run_s']:.3f} s)",
                     f"target < {target:g} s: {ok}; {fig['x_real_time']:.1f}x real time; "
                     f"{fig['spikes_per_trial_s']:,.0f} spikes/trial-s", ratio))
    mem = record["peak_rss_mib"]
    rows.append(("peak memory (RSS)", f"{mem:,.0f} MiB", f"target < 1024 MiB: {'ok' if mem < 1024 else 'MISSED'}", ""))

    print()
    print(f"event engine on {net.label}; {hardware_summary(record['hardware'])}; python {record['python']}")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
