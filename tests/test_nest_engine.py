"""The NEST engines (brainfly.engines.nest_engine): the exact ``nest`` engine on the
conformance suite at its tier (reference: spike for spike), the parameter mapping of the
stock ``iaf_psc_exp``, the network construction, the module build and its cache, and the
engine module without NEST. Skipped (with the reason) where NEST cannot be imported; the
checks that need no NEST run everywhere."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainfly.engines import nest_engine as ne
from brainfly.engines.base import engine_names, get_engine, prepare
from brainfly.experiment import Experiment, StimulusSet
from brainfly.params import ModelParams
from brainfly.testing import conformance as conf
from brainfly.testing.networks import _net, case_names, random_network

_OK, _WHY = ne.NestEngine().is_available()
needs_nest = pytest.mark.skipif(not _OK, reason=f"engine 'nest' unavailable here: {_WHY}")
_P = ModelParams()


# ---------------------------------------------------------------------- no NEST needed
def test_registered_and_listed() -> None:
    """``nest`` is in the registry with its tier; ``nest-stock`` is not (it fails the statistical tier)."""
    assert "nest" in engine_names()
    cls = type(get_engine("nest"))
    assert cls.exact and {"schedule", "poisson", "silencing", "silencing_both", "multi_rate"} <= cls.capabilities
    assert "nest-stock" not in engine_names()
    assert not ne.NestStockEngine.exact and "schedule" not in ne.NestStockEngine.capabilities


def test_engine_module_imports_without_nest() -> None:
    """The engine module imports where NEST is missing, and says why the engine cannot run."""
    code = ("import sys; sys.modules['nest'] = None\n"
            "from brainfly.engines import nest_engine as ne\n"
            "ok, why = ne.NestEngine().is_available()\n"
            "assert not ok and 'nest-simulator' in why, why\n"
            "assert 'nest' not in sys.modules or sys.modules['nest'] is None\n"
            "print(why)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pip install nest-simulator" in proc.stdout


def test_options_validated() -> None:
    with pytest.raises(Exception, match="n_threads"):
        get_engine("nest", n_threads=0)
    with pytest.raises(Exception, match="valid options"):
        get_engine("nest", threads=2)


def test_iaf_psc_exp_parameter_mapping() -> None:
    """C_m = tau_m (numerically) so that 1 pA of current is 1 mV of g; the rest maps one to one."""
    m = ne.iaf_psc_exp_params(_P)
    assert m["C_m"] == m["tau_m"] == _P.t_mbr_ms
    assert m["tau_syn_ex"] == m["tau_syn_in"] == _P.tau_ms
    assert (m["E_L"], m["V_reset"], m["V_th"], m["V_m"]) == (_P.v_0_mv, _P.v_rst_mv, _P.v_th_mv, _P.v_0_mv)
    # a kick pulse over one step adds kick * v_decay to V (NEST's propagator P20 = 1 - e^{-dt/tau_m})
    co = _P.step_coefficients()
    p20 = 1.0 - math.exp(-_P.dt_ms / _P.t_mbr_ms)
    assert ne.kick_current_pa(_P) * p20 == pytest.approx(co.kick * 1e3 * co.v_decay, rel=1e-12)


def test_brainfly_lif_parameters_are_brian2s_constants() -> None:
    co = _P.step_coefficients()
    m = ne.brainfly_lif_params(_P)
    assert (m["v_const"], m["v_decay"], m["v_from_g"], m["g_decay"]) == (co.v_const, co.v_decay, co.v_from_g,
                                                                         co.g_decay)
    assert (m["v_th"], m["v_rst"], m["kick"], m["v"], m["g"]) == (co.v_th, co.v_rst, co.kick, co.v_0, 0.0)


# ---------------------------------------------------------------------- NEST needed
@needs_nest
def test_build_is_cached_by_digest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The library is keyed by the digest of its source (and compiler, flags, NEST version)."""
    path, _ = ne.build_nest_model()
    again, seconds = ne.build_nest_model()
    assert again == path and seconds == 0.0 and path.parent.name == ne.model_digest()
    changed = tmp_path / "brainflymodule.cpp"
    changed.write_text(ne.MODEL_SOURCE.read_text() + "\n// changed\n")
    digest = ne.model_digest()
    monkeypatch.setattr(ne, "MODEL_SOURCE", changed)
    assert ne.model_digest() != digest


def _stock_neuron_trace(nest, weight_mv: float, n_steps: int) -> np.ndarray:
    nest.ResetKernel()
    nest.resolution = _P.dt_ms
    pre = nest.Create("spike_generator", params={"spike_times": [1.0]})
    neuron = nest.Create("iaf_psc_exp", params={**ne.iaf_psc_exp_params(_P), "t_ref": 0.0})
    nest.Connect(pre, neuron, syn_spec={"weight": weight_mv, "delay": _P.dt_ms})
    mm = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": _P.dt_ms})
    nest.Connect(mm, neuron)
    nest.Simulate(n_steps * _P.dt_ms)
    return np.asarray(mm.get("events")["V_m"], dtype=float)


@needs_nest
def test_stock_mapping_gives_brian2s_subthreshold_trajectory() -> None:
    """One synaptic input of w mV into iaf_psc_exp (weight w pA) follows Brian2's v(t) to round-off."""
    nest = ne._nest()
    w_mv = 100 * _P.w_syn_mv  # 27.5 mV of g: below threshold at its peak
    v = _stock_neuron_trace(nest, w_mv, 400)
    rise = np.flatnonzero(v > _P.v_0_mv + 1e-12)
    assert rise.size
    co = _P.step_coefficients()
    x, g, brian = co.v_0, w_mv * 1e-3, []
    for _ in range(v.size - rise[0]):
        x, g = co.v_const + (co.v_from_g * g + co.v_decay * x), co.g_decay * g
        brian.append(x * 1e3)
    np.testing.assert_allclose(v[rise[0]:], brian, rtol=0, atol=1e-9)
    assert v.max() < _P.v_th_mv


@needs_nest
def test_network_construction_matches_csr(tmp_path: Path) -> None:
    """Connections in NEST are the CSR arrays (node id = index + 1), weights in volts, delay
    t_dly; silenced (zero) weights are left out; one spike generator per activated neuron."""
    net, driven = random_network(40, 4, seed=2)
    f = net.flywire_ids
    silenced = int(f[10])
    exp = Experiment(name="c", stimuli=(StimulusSet(tuple(f[driven].tolist()), 100.0),), silenced=(silenced,),
                     t_run=0.01, n_trials=1)
    sim = prepare(net, exp)
    kicks = sim.kicks([0])
    nest = ne._nest()
    lib, _ = ne.build_nest_model()
    with ne._LOCK:
        built = ne._Network(nest, sim, ne.NestOptions(), lib, stock=False)
        built.schedule(kicks, [0])
        conns = nest.GetConnections(synapse_model="static_synapse").get(["source", "target", "weight", "delay"])
        src, tgt = np.asarray(conns["source"]), np.asarray(conns["target"])
        w = np.asarray(conns["weight"])
        delay = np.asarray(conns["delay"])
        n = net.n_neurons
        syn = (src <= n) & (tgt <= n)
        got = sorted(zip((src[syn] - 1).tolist(), (tgt[syn] - 1).tolist(), w[syn].tolist()))
        w_all = sim.weight_v()
        keep = w_all != 0
        want = sorted(zip(net.pre_idx[keep].tolist(), np.asarray(net.post_idx)[keep].tolist(), w_all[keep].tolist()))
        assert got == want
        assert np.all(delay[syn] == pytest.approx(_P.t_dly_ms))
        assert not (src[syn] - 1 == 10).any()  # outgoing connections of the silenced neuron are gone
        assert len(built.generators) == sim.activated_idx.size
        frozen = np.asarray(built.neurons.get("frozen_steps"))
        assert (frozen[sim.activated_idx] == 0).all() and (np.delete(frozen, sim.activated_idx) == 21).all()


# -------- the conformance suite at the tier ``nest`` claims (exact: spike for spike)
_engine = pytest.mark.parametrize("engine", ["nest"], indirect=True)


@needs_nest
@_engine
@pytest.mark.parametrize("case_name", case_names())
def test_conformance_oracle(engine, case_name: str, tmp_path: Path) -> None:
    conf.test_engine_matches_oracle(engine, case_name, tmp_path)


@needs_nest
@_engine
@pytest.mark.parametrize("case_name", case_names())
def test_conformance_brian2(engine, reference, case_name: str, tmp_path: Path) -> None:
    conf.test_reference_spikes(engine, reference, case_name, tmp_path)


@needs_nest
@_engine
def test_conformance_analytic(engine, tmp_path: Path) -> None:
    conf.test_analytic_driven_every_step(engine, tmp_path / "a")
    conf.test_analytic_no_input_no_spikes(engine, tmp_path / "b")
    for count in (150.0, 250.0, 1000.0):
        conf.test_analytic_latency(engine, count, tmp_path / f"c{count}")
    for gap in (5, _P.refractory_steps - 1, _P.refractory_steps, _P.refractory_steps + 1):
        conf.test_analytic_refractory_boundary(engine, gap, tmp_path / f"r{gap}")


@needs_nest
@_engine
def test_conformance_poisson_replay_and_trials(engine, reference, seed: int, tmp_path: Path) -> None:
    conf.test_reference_poisson_replay(engine, reference, seed, tmp_path)
    conf.test_same_seed_same_spikes(engine, seed)
    conf.test_trial_subsets(engine, seed)


@needs_nest
@_engine
def test_conformance_statistical(engine, reference, seed: int) -> None:
    conf.test_statistical_rates(engine, reference, seed)


@needs_nest
def test_threads_do_not_change_spikes() -> None:
    """Inputs of one step are added in presynaptic order whatever thread delivered them."""
    net, driven = random_network(80, 8, seed=5)
    exp = Experiment(name="t", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                     t_run=0.1, n_trials=2, seed=11)
    one = get_engine("nest").run(net, exp)
    two = get_engine("nest", n_threads=2).run(net, exp)
    assert one.n_spikes > 0 and conf.spike_set(one) == conf.spike_set(two)
    assert two.meta["n_threads"] == 2 and one.meta["model"] == ne.NODE_MODEL
    assert set(one.meta["timings"]) >= {"setup_s", "build_s", "sim_s"}


@needs_nest
def test_stock_engine_runs_and_differs_where_documented() -> None:
    """nest-stock: a kick fires a driven neuron in the next step and a strong input fires its
    target 19 steps later, as in Brian2; but a kick in every step fires it in every step
    (NEST does not drop the kick of the spike step), where Brian2 fires every other step."""
    stock = ne.NestStockEngine()
    net = _net("stock", 2, [(0, 1, 1000.0)])
    exp = Experiment(name="s", stimuli=(StimulusSet((int(net.flywire_ids[0]),), 300.0),), t_run=0.02, seed=1)
    res = stock.run(net, exp)
    ref = get_engine("event").run(net, exp)
    first = {i: int(ref.step[ref.idx == i].min()) for i in (0, 1)}
    assert {i: int(res.step[res.idx == i].min()) for i in (0, 1)} == first
    assert res.meta["exact"] is False and res.meta["model"] == "iaf_psc_exp"
    dense = Experiment(name="dense", stimuli=(StimulusSet((int(net.flywire_ids[0]),), 1e4),), t_run=0.004, seed=2)
    fired = stock.run(net, dense)
    steps = np.sort(fired.step[fired.idx == 0])
    assert steps.size > 5 and (np.diff(steps) == 1).all()
    exact = get_engine("nest").run(net, dense)
    assert (np.diff(np.sort(exact.step[exact.idx == 0])) == 2).all()
