"""Speed of the torch engine on the full-size synthetic brain, side by side with other engines.

Figure of merit: *trial-seconds simulated per wall-clock second* (``n_trials * t_run /
wall``), for the sugar experiment (21 sugar GRNs at 200 Hz) with 1, 8 and 32 trials.
Results on a generated connectome are labelled SYNTHETIC.

Usage (CPU, short runs: the figures are rates, so 0.1 s of model time is enough)::

    python benchmarks/bench_torch.py --trials 1,8,32 --t-run 0.1 --out bench_torch.json
    python benchmarks/bench_torch.py --no-event --no-brian2 --dtype float32
    python benchmarks/bench_torch.py --device cuda --t-run 1.0 --variants graph,compile

``--data`` takes ``synthetic`` (the generator of :mod:`brainfly.connectome.synthetic`,
cached after the first use), ``random`` (a plain random CSR of 138,639 neurons and ~15M
connections made here, for when the generator is unavailable) or a folder.

Each configuration is run once to warm up (CUDA graph capture, compilation, caches) on
a short run and then timed ``--repeat`` times (median reported, every time kept).
``simulate_s`` is the engine's whole simulation (``meta['timings']``: ``setup_s +
build_s + sim_s``: state, kicks, compilation, graph capture, step loop, output; the
torch engine's ``meta['simulate_s']`` of earlier records), ``loop_s`` its step loop alone
(``sim_s``), ``wall_s`` the whole ``Engine.run`` (preparation and Poisson draws included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from brainfly.connectome import Connectome
from brainfly.engines.base import get_engine
from brainfly.experiment import SUGAR_GRNS_783, Experiment, StimulusSet

__all__ = ["load_network", "random_network_full", "sugar", "time_run", "main"]

log = logging.getLogger("bench_torch")

N_NEURONS = 138_639
N_CONNECTIONS = 15_091_983


def random_network_full(n_neurons: int = N_NEURONS, n_connections: int = N_CONNECTIONS,
                        seed: int = 0) -> Connectome:
    """A plain random CSR network of full size (fallback when the generator is unavailable).

    Out-degrees are log-normal (mean ``n_connections / n_neurons``), targets uniform,
    synapse counts 1..20 (geometric), a third of the neurons inhibitory; the sugar GRNs'
    IDs are neurons 0..20 so that the sugar experiment runs. Labelled synthetic.
    """
    rng = np.random.default_rng(seed)
    mean = n_connections / n_neurons
    deg = rng.lognormal(np.log(mean) - 0.5, 1.0, n_neurons)
    deg = np.minimum(np.round(deg * n_connections / deg.sum()).astype(np.int64), n_neurons - 1)
    indptr = np.zeros(n_neurons + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    nnz = int(indptr[-1])
    post = rng.integers(0, n_neurons, nnz, dtype=np.int32)
    counts = np.minimum(rng.geometric(0.35, nnz), 20).astype(np.float64)
    sign = np.where(rng.random(n_neurons) < 1 / 3, -1.0, 1.0)
    weight = counts * np.repeat(sign, deg)
    ids = np.arange(n_neurons, dtype=np.int64) + 10**15
    ids[:len(SUGAR_GRNS_783)] = SUGAR_GRNS_783
    net = Connectome(ids, indptr, post, weight, name=f"random-full-seed{seed}", synthetic=True,
                     meta={"generator": "benchmarks/bench_torch.py random_network_full", "seed": seed})
    net.validate_arrays()
    return net


def load_network(data: str) -> Connectome:
    """``synthetic`` (brainfly's generator), ``random`` (see :func:`random_network_full`) or a folder."""
    t0 = time.perf_counter()
    if data == "random":
        net = random_network_full()
    else:
        from brainfly.connectome.datasets import load_connectome

        net = load_connectome(data, progress=True, annotations=False)
    log.info("network %s: %d neurons, %d connections (%.1f s)", net.label, net.n_neurons, net.n_connections,
             time.perf_counter() - t0)
    return net


def sugar(n_trials: int, t_run: float, rate_hz: float = 200.0, seed: int = 0) -> Experiment:
    """The reference benchmark: the 21 sugar GRNs at *rate_hz*."""
    return Experiment(name=f"sugar-{rate_hz:g}Hz", stimuli=(StimulusSet(SUGAR_GRNS_783, rate_hz, "sugar GRNs"),),
                      t_run=t_run, n_trials=n_trials, seed=seed)


def time_run(engine_name: str, options: dict[str, Any], net: Connectome, exp: Experiment, *,
             warmup_t_run: float | None = 0.01, repeat: int = 1) -> dict[str, Any]:
    """Warm up on a short run, then time *repeat* runs; returns a JSON-compatible record.

    The figures are the medians over the repeats (``wall_s_all``, ``simulate_s_all`` and
    ``loop_s_all`` keep each one); the spikes are those of the last run.
    """
    eng = get_engine(engine_name, **options)
    if warmup_t_run:
        eng.run(net, exp.with_(t_run=min(warmup_t_run, exp.t_run)))
    walls, sims, loops = [], [], []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res = eng.run(net, exp)
        walls.append(time.perf_counter() - t0)
        timings = res.meta.get("timings", {})
        sims.append(sum(float(timings.get(k, 0.0)) for k in ("setup_s", "build_s", "sim_s")) or walls[-1])
        loops.append(float(timings.get("sim_s", sims[-1])))
    wall = float(np.median(walls))
    trial_s = exp.n_trials * exp.t_run
    sim_s = float(np.median(sims))
    per_trial_active = [np.unique(res.idx[res.trial == k]).size for k in res.trials]
    digest = hashlib.sha1()
    for arr in (res.trial, res.idx, res.step):
        digest.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    rec = {
        "engine": engine_name,
        "options": {k: v for k, v in options.items()},
        "n_trials": exp.n_trials,
        "t_run_s": exp.t_run,
        "wall_s": round(wall, 4),
        "simulate_s": round(sim_s, 4),
        "loop_s": round(float(np.median(loops)), 4),
        "wall_s_all": [round(w, 4) for w in walls],
        "simulate_s_all": [round(s, 4) for s in sims],
        "loop_s_all": [round(s, 4) for s in loops],
        "trial_seconds_per_wall_second": round(trial_s / wall, 4),
        "trial_seconds_per_simulate_second": round(trial_s / sim_s, 4) if sim_s > 0 else None,
        "spikes_per_trial_second": round(res.n_spikes / trial_s, 1),
        "active_neurons_per_trial": float(np.mean(per_trial_active)) if per_trial_active else 0.0,
        "n_spikes": res.n_spikes,
        "spikes_sha1": digest.hexdigest(),  # equal digests = spike-identical runs
        "connectome": res.connectome_label,
        "synthetic": res.synthetic,
        "meta": {k: res.meta[k] for k in ("device", "timings", "choices", "versions", "cuda_graph_used",
                                          "cuda_graph_error", "host_syncs", "exact", "loop_s", "capture_s",
                                          "sync_free", "nonzero_static", "capacity_restarts", "spike_capacity",
                                          "synapse_capacity", "fused_kernel", "fused_kernel_error",
                                          "fused_kernel_s", "spikes_compacted_in_kernel", "max_spikes_per_block",
                                          "max_events_per_block", "compiled", "compile_error", "compile_s",
                                          "gather_compiled", "gather_compile_s", "network_reused",
                                          "engine_options", "resolved_options")
                 if k in res.meta},
    }
    log.info("%-6s %-45s %2d trials x %.3g s: wall %.3f s, sim %.3f s -> %.3f trial-s/s; %.0f spikes/trial-s",
             engine_name, json.dumps(options), exp.n_trials, exp.t_run, wall, sim_s,
             rec["trial_seconds_per_wall_second"], rec["spikes_per_trial_second"])
    return rec


def _torch_variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"device": args.device}
    if args.dtype:
        base["dtype"] = args.dtype
    out = []
    for v in args.variants.split(","):
        v = v.strip()
        if v == "eager":
            out.append({**base, **({"cuda_graph": False} if args.device != "cpu" else {})})
        elif v == "graph":
            out.append({**base, "cuda_graph": True})
        elif v == "compile":
            out.append({**base, "compile": True, **({"cuda_graph": True} if args.device != "cpu" else {})})
        elif v == "default":
            out.append(dict(base))
        else:
            raise SystemExit(f"--variants: unknown variant {v!r} (default, eager, graph, compile)")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", help="synthetic | random | folder (default synthetic)")
    ap.add_argument("--trials", default="1,8,32", help="comma-separated trial counts (default 1,8,32)")
    ap.add_argument("--t-run", type=float, default=0.1, help="model seconds per trial (default 0.1)")
    ap.add_argument("--rate", type=float, default=200.0, help="sugar GRN rate, Hz (default 200)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float64 | float32 (default: engine's default for the device)")
    ap.add_argument("--variants", default="default", help="torch variants: default,eager,graph,compile")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-event", action="store_true", help="skip the event engine")
    ap.add_argument("--no-brian2", action="store_true", help="skip Brian2")
    ap.add_argument("--brian2-trials", type=int, default=1, help="trials for Brian2 (default 1)")
    ap.add_argument("--brian2-t-run", type=float, default=0.02, help="model seconds for Brian2 (default 0.02)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per configuration (median; default 1)")
    ap.add_argument("--out", default=None, help="write the records as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    trials = [int(t) for t in args.trials.split(",") if t.strip()]
    net = load_network(args.data)
    records: list[dict[str, Any]] = []

    def attempt(name: str, options: dict[str, Any], exp: Experiment) -> None:
        try:
            records.append(time_run(name, options, net, exp, repeat=args.repeat))
        except Exception as exc:  # noqa: BLE001 - a failing engine is reported, not fatal
            log.error("%s %s failed: %s: %s", name, options, type(exc).__name__, exc)
            records.append({"engine": name, "options": options, "n_trials": exp.n_trials, "t_run_s": exp.t_run,
                            "error": f"{type(exc).__name__}: {exc}"})

    variants = _torch_variants(args)
    for opts in variants:
        if args.threads:
            opts["threads"] = args.threads
    for opts in variants:
        for n in trials:
            attempt("torch", opts, sugar(n, args.t_run, args.rate))
    if not args.no_event:
        for n in trials:
            attempt("event", {}, sugar(n, args.t_run, args.rate))
    if not args.no_brian2:
        # use_schedule: Brian2 replays the shared Poisson draws, so its spikes can be compared
        attempt("brian2", {"n_jobs": 1, "use_schedule": True}, sugar(args.brian2_trials, args.brian2_t_run, args.rate))
        for n in (args.brian2_trials,):  # the same run on the other engines, for the digest
            if not args.no_event:
                attempt("event", {}, sugar(n, args.brian2_t_run, args.rate))
            attempt("torch", variants[0], sugar(n, args.brian2_t_run, args.rate))
    import torch

    summary = {
        "benchmark": "bench_torch",
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "connectome": net.label,
        "synthetic": bool(net.synthetic),
        "command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "records": records,
    }
    text = json.dumps(summary, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    print(f"{'engine':8s} {'options':40s} {'trials':>6s} {'t_run':>6s} {'wall s':>8s} {'trial-s/s':>10s} "
          f"{'spikes/trial-s':>14s}  digest   ({summary['connectome']})")
    for r in records:
        if "error" in r:
            print(f"{r['engine']:8s} {json.dumps(r['options']):40s} {r['n_trials']:6d} {r['t_run_s']:6g}  "
                  f"error: {r['error']}")
            continue
        print(f"{r['engine']:8s} {json.dumps(r['options']):40s} {r['n_trials']:6d} {r['t_run_s']:6g} "
              f"{r['wall_s']:8.3f} {r['trial_seconds_per_wall_second']:10.4f} {r['spikes_per_trial_second']:14.0f}  "
              f"{r['spikes_sha1'][:8]}")
    if args.out:
        print(f"records in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
