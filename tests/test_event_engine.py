"""The event-driven engine: its own contract beyond the shared conformance suite
(options, closed form, random networks against the per-step oracle, threads, runaway
detection, the propagation front)."""

from __future__ import annotations

import numpy as np
import pytest

from brainfly.engines.base import get_engine, prepare
from brainfly.engines.event import EventOptions
from brainfly.errors import ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.params import ModelParams
from brainfly.schedule import InputSchedule
from brainfly.testing.conformance import assert_same_spikes, spike_set
from brainfly.testing.networks import FLYWIRE_BASE, STRONG, _net, get_case, oracle_result, random_network

pytest.importorskip("numba")


def _random_case(seed: int, n: int = 30, n_driven: int = 5, t_run: float = 0.05, n_trials: int = 2,
                 silence_mode: str | None = None):
    """A random recurrent network (self-loops, zero and negative weights) and a random schedule."""
    rng = np.random.default_rng(seed)
    n_edges = n * 6
    pre = rng.integers(0, n, n_edges)
    post = rng.integers(0, n, n_edges)
    w = rng.choice([0.0, -300.0, -60.0, 40.0, 90.0, 160.0, 250.0, STRONG], n_edges,
                   p=[0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1, 0.05])
    net = _net(f"rand{seed}", n, list(zip(pre.tolist(), post.tolist(), w.tolist())))
    p = ModelParams()
    n_steps = p.n_steps(t_run)
    kicks = []
    for trial in range(n_trials):
        for i in range(n_driven):
            rate = rng.choice([20.0, 150.0, 600.0])
            steps = np.flatnonzero(rng.random(n_steps) < rate * p.dt_s)
            kicks += [(trial, i, int(s)) for s in steps]
    arr = np.asarray(kicks, dtype=np.int64).reshape(-1, 3)
    sched = InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2])
    silenced = ()
    if silence_mode is not None:
        silenced = tuple(int(FLYWIRE_BASE + i) for i in rng.choice(np.arange(n_driven, n), 3, replace=False))
    return net, sched, silenced


def _run_both(net, sched, tmp_path, *, t_run, n_trials, silenced=(), silence_mode="outgoing", **options):
    path = sched.write(tmp_path / "kicks.parquet", net.flywire_ids)
    exp = Experiment(name="rand", t_run=t_run, n_trials=n_trials, input_schedule=str(path),
                     silenced=silenced, silence_mode=silence_mode)
    res = get_engine("event", **options).run(net, exp)
    sim = prepare(net, exp)
    ref = oracle_result(sim, sim.schedule)
    return res, ref


# ---------------------------------------------------------------------- contract
def test_registered_exact_with_capabilities():
    eng = get_engine("event")
    assert eng.name == "event" and eng.exact
    assert {"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64", "batch"} <= eng.capabilities
    assert eng.is_available() == (True, "")
    assert set(eng.versions()) == {"numba", "numpy"}
    assert isinstance(eng.options, EventOptions) and eng.Options is EventOptions
    assert eng.options.ring_steps == 1024 and eng.options.n_threads is None


@pytest.mark.parametrize("options, field", [
    ({"n_thread": 2}, "unknown option"),
    ({"n_threads": 0}, "option n_threads: must be an integer >= 1"),
    ({"n_threads": 1.5}, "n_threads"),
    ({"ring_steps": 1000}, "option ring_steps: must be a power of two >= 1"),
    ({"runaway_quiet_ms": -1.0}, "option runaway_quiet_ms: must be a number >= 0"),
    ({"runaway_spikes_per_s": float("nan")}, "runaway_spikes_per_s"),
])
def test_options_are_validated(options, field):
    with pytest.raises(ValidationError, match=field):
        get_engine("event", **options)


def test_closed_form_matches_step_coefficients():
    """x(1) = x a + c (a - b) g is Brian2's v_from_g; the engine's power tables iterate it."""
    p = ModelParams()
    co = p.step_coefficients()
    c = p.tau_ms / (p.t_mbr_ms - p.tau_ms)
    assert co.v_from_g == pytest.approx(c * (co.v_decay - co.g_decay), rel=1e-12)
    v, g = co.v_0 + 0.002, 0.03
    for k in range(1, 200):
        v, g = co.v_const + (co.v_from_g * g + co.v_decay * v), co.g_decay * g
    a, b = co.v_decay ** 199, co.g_decay ** 199
    assert v - co.v_0 == pytest.approx(0.002 * a + c * (a - b) * 0.03, abs=1e-15)


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("seed", range(6))
def test_random_networks_match_oracle(seed, tmp_path):
    net, sched, _ = _random_case(seed)
    res, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    assert ref.n_spikes > 20
    assert_same_spikes(res, ref, f"random network {seed}")


@pytest.mark.parametrize("mode", ["outgoing", "both"])
def test_random_networks_with_silencing(mode, tmp_path):
    net, sched, silenced = _random_case(11, silence_mode=mode)
    res, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2, silenced=silenced, silence_mode=mode)
    assert ref.n_spikes > 20
    assert_same_spikes(res, ref, f"silencing {mode}")


@pytest.mark.parametrize("seed", [21, 22])
def test_dale_networks_match_oracle(seed, tmp_path):
    """Each neuron all excitatory or all inhibitory (Dale's law, as in the fly): the rows of
    inhibitory neurons are delivered without queueing their targets."""
    from brainfly.engines import _event_kernels as K
    from brainfly.engines import _event_records as R

    net, sched, _ = _random_case(seed, n=40, n_driven=6, t_run=0.1, n_trials=2)
    pre = np.repeat(np.arange(net.n_neurons), np.diff(net.indptr))
    inhibitory = (pre % 3 == 0) & (pre >= 6)
    net = net.with_weights(np.where(inhibitory, -np.abs(net.weight) * 2.0, np.abs(net.weight)))
    res, ref = _run_both(net, sched, tmp_path, t_run=0.1, n_trials=2)
    assert ref.n_spikes > 50
    assert_same_spikes(res, ref, f"Dale network {seed}")
    ptr, syn, wtab, bits = K.pack_synapses(net.indptr.astype(np.int64), net.post_idx.astype(np.int32),
                                           net.weight.astype(np.float64), 1.0, np.zeros(net.n_neurons, bool), None)
    rows = R.inhibitory_rows(ptr, syn, wtab, bits)
    expect = np.array([bool(inhibitory[net.indptr[j]:net.indptr[j + 1]].any()) and
                       (net.weight[net.indptr[j]:net.indptr[j + 1]] <= 0).all() and
                       (net.weight[net.indptr[j]:net.indptr[j + 1]] < 0).any() for j in range(net.n_neurons)])
    assert rows.any() and np.array_equal(rows, expect)


def test_long_run_crosses_rebase_and_ring_laps(tmp_path, monkeypatch):
    """3000 steps (the state's base made to move every ~1000 steps); a ring of 1 bucket
    makes every prediction wait through later laps."""
    from brainfly.engines import event

    monkeypatch.setattr(event, "_REBASE_LOG", 20.0)
    net, sched, _ = _random_case(5, n=20, n_driven=3, t_run=0.3, n_trials=1)
    res, ref = _run_both(net, sched, tmp_path, t_run=0.3, n_trials=1, ring_steps=1)
    assert ref.n_spikes > 100 and ref.step.max() > 2048
    assert_same_spikes(res, ref, "long run, ring of one bucket")


def test_powers_beyond_the_tables_are_computed(tmp_path, monkeypatch):
    """Power tables far shorter than the trial (as for trials longer than 2**16 steps): every
    power beyond them, pending predictions far ahead included, is computed, not read."""
    from brainfly.engines import event

    monkeypatch.setattr(event, "_REBASE_LOG", 20.0)
    monkeypatch.setattr(event, "_POW_TABLE_STEPS", 64)
    net, sched, _ = _random_case(5, n=20, n_driven=3, t_run=0.3, n_trials=1)
    res, ref = _run_both(net, sched, tmp_path, t_run=0.3, n_trials=1)
    assert ref.n_spikes > 100 and ref.step.max() > 2048
    assert_same_spikes(res, ref, "power tables shorter than the trial")


def test_buffers_grow_during_a_trial(tmp_path, monkeypatch):
    """Workspaces that start with tiny spike and queue buffers: they grow between steps."""
    from brainfly.engines import _event_kernels as K

    original = K.new_workspace

    def tiny(n_neurons: int, ring: int = 1024) -> dict:
        ws = original(n_neurons, ring)
        for key in ("e_nrn", "e_step", "e_next", "sp_step"):
            ws[key] = np.zeros(1, np.int64)
        ws["sp_idx"] = np.zeros(1, np.int32)
        return ws

    net, sched, _ = _random_case(7, n=30, n_driven=8, t_run=0.5, n_trials=2)
    monkeypatch.setattr(K, "new_workspace", tiny)
    res, ref = _run_both(net, sched, tmp_path, t_run=0.5, n_trials=2)
    assert np.bincount(ref.trial).min() > 1100  # the spike record grows within each trial
    assert_same_spikes(res, ref, "growing buffers")


def test_internal_numbering_changes_nothing(monkeypatch):
    """Neurons numbered internally by in-degree or by model index: the same spikes, in the
    same order, and the same propagation front."""
    from brainfly.engines import event

    net, driven = random_network(120, 10, seed=4)
    exp = Experiment(name="num", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                     t_run=0.1, n_trials=3, seed=5)
    out = []
    for renumber in (True, False):
        monkeypatch.setattr(event, "_RENUMBER", renumber)
        out.append(get_engine("event", n_threads=1).run(net, exp))
    a, b = out
    assert a.n_spikes > 50
    assert np.array_equal(a.trial, b.trial) and np.array_equal(a.idx, b.idx) and np.array_equal(a.step, b.step)
    fa, fb = a.meta["first_spike_step"], b.meta["first_spike_step"]
    for key in fa:
        assert np.array_equal(fa[key], fb[key]), key


def test_threads_do_not_change_spikes():
    net, driven = random_network(80, 8, seed=2)
    exp = Experiment(name="thr", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.1, n_trials=6, seed=9)
    one = get_engine("event", n_threads=1).run(net, exp)
    two = get_engine("event", n_threads=2).run(net, exp)
    assert one.n_spikes > 0 and one.meta["n_threads"] == 1 and two.meta["n_threads"] == 2
    assert spike_set(one) == spike_set(two)


def test_engine_reuse_keeps_workspace_clean(tmp_path):
    """A workspace is left in its initial state: a second run gives the same spikes."""
    eng = get_engine("event", n_threads=1)
    case = get_case("refractory")
    exp = case.experiment(case.write_schedule(tmp_path / "k.parquet"))
    first = eng.run(case.connectome, exp)
    second = eng.run(case.connectome, exp)
    assert first.n_spikes > 0 and spike_set(first) == spike_set(second)


def test_progress_is_reported():
    net, driven = random_network(30, 4, seed=0)
    exp = Experiment(name="prog", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 100.0),),
                     t_run=0.02, n_trials=3)
    seen = []
    get_engine("event", n_threads=1).run(net, exp, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ---------------------------------------------------------------------- beyond the reference
def test_propagation_front(tmp_path):
    case = get_case("chain")  # kicks at 3 and 250; strong hops 0 -> 1 -> 2 -> 3
    exp = case.experiment(case.write_schedule(tmp_path / "k.parquet"))
    res = get_engine("event").run(case.connectome, exp)
    front = res.meta["first_spike_step"]
    got = dict(zip(front["idx"].tolist(), front["first_spike_step"].tolist()))
    assert [got[i] for i in range(4)] == [4, 23, 42, 61]
    lat = dict(zip(front["idx"].tolist(), front["latency_steps"].tolist()))
    assert [lat[i] for i in range(4)] == [1, 20, 39, 58]
    first_in = dict(zip(front["idx"].tolist(), front["first_input_step"].tolist()))
    assert first_in[0] == 3 and first_in[1] == 4 + 18
    assert res.meta["stimulus_onset_step"] == [3]
    assert res.meta["runaway"] == [] and res.meta["runaway_by_trial"] == [False]
    assert res.meta["n_events"] > 0


def test_runaway_sustained_without_input(tmp_path):
    """A driven neuron (refractory 0) exciting itself fires every delay + 1 steps for ever."""
    net = _net("loop", 3, [(0, 0, STRONG), (0, 1, STRONG)])
    sched = InputSchedule(np.array([0]), np.array([0]), np.array([5]))
    path = sched.write(tmp_path / "k.parquet", net.flywire_ids)
    exp = Experiment(name="loop", t_run=0.25, n_trials=1, input_schedule=str(path))
    res = get_engine("event").run(net, exp)
    assert _steps(res, 0)[:3] == [6, 25, 44]
    (ra,) = res.meta["runaway"]
    assert ra["runaway"] is True and ra["trial"] == 0
    assert ra["criterion"] == "sustained without input"
    assert ra["onset_s"] == pytest.approx(6 * 1e-4)
    assert res.meta["runaway_by_trial"] == [True]


def test_runaway_activity_bound():
    net, driven = random_network(120, 12, seed=1)
    exp = Experiment(name="bound", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                     t_run=0.1, n_trials=2)
    calm = get_engine("event").run(net, exp)
    assert calm.meta["runaway"] == []
    wild = get_engine("event", runaway_spikes_per_s=500.0).run(net, exp)
    assert [r["trial"] for r in wild.meta["runaway"]] == [0, 1]
    assert all(r["criterion"] == "activity bound" and 0 <= r["onset_s"] < 0.1 for r in wild.meta["runaway"])
    assert spike_set(calm) == spike_set(wild)  # detection never changes the spikes


def _steps(res, idx):
    return sorted(res.step[res.idx == idx].tolist())


# ---------------------------------------------------------------------- packing, timings
def test_packed_synapses_drop_what_delivers_nothing():
    from brainfly.engines import _event_kernels as K

    indptr = np.array([0, 3, 5, 7], np.int64)
    post = np.array([1, 2, 0, 0, 2, 1, 2], np.int32)
    weight = np.array([2.0, 0.0, -3.0, 5.0, 1.0, 4.0, 7.0])
    skip_pre = np.array([False, True, False])
    skip_post = np.array([False, False, True])
    ptr, syn, wtab, bits = K.pack_synapses(indptr, post, weight, 0.5, skip_pre, skip_post)
    assert syn.dtype == np.uint32 and ptr.tolist() == [0, 2, 2, 3]
    assert ((syn & ((1 << bits) - 1)) >> 1).tolist() == [1, 0, 1] and not (syn & 1).any()
    assert wtab[syn >> bits].tolist() == [2.0 * 0.5, -3.0 * 0.5, 4.0 * 0.5]
    # weights that are not integers: a table of their distinct values, bit for bit
    w = np.array([0.1, -0.7, 0.1, 2.5, 1e-3, 0.3, 0.2])
    ptr, syn, wtab, bits = K.pack_synapses(indptr, post, w, 2.75e-4, np.zeros(3, bool), None)
    assert ptr.tolist() == [0, 3, 5, 7] and np.array_equal(wtab[syn >> bits], w * 2.75e-4)
    # target and code that do not fit in 32 bits: 8-byte records
    big = np.array([0, 1, 5_000_000], np.int32)
    ptr, syn, wtab, bits = K.pack_synapses(np.array([0, 3], np.int64), big, np.array([1.0, -2000.0, 2000.0]), 1.0,
                                           np.zeros(1, bool), None)
    assert syn.dtype == np.uint64 and ((syn & np.uint64((1 << bits) - 1)) >> np.uint64(1)).tolist() == [0, 1, 5_000_000]
    assert wtab[syn >> np.uint64(bits)].tolist() == [1.0, -2000.0, 2000.0]
    # an internal numbering: rows in its order, targets relabelled, skips in model indices
    order = np.array([2, 0, 1])
    ptr, syn, wtab, bits = K.pack_synapses(indptr, post, weight, 0.5, skip_pre, skip_post, order)
    assert ptr.tolist() == [0, 1, 3, 3]  # rows of model neurons 2, 0, 1
    assert ((syn & ((1 << bits) - 1)) >> 1).tolist() == [2, 2, 1]  # model 1 -> internal 2, model 0 -> internal 1
    assert wtab[syn >> bits].tolist() == [4.0 * 0.5, 2.0 * 0.5, -3.0 * 0.5]


@pytest.mark.parametrize("seed", [3, 4])
def test_non_integer_weights_match_oracle(seed, tmp_path):
    net, sched, _ = _random_case(seed)
    net = net.with_weights(net.weight * 1.37)  # counts that are not integers
    res, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    assert ref.n_spikes > 20
    assert_same_spikes(res, ref, f"non-integer weights {seed}")


def test_timings_follow_the_engine_contract():
    net, driven = random_network(40, 5, seed=3)
    exp = Experiment(name="tim", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.05, n_trials=3, seed=1)
    res = get_engine("event", n_threads=2).run(net, exp)
    t = res.meta["timings"]
    assert set(t) >= {"setup_s", "build_s", "sim_s"} and all(v >= 0.0 for v in t.values())
    assert t["sim_s"] > 0.0


def test_two_connectomes_alternating_use_their_own_synapses(tmp_path):
    """The packed connections are cached: switching networks must not reuse the other's."""
    a_net, a_sched, _ = _random_case(1)
    b_net, b_sched, _ = _random_case(2)
    for net, sched in [(a_net, a_sched), (b_net, b_sched), (a_net, a_sched)]:
        res, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
        assert ref.n_spikes > 20
        assert_same_spikes(res, ref, net.label)


@pytest.mark.parametrize("seed", [31, 32])
def test_put_off_searches_match_oracle(seed, tmp_path):
    """Many weak inputs: neurons charge up over many steps, so that most crossing searches
    are put off (checks queued instead, moved by later input, bounded again when due) and
    the spikes are still the per-step oracle's."""
    rng = np.random.default_rng(seed)
    n, n_driven = 120, 12
    pre = rng.integers(0, n, n * 15)
    post = rng.integers(n_driven, n, n * 15)
    w = rng.choice([-12.0, 4.0, 7.0, 10.0, 15.0], pre.shape[0], p=[0.15, 0.25, 0.25, 0.2, 0.15])
    net = _net(f"weak{seed}", n, list(zip(pre.tolist(), post.tolist(), w.tolist())))
    p = ModelParams()
    n_steps = p.n_steps(0.2)
    kicks = [(trial, i, int(s)) for trial in range(2) for i in range(n_driven)
             for s in np.flatnonzero(rng.random(n_steps) < 300.0 * p.dt_s)]
    arr = np.asarray(kicks, dtype=np.int64)
    res, ref = _run_both(net, InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2]), tmp_path, t_run=0.2, n_trials=2)
    counts = res.meta["n_predictions"]
    assert counts["checks"] > 100 and counts["searched"] > 0, counts
    recruited = ref.idx >= n_driven  # spikes of neurons that charged up from synaptic input
    assert recruited.sum() > 300 and np.unique(ref.idx[recruited]).size > 30
    assert_same_spikes(res, ref, f"weak inputs {seed}")


def test_workspace_arrays_on_aligned_regions():
    """Large workspace arrays start on a 2 MiB boundary (huge pages where the system has
    them), zeroed or filled; small ones are ordinary arrays; a fresh workspace is in the
    kernel's initial state."""
    from brainfly.engines import _event_kernels as K
    from brainfly.engines import _event_records as R

    big = R._huge_zeros((70_000, 4), np.int32, -1)
    assert big.shape == (70_000, 4) and big.dtype == np.int32 and (big == -1).all()
    assert big.ctypes.data % (2 << 20) == 0 and big.flags.c_contiguous and big.flags.writeable
    small = R._huge_zeros(100, np.float64)
    assert small.shape == (100,) and not small.any()
    ws = K.new_workspace(70_000)
    assert ws["hot"].ctypes.data % (2 << 20) == 0 and not ws["hot"].any()
    assert (ws["meta"][:, 0] == 0).all() and (ws["meta"][:, 1:] == -1).all() and (ws["slot_of"] == -1).all()


# ---------------------------------------------------------------------- the engine contract
def test_result_meta_has_the_common_layout_and_the_engine_details():
    net, driven = random_network(40, 5, seed=3)
    exp = Experiment(name="meta", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.05, n_trials=2, seed=1)
    res = get_engine("event", n_threads=2, ring_steps=512).run(net, exp)
    m = res.meta
    assert m["engine_options"] == {"n_threads": 2, "runaway_window_ms": 20.0, "runaway_spikes_per_s": 1e5,
                                   "runaway_quiet_ms": 100.0, "ring_steps": 512}
    assert m["exact"] is True and m["device"] == "cpu" and {"numba", "numpy", "brainfly"} <= set(m["versions"])
    assert set(m["timings"]) == {"setup_s", "build_s", "sim_s"}
    for key in ("runaway", "runaway_by_trial", "stimulus_onset_step", "first_spike_step", "n_events",
                "n_predictions", "n_threads", "timings_s"):
        assert key in m, key


# ---------------------------------------------------------------------- caches that cannot lie
@pytest.mark.parametrize("disk", [False, True])
def test_changed_weights_give_the_new_networks_spikes(tmp_path, monkeypatch, disk):
    """A network, then the same network with other weights (a new Connectome), then the
    first again: each run gives its own network's spikes (the per-step oracle's), from the
    memory cache, and from the disk cache in a process that starts afresh."""
    event = _fresh_caches(monkeypatch, tmp_path, min_connections=0 if disk else 10 ** 9)
    net, sched, _ = _random_case(8)
    rng = np.random.default_rng(0)
    net2 = net.with_weights(net.weight * rng.choice([0.0, 0.5, 2.0], net.n_connections))
    assert net2.content_digest != net.content_digest
    first, ref1 = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    second, ref2 = _run_both(net2, sched, tmp_path, t_run=0.05, n_trials=2)
    event._MEMORY.clear()  # as a new process: from disk (or packed again)
    again, _ = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    assert ref1.n_spikes > 20 and spike_set(ref1) != spike_set(ref2)
    assert len(list((tmp_path / "cache" / "event").glob("*/meta.json"))) == (2 if disk else 0)
    assert_same_spikes(first, ref1, "first network")
    assert_same_spikes(second, ref2, "changed weights")
    assert spike_set(again) == spike_set(first)


@pytest.mark.parametrize("mode", ["outgoing", "both"])
@pytest.mark.parametrize("seed", [0, 1])
def test_silenced_network_is_derived_exactly(mode, seed):
    """The silenced network derived from the unsilenced one has the records that packing
    it with the silencing gives."""
    from brainfly.engines import _event_kernels as K
    from brainfly.engines import _event_records as R
    from brainfly.engines import event

    net, _, _ = _random_case(seed, n=60)
    mask = np.zeros(net.n_neurons, bool)
    mask[np.random.default_rng(seed).choice(net.n_neurons, 9, replace=False)] = True
    packed = event.packed_network(net, 2.75e-4, mask, mode)
    assert packed.source == "derived"
    indptr, syn, wtab, bits = K.pack_synapses(net.indptr, net.post_idx, net.weight, 2.75e-4, mask,
                                              mask if mode == "both" else None, packed.order)
    got = packed.network
    # the rows the kernel reads: syn[indptr[i]:row_end[i]]
    rows = [got.syn[got.indptr[i]:got.row_end[i]] for i in range(net.n_neurons)]
    assert np.array_equal(np.diff(indptr), [r.shape[0] for r in rows])
    assert np.array_equal(np.concatenate(rows), syn) and got.syn.dtype == syn.dtype
    assert np.array_equal(got.wtab, wtab) and got.t_bits == bits
    assert np.array_equal(got.inh, R.inhibitory_rows(indptr, syn, wtab, bits))
    assert all(not a.flags.writeable for a in (got.indptr, got.syn, got.wtab, got.orig, got.inh, got.row_end))
    if mode == "outgoing":  # no record copied: the unsilenced network's, shared
        full = event.packed_network(net, 2.75e-4)
        assert np.shares_memory(got.syn, full.network.syn) and np.array_equal(got.indptr, full.network.indptr)
        assert np.array_equal(full.network.row_end, full.network.indptr[1:])


def _fresh_caches(monkeypatch, tmp_path, min_connections=0):
    from brainfly.engines import event

    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(event, "DISK_MIN_CONNECTIONS", min_connections)
    event._MEMORY.clear()
    return event


def test_packed_connections_cached_on_disk(tmp_path, monkeypatch):
    """Written once (meta.json last), loaded by memory map in the next process (here: with
    the memory cache emptied), read-only, same spikes; silenced networks derive from it."""
    event = _fresh_caches(monkeypatch, tmp_path)
    net, sched, silenced = _random_case(9, silence_mode="outgoing")
    first, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    (entry,) = (tmp_path / "cache" / "event").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["indptr.npy", "inh.npy", "meta.json", "order.npy", "syn.npy",
                                                       "wtab.npy"]
    event._MEMORY.clear()
    packed = event.packed_network(net, ModelParams().step_coefficients().w_syn)
    assert packed.source == "disk" and not packed.network.syn.flags.writeable
    event._MEMORY.clear()
    second, _ = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    assert spike_set(second) == spike_set(first) == spike_set(ref)
    # a silenced condition: derived from the disk entry, nothing more written
    res, ref_sil = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2, silenced=silenced)
    assert_same_spikes(res, ref_sil, "silenced, from the disk entry")
    assert len(list((tmp_path / "cache" / "event").iterdir())) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_disk_entry_is_ignored_and_rebuilt(tmp_path, monkeypatch, caplog, damage):
    event = _fresh_caches(monkeypatch, tmp_path)
    net, sched, _ = _random_case(10)
    first, ref = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    (entry,) = (tmp_path / "cache" / "event").iterdir()
    syn = entry / "syn.npy"
    data = bytearray(syn.read_bytes())
    if damage == "truncate":
        syn.write_bytes(bytes(data[:-8]))
    elif damage == "flip":
        data[-5] ^= 0x10
        syn.write_bytes(bytes(data))
    else:
        (entry / "meta.json").write_text("{not json")
    event._MEMORY.clear()
    with caplog.at_level("WARNING", logger="brainfly.engines.event"):
        again, _ = _run_both(net, sched, tmp_path, t_run=0.05, n_trials=2)
    assert "ignoring the event engine's connection cache" in caplog.text
    assert_same_spikes(again, ref, f"after a damaged cache entry ({damage})")
    event._MEMORY.clear()
    assert event.packed_network(net, ModelParams().step_coefficients().w_syn).source == "disk"  # rewritten


def test_disk_cache_keeps_few_entries(tmp_path, monkeypatch):
    event = _fresh_caches(monkeypatch, tmp_path)
    monkeypatch.setattr(event, "DISK_MAX_ENTRIES", 2)
    w_syn = ModelParams().step_coefficients().w_syn
    nets = [random_network(30, 4, seed=s)[0] for s in range(3)]
    for net in nets:
        event.packed_network(net, w_syn)
    entries = list((tmp_path / "cache" / "event").iterdir())
    assert len(entries) == 2
    event._MEMORY.clear()
    assert event.packed_network(nets[2], w_syn).source == "disk"
    assert event.packed_network(nets[0], w_syn).source == "packed"  # the oldest went


def test_small_networks_stay_off_disk(tmp_path, monkeypatch):
    event = _fresh_caches(monkeypatch, tmp_path, min_connections=10_000)
    net, _ = random_network(30, 4, seed=1)
    assert event.packed_network(net, 2.75e-4).source == "packed"
    assert not (tmp_path / "cache" / "event").exists()


def test_kernel_gets_read_only_network_arrays():
    """Every path (packed, derived, loaded by memory map) hands the kernel read-only
    arrays, so that numba compiles one specialization of run_trial per record width."""
    from brainfly.engines import _event_kernels as K
    from numba import types

    net, driven = random_network(40, 5, seed=6)
    exp = Experiment(name="ro", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.02, n_trials=1, seed=1)
    get_engine("event").run(net, exp)
    get_engine("event").run(net, exp.with_(silenced=(int(net.flywire_ids[7]),)))
    for sig in K.run_trial.signatures:
        network, tables = sig[0], sig[3]
        arrays = [t for t in (*network.types, *tables.types) if isinstance(t, types.Array)]
        assert arrays and all(not t.mutable for t in arrays), sig


# ---------------------------------------------------------------------- several conditions
def _conditions(net, driven):
    ids = tuple(int(f) for f in net.flywire_ids[driven])
    return [
        Experiment(name="a", stimuli=(StimulusSet(ids, 150.0),), t_run=0.05, n_trials=3, seed=1),
        Experiment(name="b", stimuli=(StimulusSet(ids[:4], 300.0), StimulusSet(ids[4:], 80.0)), t_run=0.08,
                   n_trials=2, seed=2),
        Experiment(name="c", stimuli=(StimulusSet(ids, 150.0),), t_run=0.05, n_trials=4, seed=1,
                   silenced=tuple(int(f) for f in net.flywire_ids[[20, 31, 44]])),
        Experiment(name="d", stimuli=(StimulusSet(ids, 150.0),), t_run=0.05, n_trials=2, seed=3,
                   silenced=tuple(int(f) for f in net.flywire_ids[[20, 31, 44]]), silence_mode="both"),
    ]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_run_many_equals_each_condition_alone(n_threads):
    net, driven = random_network(120, 10, seed=4)
    conds = _conditions(net, driven)
    eng = get_engine("event", n_threads=n_threads)
    seen = []
    many = eng.run_many(net, conds, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (11, 11) and len(seen) == 11
    for exp, got in zip(conds, many):
        alone = get_engine("event", n_threads=1).run(net, exp)
        assert alone.n_spikes > 20 and got.exp_name == exp.name
        assert np.array_equal(got.trial, alone.trial) and np.array_equal(got.idx, alone.idx)
        assert np.array_equal(got.step, alone.step), exp.name
        for key in alone.meta["first_spike_step"]:
            assert np.array_equal(got.meta["first_spike_step"][key], alone.meta["first_spike_step"][key])
        assert got.meta["n_events"] == alone.meta["n_events"] and got.meta["input"] == alone.meta["input"]
        assert got.meta["batch"]["n_conditions"] == 4
    assert sum(r.meta["timings"]["sim_s"] for r in many) == pytest.approx(many[0].meta["batch"]["sim_s"])
    assert eng.run_many(net, []) == []


def test_run_many_validates_every_condition_first():
    from brainfly.errors import UnknownNeuronError

    net, driven = random_network(60, 6, seed=2)
    conds = _conditions(net, driven)[:2] + [Experiment(name="bad", stimuli=(StimulusSet((123,), 100.0),))]
    seen = []
    with pytest.raises(UnknownNeuronError):
        get_engine("event").run_many(net, conds, progress=lambda *a: seen.append(a))
    assert seen == []


def test_warm_up_compiles_the_kernel_a_run_uses():
    """The warm-up's records have the numba types (and the compiled kernel's argument
    layout) of a real run's, so that the run finds the kernel ready."""
    import numba

    from brainfly.engines import _event_aot
    from brainfly.engines import _event_kernels as K

    eng = get_engine("event")
    net, driven = random_network(50, 5, seed=2)
    exp = Experiment(name="w", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.02, n_trials=2, seed=1)
    sim = prepare(net, exp)
    plan = eng._plan(sim, [0, 1])
    real = eng._args(plan, eng._ready(K.new_workspace(net.n_neurons, 1024), [plan]), 0, 5, plan.model.n_steps)
    warm = eng.warm_up_args()
    assert [numba.typeof(a) for a in warm] == [numba.typeof(a) for a in real]
    assert _event_aot._fits(_event_aot._layout(warm), _event_aot._layout(real))
    assert eng.warm_up() in (True, False)
    assert eng.warm_up() is False  # in memory now
    res = eng.run(net, exp)
    assert res.n_spikes > 0 and res.meta["compiled"] is False and res.meta["timings"]["build_s"] < 0.05
