"""The event engine's rarely reached paths against Brian2 itself (not only the numpy oracle),
and the fast mode (torch float32) through the conformance suite's statistical tier.

Each case is short enough for every CI run and forces one path of ``docs/engines/event.md``:
the state's base moving (a run longer than the rebase interval), all-inhibitory rows, put-off
crossing searches (checks), predictions farther ahead than the calendar ring (laps), and
buffers that grow during a trial. Brian2 and the event engine run the same input schedule;
the spikes must be identical, and the engine must have taken the path (its meta, its
workspace or the packed network say so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from brainfly.engines.base import get_engine, prepare
from brainfly.engines.event import packed_network
from brainfly.experiment import Experiment
from brainfly.params import ModelParams
from brainfly.results import SpikeResult
from brainfly.schedule import InputSchedule
from brainfly.testing.conformance import assert_same_spikes, statistical_check
from brainfly.testing.networks import _net, crossing_steps, random_network

_P = ModelParams()


def _kicks_at(rng: np.random.Generator, drivers: list[int], rate_hz: float, t_run: float,
              n_trials: int = 1) -> list[tuple[int, int, int]]:
    n_steps = _P.n_steps(t_run)
    return [(k, i, int(s)) for k in range(n_trials) for i in drivers
            for s in np.flatnonzero(rng.random(n_steps) < rate_hz * _P.dt_s)]


def _experiment(net: Any, kicks: list[tuple[int, int, int]], tmp: Path, t_run: float, n_trials: int = 1,
                **extra: Any) -> Experiment:
    arr = np.asarray(kicks, dtype=np.int64).reshape(-1, 3)
    path = InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2]).write(tmp / "kicks.parquet", net.flywire_ids)
    return Experiment(name="paths", t_run=t_run, n_trials=n_trials, input_schedule=str(path), **extra)


def _both(reference: Any, net: Any, exp: Experiment, engine: Any = None) -> tuple[SpikeResult, SpikeResult]:
    ref = reference.run(net, exp)
    assert ref.n_spikes > 0, "the reference produced no spikes; the comparison would be empty"
    return (engine or get_engine("event")).run(net, exp), ref


def test_rebase_against_brian2(reference: Any, tmp_path: Path) -> None:
    """0.75 s (7,500 steps): the state's base moves (every ~7,000 steps) while neurons
    hold charge, and the spikes after it are still Brian2's."""
    net, driven = random_network(40, 6, seed=11)
    rng = np.random.default_rng(11)
    exp = _experiment(net, _kicks_at(rng, driven.tolist(), 150.0, 0.75), tmp_path, 0.75)
    eng = get_engine("event")
    rebase = eng._plan(prepare(net, exp), [0]).model.rebase
    assert rebase < exp.n_steps, f"the rebase interval ({rebase} steps) is not within the run"
    res, ref = _both(reference, net, exp, eng)
    late = (ref.step >= rebase) & ~np.isin(ref.idx, driven)
    assert late.sum() > 20, "too few recruited spikes after the base moved"
    assert_same_spikes(res, ref, "run across the rebase step")


def test_all_inhibitory_rows_against_brian2(reference: Any, tmp_path: Path) -> None:
    """Neurons whose rows are all inhibitory (delivered without queueing their targets),
    driven and recruited, delay and cancel crossings exactly as in Brian2."""
    # 0, 1 excitatory drivers; 2, 3 inhibitory drivers; 4 recruited, its row all inhibitory
    edges = [(0, 4, 300.0), (1, 4, 300.0), (0, 5, 200.0), (1, 5, 150.0), (0, 6, 250.0), (1, 7, 260.0),
             (2, 5, -120.0), (2, 6, -300.0), (3, 6, -60.0), (3, 7, -200.0), (3, 5, -40.0),
             (4, 6, -150.0), (4, 7, -90.0), (0, 7, 120.0)]
    net = _net("inh_rows", 8, edges)
    inh = packed_network(net, _P.step_coefficients().w_syn).network.inh
    assert inh.sum() == 3, "neurons 2, 3 and 4 should have all-inhibitory rows"
    rng = np.random.default_rng(5)
    kicks = _kicks_at(rng, [0, 1], 120.0, 0.2) + _kicks_at(rng, [2, 3], 150.0, 0.2)
    exp = _experiment(net, kicks, tmp_path, 0.2)
    res, ref = _both(reference, net, exp)
    assert {4, 5, 6, 7} <= set(ref.idx.tolist()), "the targets should fire in the reference"
    # the inhibition matters: without the inhibitory connections the targets fire more
    free = reference.run(net.with_weights(np.maximum(net.weight, 0.0)), exp)
    assert free.n_spikes > ref.n_spikes
    assert_same_spikes(res, ref, "all-inhibitory rows")


def test_put_off_checks_against_brian2(reference: Any, tmp_path: Path) -> None:
    """Many weak inputs: neurons charge up over many steps, most crossing searches are put
    off (checks queued, moved by later input, bounded again when due)."""
    rng = np.random.default_rng(31)
    n, n_driven = 60, 8
    pre = rng.integers(0, n, n * 15)
    post = rng.integers(n_driven, n, n * 15)
    w = rng.choice([-12.0, 4.0, 7.0, 10.0, 15.0], pre.shape[0], p=[0.15, 0.25, 0.25, 0.2, 0.15])
    net = _net("weak", n, list(zip(pre.tolist(), post.tolist(), w.tolist())))
    exp = _experiment(net, _kicks_at(rng, list(range(n_driven)), 300.0, 0.15), tmp_path, 0.15)
    res, ref = _both(reference, net, exp)
    counts = res.meta["n_predictions"]
    assert counts["checks"] > 100 and counts["searched"] > 0, counts
    recruited = ref.idx >= n_driven
    assert recruited.sum() > 50 and np.unique(ref.idx[recruited]).size > 10
    assert_same_spikes(res, ref, "put-off crossing searches")


def test_ring_laps_against_brian2(reference: Any, tmp_path: Path) -> None:
    """A calendar ring of 8 buckets: crossings predicted 20 and more steps ahead wait
    through several laps of the ring."""
    ring = 8
    slow = 170.0  # a single input at rest crosses k* steps after it arrives
    k_star = crossing_steps(0.0, slow * _P.step_coefficients().w_syn, _P)
    assert k_star > 2 * ring, k_star
    net, driven = random_network(40, 6, seed=12)
    # plus a chain of slow crossings behind driver 0
    chain = _net("laps", 43, [(int(i), int(j), float(w)) for i, j, w in
                              zip(net.pre_idx.tolist(), net.post_idx.tolist(), net.weight.tolist())]
                 + [(0, 40, slow), (40, 41, slow), (41, 42, slow)])
    rng = np.random.default_rng(12)
    exp = _experiment(chain, _kicks_at(rng, driven.tolist(), 100.0, 0.2), tmp_path, 0.2)
    res, ref = _both(reference, chain, exp, get_engine("event", ring_steps=ring))
    assert {40, 41, 42} <= set(ref.idx.tolist()), "the slow chain should fire in the reference"
    assert res.meta["n_predictions"]["crossing"] > 0
    assert_same_spikes(res, ref, f"ring of {ring} buckets")


def test_buffer_growth_against_brian2(reference: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst that overflows the initial spike record (n + 1,024 spikes): the buffers grow
    within the trial (they stay grown in the engine's workspace) and nothing is lost; with
    workspaces whose queue and spike buffers start at one entry, every buffer grows."""
    from brainfly.engines import _event_kernels as K

    n = 30
    edges = [(i, 10 + (i + k) % 20, 90.0 if k % 3 else -40.0) for i in range(10) for k in range(6)]
    edges += [(10 + i, 10 + (i + 7) % 20, 60.0) for i in range(20)]
    net = _net("burst", n, edges)
    # drivers kicked in every step of a 40 ms burst: each fires every other step
    kicks = [(k, i, s) for k in range(2) for i in range(10) for s in range(20 + 5 * k, 420 + 5 * k)]
    exp = _experiment(net, kicks, tmp_path, 0.05, n_trials=2)
    eng = get_engine("event", n_threads=1)
    res, ref = _both(reference, net, exp, eng)
    assert np.bincount(ref.trial).min() > n + 1024, "the burst should overflow the initial spike record"
    grown = [ws["sp_idx"].shape[0] for ws in eng._pool]
    assert max(grown) > n + 1024, grown
    assert_same_spikes(res, ref, "growing spike record")

    buffers = ("e_nrn", "e_step", "e_next", "sp_idx", "sp_step")
    new = K.new_workspace
    monkeypatch.setattr(K, "new_workspace", lambda n_neurons, ring=1024: {
        key: (arr[:1].copy() if key in buffers else arr) for key, arr in new(n_neurons, ring).items()})
    eng = get_engine("event", n_threads=1)
    res = eng.run(net, exp)
    assert min(ws["e_nrn"].shape[0] for ws in eng._pool) > 1 and min(ws["sp_idx"].shape[0] for ws in eng._pool) > 1
    assert_same_spikes(res, ref, "buffers grown from one entry")


# ---------------------------------------------------------------------- fast modes
def test_fast_mode_cpu_statistical(reference: Any, seed: int) -> None:
    """torch float32 on CPU (the fast mode, dense delivery) passes the statistical tier
    against Brian2's own PoissonInput (``statistical_ci``)."""
    eng = get_engine("torch", dtype="float32")
    assert not eng.exact
    st = statistical_check(eng, reference, seed, "statistical_ci")
    print(st["message"])


@pytest.mark.gpu
def test_fast_mode_cuda_statistical(reference: Any, seed: int) -> None:
    """torch float32 on CUDA passes the statistical tier against Brian2."""
    eng = get_engine("torch", device="cuda", dtype="float32")
    st = statistical_check(eng, reference, seed, "statistical_ci")
    print(st["message"])
