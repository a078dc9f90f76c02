"""Corners of the event engine that the mutation check (``benchmarks/mutation_check.py``)
found unguarded by the other tests: each test here fails for a deliberate fault of the
engine and passes on the real one, comparing the engine with Brian2 (the ``reference``
fixture) and with the per-step numpy oracle of :mod:`brainfly.testing.networks` on the
same input schedule.

- ``threshold_non_strict`` (``v > v_th`` made ``>=``): a membrane potential landing exactly
  on ``v_th``, bit for bit, does not spike; one ulp above it, it does.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainfly.engines.base import get_engine, prepare
from brainfly.experiment import Experiment
from brainfly.params import ModelParams
from brainfly.schedule import InputSchedule
from brainfly.testing.conformance import assert_same_spikes
from brainfly.testing.networks import STRONG, _net, oracle_result


def _run(net, kicks, tmp_path, *, t_run, params):
    """The event engine and the oracle on the kicks ``(trial, idx, step)``; and the experiment."""
    arr = np.asarray(kicks, dtype=np.int64).reshape(-1, 3)
    path = InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2]).write(tmp_path / "kicks.parquet", net.flywire_ids)
    exp = Experiment(name="mutants", t_run=t_run, n_trials=1, input_schedule=str(path), params=params)
    sim = prepare(net, exp)
    return get_engine("event").run(net, exp), oracle_result(sim, sim.schedule), exp


def _v_th_mv_exactly(v_th: float) -> float:
    """A threshold in mV whose volts (``v_th_mv * 1e-3``, as ModelParams computes them) are
    *v_th* bit for bit."""
    x = v_th * 1e3
    for _ in range(64):
        if x * 1e-3 == v_th:
            return float(x)
        x = np.nextafter(x, np.inf if x * 1e-3 < v_th else -np.inf)
    raise AssertionError(f"no v_th_mv gives {v_th!r} V")


@pytest.mark.parametrize("above", [False, True])
def test_threshold_is_strict_bit_for_bit(above, reference, tmp_path):
    """A driven neuron kicked in step 0 from rest has, in step 1, exactly
    ``v1 = v_const + (v_from_g * 0 + v_decay * (v_0 + kick))`` (Brian2's update; rest is its
    fixed point, so every engine computes it bit for bit). With ``v_th = v1`` it never
    spikes (v > v_th is strict); with ``v_th`` one ulp below, it spikes in step 1."""
    co = ModelParams().step_coefficients()
    assert co.v_const + (co.v_from_g * 0.0 + co.v_decay * co.v_0) == co.v_0  # rest is a fixed point
    v1 = co.v_const + (co.v_from_g * 0.0 + co.v_decay * (co.v_0 + co.kick))
    v_th = float(np.nextafter(v1, -np.inf)) if above else v1
    params = ModelParams(v_th_mv=_v_th_mv_exactly(v_th))
    assert params.step_coefficients().v_th == v_th
    net = _net("strict", 2, [(0, 1, STRONG)])
    res, oracle, exp = _run(net, [(0, 0, 0)], tmp_path, t_run=0.005, params=params)
    assert oracle.step[oracle.idx == 0].tolist() == ([1] if above else [])
    assert (oracle.idx == 1).any() == above  # and its target follows
    assert_same_spikes(res, oracle, f"v_th {'one ulp below' if above else 'exactly at'} v(1)")
    ref = reference.run(net, exp)
    assert_same_spikes(res, ref, f"v_th {'one ulp below' if above else 'exactly at'} v(1), Brian2")

