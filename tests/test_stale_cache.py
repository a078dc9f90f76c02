"""Caches that cannot lie: a network with other weights gives its own spikes on every engine.

Engines keep prepared networks between runs (the event engine's packed connections, the
torch engine's device network). They key them on the connectome's content digest, so a
new connectome with changed weights, even one with the same name, sizes and neurons, is
never served the old network's spikes. The reference here is the step-by-step numpy
oracle of :mod:`brainfly.testing.networks`, fed the same kicks.
"""

import numpy as np
import pytest

from brainfly.engines.base import prepare
from brainfly.experiment import Experiment, StimulusSet
from brainfly.testing.networks import oracle_result, random_network


def _keys(result):
    return list(zip(result.trial.tolist(), result.idx.tolist(), result.step.tolist()))


@pytest.mark.requires("schedule")
def test_changed_weights_give_the_new_networks_spikes(engine, tmp_path):
    net, driven = random_network(120, 12, seed=4)
    drawn = Experiment(name="stale", stimuli=(StimulusSet(tuple(int(f) for f in net.flywire_ids[driven]), 300.0),),
                       t_run=0.05, n_trials=2, seed=11)
    # every engine gets the same kicks (an input schedule file), so exact engines match the oracle
    kicks = prepare(net, drawn).kicks(range(drawn.n_trials)).write(tmp_path / "kicks.parquet", net.flywire_ids)
    exp = Experiment(name="stale", input_schedule=str(kicks), t_run=0.05, n_trials=2)
    # stronger excitation everywhere: the same arrays' shapes, other content
    stronger = net.with_weights(np.where(net.weight > 0, net.weight * 3.0, net.weight))
    assert stronger.content_digest != net.content_digest and stronger.name == net.name

    def expected(connectome):
        sim = prepare(connectome, exp)
        return oracle_result(sim, sim.kicks(range(exp.n_trials)))

    before = engine.run(net, exp)
    after = engine.run(stronger, exp)
    again = engine.run(net, exp)
    if engine.exact:
        assert _keys(before) == _keys(expected(net)) and before.n_spikes > 0
        assert _keys(after) == _keys(expected(stronger))
        assert _keys(again) == _keys(before)
    assert after.n_spikes > before.n_spikes  # the new network is really used
    assert again.n_spikes < after.n_spikes  # and the old one again afterwards
