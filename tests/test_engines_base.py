"""The engine contract: registry errors, validation, input fingerprints."""

import numpy as np
import pytest

from brainfly.connectome import Connectome
from brainfly.engines import base
from brainfly.errors import UnknownEngineError, UnsupportedFeature
from brainfly.experiment import Experiment, StimulusSet
from brainfly.results import SpikeResult, merge_results


class _KickEcho(base.Engine):
    """Test engine: every kick 'spikes' in the next step (no dynamics)."""

    name = "_kick_echo"
    capabilities = frozenset({"poisson", "schedule"})

    def simulate(self, sim, trials, progress=None):
        k = sim.kicks(trials)
        return SpikeResult(k.trial, k.idx, k.step + 1, sim.connectome.flywire_ids, trials, sim.n_steps,
                           sim.params.dt_s, sim.experiment.name, engine=self.name)


@pytest.fixture
def echo_engine():
    base._REGISTRY[_KickEcho.name] = _KickEcho
    yield _KickEcho()
    base._REGISTRY.pop(_KickEcho.name, None)


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
    replay = echo_engine.run(net(), ex.with_(input_schedule=str(path)))
    assert replay.meta["input"] == whole.meta["input"]
    assert np.array_equal(replay.step, whole.step)
