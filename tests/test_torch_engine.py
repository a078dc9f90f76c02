"""The batched PyTorch engine: exactness against Brian2, mixed-condition batches, options.

Tiny networks only (``brainfly.testing.networks``); speed is measured in
``benchmarks/bench_torch.py``. Tests marked ``gpu`` run with ``--run-gpu`` on a CUDA
machine (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

from dataclasses import replace
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainfly.connectome import Connectome  # noqa: E402
from brainfly.engines.base import engine_names, get_engine  # noqa: E402
from brainfly.engines.torch import TorchEngine, TorchOptions  # noqa: E402
from brainfly.engines.torch import runner, triton_kernel  # noqa: E402
from brainfly.errors import EngineUnavailable, UnsupportedFeature, ValidationError  # noqa: E402
from brainfly.experiment import Experiment, StimulusSet  # noqa: E402
from brainfly.testing.networks import FLYWIRE_BASE, STRONG, case_names, get_case, random_network  # noqa: E402

CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------------------- helpers
def _same(a, b) -> bool:
    return (np.array_equal(a.trial, b.trial) and np.array_equal(a.idx, b.idx)
            and np.array_equal(a.step, b.step) and a.trials == b.trials)


def _brian2():
    """The Brian2 reference engine (single process), or skip with the reason."""
    if "brian2" not in engine_names():
        pytest.skip("the brian2 engine is not registered (brainfly.engines.brian2_engine missing)")
    eng = get_engine("brian2", n_jobs=1)
    ok, reason = eng.is_available()
    if not ok:
        pytest.skip(f"brian2 engine unavailable: {reason}")
    return eng


def _case_experiment(name: str, tmp_path, **kw):
    case = get_case(name)
    path = case.write_schedule(tmp_path / f"{name}.parquet")
    return case, case.experiment(path, **kw)


def _poisson_net(seed: int = 3) -> tuple[Connectome, np.ndarray]:
    return random_network(n_neurons=80, n_driven=10, seed=seed)


def _fids(net: Connectome, idx) -> tuple[int, ...]:
    return tuple(int(f) for f in net.flywire_ids[np.asarray(idx, dtype=np.int64)])


def _run(eng, net, exp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eng.run(net, exp)


# ---------------------------------------------------------------------------- registry, options
def test_registered_with_defaults():
    assert "torch" in engine_names()
    eng = get_engine("torch")
    assert type(eng) is TorchEngine and isinstance(eng.options, TorchOptions)
    assert eng.name == "torch" and eng.exact and type(eng).exact
    cfg = eng.config
    assert (cfg.device, cfg.dtype, cfg.delivery, cfg.kicks) == ("cpu", "float64", "sequential", "schedule")
    assert eng.is_available() == (True, "")
    assert not get_engine("torch", dtype="float32").exact
    assert not get_engine("torch", delivery="dense").exact
    cuda = get_engine("torch", device="cuda").config  # constructing needs no GPU; running does
    assert (cuda.dtype, cuda.delivery, cuda.cuda_graph, cuda.sync_free, cuda.compile, cuda.fused_kernel,
            cuda.exact) == ("float32", "dense", True, True, True, True, False)
    assert not get_engine("torch", device="cuda", dtype="float64").config.compile
    assert not get_engine("torch", device="cuda", dtype="float64").config.fused_kernel
    assert not get_engine("torch", dtype="float32").config.fused_kernel  # CPU: only under Triton's interpreter
    assert {"schedule", "poisson", "silencing", "silencing_both", "multi_rate", "float64",
            "batch"} <= eng.capabilities
    # the options are the user's (None: the device's default), frozen, and equal to keyword construction
    assert get_engine("torch", options=TorchOptions(batch_size=4)).options == TorchOptions(batch_size=4)
    assert eng.options.to_dict()["dtype"] is None
    with pytest.raises(AttributeError):
        eng.options.dtype = "float32"


def test_importing_the_package_does_not_import_torch():
    code = ("import sys, brainfly.engines.torch as t; from brainfly.engines.base import get_engine; "
            "e = get_engine('torch'); assert 'torch' not in sys.modules, 'imported'; "
            "assert t.TorchEngine.__module__ == 'brainfly.engines.torch.engine'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_torch_is_available_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
    eng = get_engine("torch")
    ok, reason = eng.is_available()
    assert not ok and "PyTorch cannot be imported" in reason and "pip install torch" in reason
    assert eng.devices() == {"cpu": (False, reason), "cuda": (False, reason)}


def test_devices_and_versions():
    eng = get_engine("torch")
    devices = eng.devices()
    assert set(devices) == {"cpu", "cuda"} and devices["cpu"] == (True, "")
    assert devices["cuda"][0] is CUDA and (CUDA or "CUDA is not available" in devices["cuda"][1])
    versions = eng.versions()
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]


@pytest.mark.parametrize("opts, match", [
    ({"device": "tpu"}, "device"),
    ({"dtype": "float16"}, "dtype"),
    ({"delivery": "sparse"}, "delivery"),
    ({"batch_size": 0}, "batch_size"),
    ({"kicks": "numpy"}, "kicks"),
    ({"kicks": "device"}, "float32 fast mode"),
    ({"compile": True}, "compile"),
    ({"compile": True, "dtype": "float32", "delivery": "sequential"}, "compile"),
    ({"cuda_graph": True, "delivery": "sequential"}, "cuda_graph"),
    ({"chunk_steps": 0}, "chunk_steps"),
    ({"sync_free": True, "delivery": "sequential"}, "sync_free"),
    ({"spike_capacity": 0}, "spike_capacity"),
    ({"fused_kernel": True}, "fused_kernel"),
    ({"fused_kernel": True, "dtype": "float32", "delivery": "sequential"}, "fused_kernel"),
    ({"cuda_graph": "yes"}, "cuda_graph"),
    ({"threads": 0}, "threads"),
    ({"device": "cuda:x"}, "device"),
    ({"devise": "cpu"}, "unknown option"),
])
def test_bad_options_are_refused(opts, match):
    with pytest.raises(ValidationError, match=match):
        get_engine("torch", **opts)


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_cuda_without_gpu_is_unavailable(tmp_path):
    case, exp = _case_experiment("chain", tmp_path)
    eng = get_engine("torch", device="cuda")
    ok, reason = eng.is_available()
    assert not ok and "CUDA is not available" in reason
    assert eng.devices()["cpu"] == (True, "") and not eng.devices()["cuda"][0]
    assert get_engine("torch").is_available() == (True, "")  # on the CPU it only needs torch
    with pytest.raises(EngineUnavailable, match="CUDA is not available"):
        eng.run(case.connectome, exp)
    with pytest.raises(EngineUnavailable, match="CUDA is not available"):
        eng.run_many(case.connectome, [exp])


def test_device_kicks_cannot_replay_a_schedule(tmp_path):
    case, exp = _case_experiment("chain", tmp_path)
    with pytest.raises(UnsupportedFeature, match="input schedule"):
        get_engine("torch", dtype="float32", kicks="device").run(case.connectome, exp)


def test_cpu_index_add_is_sequential():
    """The exact mode relies on CPU ``index_add_`` adding in index order (numpy.add.at's order)."""
    g = torch.ones(2, dtype=torch.float64)
    g.index_add_(0, torch.tensor([0, 0, 1]), torch.tensor([1e-16, 1e-16, 2e-16], dtype=torch.float64))
    assert g.tolist() == [1.0, 1.0 + 2.220446049250313e-16]
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 50, 200_000)
    w = rng.standard_normal(200_000) * 1e-3
    a = np.full(50, 0.3)
    np.add.at(a, idx, w)
    t = torch.full((50,), 0.3, dtype=torch.float64)
    t.index_add_(0, torch.from_numpy(idx), torch.from_numpy(w))
    assert np.array_equal(a, t.numpy())


# ---------------------------------------------------------------------------- semantics without Brian2
def test_kick_delay_and_hops(tmp_path):
    """A kick in step s fires the driver in s+1; each strong hop takes delay + 1 = 19 steps."""
    case, exp = _case_experiment("chain", tmp_path)
    res = get_engine("torch").run(case.connectome, exp)
    first = {i: int(res.step[res.idx == i].min()) for i in range(4)}
    assert first == {0: 4, 1: 23, 2: 42, 3: 61}


def test_input_during_refractory_period_is_dropped(tmp_path):
    """Strong input reaching a neuron 4 steps into its refractory period has no effect."""
    from brainfly.schedule import InputSchedule

    fids = FLYWIRE_BASE + np.arange(3)
    net = Connectome.from_edges(fids, [0, 2], [1, 1], [STRONG, STRONG], name="tiny-refr", synthetic=True)
    # 0 fires at 6 -> 1 gets input at 24, spikes at 25; 2 fires at 11 -> input at 29: dropped
    sched = InputSchedule(np.zeros(2), np.array([0, 2]), np.array([5, 10]))
    path = sched.write(tmp_path / "s.csv", fids)
    exp = Experiment(name="refr", t_run=0.01, input_schedule=str(path))
    for opts in ({}, {"delivery": "dense"}, {"dtype": "float32"}):
        res = get_engine("torch", **opts).run(net, exp)
        assert res.step[res.idx == 1].tolist() == [25], opts


def test_dense_and_sequential_delivery_agree_on_a_random_network():
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven[:5]), 250.0),
                                        StimulusSet(_fids(net, driven[5:]), 80.0)),
                     t_run=0.1, n_trials=3, seed=5)
    seq = get_engine("torch").run(net, exp)
    dense = get_engine("torch", delivery="dense", batch_size=2).run(net, exp)
    assert seq.n_spikes > 200 and np.unique(seq.idx).size > 20  # the network really is active
    assert _same(seq, dense)


@pytest.mark.parametrize("nonzero_static", [True, False])
def test_sync_free_path_equals_synced_path(nonzero_static, monkeypatch):
    """The CUDA default (fixed-capacity gathers, one sync per chunk) runs on CPU too."""
    if not nonzero_static:
        def missing(*args, **kwargs):
            raise NotImplementedError("nonzero_static: not on this device")
        monkeypatch.setattr(torch, "nonzero_static", missing)
    net, driven = _poisson_net()
    exps = _conditions(net, driven)
    ref = get_engine("torch").run_many(net, exps)
    # tiny capacities force overflows: each one reruns the batch with larger ones
    for opts in ({}, {"spike_capacity": 2, "synapse_capacity": 3, "chunk_steps": 40}):
        eng = get_engine("torch", delivery="dense", sync_free=True, **opts)
        for exp, a, b in zip(exps, ref, eng.run_many(net, exps)):
            assert _same(a, b), (exp.name, opts)
            assert b.meta["sync_free"] and b.meta["nonzero_static"] is nonzero_static
            assert (b.meta["capacity_restarts"] > 0) == bool(opts)
            if not opts:  # one sync per chunk of 2000 steps (+1), not two per block of 18
                assert b.meta["host_syncs"] <= 3 < a.meta["host_syncs"]


def test_float32_fast_mode_is_close():
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.2, n_trials=4, seed=2)
    ref = get_engine("torch").run(net, exp)
    fast = get_engine("torch", dtype="float32").run(net, exp)
    assert ref.n_spikes > 500
    assert abs(fast.n_spikes - ref.n_spikes) <= 0.02 * ref.n_spikes
    c_ref, c_fast = ref.spike_counts().sum(0), fast.spike_counts().sum(0)
    assert np.corrcoef(c_ref, c_fast)[0, 1] > 0.99


def test_device_kicks_have_the_poisson_rate():
    """kicks='device': each kick fires an unconnected driven neuron one step later."""
    n = 40
    net = Connectome.from_edges(FLYWIRE_BASE + np.arange(n), [], [], [], name="tiny-free", synthetic=True)
    exp = Experiment(name="free", stimuli=(StimulusSet(_fids(net, range(n)), 200.0),), t_run=0.5, n_trials=2)
    res = get_engine("torch", dtype="float32", kicks="device").run(net, exp)
    p = 200.0 * 1e-4
    # a kick in the spike step itself is wiped by the reset: rate p (1 - p) per step
    expect = 2 * n * exp.n_steps * p * (1 - p)
    assert abs(res.n_spikes - expect) < 5 * np.sqrt(expect)
    assert res.meta["engine_options"]["kicks"] == "device"


def test_metadata_and_progress(tmp_path):
    case, exp = _case_experiment("trials", tmp_path)
    calls = []
    res = get_engine("torch", batch_size=2).run(case.connectome, exp, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 3), (3, 3)]
    assert res.engine == "torch" and res.trials == [0, 1, 2] and res.synthetic
    meta = res.meta
    assert meta["exact"] is True and meta["device"] == "cpu"
    assert meta["engine_options"] == TorchOptions(batch_size=2).to_dict()  # as given; resolved below
    assert meta["resolved_options"]["dtype"] == "float64" and meta["resolved_options"]["batch_size"] == 2
    assert set(meta["timings"]) == {"setup_s", "build_s", "sim_s"} and meta["timings"]["sim_s"] > 0
    assert meta["timings"]["build_s"] == 0.0  # nothing compiled on the CPU exact path
    assert meta["versions"]["torch"]
    assert meta["choices"] == ["dtype='float64' (default on cpu)", "delivery='sequential' (default on cpu)"]
    assert meta["block_steps"] == exp.params.delay_steps and meta["host_syncs"] >= 1
    assert meta["batches"] == 2 and meta["rows_in_batch_run"] == 3 and meta["conditions_in_batch_run"] == 1
    for key in ("simulate_s", "wall_s", "torch_version", "setup_s"):  # old layout: gone
        assert key not in meta


def test_subset_of_trials(tmp_path):
    case, exp = _case_experiment("trials", tmp_path)
    eng = get_engine("torch")
    full = eng.run(case.connectome, exp)
    part = eng.run(case.connectome, exp, trials=[2])  # second run: network arrays reused
    keep = full.trial == 2
    assert part.trials == [2]
    assert np.array_equal(part.idx, full.idx[keep]) and np.array_equal(part.step, full.step[keep])


# ---------------------------------------------------------------------------- mixed-condition batches
def _conditions(net, driven) -> list[Experiment]:
    a, b = _fids(net, driven[:5]), _fids(net, driven[5:])
    silenced = _fids(net, [20, 21, 30, 41])
    base = dict(t_run=0.1, seed=11)
    return [
        Experiment(name="two-rates", stimuli=(StimulusSet(a, 250.0), StimulusSet(b, 60.0)), n_trials=2, **base),
        Experiment(name="silence-out", stimuli=(StimulusSet(a + b, 200.0),), silenced=silenced, n_trials=3,
                   **base),
        Experiment(name="silence-both", stimuli=(StimulusSet(a + b, 200.0),), silenced=silenced,
                   silence_mode="both", n_trials=2, **base),
        Experiment(name="few", stimuli=(StimulusSet(b, 300.0),), n_trials=1, t_run=0.1, seed=4),
    ]


@pytest.mark.parametrize("opts", [{}, {"delivery": "dense", "batch_size": 3}, {"batch_size": 5}])
def test_mixed_batch_equals_separate_runs(opts):
    net, driven = _poisson_net()
    exps = _conditions(net, driven)
    eng = get_engine("torch", **opts)
    together = eng.run_many(net, exps)
    assert [r.exp_name for r in together] == [e.name for e in exps]
    counts = []
    for exp, res in zip(exps, together):
        alone = get_engine("torch", **opts).run(net, exp)
        assert _same(res, alone), exp.name
        counts.append(res.n_spikes)
        assert res.meta["conditions_in_batch_run"] == len(exps)
    assert min(counts) > 20 and len(set(counts)) == len(counts)  # conditions really differ
    # silencing matters: silenced neurons still spike, but their targets lose input
    out_targets = together[1].spike_counts().sum(0)
    assert out_targets.sum() != together[2].spike_counts().sum(0).sum()


def test_run_many_refuses_mismatched_experiments():
    net, driven = _poisson_net()
    a = Experiment(name="a", stimuli=(StimulusSet(_fids(net, driven), 100.0),), t_run=0.1)
    eng = get_engine("torch")
    with pytest.raises(ValidationError, match="run_many.*t_run"):
        eng.run_many(net, [a, a.with_(name="b", t_run=0.2)])
    assert eng.run_many(net, []) == []  # no conditions, no results (as every engine)
    with pytest.raises(ValidationError, match=r"run_many: experiments\[1\] is a str"):
        eng.run_many(net, [a, "b"])


def test_run_many_progress_counts_rows_of_all_conditions():
    net, driven = _poisson_net()
    exps = _conditions(net, driven)
    calls = []
    get_engine("torch", batch_size=3).run_many(net, exps, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 8), (6, 8), (8, 8)]


# ---------------------------------------------------------------------------- the device-network cache
def test_network_cache_keys_on_content_not_identity():
    """New weights (a new Connectome) give the new network's spikes; equal content is reused."""
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 250.0),), t_run=0.1, n_trials=2, seed=3)
    eng = get_engine("torch")
    before = eng.run(net, exp)
    assert before.meta["network_reused"] is False
    w = np.array(net.weight)
    w[w < 0] = 0.0  # no inhibition: more spikes
    changed = net.with_weights(w)
    assert changed.content_digest != net.content_digest
    after = eng.run(changed, exp)  # same engine: its cached network must not be reused
    assert after.meta["network_reused"] is False
    fresh = Connectome(np.array(net.flywire_ids), np.array(net.indptr), np.array(net.post_idx), w,
                       name="fresh", synthetic=True)
    assert _same(after, get_engine("torch").run(fresh, exp))
    assert after.n_spikes > before.n_spikes and not _same(after, before)
    # the same content in another object: the cached network serves it
    again = eng.run(fresh, exp)
    assert again.meta["network_reused"] is True and _same(again, after)
    back = eng.run(net, exp)
    assert back.meta["network_reused"] is False and _same(back, before)
    # another w_syn is another network too
    assert eng.run(net, exp.with_(params=replace(exp.params, w_syn_mv=exp.params.w_syn_mv * 2))
                   ).meta["network_reused"] is False


# ---------------------------------------------------------------------------- against Brian2
@pytest.mark.parametrize("name", case_names())
def test_spike_identical_to_brian2_on_tiny_cases(name, tmp_path):
    b2 = _brian2()
    case, exp = _case_experiment(name, tmp_path)
    ref = _run(b2, case.connectome, exp)
    for i in case.must_spike:
        assert (ref.idx == i).any(), f"reference: neuron {i} of case {name} never spiked"
    for delivery in ("sequential", "dense"):
        res = get_engine("torch", delivery=delivery).run(case.connectome, exp)
        assert _same(res, ref), f"case {name} ({delivery}): {res.n_spikes} spikes vs Brian2's {ref.n_spikes}"


def test_shared_poisson_draws_identical_to_brian2():
    """Without a schedule file both engines consume draw_poisson's kicks (Brian2: use_schedule)."""
    if "brian2" not in engine_names():
        pytest.skip("the brian2 engine is not registered")
    b2 = get_engine("brian2", n_jobs=1, use_schedule=True)
    net, driven = _poisson_net()
    exp = _conditions(net, driven)[1].with_(n_trials=2, t_run=0.05)
    ref = _run(b2, net, exp)
    assert ref.n_spikes > 30
    assert _same(get_engine("torch").run(net, exp), ref)


def test_agrees_with_event_engine():
    if "event" not in engine_names():
        pytest.skip("the event engine is not registered yet")
    ev = get_engine("event", n_threads=1)
    ok, reason = ev.is_available()
    if not ok:
        pytest.skip(f"event engine unavailable: {reason}")
    net, driven = _poisson_net()
    exp = _conditions(net, driven)[0]
    ref = ev.run(net, exp)
    assert ref.n_spikes > 30
    assert _same(get_engine("torch").run(net, exp), ref)


# ---------------------------------------------------------------------------- GPU (run with --run-gpu)
def _cuda_or_skip():
    if not CUDA:
        pytest.skip("no CUDA device")


@pytest.mark.gpu
@pytest.mark.parametrize("name", case_names())
def test_gpu_float64_matches_cpu_exact(name):
    """Tiny cases driven by the shared Poisson draws (no schedule file: no pandas needed)."""
    _cuda_or_skip()
    case = get_case(name)
    exp = case.experiment(None, t_run=0.1, n_trials=3, seed=1)
    ref = get_engine("torch").run(case.connectome, exp)
    assert ref.n_spikes > 0
    for opts in ({"cuda_graph": False}, {}, {"sync_free": False}, {"spike_capacity": 2, "synapse_capacity": 2},
                 {"sync_free": False, "delivery": "sequential", "cuda_graph": False}):
        res = get_engine("torch", device="cuda", dtype="float64", **opts).run(case.connectome, exp)
        assert _same(res, ref), (name, opts)
        assert res.meta["cuda_graph_used"] is opts.get("cuda_graph", True), res.meta.get("cuda_graph_error")


@pytest.mark.gpu
def test_gpu_mixed_batch_equals_separate_runs():
    _cuda_or_skip()
    net, driven = _poisson_net()
    exps = _conditions(net, driven)
    eng = get_engine("torch", device="cuda", dtype="float64")
    together = eng.run_many(net, exps)
    assert together[0].meta["device"].startswith("cuda") and together[0].meta["peak_gpu_mem_mb"] > 0
    for exp, res in zip(exps, together):
        assert _same(res, get_engine("torch").run(net, exp)), exp.name


@pytest.mark.gpu
@pytest.mark.parametrize("opts", [{"compile": False}, {"cuda_graph": False, "compile": False}, {"kicks": "device"},
                                  {"sequential": True}])
def test_gpu_float32_modes_are_close(opts):
    _cuda_or_skip()
    opts = dict(opts)
    if opts.pop("sequential", False):
        opts.update(delivery="sequential", cuda_graph=False, compile=False)
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.2, n_trials=8, seed=2)
    ref = get_engine("torch").run(net, exp)
    fast = get_engine("torch", device="cuda", **opts).run(net, exp)
    assert abs(fast.n_spikes - ref.n_spikes) <= 0.05 * ref.n_spikes, (fast.n_spikes, ref.n_spikes)


@pytest.mark.gpu
def test_gpu_compiled_step_is_close():
    _cuda_or_skip()
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.2, n_trials=8, seed=2)
    eager = get_engine("torch", device="cuda", compile=False, fused_kernel=False).run(net, exp)
    comp = get_engine("torch", device="cuda", compile=True, fused_kernel=False).run(net, exp)
    assert comp.meta["compiled"], comp.meta.get("compile_error")
    assert comp.meta["cuda_graph_used"], comp.meta.get("cuda_graph_error")
    assert abs(comp.n_spikes - eager.n_spikes) <= 0.02 * eager.n_spikes


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", broken)
    caplog.set_level(logging.INFO, logger="brainfly")
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.02, seed=2)
    ref = get_engine("torch", dtype="float32").run(net, exp)
    res = get_engine("torch", dtype="float32", compile=True).run(net, exp)
    assert _same(res, ref)
    assert not res.meta["compiled"] and "no compiler here" in res.meta["compile_error"]
    assert [c for c in res.meta["choices"] if "torch.compile" in c] == [
        "torch.compile of the step failed; the step runs as eager kernels (RuntimeError; meta['compile_error'])"]
    assert "torch.compile of the step failed" in caplog.text  # logged (once per result) by the base


@pytest.mark.slow
def test_compiled_step_on_cpu_equals_eager():
    """torch.compile (inductor, C++ on CPU) of the float32 step: same spikes on a tiny network."""
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.1, n_trials=4, seed=2)
    eager = get_engine("torch", dtype="float32").run(net, exp)
    for sync_free in (False, True):
        comp = get_engine("torch", dtype="float32", compile=True, sync_free=sync_free).run(net, exp)
        assert comp.meta["compiled"], comp.meta.get("compile_error")
        assert comp.meta.get("gather_compiled", False) is sync_free, comp.meta.get("gather_compile_error")
        assert abs(comp.n_spikes - eager.n_spikes) <= 0.01 * eager.n_spikes


@pytest.mark.gpu
@pytest.mark.parametrize("sync_free", [True, False])
def test_gpu_fused_kernel_is_close(sync_free):
    """The CUDA default step: one Triton kernel (checked against the eager step when a batch starts)."""
    _cuda_or_skip()
    net, driven = _poisson_net()
    exps = _conditions(net, driven)
    ref = get_engine("torch", dtype="float32").run_many(net, exps)
    res = get_engine("torch", device="cuda", sync_free=sync_free).run_many(net, exps)
    for a, b in zip(ref, res):
        assert b.meta["fused_kernel"], b.meta.get("fused_kernel_error")
        assert b.meta["cuda_graph_used"], b.meta.get("cuda_graph_error")
        assert b.meta.get("spikes_compacted_in_kernel", False) is sync_free
        assert abs(a.n_spikes - b.n_spikes) <= max(5, 0.05 * a.n_spikes), (a.n_spikes, b.n_spikes)


def _triton_interpreter_or_skip() -> None:
    import os

    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the fused Triton kernel runs on CPU only with TRITON_INTERPRET=1")


@pytest.mark.slow
def test_fused_kernel_under_triton_interpreter_equals_eager():
    """CPU check of the Triton step kernel (``TRITON_INTERPRET=1``): same spikes as the eager
    float32 step, synced and sync-free (spike list filled by the kernel), with capacity overflows."""
    _triton_interpreter_or_skip()
    net, driven = _poisson_net()
    exps = [e.with_(t_run=0.03) for e in _conditions(net, driven)]
    ref = get_engine("torch", dtype="float32", delivery="dense").run_many(net, exps)
    for opts in ({"sync_free": False}, {"sync_free": True},
                 {"sync_free": True, "spike_capacity": 2, "synapse_capacity": 3, "chunk_steps": 40}):
        res = get_engine("torch", dtype="float32", delivery="dense", fused_kernel=True, **opts).run_many(net, exps)
        for a, b in zip(ref, res):
            assert b.meta["fused_kernel"], b.meta.get("fused_kernel_error")
            assert _same(a, b), opts


def test_fused_kernel_failure_falls_back(monkeypatch, caplog):
    """No Triton (or a kernel that disagrees with the eager step): eager kernels, recorded."""
    def broken():
        raise ImportError("no triton here")
    monkeypatch.setattr(triton_kernel, "fused_step_kernel", broken)
    caplog.set_level(logging.INFO, logger="brainfly")
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 200.0),), t_run=0.02, seed=2)
    ref = get_engine("torch", dtype="float32").run(net, exp)
    res = get_engine("torch", dtype="float32", delivery="dense", fused_kernel=True, sync_free=True).run(net, exp)
    assert _same(res, ref)
    assert not res.meta["fused_kernel"] and "no triton here" in res.meta["fused_kernel_error"]
    assert any("fused Triton step kernel is unavailable" in c for c in res.meta["choices"])
    assert "fused Triton step kernel" in caplog.text
    assert res.meta["max_spikes_per_block"] > 0 and res.meta["max_events_per_block"] >= 0


def test_fused_kernel_compiles_for_h100_without_a_gpu():
    """Triton compiles the step kernel (all four variants) for sm_90 with no GPU present."""
    import os

    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("under Triton's interpreter the kernel is not compiled")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {"v_ptr": "*fp32", "g_ptr": "*fp32", "cnt_ptr": "*i8", "rfc_ptr": "*i8", "rfc_stride": "i32",
           "inc_ptr": "*fp32", "spk_ptr": "*i1", "BN": "i32", "n_steps": "i32", "kick_ptr": "*fp32",
           "kick_kstride": "i32", "kick_stride": "i32", "slot_ptr": "*i32", "N": "i32", "gd": "fp32", "vd": "fp32", "vg": "fp32", "vc": "fp32",
           "vth": "fp32", "vrst": "fp32", "ev_ptr": "*i64", "ev_count_ptr": "*i32", "ev_cap": "i32",
           "BLOCK": "constexpr", "HAS_KICKS": "constexpr", "COMPACT": "constexpr", "WRITE_SPK": "constexpr"}
    kern = triton_kernel.fused_step_kernel()
    for has_kicks in (True, False):
        for compact in (True, False):
            src = ASTSource(fn=kern, signature=sig,
                            constexprs={"BLOCK": 1024, "HAS_KICKS": has_kicks, "COMPACT": compact,
                                        "WRITE_SPK": not compact})
            out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
            assert out.asm["cubin"]
            assert out.asm["ptx"].count("atom.") == (1 if compact else 0)


def test_sync_free_capacity_grown_once_is_kept_for_the_next_batches(monkeypatch):
    """After an overflow the engine remembers the grown capacities (same network, batch size)."""
    net, driven = _poisson_net()
    exp = Experiment(name="r", stimuli=(StimulusSet(_fids(net, driven), 250.0),), t_run=0.05, n_trials=4, seed=2)
    ref = get_engine("torch", dtype="float32", delivery="dense").run(net, exp)
    eng = get_engine("torch", dtype="float32", delivery="dense", sync_free=True, batch_size=2)
    orig = runner.BatchRunner._run_sync_free
    seen = []

    def small_first(self):  # the default capacities, shrunk to force an overflow in the first batch
        seen.append(dict(self.learned))
        if not self.learned:
            self.config = replace(self.config, spike_capacity=2, synapse_capacity=3)
        return orig(self)

    monkeypatch.setattr(runner.BatchRunner, "_run_sync_free", small_first)
    res = eng.run(net, exp)  # two batches of 2 rows: the first grows, the second starts grown
    assert _same(res, ref)
    assert res.meta["capacity_restarts"] > 0
    assert len(seen) == 2 and seen[0] == {} and len(seen[1]) == 1
    (key, learned), = eng._learned.items()
    assert key[0].connectome == net.content_digest and key[1:] == (2, exp.params.delay_steps)
    assert learned[0] >= 8 and learned[1] >= 12
