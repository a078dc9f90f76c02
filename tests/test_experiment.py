"""Experiments: validation at the boundary, built-ins, TOML, resolution to indices."""

import numpy as np
import pytest

from brainfly.connectome import Connectome
from brainfly.errors import UnknownNeuronError, ValidationError
from brainfly.experiment import (SUGAR_GRNS_783, Experiment, StimulusSet, builtin_experiment,
                                 load_experiment)


def small_net():
    ids = np.array([101, 102, 103, 104, 720575940627652358, 720575940635872101], dtype=np.int64)
    return Connectome.from_edges(ids, [0, 1], [1, 2], [3.0, -2.0], name="tiny")


def test_builtins():
    sugar = builtin_experiment("sugar")
    assert sugar.stimuli[0].neurons == SUGAR_GRNS_783 and sugar.stimuli[0].rate_hz == 200.0
    assert (sugar.t_run, sugar.n_trials, sugar.n_steps) == (1.0, 30, 10000)
    assert builtin_experiment("p9").stimuli[0].rate_hz == 100.0
    with pytest.raises(ValidationError, match="sugar"):
        builtin_experiment("sugr")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(t_run=-5), "t_run: must be > 0"),
    (dict(n_trials=0), "n_trials"),
    (dict(seed=-1), "seed"),
    (dict(silence_mode="in"), "silence_mode"),
    (dict(t_run=0.00015), "whole number of steps"),
])
def test_impossible_values(kwargs, needle):
    with pytest.raises(ValidationError, match=needle):
        Experiment(stimuli=(StimulusSet((101,), 10.0),), **kwargs)


def test_negative_and_too_high_rates():
    with pytest.raises(ValidationError, match="rate_hz"):
        StimulusSet((101,), -1.0)
    with pytest.raises(ValidationError, match="1/dt"):
        Experiment(stimuli=(StimulusSet((101,), 20000.0),))


def test_nothing_drives_the_network():
    with pytest.raises(ValidationError, match="nothing drives"):
        Experiment()


def test_resolve_and_conflicts():
    net = small_net()
    ex = Experiment(stimuli=(StimulusSet((101, "102"), 50.0), StimulusSet(("P9",), 100.0)), silenced=(103,))
    r = ex.resolve(net)
    assert [i.tolist() for i in r.stim_idx] == [[0, 1], [4, 5]]
    idx, rate = r.rate_of_activated()
    assert idx.tolist() == [0, 1, 4, 5] and rate.tolist() == [50, 50, 100, 100]
    with pytest.raises(UnknownNeuronError, match="999"):
        Experiment(stimuli=(StimulusSet((999,), 1.0),)).resolve(net)
    with pytest.raises(ValidationError, match="stimulus sets 0 and 1"):
        Experiment(stimuli=(StimulusSet((101,), 1.0), StimulusSet((101,), 2.0))).resolve(net)
    with pytest.raises(ValidationError, match="both stimulated and silenced"):
        Experiment(stimuli=(StimulusSet((101,), 1.0),), silenced=(101,)).resolve(net)


def test_toml_round_trip(tmp_path):
    f = tmp_path / "two_sets.toml"
    f.write_text('name = "two"\nt_run = 0.5\nn_trials = 3\nseed = 7\nsilenced = [103]\n'
                 'silence_mode = "both"\n[params]\nw_syn_mv = 0.3\n'
                 '[[stimuli]]\nneurons = [101]\nrate_hz = 50\n[[stimuli]]\nneurons = ["P9"]\nrate_hz = 100\n')
    ex = load_experiment(f)
    assert (ex.name, ex.t_run, ex.n_trials, ex.seed, ex.silence_mode) == ("two", 0.5, 3, 7, "both")
    assert ex.params.w_syn_mv == 0.3 and len(ex.stimuli) == 2
    assert Experiment.from_dict(ex.to_dict()) == ex
    bad = tmp_path / "bad.toml"
    bad.write_text("t_run = 1\nrate = 3\n")
    with pytest.raises(ValidationError, match="unknown key"):
        load_experiment(bad)
