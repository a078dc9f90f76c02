"""GPU check of the torch engine on the full-size synthetic brain (run by ``gpu_check.sh``).

Measures, on one CUDA device, the sugar experiment (21 sugar GRNs at 200 Hz):

- exactness on the full brain: CUDA float64 against the CPU exact mode (1 trial, short);
- speed: 1 trial x 1 s (target < 0.1 s) and 32 trials x 1 s (target < 0.5 s) for the
  default fast mode (float32, fused Triton block kernel, sync-free gathers, CUDA graph),
  with one synchronisation per block (``sync_free=False``), with the ``torch.compile``
  step instead of the fused kernel, eager, without the CUDA graph, in float64, with
  on-device Poisson draws; and a screen of 100 silencing conditions as one batch
  (:meth:`TorchEngine.run_many`). Each record's ``meta`` says whether the fused kernel
  ran (``fused_kernel``, else ``fused_kernel_error``), whether it listed the spikes
  itself, and the most spikes / synaptic events seen per block against the capacities.

Every record is appended to ``OUT/gpu_bench.json`` as soon as it is measured, so a run
cut short still leaves its figures. A deadline (``--budget-s``) skips what would not
fit. Results are on a SYNTHETIC connectome.

``--quick`` (``GPU_QUICK=1 bash benchmarks/gpu_check.sh``) measures only: 1 trial x 1 s
and 32 trials x 1 s for the default mode and for ``sync_free=False``, float64 exactness
against the CPU exact mode, the 100-condition screen, and (if the budget allows) a kernel
profile of 32 trials; about a minute on an H100.

Usage::

    PYTHONPATH=src python benchmarks/gpu_check.py --out OUT [--budget-s 300] [--data synthetic] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_torch as bt  # noqa: E402

from brainfly.engines.base import get_engine  # noqa: E402
from brainfly.experiment import Experiment, StimulusSet, SUGAR_GRNS_783  # noqa: E402

log = logging.getLogger("gpu_check")

TARGETS = {1: 0.1, 32: 0.5}  # trials -> seconds of simulation for 1 s of model time


def build_network(data: str) -> Any:
    """The full-size synthetic connectome, generated in memory (no files, no pandas needed)."""
    t0 = time.perf_counter()
    if data == "synthetic":
        try:
            from brainfly.connectome.synthetic import generate_synthetic

            net = generate_synthetic(seed=0)
        except Exception as exc:  # noqa: BLE001 - fall back to the plain random network
            log.warning("synthetic generator failed (%s: %s); using the random full-size network",
                        type(exc).__name__, exc)
            net = bt.random_network_full()
    elif data == "random":
        net = bt.random_network_full()
    else:
        net = bt.load_network(data)
    log.info("network %s: %d neurons, %d connections, built in %.1f s", net.label, net.n_neurons,
             net.n_connections, time.perf_counter() - t0)
    return net


class Recorder:
    """Appends records to OUT/gpu_bench.json after each measurement."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.path = out / "gpu_bench.json"
        self.doc = {**header, "records": []}
        self.save()

    def add(self, rec: dict[str, Any]) -> None:
        self.doc["records"].append(rec)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.part")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str))
        os.replace(tmp, self.path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="synthetic", help="synthetic | random | folder")
    ap.add_argument("--budget-s", type=float, default=300.0, help="skip measurements beyond this many seconds")
    ap.add_argument("--t-run", type=float, default=1.0, help="model seconds of the timed runs (default 1)")
    ap.add_argument("--trials-big", type=int, default=32, help="trials of the large runs (default 32)")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to dry-run this script")
    ap.add_argument("--skip-compile", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--quick", action="store_true",
                    help="only the default and synced modes (1 and 32 trials), exactness, the screen")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    t_start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available()
    header = {
        "check": "gpu_check",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
    }
    if cuda:
        try:
            torch.nonzero_static(torch.zeros(4, dtype=torch.bool, device="cuda"), size=2, fill_value=-1)
            header["cuda_nonzero_static"] = True
        except Exception as exc:  # noqa: BLE001
            header["cuda_nonzero_static"] = f"{type(exc).__name__}: {exc}"
    rec = Recorder(out, header)
    log.info("environment: %s", json.dumps(header))
    if not cuda and args.device != "cpu":
        log.error("no CUDA device: nothing to measure")
        return 2
    net = build_network(args.data)
    rec.doc["connectome"] = net.label
    rec.doc["network_build_s"] = round(time.perf_counter() - t_start, 2)
    rec.save()

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t_start)

    def measure(label: str, options: dict[str, Any], n_trials: int, t_run: float, need_s: float = 10.0) -> None:
        if left() < need_s:
            log.warning("skipping %s: %.0f s of budget left", label, left())
            rec.add({"label": label, "skipped": "budget"})
            return
        try:
            r = bt.time_run("torch", options, net, bt.sugar(n_trials, t_run), warmup_t_run=0.02)
            r["label"] = label
            target = TARGETS.get(n_trials) if abs(t_run - 1.0) < 1e-9 else None
            if target is not None:
                r["target_s"] = target
                r["meets_target_loop"] = r["meta"].get("loop_s", r["simulate_s"]) < target
                r["meets_target_simulate"] = r["simulate_s"] < target
            rec.add(r)
        except Exception as exc:  # noqa: BLE001 - report and go on
            log.error("%s failed: %s", label, traceback.format_exc())
            rec.add({"label": label, "options": options, "error": f"{type(exc).__name__}: {exc}"})

    T = args.t_run
    M = args.trials_big
    dev = args.device
    # 1. speed of the default fast mode first (the figures that matter most); on CUDA the
    #    default compiles the step (the warm-up run of each batch size compiles)
    dflt: dict[str, Any] = {"device": dev}
    if dev == "cpu":  # dry run of this script: the CUDA defaults, on the CPU
        dflt.update(dtype="float32", delivery="dense", sync_free=True, compile=not args.skip_compile)
    elif args.skip_compile:
        dflt["compile"] = False
    measure("default (float32, fused kernel, graph, sync-free), 1 trial", dflt, 1, T, need_s=60)
    measure(f"default (float32, fused kernel, graph, sync-free), {M} trials", dflt, M, T, need_s=45)
    # one host synchronisation per block instead (exact-size gathers)
    measure("float32 graph synced per block, 1 trial", {**dflt, "sync_free": False}, 1, T)
    measure(f"float32 graph synced per block, {M} trials", {**dflt, "sync_free": False}, M, T)
    if not args.quick:
        # the step by torch.compile / eager kernels instead of the fused Triton kernel
        measure("float32 torch.compile step (no fused kernel), graph, 1 trial", {**dflt, "fused_kernel": False}, 1, T)
        measure(f"float32 torch.compile step (no fused kernel), graph, {M} trials", {**dflt, "fused_kernel": False},
                M, T)
        measure("float32 eager kernels (no compile, no fused kernel), graph, 1 trial",
                {**dflt, "compile": False, "fused_kernel": False}, 1, T)
    # 3. exactness on the full brain: CUDA float64 vs CPU exact, 1 trial, short
    if left() > 20:
        try:
            exp = bt.sugar(1, 0.05)
            t0 = time.perf_counter()
            cpu = get_engine("torch", threads=min(8, os.cpu_count() or 1)).run(net, exp)
            t_cpu = time.perf_counter() - t0
            gpu = get_engine("torch", device=dev, dtype="float64", delivery="dense", sync_free=True).run(net, exp)
            a = set(zip(cpu.idx.tolist(), cpu.step.tolist()))
            b = set(zip(gpu.idx.tolist(), gpu.step.tolist()))
            rec.add({"label": "exactness: cuda float64 vs cpu exact, 1 trial x 0.05 s",
                     "cpu_spikes": cpu.n_spikes, "cuda_spikes": gpu.n_spikes, "only_cpu": len(a - b),
                     "only_cuda": len(b - a), "identical": a == b, "cpu_s": round(t_cpu, 2)})
            log.info("exactness: cpu %d spikes, cuda float64 %d, identical %s", cpu.n_spikes, gpu.n_spikes, a == b)
        except Exception as exc:  # noqa: BLE001
            log.error("exactness check failed: %s", traceback.format_exc())
            rec.add({"label": "exactness", "error": f"{type(exc).__name__}: {exc}"})
    short = min(0.2, T)
    # 4. a screen: 100 silencing conditions (sugar at 200 Hz, one neuron silenced each) in one pass
    if left() > 20:
        try:
            # conditions that matter: the 100 neurons the sugar stimulus recruits most (the sugar ->
            # MN9 pathway and its neighbours; found with the exact CPU engine), one silenced each
            base = Experiment(name="sugar-base", stimuli=(StimulusSet(SUGAR_GRNS_783, 200.0),), t_run=short,
                              n_trials=1, seed=0)
            recruited = get_engine("event").run(net, base.with_(n_trials=4))
            sugar_idx = set(net.idx_of(list(SUGAR_GRNS_783)).tolist())
            counts = np.bincount(recruited.idx, minlength=net.n_neurons)
            cand = np.array([i for i in np.argsort(-counts, kind="stable").tolist()
                             if i not in sugar_idx and counts[i] > 0][:100])
            exps = [base.with_(name=f"silence-{k}", silenced=(int(net.flywire_ids[cand[k]]),))
                    for k in range(len(cand))]
            # eager kernels in a CUDA graph: a third compilation (for 100 rows) would cost more
            # budget than it saves here
            eng = get_engine("torch", **{**dflt, "batch_size": 100, "compile": False})
            eng.run_many(net, [e.with_(t_run=0.005) for e in exps])  # warm-up
            t0 = time.perf_counter()
            res = eng.run_many(net, exps)
            wall = time.perf_counter() - t0
            spikes = [r.n_spikes for r in res]
            rec.add({"label": f"screen: {len(exps)} silencing conditions (recruited neurons) x 1 trial x {short} s,"
                              " one batch",
                     "wall_s": round(wall, 3), "loop_s": res[0].meta.get("loop_s"),
                     "condition_seconds_per_wall_second": round(len(exps) * short / wall, 2),
                     "spikes_per_condition": spikes[:10],
                     # a screen whose conditions all give the same result measured nothing
                     "distinct_spike_counts": len(set(spikes)), "conditions_differ": len(set(spikes)) > 1})
            log.info("screen of 100 conditions x %g s: %.3f s", short, wall)
        except Exception as exc:  # noqa: BLE001
            log.error("screen failed: %s", traceback.format_exc())
            rec.add({"label": "screen", "error": f"{type(exc).__name__}: {exc}"})
    # 4b. the screen target: 1,024 conditions x 1 s through brainfly.screen, one GPU batch
    if left() > 60:
        try:
            from brainfly.screens import Screen, screen

            sc = Screen(base=Experiment(name="sugar-base", stimuli=(StimulusSet(SUGAR_GRNS_783, 200.0),),
                                        t_run=1.0, n_trials=1, seed=1),
                        readout=["MN9"], name="gpu-silencing-1024", max_conditions=100_000,
                        vary=[{"kind": "silence", "select": {"upstream_of": ["MN9"], "max_hops": 3, "limit": 1023}}])
            out_dir = Path(args.out).parent / "screen_1024"
            res = screen(sc, net, engine="torch", out=out_dir, scheduler="in-process", overwrite=True,
                         progress=False, **{**dflt, "batch_size": 1024, "compile": False})
            t = res.info["timings"]
            n = len(res.conditions)
            rec.add({"label": f"screen: {n} silencing conditions x 1 trial x 1 s via brainfly.screen, torch cuda",
                     "timings": t, "trial_seconds_per_second": round(n / t["run_s"], 1),
                     "target_trial_seconds_per_second": 1000,
                     "distinct_spike_counts": int(res.summary["n_spikes"].nunique())})
            log.info("screen of %d conditions x 1 s: run %.2f s", n, t["run_s"])
        except Exception as exc:  # noqa: BLE001
            log.error("screen 1024 failed: %s", traceback.format_exc())
            rec.add({"label": "screen 1024", "error": f"{type(exc).__name__}: {exc}"})
    # 5. variants
    if not args.quick:
        measure(f"float64 graph sync-free, {M} trials",
                {**dflt, "dtype": "float64", "compile": False, "fused_kernel": False}, M, T)
        measure(f"float32 device kicks, {M} trials", {**dflt, "kicks": "device"}, M, T)
        measure(f"float32 no graph sync-free, 1 trial x {short} s", {**dflt, "cuda_graph": False}, 1, short)
    # 6. where the time goes: kernel-level profile of short runs (no CUDA graph, so that the
    #    profiler sees each kernel; GPU times per kernel are what matter here)
    for n_trials in ((M,) if args.quick else (1, M)):
        if left() < 25:
            break
        try:
            from torch.profiler import ProfilerActivity, profile

            opts = {**dflt, "cuda_graph": False}
            eng = get_engine("torch", **opts)
            exp = bt.sugar(n_trials, 0.02)
            eng.run(net, exp)  # warm-up (compiles)
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                eng.run(net, exp)
            sort = "cuda_time_total" if cuda else "cpu_time_total"
            table = prof.key_averages().table(sort_by=sort, row_limit=30)
            path = out / f"profile_{n_trials}_trials.txt"
            path.write_text(f"{opts}, {n_trials} trials x 0.02 s, SYNTHETIC connectome\n{table}\n")
            rec.add({"label": f"profile {n_trials} trials x 0.02 s (no graph)", "file": path.name})
            log.info("profile written to %s", path)
        except Exception as exc:  # noqa: BLE001
            log.error("profile failed: %s", traceback.format_exc())
            rec.add({"label": f"profile {n_trials}", "error": f"{type(exc).__name__}: {exc}"})
    rec.doc["total_s"] = round(time.perf_counter() - t_start, 1)
    rec.save()
    # summary
    print("\n== summary (SYNTHETIC connectome; seconds for the model time given) ==")
    for r in rec.doc["records"]:
        if "error" in r or "skipped" in r:
            print(f"  {r.get('label')}: {r.get('error') or 'skipped (' + r['skipped'] + ')'}")
        elif "wall_s" in r and "n_trials" in r:
            tgt = f"  target {r['target_s']} s: {'MET' if r['meets_target_loop'] else 'missed'} (loop)" \
                if "target_s" in r else ""
            print(f"  {r['label']}: loop {r['meta'].get('loop_s')} s, simulate {r['simulate_s']} s, "
                  f"wall {r['wall_s']} s, {r['spikes_per_trial_second']:.0f} spikes/trial-s, "
                  f"graph {r['meta'].get('cuda_graph_used')}, fused {r['meta'].get('fused_kernel')}"
                  f"{' (' + str(r['meta'].get('fused_kernel_error'))[:80] + ')' if r['meta'].get('fused_kernel_error') else ''}, "
                  f"kernel-compacted {r['meta'].get('spikes_compacted_in_kernel')}, max spikes/events per block "
                  f"{r['meta'].get('max_spikes_per_block')}/{r['meta'].get('max_events_per_block')} of "
                  f"{r['meta'].get('spike_capacity')}/{r['meta'].get('synapse_capacity')}, "
                  f"restarts {r['meta'].get('capacity_restarts')}{tgt}")
        else:
            print(f"  {r.get('label')}: " + json.dumps({k: v for k, v in r.items() if k != 'label'}))
    print(f"total {rec.doc['total_s']} s; figures in {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
