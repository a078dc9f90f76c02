"""The engine contract: registry errors, validation, input fingerprints."""

import numpy as np
import pytest

from brainfly.connectome import Connectome
from brainfly.engines import base
from brainfly.errors import UnknownEngineError, UnsupportedFeature
from brainfly.experiment import Experiment, StimulusSet
from brainfly.results import merge_results


def net():
    return Connectome.from_edges(np.arange(1, 6, dtype=np.int64), [0], [1], [1.0], name="t")


def test_unknown_engine_lists_registered():
    with pytest.raises(UnknownEngineError, match="registered engines are"):
        base.get_engine("evnt")


def test_missing_capability_is_refused_before_work(echo_engine):
    ex = Experiment(stimuli=(StimulusSet((1,), 50.0),), silenced=(3,))
    with pytest.raises(UnsupportedFeature, match="silencing"):
        echo_engine.run(net(), ex)


def test_input_fingerprint_is_chunk_independent(echo_engine, tmp_path):
    ex = Experiment(stimuli=(StimulusSet((1, 2), 300.0),), t_run=0.05, n_trials=4, seed=3)
    whole = echo_engine.run(net(), ex)
    parts = merge_results([echo_engine.run(net(), ex, trials=[0, 1]), echo_engine.run(net(), ex, trials=[2, 3])])
    assert whole.meta["input"].startswith("kicks:") and whole.meta["input"] == parts.meta["input"]
    other_seed = echo_engine.run(net(), ex.with_(seed=4))
    assert other_seed.meta["input"] != whole.meta["input"]
    # the same kicks written to a schedule file and replayed give the same fingerprint
    sim = base.prepare(net(), ex)
    path = sim.kicks(range(4)).write(tmp_path / "k.parquet", net().flywire_ids)
    replay = echo_engine.run(net(), ex.with_(stimuli=(), input_schedule=str(path)))
    assert replay.meta["input"] == whole.meta["input"]
    assert np.array_equal(replay.step, whole.step)


def test_options_are_validated_once_with_the_valid_names(echo_engine):
    from brainfly.errors import ValidationError

    with pytest.raises(ValidationError, match=r"unknown option\(s\) \['n_thread'\]; valid options are"):
        base.get_engine("event", n_thread=2)
    with pytest.raises(ValidationError, match="option n_threads: must be an integer >= 1"):
        base.get_engine("event", n_threads=0)
    with pytest.raises(ValidationError, match="unknown option"):
        base.get_engine(echo_engine.name, anything=1)  # an engine without options refuses every option


def test_meta_has_one_layout(echo_engine):
    ex = Experiment(stimuli=(StimulusSet((1, 2), 300.0),), t_run=0.02, n_trials=2)
    res = echo_engine.run(net(), ex)
    assert res.meta["timings"] == {"setup_s": 0.001, "build_s": 0.0, "sim_s": 0.002}
    assert res.meta["engine_options"] == {} and res.meta["exact"] is False and res.meta["device"] == "cpu"
    assert res.meta["versions"]["brainfly"] and res.meta["choices"] == [] and res.meta["echoed"] > 0


def test_run_many_equals_runs_one_by_one(echo_engine):
    exps = [Experiment(name=f"c{k}", stimuli=(StimulusSet((1 + k,), 300.0),), t_run=0.02, n_trials=2, seed=k)
            for k in range(3)]
    seen = []
    many = echo_engine.run_many(net(), exps, progress=lambda d, t: seen.append((d, t)))
    for exp, res in zip(exps, many):
        one = echo_engine.run(net(), exp)
        assert res.exp_name == exp.name and np.array_equal(res.step, one.step) and np.array_equal(res.idx, one.idx)
    assert seen[-1] == (6, 6)


def test_a_third_party_engine_registers_through_an_entry_point(monkeypatch):
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="_plugin_echo", value="_plugin_engine:PluginEcho", group=base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base._metadata, "entry_points", lambda group: [ep] if group == base.ENTRY_POINT_GROUP else [])
    try:
        assert "_plugin_echo" in base.engine_names()
        engine = base.get_engine("_plugin_echo")
        assert type(engine).__name__ == "PluginEcho"
        assert engine.run(net(), Experiment(stimuli=(StimulusSet((1,), 500.0),), t_run=0.02)).n_spikes > 0
    finally:
        base._REGISTRY.pop("_plugin_echo", None)


def test_the_registry_names_only_modules_that_exist():
    import importlib

    for name, target in base.BUILTIN_ENGINES.items():
        module, _, attr = target.partition(":")
        assert getattr(importlib.import_module(module), attr).name == name
