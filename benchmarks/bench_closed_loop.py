"""Closed-loop speed: the whole brain advanced in small pieces, as a body's controller calls it.

Measured in this process on one core (the live simulation runs one thread), the connectome
and the compiled stepping code ready (their one-time costs are reported apart):

- ``sugar, 1 ms pieces``: the sugar GRNs at 200 Hz, 1 s of model time advanced 1 ms at a
  time after a 200 ms lead-in, with MN9 read out; x real time = model s / wall s
  (target >= 50);
- the same in 10 ms and 0.1 ms (one step) pieces;
- ``per-call overhead``: ``advance(0)`` (nothing simulated), and ``advance(1 ms)`` with
  no input on a silent brain;
- ``high activity, 1 ms pieces``: ``--broad-n`` random neurons at ``--broad-rate`` Hz
  (the runaway-like state of ``bench_event.py``, ~400k spikes/s; target: faster than real
  time);
- Brian2 (runtime mode, its default numpy target) stepping the same sugar network with
  ``Network.run(1 * ms)`` calls, ``--brian2-ms`` of them after building it (0: skip), as
  peers couple Brian2 to a body; its network build is reported apart.

Usage::

    python benchmarks/bench_closed_loop.py --out docs/benchmarks/closed_loop_2core.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

from brainfly.bench.hardware import hardware_info, hardware_summary
from brainfly.connectome import load_connectome
from brainfly.simulation import Simulation

__all__ = ["main"]


def _pieces(sim: Simulation, model_s: float, piece_ms: float) -> dict[str, Any]:
    n = int(round(model_s * 1e3 / piece_ms))
    spikes = 0
    t0 = time.perf_counter()
    for _ in range(n):
        spikes += sim.advance(piece_ms).step.shape[0]
    wall = time.perf_counter() - t0
    return {"piece_ms": piece_ms, "model_s": model_s, "wall_s": round(wall, 4), "calls": n,
            "x_real_time": round(model_s / wall, 1), "us_per_call": round(wall / n * 1e6, 2),
            "spikes_per_s": round(spikes / model_s)}


def _brian2(net: Any, n_ms: int) -> dict[str, Any]:
    """Brian2 runtime mode stepping the sugar experiment 1 ms per Network.run call."""
    import brian2 as b2

    from brainfly.engines.brian2_engine import MODEL_EQUATIONS, RESET, THRESHOLD, brian2_namespace
    from brainfly.experiment import SUGAR_GRNS_783
    from brainfly.params import ModelParams

    p = ModelParams()
    ns = brian2_namespace(p)
    b2.prefs.codegen.target = "numpy"
    t0 = time.perf_counter()
    neu = b2.NeuronGroup(net.n_neurons, model=MODEL_EQUATIONS, method="linear", threshold=THRESHOLD, reset=RESET,
                         refractory="rfc", dt=ns["dt"],
                         namespace={k: ns[k] for k in ("v_0", "v_rst", "v_th", "t_mbr", "tau")})
    neu.v = ns["v_0"]
    sugar = net.idx_of(list(SUGAR_GRNS_783))
    refractory = np.full(net.n_neurons, float(ns["t_rfc"]))
    refractory[sugar] = 0.0
    neu.rfc = refractory * b2.second  # (a local named rfc would enter Brian2's namespace)
    syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=ns["t_dly"])
    syn.connect(i=net.pre_idx, j=net.post_idx)
    syn.w = net.weight * p.step_coefficients().w_syn * b2.volt
    pois = [b2.PoissonInput(target=neu[int(i):int(i) + 1], target_var="v", N=1, rate=200 * b2.Hz,
                            weight=ns["w_syn"] * ns["f_poi"]) for i in sugar]
    mon = b2.SpikeMonitor(neu)
    bnet = b2.Network(neu, syn, *pois, mon)
    bnet.run(1 * b2.ms)  # builds the code objects
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_ms):
        bnet.run(1 * b2.ms)
    wall = time.perf_counter() - t0
    return {"mode": "runtime (numpy)", "build_s": round(build, 2), "model_s": n_ms * 1e-3, "wall_s": round(wall, 3),
            "x_real_time": round(n_ms * 1e-3 / wall, 4), "ms_per_call": round(wall / n_ms * 1e3, 1),
            "spikes": int(mon.num_spikes)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--model-s", type=float, default=1.0)
    ap.add_argument("--broad-n", type=int, default=3000)
    ap.add_argument("--broad-rate", type=float, default=100.0)
    ap.add_argument("--brian2-ms", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    net = load_connectome(args.data, progress=False)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = Simulation(net, seed=1, rates={"sugar_GRN": 200.0}, readout=["MN9"])
    t_make = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.advance(1.0)
    t_first = time.perf_counter() - t0
    rec: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_info(),
        "what": "wall time in this process, one core; the connectome loaded and the stepping code compiled before",
        "data": {"name": net.name, "synthetic": bool(net.synthetic), "digest": net.content_digest},
        "one_time_s": {"load_connectome": round(t_load, 3), "make_simulation": round(t_make, 3),
                       "first_advance_compiles": round(t_first, 3)},
        "targets": {"sugar_1ms_x_real_time": 50, "high_activity_x_real_time": 1},
    }
    sim.advance(199.0)  # lead-in: the sugar pathway active
    rec["sugar"] = [_pieces(sim, args.model_s, piece) for piece in (1.0, 10.0, 0.1)]
    t0 = time.perf_counter()
    for _ in range(10000):
        sim.advance(0.0)
    rec["overhead_us"] = {"advance_0ms": round((time.perf_counter() - t0) / 10000 * 1e6, 2)}
    quiet = Simulation(net, seed=1)
    rec["overhead_us"]["advance_1ms_silent_brain"] = _pieces(quiet, 0.5, 1.0)["us_per_call"]
    rng = np.random.default_rng(0)
    broad = rng.choice(net.n_neurons, args.broad_n, replace=False)
    hot = Simulation(net, seed=1, rates={tuple(int(f) for f in net.flywire_ids[broad]): args.broad_rate})
    hot.advance(100.0)
    rec["high_activity"] = _pieces(hot, min(args.model_s, 0.5), 1.0)
    rec["high_activity"]["runaway"] = hot.runaway
    for row in rec["sugar"]:
        print(f"sugar, {row['piece_ms']:g} ms pieces: {row['x_real_time']:.1f}x real time "
              f"({row['us_per_call']:.1f} us per call)", file=sys.stderr)
    print(f"high activity, 1 ms pieces: {rec['high_activity']['x_real_time']:.2f}x real time "
          f"({rec['high_activity']['spikes_per_s']:,} spikes/s)", file=sys.stderr)
    if args.brian2_ms > 0:
        rec["brian2"] = _brian2(net, args.brian2_ms)
        rec["ratio_sugar_1ms_vs_brian2"] = round(rec["sugar"][0]["x_real_time"] / rec["brian2"]["x_real_time"], 1)
        print(f"Brian2 runtime, 1 ms per run(): {rec['brian2']['x_real_time']}x real time "
              f"(build {rec['brian2']['build_s']} s)", file=sys.stderr)
    print(json.dumps({k: v for k, v in rec.items() if k != "hardware"}, indent=1, default=str))
    print(f"hardware: {hardware_summary(rec['hardware'])}", file=sys.stderr)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
