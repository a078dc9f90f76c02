"""The steppable Simulation: pieces of any size give a run's spikes, checkpoints continue
exactly, silencing and activation between calls, readout rates, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brainfly
from brainfly.connectome import Connectome
from brainfly.errors import UnknownNeuronError, UnsupportedFeature, ValidationError
from brainfly.experiment import Experiment
from brainfly.simulation import Simulation

BASE = 720575940600000000
DT_S = 1e-4


def _network(seed: int, n: int = 40) -> Connectome:
    """Recurrent, with self-loops, inhibition and strong connections: a little of everything."""
    rng = np.random.default_rng(seed)
    n_edges = n * 6
    pre = rng.integers(0, n, n_edges)
    post = rng.integers(0, n, n_edges)
    w = rng.choice([-300.0, -60.0, 40.0, 90.0, 160.0, 250.0, 900.0], n_edges,
                   p=[0.1, 0.15, 0.2, 0.2, 0.15, 0.15, 0.05])
    return Connectome.from_edges(BASE + np.arange(n, dtype=np.int64), pre, post, w, name=f"loop{seed}")


def _spikes(outs) -> set[tuple[int, int]]:
    return {(int(f), int(s)) for o in outs for f, s in zip(o.flywire_id.tolist(), o.step.tolist())}


def _run_with_schedule(net, sim: Simulation, tmp_path, n_steps: int, silenced=()) -> set[tuple[int, int]]:
    path = tmp_path / f"kicks-{n_steps}-{len(list(tmp_path.iterdir()))}.parquet"
    sim.input_schedule().write(path, net.flywire_ids)
    exp = Experiment(name="equivalent", t_run=n_steps * DT_S, n_trials=1, input_schedule=str(path),
                     silenced=tuple(silenced))
    res = brainfly.run(exp, net, progress=False)
    return {(int(f), int(s)) for f, s in zip(net.flywire_ids[res.idx].tolist(), res.step.tolist())}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000),
       pieces=st.lists(st.integers(0, 45), min_size=1, max_size=60),
       changes=st.lists(st.tuples(st.integers(0, 500), st.sampled_from(["rate", "kick"]), st.integers(0, 5)),
                        max_size=4))
def test_pieces_of_any_size_give_the_run_with_the_equivalent_schedule(tmp_path, seed, pieces, changes):
    """Advancing in pieces (many shorter than the 18-step synaptic delay) with rate changes
    and single kicks between them gives, spike for spike, one run driven by the kicks the
    simulation delivered; and the draws do not depend on the pieces."""
    net = _network(seed % 7)
    driven = [int(BASE + i) for i in range(6)]
    total = 600
    sim = Simulation(net, seed=seed, rates={tuple(driven[:3]): 300.0}, activated=driven)
    # a run activates the neurons its schedule kicks: kick every activated neuron once
    sim.kick(driven)
    outs = []
    changes = sorted(changes)
    for size in pieces + [total]:
        while changes and changes[0][0] <= sim.step:
            _, kind, k = changes.pop(0)
            if kind == "rate":
                sim.set_rates({driven[k]: [0.0, 150.0, 900.0][k % 3]})
            else:
                sim.kick(driven[k])
        size = min(size, total - sim.step)
        outs.append(sim.advance_steps(size))
        if sim.step >= total:
            break
    got = _spikes(outs)
    assert got == _run_with_schedule(net, sim, tmp_path, total)
    assert all(np.all(np.diff(o.step) >= 0) for o in outs)  # each piece's spikes in time order


def test_same_draws_whatever_the_pieces(tmp_path):
    net = _network(3)
    driven = [int(BASE + i) for i in range(4)]
    whole = Simulation(net, seed=5, rates={tuple(driven): 250.0})
    one = whole.advance_steps(5000)
    pieced = Simulation(net, seed=5, rates={tuple(driven): 250.0})
    outs = [pieced.advance_steps(k) for k in [1, 2, 3, 17, 18, 19, 940] + [1000] * 4]
    assert pieced.step == 5000
    assert _spikes([one]) == _spikes(outs) and len(_spikes([one])) > 50
    a, b = whole.input_schedule(), pieced.input_schedule()
    assert np.array_equal(a.idx, b.idx) and np.array_equal(a.step, b.step)


def test_a_restored_checkpoint_continues_exactly():
    net = _network(1)
    driven = [int(BASE + i) for i in range(5)]
    sim = Simulation(net, seed=2, rates={tuple(driven): 300.0}, readout=[int(BASE + 10), int(BASE + 11)])
    sim.advance(30.0)
    cp = sim.save()
    first = [sim.advance(7.3) for _ in range(6)]
    sim.silence(int(BASE + 12))
    first.append(sim.advance(20.0))
    for _ in range(2):  # a checkpoint can be restored again and again
        sim.restore(cp)
        again = [sim.advance(7.3) for _ in range(6)]
        sim.silence(int(BASE + 12))
        again.append(sim.advance(20.0))
        assert _spikes(again) == _spikes(first) and len(_spikes(first)) > 20
        assert all(np.array_equal(x.rates_hz, y.rates_hz) for x, y in zip(first, again))
        sim.unsilence(int(BASE + 12))


def test_reset_repeats_the_same_trial():
    net = _network(2)
    sim = Simulation(net, seed=9, rates={int(BASE): 400.0, int(BASE + 1): 200.0})
    a = _spikes([sim.advance(40.0)])
    sim.set_rates({int(BASE + 2): 500.0})
    sim.advance(10.0)
    sim.reset()
    assert sim.step == 0
    assert _spikes([sim.advance(40.0)]) == a and a


def test_silenced_from_the_start_equals_a_silenced_run(tmp_path):
    net = _network(4)
    driven = [int(BASE + i) for i in range(5)]
    quiet = [int(BASE + 7), int(BASE + 8)]
    sim = Simulation(net, seed=1, rates={tuple(driven): 300.0}, silenced=quiet)
    outs = [sim.advance(3.3) for _ in range(30)]
    assert _spikes(outs) == _run_with_schedule(net, sim, tmp_path, sim.step, silenced=quiet)


def test_silencing_between_calls_stops_and_restores_delivery():
    """A drives B alone (one strong connection): silenced, A keeps firing and B stops one
    delay after the change; unsilenced, B fires again."""
    ids = BASE + np.arange(2, dtype=np.int64)
    net = Connectome.from_edges(ids, [0], [1], [900.0], name="pair")
    a, b = int(ids[0]), int(ids[1])
    sim = Simulation(net, seed=0, rates={a: 2000.0})
    before = sim.advance(50.0)
    assert (before.flywire_id == b).sum() > 3
    sim.silence(a)
    silent_from = sim.step
    during = sim.advance(50.0)
    assert (during.flywire_id == a).sum() > 3
    assert not np.any((during.flywire_id == b) & (during.step >= silent_from + 20))  # the delay is 18 steps
    sim.unsilence(a)
    assert (sim.advance(50.0).flywire_id == b).sum() > 3


def test_a_neuron_first_driven_mid_run_becomes_activated():
    ids = BASE + np.arange(2, dtype=np.int64)
    net = Connectome.from_edges(ids, [0], [1], [900.0], name="pair")
    sim = Simulation(net, seed=0, rates={int(ids[0]): 2000.0})
    sim.advance(20.0)
    internal = sim._stepper.relabel[1]
    assert sim._stepper.neurons.rfc[internal] == 22  # B: not driven, refractory 2.2 ms
    sim.kick(int(ids[1]))
    sim.advance(5.0)
    assert sim._stepper.neurons.rfc[internal] == 0 and sim._stepper.neurons.driven[internal]


def test_readout_rates_are_the_spikes_of_the_window():
    net = _network(5)
    driven = [int(BASE + i) for i in range(5)]
    readout = [int(BASE + i) for i in range(5, 15)]
    sim = Simulation(net, seed=4, rates={tuple(driven): 300.0}, readout=readout, window_ms=20.0)
    spikes = []
    for _ in range(40):
        out = sim.advance(2.5)
        spikes.append(out)
        ids = np.concatenate([o.flywire_id for o in spikes])
        steps = np.concatenate([o.step for o in spikes])
        recent = steps >= sim.step - 200
        expect = np.array([np.sum((ids == f) & recent) for f in readout]) / min(0.02, sim.t_s)
        np.testing.assert_allclose(out.rates_hz, expect)
    assert out.rates_hz.sum() > 0


def test_bad_input_is_refused():
    net = _network(0)
    with pytest.raises(UnsupportedFeature, match="event"):
        Simulation(net, engine="torch")
    with pytest.raises(UnknownNeuronError):
        Simulation(net, rates={"nonexistent_type_xyz": 100.0})
    sim = Simulation(net)
    with pytest.raises(ValidationError, match="ms"):
        sim.advance(-1.0)
    with pytest.raises(ValidationError, match="kick per step"):
        sim.set_rates({int(BASE): 20_000.0})
    with pytest.raises(ValidationError, match=">= 0"):
        sim.set_rates({int(BASE): -5.0})
    with pytest.raises(UnknownNeuronError):
        sim.kick(int(BASE + 10_000))


@pytest.mark.slow
def test_full_size_pieces_equal_the_run(tmp_path):
    net = brainfly.load_connectome("synthetic", progress=False)
    sim = Simulation(net, seed=3, rates={"sugar_GRN": 200.0})
    rng = np.random.default_rng(0)
    outs = []
    while sim.step < 5000:
        outs.append(sim.advance_steps(int(min(rng.integers(1, 40), 5000 - sim.step))))
    assert _spikes(outs) == _run_with_schedule(net, sim, tmp_path, 5000)


def test_a_change_of_rates_draws_a_small_block_first():
    """A loop that changes rates every step must not pay for long draws it then drops: after
    a change the blocks start at FIRST_BLOCK_STEPS and double."""
    net = _network(0)
    sim = Simulation(net, seed=1, rates={int(BASE): 100.0})
    for k in range(5):
        sim.set_rates({int(BASE): 100.0 + k})
        at = sim.step
        sim.advance_steps(1)
        assert sim._drawn_until - at == Simulation.FIRST_BLOCK_STEPS
    sim.advance_steps(100)
    assert sim._drawn_until - at == sum(Simulation.FIRST_BLOCK_STEPS * 2 ** j for j in range(3))
