"""Calibrate the synthetic connectome: sugar-GRN activity and runaway check.

A private, short clock-driven simulator of the paper's model (DEVELOPING.md semantics:
state update -> threshold -> synaptic/Poisson input -> reset; input reaching a refractory
neuron is dropped, as the event engine established against Brian2 2.8; delay 18 steps, refractory
22 steps, activated neurons refractory 0) used only to tune
:class:`brainfly.connectome.synthetic.SyntheticParams`; it is NOT a package engine.
At the end (``--engine NAME``) the same experiment runs on a package engine, if one is
registered and available, to cross-check.

Examples
--------
    python benchmarks/calibrate_synthetic.py --trials 3                 # sugar @ 200 Hz
    python benchmarks/calibrate_synthetic.py --set pathway_synapses=12  # try a knob
    python benchmarks/calibrate_synthetic.py --broad 3000 --t-stim 0.3  # runaway test
    python benchmarks/calibrate_synthetic.py --engine event --trials 3

Reports spikes per trial-second, active neurons per trial-second (mean over trials), MN9
rate, and spikes after the stimulus ends (``--t-stim`` < ``--t-run``): a self-sustaining
state keeps firing without input.
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np

from brainfly.connectome.synthetic import SyntheticParams, generate_synthetic, named_neuron_ids
from brainfly.params import ModelParams


def simulate(net, stim_idx: np.ndarray, rate_hz: float, n_steps: int, t_stim_steps: int, seed: int,
             params: ModelParams = ModelParams()) -> tuple[np.ndarray, np.ndarray]:
    """One trial; returns (idx, step) of all spikes (int64 arrays)."""
    c = params.step_coefficients()
    n = net.n_neurons
    D = params.delay_steps
    R = D + 1
    rfc = np.full(n, params.refractory_steps, np.int64)
    rfc[stim_idx] = 0
    v = np.full(n, c.v_0)
    g = np.zeros(n)
    last = np.full(n, -10**9, np.int64)
    indptr, post, w = net.indptr, net.post_idx, net.weight * c.w_syn
    pending: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(R)]
    rng = np.random.default_rng(seed)
    p = rate_hz * params.dt_s
    out_i, out_s = [], []
    nr = np.empty(n, bool)
    tmp = np.empty(n)
    for s in range(n_steps):
        np.greater_equal(s - last, rfc, out=nr)
        # state update (not refractory only)
        np.multiply(g, c.v_from_g, out=tmp)
        tmp += c.v_decay * v
        tmp += c.v_const
        np.copyto(v, tmp, where=nr)
        np.copyto(g, g * c.g_decay, where=nr)
        spk = np.flatnonzero((v > c.v_th) & nr)
        last[spk] = s
        nr[spk] = False
        # synapses slot: delayed spikes onto g, Poisson kicks onto v; input reaching a
        # refractory neuron (or one spiking in this step) is dropped, as in Brian2 2.8
        slot = s % R
        for posts, ws in pending[slot]:
            keep = nr[posts]
            np.add.at(g, posts[keep], ws[keep])
        pending[slot] = []
        if s < t_stim_steps:
            kicked = stim_idx[rng.random(stim_idx.shape[0]) < p]
            v[kicked[nr[kicked]]] += c.kick
        if spk.size:
            starts, stops = indptr[spk], indptr[spk + 1]
            lens = stops - starts
            tot = int(lens.sum())
            if tot:
                offs = np.repeat(stops - np.cumsum(lens), lens) + np.arange(tot)
                pending[(s + D) % R].append((post[offs], w[offs]))
            out_i.append(spk)
            out_s.append(np.full(spk.size, s, np.int64))
        # reset
        v[spk] = c.v_rst
        g[spk] = 0.0
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i), np.concatenate(out_s)


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, _, val = it.partition("=")
        out[k.strip()] = ast.literal_eval(val.strip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--n-neurons", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="SyntheticParams field=value")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--t-run", type=float, default=1.0, help="trial length, s")
    ap.add_argument("--t-stim", type=float, default=None, help="stimulus ends at this time, s (default t-run)")
    ap.add_argument("--rate", type=float, default=200.0, help="stimulus rate, Hz")
    ap.add_argument("--broad", type=int, default=0, help="stimulate this many random neurons instead of sugar GRNs")
    ap.add_argument("--p9", action="store_true", help="stimulate P9 instead of sugar GRNs")
    ap.add_argument("--olfactory", action="store_true",
                    help="stimulate the generator's 'olfactory' inputs of the recurrent core")
    ap.add_argument("--engine", default=None, help="also run a package engine (event, torch, brian2)")
    ap.add_argument("--engine-only", action="store_true", help="skip the private loop, run --engine only")
    args = ap.parse_args()

    params = SyntheticParams(**_parse_sets(args.set)) if args.set else None
    t0 = time.perf_counter()
    net = generate_synthetic(args.n_neurons, seed=args.seed, params=params)
    print(f"generated {net.label}: {net.n_neurons} neurons, {net.n_connections} connections, "
          f"{net.n_synapses} synapses in {time.perf_counter() - t0:.1f} s")
    named = named_neuron_ids()
    if args.broad:
        rng = np.random.default_rng(1234)
        stim = np.sort(rng.choice(net.n_neurons, args.broad, replace=False)).astype(np.int64)
        label = f"{args.broad} random neurons"
    elif args.olfactory:
        stim = np.asarray(net.meta["pathways"]["olfactory_idx"], dtype=np.int64)
        label = f"{stim.size} olfactory inputs"
    elif args.p9:
        stim = net.idx_of(named["P9"])
        label = "P9"
    else:
        stim = net.idx_of(named["sugar_grns"])
        label = "21 sugar GRNs"
    mp = ModelParams()
    n_steps = mp.n_steps(args.t_run)
    t_stim = mp.n_steps(args.t_stim) if args.t_stim is not None else n_steps
    mn9 = net.idx_of(named["MN9"])
    spikes, actives, mn9_hz, after = [], [], [], []
    for trial in range(0 if args.engine_only else args.trials):
        t1 = time.perf_counter()
        idx, step = simulate(net, stim, args.rate, n_steps, t_stim, seed=1000 + trial)
        spikes.append(idx.size / args.t_run)
        actives.append(np.unique(idx).size)
        mn9_hz.append(np.isin(idx, mn9[:1]).sum() / args.t_run)
        after.append(int((step >= t_stim + 100).sum()))
        counts = np.bincount(idx, minlength=net.n_neurons)
        pw = net.meta["pathways"]
        layer_hz = [round(float(counts[np.asarray(l)].mean()) / args.t_run, 1)
                    for l in [stim.tolist()] + pw["sugar_layers_idx"] + pw["p9_layers_idx"]]
        on_path = np.zeros(net.n_neurons, bool)
        for l in pw["sugar_layers_idx"] + pw["p9_layers_idx"]:
            on_path[l] = True
        on_path[stim] = True
        core = np.asarray(pw["core_idx"])
        print(f"  core: {int((counts[core] > 0).sum())} active, {int(counts[core].sum())} spikes")
        off = counts[~on_path]
        print(f"  layer mean rates (Hz) stim/sugar/p9: {layer_hz}; off-pathway: {int((off > 0).sum())} active, "
              f"{int(off.sum())} spikes")
        per_100ms = np.bincount(step // 1000, minlength=n_steps // 1000)
        print(f"trial {trial}: {idx.size} spikes, {actives[-1]} active, MN9 {mn9_hz[-1]:.0f} Hz, "
              f"after stimulus {after[-1]} spikes; per 100 ms {per_100ms.tolist()} "
              f"({time.perf_counter() - t1:.1f} s)")
    if spikes:
        print(f"{label} @ {args.rate:g} Hz, {args.trials} x {args.t_run:g} s (private numpy loop): "
              f"spikes/trial-s {np.mean(spikes):.0f}, active/trial-s {np.mean(actives):.0f}, "
              f"MN9 {np.mean(mn9_hz):.0f} Hz, spikes after stimulus {np.mean(after):.0f}")
    if args.engine:
        from brainfly.engines import get_engine
        from brainfly.experiment import Experiment, StimulusSet

        eng = get_engine(args.engine)
        ok, why = eng.is_available()
        if not ok:
            print(f"engine {args.engine} unavailable: {why}")
            return
        exp = Experiment(name="calibrate", stimuli=(StimulusSet(tuple(net.flywire_ids[stim].tolist()), args.rate),),
                         t_run=args.t_run, n_trials=args.trials, seed=7)
        t1 = time.perf_counter()
        res = eng.run(net, exp)
        act = [np.unique(res.idx[res.trial == k]).size for k in range(args.trials)]
        mn9_sp = np.isin(res.idx, mn9[:1]).sum() / args.trials / args.t_run
        print(f"{label} @ {args.rate:g} Hz, {args.trials} x {args.t_run:g} s, engine {args.engine}: spikes/trial-s {res.n_spikes / args.trials / args.t_run:.0f}, "
              f"active/trial-s {np.mean(act):.0f}, MN9 {mn9_sp:.0f} Hz ({time.perf_counter() - t1:.1f} s)")


if __name__ == "__main__":
    main()
