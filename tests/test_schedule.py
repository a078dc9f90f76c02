"""Input schedules: Poisson draws like PoissonInput(N=1), file round trip, validation."""

import numpy as np
import pytest

from brainfly.connectome import Connectome
from brainfly.errors import DataError, UnknownNeuronError, ValidationError
from brainfly.schedule import InputSchedule, draw_poisson


def test_draws_are_bernoulli_per_step_and_deterministic():
    s1 = draw_poisson(np.array([3, 5]), np.array([200.0, 50.0]), 20000, 1e-4, seed=4, trials=range(3))
    s2 = draw_poisson(np.array([3, 5]), np.array([200.0, 50.0]), 20000, 1e-4, seed=4, trials=range(3))
    assert np.array_equal(s1.step, s2.step) and np.array_equal(s1.idx, s2.idx)
    for neuron, p in ((3, 0.02), (5, 0.005)):
        steps = s1.step[s1.idx == neuron]
        assert steps.min() >= 0 and steps.max() < 20000
        n = steps.size / 3
        assert abs(n - 20000 * p) < 5 * np.sqrt(20000 * p)
        for t in range(3):  # at most one kick per neuron and step (N=1)
            st = s1.step[(s1.idx == neuron) & (s1.trial == t)]
            assert np.unique(st).size == st.size
    # one trial's stream does not depend on which other trials are drawn
    only1 = draw_poisson(np.array([3, 5]), np.array([200.0, 50.0]), 20000, 1e-4, seed=4, trials=[1])
    assert np.array_equal(only1.step, s1.for_trial(1).step)


def test_schedule_sorted_by_trial_step_neuron():
    """Kicks come sorted by (trial, step, idx) however they were given: draws (sorted per
    trial, in any order of trials) and hand-made schedules alike."""
    from brainfly._order import event_order

    drawn = draw_poisson(np.array([7, 2, 5]), np.array([300.0, 300.0, 300.0]), 3000, 1e-4, seed=1, trials=[2, 0, 1])
    assert event_order(drawn.trial, drawn.step, drawn.idx) is None
    assert drawn.trial[0] == 0 and drawn.trial[-1] == 2 and drawn.n_kicks > 100
    hand = InputSchedule(np.array([1, 0, 0, 0]), np.array([2, 9, 0, 2]), np.array([5, 9, 9, 1]))
    assert hand.trial.tolist() == [0, 0, 0, 1] and hand.step.tolist() == [1, 9, 9, 5]
    assert hand.idx.tolist() == [2, 0, 9, 2]
    order = event_order(np.array([0, 0]), np.array([3, 3]), np.array([4, 1]))
    assert order is not None and order.tolist() == [1, 0]


def test_file_round_trip_and_errors(tmp_path):
    net = Connectome.from_edges(np.array([11, 22, 33]), [], [], [], name="t")
    s = InputSchedule(np.array([1, 0, 0]), np.array([2, 0, 2]), np.array([5, 9, 1]))
    assert s.step.tolist() == [1, 9, 5]  # sorted by (trial, step, idx)
    for name in ("s.parquet", "s.csv"):
        s.write(tmp_path / name, net.flywire_ids)
        back = InputSchedule.read(tmp_path / name, net)
        assert np.array_equal(back.idx, s.idx) and np.array_equal(back.step, s.step)
    (tmp_path / "bad.csv").write_text("trial,neuron,step\n0,11,3\n")
    with pytest.raises(DataError, match="flywire_id"):
        InputSchedule.read(tmp_path / "bad.csv", net)
    (tmp_path / "unk.csv").write_text("trial,flywire_id,step\n0,44,3\n")
    with pytest.raises(UnknownNeuronError, match="44"):
        InputSchedule.read(tmp_path / "unk.csv", net)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot be read"):
        InputSchedule.read(tmp_path / "junk.parquet", net)
    with pytest.raises(ValidationError, match="steps must lie"):
        s.check(n_trials=2, n_steps=5)
