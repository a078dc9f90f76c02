"""The Brian2 reference engine: registration, the paper's network, schedule replay, trials.

Tiny networks (a few neurons, tens to hundreds of ms); C++ standalone builds and the
cython target take tens of seconds to compile and are marked ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

b2 = pytest.importorskip("brian2")

from brainfly.connectome import Connectome  # noqa: E402
from brainfly.engines import engine_names, get_engine, prepare  # noqa: E402
from brainfly.engines.brian2_engine import (  # noqa: E402
    MODEL_EQUATIONS, RESET, THRESHOLD, Brian2Engine, Brian2StandaloneEngine, brian2_namespace, cpp_compile_args,
    trial_seed)
from brainfly.errors import ValidationError  # noqa: E402
from brainfly.experiment import Experiment, StimulusSet  # noqa: E402
from brainfly.params import ModelParams  # noqa: E402
from brainfly.results import SpikeResult  # noqa: E402
from brainfly.schedule import InputSchedule  # noqa: E402

FIDS = np.arange(1000, 1008, dtype=np.int64)
# pre, post, signed synapse count
EDGES = [(0, 3, 150), (1, 3, 40), (2, 4, 150), (3, 5, 150), (4, 5, -100), (5, 6, 80), (6, 7, 200),
         (7, 0, -50), (3, 6, 30)]


def tiny() -> Connectome:
    pre, post, w = zip(*EDGES)
    return Connectome.from_edges(FIDS, pre, post, w, name="tiny-brian2", synthetic=True)


def tiny_experiment(**kw) -> Experiment:
    base = dict(name="tiny", stimuli=(StimulusSet((1000, 1001), 150.0, "A"), StimulusSet((1002,), 60.0, "B")),
                t_run=0.2, n_trials=1, seed=7)
    base.update(kw)
    return Experiment(**base)


def spikes_of(result: SpikeResult, trial: int) -> list[tuple[int, int]]:
    keep = result.trial == trial
    return list(zip(result.idx[keep].tolist(), result.step[keep].tolist()))


def paper_network_run(connectome: Connectome, experiment: Experiment, seed: int, record_kicks: bool = False):
    """The paper's model.py, written out by hand (one PoissonInput per activated neuron).

    Returns (spikes sorted by (step, idx), kicks as (idx, step) or None).
    """
    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    sim = prepare(connectome, experiment)
    p = experiment.params
    ns = brian2_namespace(p)
    neu = b2.NeuronGroup(connectome.n_neurons, MODEL_EQUATIONS, method="linear", threshold=THRESHOLD, reset=RESET,
                         refractory="rfc", dt=ns["dt"],
                         namespace={k: ns[k] for k in ("v_0", "v_rst", "v_th", "t_mbr", "tau")})
    neu.v = ns["v_0"]
    neu.g = 0
    neu.rfc = ns["t_rfc"]
    syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=ns["t_dly"])
    syn.connect(i=connectome.pre_idx, j=connectome.post_idx)
    syn.w = connectome.weight * ns["w_syn"]
    pois = []
    for i, rate in zip(sim.activated_idx.tolist(), sim.activated_rate_hz.tolist()):
        pois.append(b2.PoissonInput(target=neu[i:i + 1], target_var="v", N=1, rate=rate * b2.Hz,
                                    weight=ns["w_syn"] * ns["f_poi"]))
        neu[i:i + 1].rfc = 0 * b2.ms
    mon = b2.SpikeMonitor(neu)
    objects = [neu, syn, mon, *pois]
    if record_kicks:
        # v of the activated neurons just before and just after the PoissonInputs (order 0)
        # in the synapses slot; a kick shows as a change of v.
        before = b2.StateMonitor(neu, "v", record=sim.activated_idx, when="synapses", order=-10)
        after = b2.StateMonitor(neu, "v", record=sim.activated_idx, when="synapses", order=10)
        objects += [before, after]
    b2.seed(seed)
    b2.Network(*objects).run(experiment.n_steps * ns["dt"])
    steps = np.rint(mon.t_ / p.dt_s).astype(np.int64)
    spikes = sorted(zip(mon.i[:].tolist(), steps.tolist()), key=lambda x: (x[1], x[0]))
    kicks = None
    if record_kicks:
        changed = after.v_ != before.v_  # (n_activated, n_steps)
        rows, cols = np.nonzero(changed)
        kicks = (sim.activated_idx[rows], cols.astype(np.int64))
    return spikes, kicks


# ----------------------------------------------------------------------------- registry
def test_registered_available_and_options():
    assert {"brian2", "brian2-standalone"} <= set(engine_names())
    assert get_engine("brian2").is_available() == (True, "")
    eng = get_engine("brian2")
    assert isinstance(eng, Brian2Engine) and eng.mode == "runtime" and eng.exact
    sa = get_engine("brian2-standalone")
    assert isinstance(sa, Brian2StandaloneEngine) and sa.mode == "standalone"
    assert get_engine("brian2", mode="standalone").mode == "standalone"
    with pytest.raises(ValidationError, match="unknown option.*n_job"):
        get_engine("brian2", n_job=2)
    with pytest.raises(ValidationError, match="option codegen_target: must be one of"):
        get_engine("brian2", codegen_target="cuda")
    with pytest.raises(ValidationError, match="fixed to 'standalone'"):
        get_engine("brian2-standalone", mode="runtime")
    with pytest.raises(ValidationError, match="n_jobs"):
        get_engine("brian2", n_jobs=0)
    assert get_engine("brian2-standalone").is_available() == (True, "")  # compiles a C++ test program


def test_unavailable_brian2_is_a_clear_error(monkeypatch):
    from brainfly.engines import brian2_engine
    from brainfly.errors import EngineUnavailable

    monkeypatch.setattr(brian2_engine, "_brian2_importable", lambda: (False, "brian2 cannot be imported (test)"))
    with pytest.raises(EngineUnavailable, match="'brian2'.*brian2 cannot be imported"):
        get_engine("brian2").run(tiny(), tiny_experiment())


def test_trial_seed_depends_on_seed_and_trial_only():
    assert trial_seed(7, 0) == trial_seed(7, 0)
    assert len({trial_seed(7, 0), trial_seed(7, 1), trial_seed(8, 0)}) == 3
    assert 0 <= trial_seed(2**40, 3) < 2**32


# ----------------------------------------------------------------------------- the paper's network
def test_engine_builds_the_papers_network():
    """Poisson mode with one PoissonInput per neuron gives the hand-written paper network's spikes."""
    net, exp = tiny(), tiny_experiment()
    expected, _ = paper_network_run(net, exp, trial_seed(exp.seed, 0))
    result = get_engine("brian2", n_jobs=1, poisson_grouping="per_neuron").run(net, exp)
    assert len(expected) > 30 and len({i for i, _ in expected}) >= 6  # the reference really spiked
    assert spikes_of(result, 0) == expected


def test_replaying_recorded_poisson_kicks_gives_identical_spikes(tmp_path):
    """The proof of schedule replay: kicks recorded from PoissonInput itself (v just before and
    after it in the synapses slot), written as an InputSchedule file and replayed, give exactly
    the same spikes."""
    net, exp = tiny(), tiny_experiment()
    expected, (k_idx, k_step) = paper_network_run(net, exp, trial_seed(exp.seed, 0), record_kicks=True)
    assert k_idx.size > 20 and len(expected) > 30
    path = InputSchedule(np.zeros(k_idx.size, np.int32), k_idx, k_step).write(tmp_path / "kicks.parquet", FIDS)
    replay = get_engine("brian2", n_jobs=1).run(net, exp.with_(stimuli=(), input_schedule=str(path)))
    assert replay.meta["input_mode"] == "schedule"
    assert spikes_of(replay, 0) == expected


def test_poisson_grouping_keeps_rates():
    """Contiguous grouping (default) draws independent kicks per neuron: same model, other stream."""
    net = tiny()
    exp = tiny_experiment(stimuli=(StimulusSet((1000, 1001, 1002), 100.0),), t_run=0.5, n_trials=2)
    res = get_engine("brian2", n_jobs=1).run(net, exp)
    assert res.meta["n_poisson_inputs"] == 1
    counts = res.spike_counts()[:, :3]
    assert counts.min() >= 10  # each activated neuron is driven (about 100 Hz * 0.5 s)
    assert not np.array_equal(counts[:, 0], counts[:, 1])  # independent, not copies


# ----------------------------------------------------------------------------- trials and seeds
def test_trials_in_one_network_equal_fresh_single_trial_runs():
    """Trials run back to back in one network (with a flush) are each exactly a fresh run."""
    net, exp = tiny(), tiny_experiment(n_trials=3)
    eng = get_engine("brian2", n_jobs=1, poisson_grouping="per_neuron")
    together = eng.run(net, exp)
    assert together.trials == [0, 1, 2]
    for k in (1, 2):
        alone = eng.run(net, exp, trials=[k])
        assert spikes_of(alone, k) == spikes_of(together, k) and len(spikes_of(alone, k)) > 20
        expected, _ = paper_network_run(net, exp, trial_seed(exp.seed, k))
        assert spikes_of(together, k) == expected
    assert spikes_of(together, 0) != spikes_of(together, 1)


def test_same_seed_same_spikes_and_parallel_workers_agree():
    net, exp = tiny(), tiny_experiment(n_trials=3, t_run=0.1)
    serial = get_engine("brian2", n_jobs=1).run(net, exp)
    parallel = get_engine("brian2", n_jobs=2).run(net, exp)
    np.testing.assert_array_equal(serial.trial, parallel.trial)
    np.testing.assert_array_equal(serial.idx, parallel.idx)
    np.testing.assert_array_equal(serial.step, parallel.step)
    assert parallel.meta["engine_options"]["n_jobs"] == 2 and parallel.meta["n_jobs"] == 2
    other = get_engine("brian2", n_jobs=1).run(net, exp.with_(seed=8))
    assert not np.array_equal(other.step, serial.step)


def test_meta_and_result_format():
    net, exp = tiny(), tiny_experiment(n_trials=2, t_run=0.05)
    res = get_engine("brian2", n_jobs=1).run(net, exp)
    assert isinstance(res, SpikeResult) and res.engine == "brian2" and res.synthetic
    assert res.n_steps == 500 and res.dt_s == 1e-4
    assert res.meta["versions"]["brian2"] == b2.__version__
    assert res.meta["codegen_target"] == "numpy"
    assert set(res.meta["timings"]) >= {"setup_s", "build_s", "sim_s"}
    assert res.meta["seeds"] == {"0": trial_seed(7, 0), "1": trial_seed(7, 1)}
    assert res.step.dtype == np.int64 and res.step.min() >= 0 and res.step.max() < 500
    frame = res.to_frame()
    np.testing.assert_array_equal(frame["t"].to_numpy(), res.step * 1e-4)


def test_progress_callback():
    calls = []
    get_engine("brian2", n_jobs=1).run(tiny(), tiny_experiment(n_trials=2, t_run=0.02),
                                       progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]  # after each trial in runtime mode


# ----------------------------------------------------------------------------- experiments
def test_silencing_outgoing_and_both():
    """Chain 0 -> 3 -> 5 -> 6 -> 7: silencing 3 (outgoing) stops 5..7 but 3 still fires; 'both' silences 3 too."""
    net = tiny()
    base = tiny_experiment(stimuli=(StimulusSet((1000,), 200.0),), t_run=0.2)
    eng = get_engine("brian2", n_jobs=1)
    free = eng.run(net, base).spike_counts()[0]
    assert free[3] > 0 and free[5] > 0
    out = eng.run(net, base.with_(silenced=(1003,))).spike_counts()[0]
    assert out[3] == free[3] and out[5] == 0 and out[6] == 0 and out[7] == 0
    both = eng.run(net, base.with_(silenced=(1003,), silence_mode="both")).spike_counts()[0]
    assert both[3] == 0 and both[5] == 0
    assert both[0] == out[0] == free[0] or free[7] > 0  # neuron 0 only differs through 7 -> 0


def test_schedule_file_csv_multi_rate_and_use_schedule(tmp_path):
    """use_schedule=True replays draw_poisson; the same kicks from a CSV file give the same spikes."""
    net, exp = tiny(), tiny_experiment(n_trials=2, t_run=0.1)
    eng = get_engine("brian2", n_jobs=1, use_schedule=True)
    forced = eng.run(net, exp)
    assert forced.meta["input_mode"] == "schedule" and forced.n_spikes > 20
    sim = prepare(net, exp)
    path = sim.kicks([0, 1]).write(tmp_path / "kicks.csv", FIDS)
    from_file = get_engine("brian2", n_jobs=1).run(net, exp.with_(stimuli=(), input_schedule=str(path)))
    np.testing.assert_array_equal(forced.step, from_file.step)
    np.testing.assert_array_equal(forced.idx, from_file.idx)
    np.testing.assert_array_equal(forced.trial, from_file.trial)


def test_schedule_with_silencing_both():
    net = tiny()
    exp = tiny_experiment(stimuli=(StimulusSet((1000,), 200.0),), silenced=(1003,), silence_mode="both")
    res = get_engine("brian2", n_jobs=1, use_schedule=True).run(net, exp)
    counts = res.spike_counts()[0]
    assert counts[0] > 0 and counts[3] == 0 and counts[5] == 0


def test_kick_step_and_repeated_schedule_rows(tmp_path):
    """A kick in step s spikes in step s + 1; a row given twice is two kicks in that step."""
    params = ModelParams(f_poi=20.0)  # one kick = 5.5 mV: below threshold from rest, two are above
    net = tiny()
    path = tmp_path / "kicks.parquet"
    InputSchedule([0, 0, 0, 0], [0, 0, 1, 2], [10, 10, 30, 50]).write(path, FIDS)
    exp = Experiment(name="dup", input_schedule=str(path), t_run=0.01, params=params)
    res = get_engine("brian2", n_jobs=1).run(net, exp)
    assert spikes_of(res, 0) == [(0, 11)]
    big = get_engine("brian2", n_jobs=1).run(net, exp.with_(params=ModelParams()))
    assert [x for x in spikes_of(big, 0) if x[0] < 3] == [(0, 11), (1, 31), (2, 51)]


# ----------------------------------------------------------------------------- other modes (compile)
@pytest.mark.slow
def test_standalone_equals_runtime(tmp_path):
    """C++ standalone (one build, trials back to back in one binary) gives runtime's spikes,
    with a schedule and with PoissonInput (same seeds, same random numbers)."""
    net, exp = tiny(), tiny_experiment(n_trials=2, t_run=0.1)
    runtime = get_engine("brian2", n_jobs=1).run(net, exp)
    standalone = get_engine("brian2-standalone", build_root=str(tmp_path)).run(net, exp)
    assert standalone.meta["codegen_target"] == "cpp_standalone"
    assert "-ffp-contract=off" in standalone.meta["cpp_compile_args"]
    assert standalone.meta["timings"]["build_s"] > 0
    assert runtime.n_spikes > 20
    for k in (0, 1):
        assert spikes_of(standalone, k) == spikes_of(runtime, k)
    sched = get_engine("brian2-standalone", use_schedule=True, build_root=str(tmp_path)).run(net, exp)
    ref = get_engine("brian2", n_jobs=1, use_schedule=True).run(net, exp)
    np.testing.assert_array_equal(sched.step, ref.step)
    np.testing.assert_array_equal(sched.idx, ref.idx)
    assert list(tmp_path.iterdir()) == []  # build directories are removed
    assert b2.get_device().__class__.__name__ == "RuntimeDevice"  # device reset afterwards


@pytest.mark.slow
def test_cython_target_equals_numpy():
    """The cython target gives numpy's spikes, with a schedule and with PoissonInput (which runs
    as numpy code where Brian2 2.8's cython rand() is broken by numpy 2)."""
    net, exp = tiny(), tiny_experiment(t_run=0.1)
    for opts in ({"use_schedule": True}, {}):
        a = get_engine("brian2", n_jobs=1, **opts).run(net, exp)
        c = get_engine("brian2", n_jobs=1, codegen_target="cython", **opts).run(net, exp)
        assert c.meta["codegen_target"] == "cython" and a.n_spikes > 10
        np.testing.assert_array_equal(a.step, c.step)
        np.testing.assert_array_equal(a.idx, c.idx)


@pytest.mark.slow
def test_standalone_update_is_bit_identical_with_strict_flags(tmp_path):
    """With the engine's compiler flags (no -ffast-math, no FMA contraction) the C++ standalone
    update equals StepCoefficients (= the numpy target) bit for bit; Brian2's default flags
    differ in the last bit for about 1 value in 8 (measured once, not asserted here)."""
    p = ModelParams()
    c = p.step_coefficients()
    ns = brian2_namespace(p)
    old = list(b2.prefs.codegen.cpp.extra_compile_args_gcc)
    b2.prefs.codegen.cpp.extra_compile_args_gcc = cpp_compile_args(False)
    b2.set_device("cpp_standalone", directory=str(tmp_path / "build"), build_on_run=False)
    try:
        n, n_steps = 40, 200
        rng = np.random.default_rng(0)
        v0 = -0.0535 + rng.uniform(0.0, 0.008, n)
        g0 = rng.uniform(-0.004, 0.004, n)
        neu = b2.NeuronGroup(n, MODEL_EQUATIONS, threshold=THRESHOLD, reset=RESET, refractory="rfc",
                             method="linear", dt=ns["dt"],
                             namespace={k: ns[k] for k in ("v_0", "v_rst", "v_th", "t_mbr", "tau")})
        neu.v = v0 * b2.volt
        neu.g = g0 * b2.volt
        neu.rfc = ns["t_rfc"]
        mon = b2.StateMonitor(neu, ["v", "g"], record=True, when="end")
        b2.Network(neu, mon).run(n_steps * ns["dt"])
        b2.device.build(directory=str(tmp_path / "build"))
        v_sa, g_sa = np.array(mon.v_), np.array(mon.g_)
    finally:
        b2.device.reinit()
        b2.device.activate()
        b2.set_device("runtime")
        b2.prefs.codegen.cpp.extra_compile_args_gcc = old
    v, g = v0.copy(), g0.copy()
    checked = 0
    for s in range(n_steps):
        v_new, g_new = c.v_const + (c.v_from_g * g + c.v_decay * v), c.g_decay * g
        frozen_or_reset = v_sa[:, s] == c.v_rst  # spike resets / refractory: not a plain update
        np.testing.assert_array_equal(v_sa[~frozen_or_reset, s], v_new[~frozen_or_reset])
        np.testing.assert_array_equal(g_sa[~frozen_or_reset, s], g_new[~frozen_or_reset])
        checked += int((~frozen_or_reset).sum())
        v, g = v_sa[:, s].copy(), g_sa[:, s].copy()
    assert checked > n * n_steps // 2
