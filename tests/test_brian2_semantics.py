"""The semantics of the paper's model, established against Brian2 itself (runtime, numpy).

Every fact written down in ``docs/model-spec.md`` has a test here that asserts it on a
tiny network built directly with Brian2 (the paper's equations, threshold, reset and
refractoriness; see :mod:`brainfly.engines.brian2_engine`). Inputs are placed in exact
steps with ``SpikeGeneratorGroup`` + ``Synapses(delay=0)`` (which act in the same
``synapses`` slot as ``PoissonInput``) or with ``PoissonInput(rate=1/dt)``, which kicks
in every step. ``dt`` = 0.1 ms; "step s" is the s-th update (t = s * dt).
"""

from __future__ import annotations

import numpy as np
import pytest

b2 = pytest.importorskip("brian2")

from brainfly.engines.brian2_engine import MODEL_EQUATIONS, RESET, THRESHOLD, brian2_namespace  # noqa: E402
from brainfly.params import ModelParams  # noqa: E402

P = ModelParams()
C = P.step_coefficients()
DT = P.dt_s
KICK = C.kick  # 68.75 mV
REFRACTORY = P.refractory_steps  # 22
DELAY = P.delay_steps  # 18


@pytest.fixture(autouse=True)
def _runtime_numpy():
    b2.set_device("runtime")
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    yield
    b2.prefs.codegen.target = old


def _group(n: int, rfc_ms: float | np.ndarray = P.t_rfc_ms, **overrides) -> "b2.NeuronGroup":
    """The paper's NeuronGroup with n neurons at rest (namespace overrides in SI quantities)."""
    ns = brian2_namespace(P)
    namespace = {k: ns[k] for k in ("v_0", "v_rst", "v_th", "t_mbr", "tau")}
    namespace.update(overrides)
    neu = b2.NeuronGroup(n, MODEL_EQUATIONS, threshold=THRESHOLD, reset=RESET, refractory="rfc",
                         method="linear", namespace=namespace, dt=ns["dt"])
    neu.v = namespace["v_0"]
    neu.g = 0 * b2.mV
    neu.rfc = np.broadcast_to(np.asarray(rfc_ms, dtype=float), (n,)) * b2.ms
    return neu


def _inject(neu, var: str, targets, steps, amount_v) -> list:
    """Add ``amount_v`` volts to ``var`` of ``targets[k]`` in the synapses slot of ``steps[k]``."""
    targets = np.asarray(targets, dtype=np.int64)
    gen = b2.SpikeGeneratorGroup(len(targets), np.arange(len(targets)), np.asarray(steps) * DT * b2.second,
                                 dt=DT * b2.second)
    syn = b2.Synapses(gen, neu, "a : volt", on_pre=f"{var}_post += a", delay=0 * b2.ms)
    syn.connect(i=np.arange(len(targets)), j=targets)
    syn.a = np.broadcast_to(np.asarray(amount_v, float), (len(targets),)) * b2.volt
    return [gen, syn]


def _spike_steps(mon, i: int) -> list[int]:
    return np.rint(mon.t_[mon.i[:] == i] / DT).astype(int).tolist()


# ----------------------------------------------------------------------------- scheduling
def test_order_of_operations_in_a_step():
    """groups (state update) -> thresholds -> synapses (pre pathway -1, PoissonInput 0) -> resets."""
    neu = _group(2)
    syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=P.t_dly_ms * b2.ms)
    syn.connect(i=0, j=1)
    poi = b2.PoissonInput(neu[0:1], "v", N=1, rate=100 * b2.Hz, weight=KICK * b2.volt)
    net = b2.Network(neu, syn, poi)
    net.run(1 * DT * b2.second)  # the schedule is computed at the first run
    slots = {o.name: (o.when, o.order) for o in net.sorted_objects}
    order = [o.name for o in net.sorted_objects]
    assert slots[neu.state_updater.name] == ("groups", 0)
    assert slots[neu.thresholder["spike"].name] == ("thresholds", 0)
    assert slots[syn.pre.name] == ("synapses", -1)
    assert slots[poi.name] == ("synapses", 0)
    assert slots[neu.resetter["spike"].name] == ("resets", 0)
    assert order.index(neu.state_updater.name) < order.index(neu.thresholder["spike"].name) \
        < order.index(syn.pre.name) < order.index(poi.name) < order.index(neu.resetter["spike"].name)


def test_kick_lands_after_threshold_and_spikes_next_step():
    """A kick in step s raises v above threshold in the synapses slot; the spike is step s + 1."""
    neu = _group(1)
    inj = _inject(neu, "v", [0], [10], KICK)
    end = b2.StateMonitor(neu, "v", record=True, when="end")
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, *inj, end, mon).run(30 * DT * b2.second)
    assert end.v_[0, 10] > C.v_th  # above threshold at the end of the kick's step, no spike yet
    assert _spike_steps(mon, 0) == [11]


def test_step_zero_and_initial_state():
    """Step 0 starts with an update from the initial state; a kick in step 0 spikes in step 1.

    A neuron initialised above threshold (not the model's case) would spike in step 0.
    """
    neu = _group(3)
    neu.v[2] = 0 * b2.mV
    inj = _inject(neu, "v", [0], [0], KICK)
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, *inj, mon).run(5 * DT * b2.second)
    assert _spike_steps(mon, 0) == [1]
    assert _spike_steps(mon, 1) == []  # at rest, no input: silent
    assert _spike_steps(mon, 2) == [0]


# ----------------------------------------------------------------------------- numerics
def _reference_trajectory(n_steps, g_in, v_in, v0=C.v_0, g0=0.0):
    """v, g at the end of each step from StepCoefficients (one non-spiking neuron)."""
    v, g = v0, g0
    vs, gs = [], []
    for s in range(n_steps):
        v, g = C.v_const + (C.v_from_g * g + C.v_decay * v), C.g_decay * g
        g = g + g_in.get(s, 0.0)
        v = v + v_in.get(s, 0.0)
        vs.append(v)
        gs.append(g)
    return np.array(vs), np.array(gs)


def test_update_is_bit_identical_to_step_coefficients():
    """One step: g' = g_decay*g; v' = v_const + (v_from_g*g + v_decay*v) with the OLD g, then inputs."""
    w1, w2, w3 = 5 * C.w_syn, -3 * C.w_syn, 2 * C.w_syn
    neu = _group(1)
    inj = _inject(neu, "g", [0, 0, 0], [3, 40, 41], [w1, w2, w3]) + _inject(neu, "v", [0], [60], C.w_syn * 10)
    end = b2.StateMonitor(neu, ["v", "g"], record=True, when="end")
    b2.Network(neu, *inj, end).run(120 * DT * b2.second)
    v_ref, g_ref = _reference_trajectory(120, {3: w1, 40: w2, 41: w3}, {60: C.w_syn * 10})
    np.testing.assert_array_equal(end.g_[0], g_ref)
    np.testing.assert_array_equal(end.v_[0], v_ref)


def test_threshold_is_strict():
    """v exactly equal to v_th at the threshold test does not spike; the next float above does."""
    # Find x such that one update from (x, g=0) lands exactly on v_th.
    x = (C.v_th - C.v_const) / C.v_decay
    for _ in range(10000):
        y = C.v_const + (C.v_from_g * 0.0 + C.v_decay * x)
        if y == C.v_th:
            break
        x = np.nextafter(x, np.inf if y < C.v_th else -np.inf)
    else:  # pragma: no cover
        pytest.skip("no float lands exactly on v_th")
    x_up = x
    while C.v_const + C.v_decay * x_up <= C.v_th:
        x_up = np.nextafter(x_up, np.inf)
    neu = _group(2)
    neu.v = np.array([x, x_up]) * b2.volt
    at_threshold = b2.StateMonitor(neu, "v", record=True, when="thresholds", order=-1)
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, at_threshold, mon).run(3 * DT * b2.second)
    assert at_threshold.v_[0, 0] == C.v_th  # exactly v_th when tested ...
    assert _spike_steps(mon, 0) == []       # ... and no spike
    assert at_threshold.v_[1, 0] > C.v_th
    assert _spike_steps(mon, 1) == [0]


def test_reset_sets_v_rst_and_g_zero():
    """After a spike in step s, v = v_rst and g = 0 at the end of step s."""
    neu = _group(1)
    inj = _inject(neu, "g", [0], [2], 30 * C.w_syn) + _inject(neu, "v", [0], [4], KICK)
    end = b2.StateMonitor(neu, ["v", "g"], record=True, when="end")
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, *inj, end, mon).run(10 * DT * b2.second)
    assert _spike_steps(mon, 0) == [5]
    assert end.g_[0, 4] > 0 and end.v_[0, 5] == C.v_rst and end.g_[0, 5] == 0.0


# ----------------------------------------------------------------------------- synapses
def test_synaptic_delay_and_first_effect_on_v():
    """Spike in step s -> g += w in the synapses slot of step s + 18 -> v moves in step s + 19."""
    neu = _group(3)
    syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=P.t_dly_ms * b2.ms)
    syn.connect(i=[0, 0], j=[1, 2])
    syn.w = np.array([1 * C.w_syn, 10000 * C.w_syn]) * b2.volt
    inj = _inject(neu, "v", [0], [9], KICK)  # neuron 0 spikes in step 10
    end = b2.StateMonitor(neu, ["v", "g"], record=True, when="end")
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, syn, *inj, end, mon).run(60 * DT * b2.second)
    s = 10
    assert _spike_steps(mon, 0) == [s]
    assert end.g_[1, s + DELAY - 1] == 0.0 and end.g_[1, s + DELAY] == C.w_syn
    assert end.v_[1, s + DELAY] == end.v_[1, s + DELAY - 1]   # v not yet affected in step s + 18
    assert end.v_[1, s + DELAY + 1] > end.v_[1, s + DELAY]     # first visible in step s + 19
    assert _spike_steps(mon, 2) == [s + DELAY + 1]              # fastest propagation: 19 steps


@pytest.mark.parametrize("pre_order", [[0, 1, 2], [2, 0, 1]])
def test_simultaneous_synaptic_inputs_add_in_presynaptic_order(pre_order):
    """Several inputs to one g in one step are added one by one, by ascending presynaptic
    index (the order of the spikes in the spike space), not by synapse index."""
    # Three presynaptic neurons spike in the same step; weights chosen so that the float
    # sum depends on the order of addition.
    weights = [0.1, 0.2, 0.3]  # of synapses 0, 1, 2
    assert (0.1 + 0.2) + 0.3 != (0.2 + 0.3) + 0.1  # the two orders differ for pre_order [2, 0, 1]
    neu = _group(4)
    syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=P.t_dly_ms * b2.ms)
    syn.connect(i=pre_order, j=[3, 3, 3])
    syn.w = np.array(weights) * b2.volt
    inj = _inject(neu, "v", [0, 1, 2], [0, 0, 0], KICK)
    end = b2.StateMonitor(neu, "g", record=3, when="end")
    b2.Network(neu, syn, *inj, end).run(25 * DT * b2.second)
    by_pre = [weights[k] for k in np.argsort(pre_order, kind="stable")]
    assert end.g_[0, 1 + DELAY] == (by_pre[0] + by_pre[1]) + by_pre[2]


# ----------------------------------------------------------------------------- refractoriness
@pytest.mark.parametrize("var", ["g", "v"])
def test_input_during_refractory_period_is_dropped(var):
    """Input (g += w or v += kick) that arrives in steps s .. s+21 after a spike in step s is lost.

    The variables are flagged ``(unless refractory)``, which in Brian2 makes every write to
    them, synaptic ones included, conditional on ``not_refractory``. From step s + 22 on,
    input is applied again.
    """
    offsets = list(range(0, REFRACTORY + 3))
    n = len(offsets)
    neu = _group(n)
    amount = 20 * C.w_syn if var == "g" else 2 * C.w_syn
    inj = _inject(neu, "v", range(n), [0] * n, KICK)   # every neuron spikes in step 1
    inj += _inject(neu, var, range(n), [1 + d for d in offsets], amount)
    end = b2.StateMonitor(neu, var, record=True, when="end")
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, *inj, end, mon).run(40 * DT * b2.second)
    base = C.v_rst if var == "v" else 0.0
    for k, d in enumerate(offsets):
        assert _spike_steps(mon, k) == [1]
        value = getattr(end, f"{var}_")[k, 1 + d]
        if d < REFRACTORY:
            assert value == base, f"input {d} steps after the spike should be dropped"
        else:
            assert value != base, f"input {d} steps after the spike should be applied"


def test_refractory_freezes_state_and_integration_resumes_at_step_s_plus_22():
    """After a spike in step s, v and g stay frozen in steps s+1 .. s+21; step s+22 integrates."""
    neu = _group(1, v_rst=-60 * b2.mV)  # reset below rest, so that integration shows
    inj = _inject(neu, "v", [0], [0], KICK)
    end = b2.StateMonitor(neu, "v", record=True, when="end")
    b2.Network(neu, *inj, end).run(30 * DT * b2.second)
    s = 1
    assert np.all(end.v_[0, s:s + REFRACTORY] == -0.060)
    assert end.v_[0, s + REFRACTORY] == C.v_const + C.v_decay * -0.060


def test_constant_drive_interspike_intervals():
    """PoissonInput with rate 1/dt kicks every step: with rfc = 2.2 ms spikes are 23 steps apart
    (22 refractory steps, then the kick of step s+22 gives the spike in s+23); with rfc = 0
    (activated neurons) every second step: the kick in the spike step is lost, so no neuron can
    spike in consecutive steps."""
    neu = _group(2, rfc_ms=np.array([P.t_rfc_ms, 0.0]))
    poi = b2.PoissonInput(neu, "v", N=1, rate=(1 / DT) * b2.Hz, weight=KICK * b2.volt)
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, poi, mon).run(100 * DT * b2.second)
    assert _spike_steps(mon, 0) == [1, 24, 47, 70, 93]
    assert _spike_steps(mon, 1) == list(range(1, 100, 2))


def test_refractory_steps_rounding():
    """rfc = 2.2 ms is 22 steps and t_dly = 1.8 ms is 18 steps, as Brian2's ``timestep``."""
    from brian2.core.functions import timestep

    assert REFRACTORY == int(timestep(P.t_rfc_ms * 1e-3, DT)) == 22
    assert DELAY == int(timestep(P.t_dly_ms * 1e-3, DT)) == 18


# ----------------------------------------------------------------------------- recording
def test_spike_times_are_step_times_dt():
    """SpikeMonitor's t is exactly step * dt (float64), also for late steps."""
    neu = _group(1, rfc_ms=0.0)
    poi = b2.PoissonInput(neu, "v", N=1, rate=(1 / DT) * b2.Hz, weight=KICK * b2.volt)
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, poi, mon).run(20001 * DT * b2.second)
    steps = np.arange(1, 20001, 2)
    np.testing.assert_array_equal(np.rint(mon.t_ / DT).astype(np.int64), steps)
    np.testing.assert_array_equal(mon.t_, steps * DT)


def test_two_kicks_in_one_step_add_up():
    """Two kicks onto one neuron in the same step add (v + k) + k; with N=1 one PoissonInput
    gives at most one kick per step, so this only arises from two inputs (or schedule rows)."""
    small = 0.005  # two of these cross threshold from rest, one does not
    neu = _group(2)
    inj = _inject(neu, "v", [0, 0, 1], [5, 5, 5], small)
    end = b2.StateMonitor(neu, "v", record=True, when="end")
    mon = b2.SpikeMonitor(neu)
    b2.Network(neu, *inj, end, mon).run(20 * DT * b2.second)
    assert end.v_[0, 5] == (end.v_[1, 5] - small) + small + small
    assert _spike_steps(mon, 0) == [6] and _spike_steps(mon, 1) == []
