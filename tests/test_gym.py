"""brainfly.gym: the brain as a Gymnasium environment (sensory drive in, motor rates out), and
the closed-loop proboscis example on the synthetic brain."""

from __future__ import annotations

import importlib
from pathlib import Path
import runpy
import re
import sys
import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")
pytest.importorskip("numba")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from brainfly.errors import UnknownNeuronError, ValidationError  # noqa: E402
from brainfly.gym import BrainEnv  # noqa: E402
from brainfly.testing.networks import FLYWIRE_BASE, random_network  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "closed_loop_proboscis.py"


def _ids(lo: int, hi: int) -> list[int]:
    return [FLYWIRE_BASE + i for i in range(lo, hi)]


@pytest.fixture(scope="module")
def net():
    # neurons 0-9 are the inputs; 10-49 receive from them (a feed-forward cascade)
    return random_network(120, 10, seed=4)[0]


def _env(net, **kw) -> BrainEnv:
    kw.setdefault("max_steps", 200)
    return BrainEnv(data=net, sensory={"left": _ids(0, 5), "right": _ids(5, 10)},
                    motor={"first": _ids(10, 30), "second": _ids(30, 50), "both": _ids(10, 50)}, **kw)


def _episode(env: BrainEnv, seed: int, actions: np.ndarray):
    obs0, _ = env.reset(seed=seed)
    out = [obs0]
    spikes = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        assert reward == 0.0 and not terminated
        out.append(obs)
        spikes.append(info["n_spikes"])
    return np.array(out), np.array(spikes)


def test_check_env_passes(net):
    for mode in ("rates", "unit"):
        env = _env(net, mode=mode)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
        # in Hz the action space is not normalised (gymnasium recommends [0, 1]: mode="unit")
        assert [str(w.message) for w in caught if "normalized" not in str(w.message)] == []
        assert env.action_space.shape == (2,) and env.observation_space.shape == (3,)
        assert env.action_space.high[0] == (1.0 if mode == "unit" else 200.0)


def test_motor_rates_follow_sensory_drive(net):
    env = _env(net, window_ms=20.0)
    obs, spikes = _episode(env, 1, np.zeros((100, 2)))
    assert (obs == 0).all() and (spikes == 0).all()  # no drive: a resting brain stays silent
    obs, spikes = _episode(env, 1, np.full((100, 2), 200.0))
    assert obs[-1, 0] > 0 and obs[-1, 2] > 0 and spikes.sum() > 0
    # a channel's rate is the mean over its neurons ("both" = the two halves' mean)
    np.testing.assert_allclose(obs[:, 2], (obs[:, 0] + obs[:, 1]) / 2, rtol=1e-6)
    # one side alone drives the first layer less than both sides
    weak, _ = _episode(env, 1, np.tile([200.0, 0.0], (100, 1)))
    assert 0 < weak[50:, 2].mean() < obs[50:, 2].mean()
    # the info: the step, the time and the applied drive
    _, _, _, _, info = env.step([500.0, -3.0])  # clipped to [0, max_rate_hz]
    assert info["step"] == 101 and info["t_s"] == pytest.approx(0.101) and info["runaway"] is None
    np.testing.assert_array_equal(info["sensory_hz"], [200.0, 0.0])


def test_reset_with_the_same_seed_repeats_exactly(net):
    env = _env(net)
    rng = np.random.default_rng(7)
    actions = rng.choice([0.0, 50.0, 200.0], size=(150, 2))  # the drive changes often
    a1 = _episode(env, 5, actions)
    a2 = _episode(env, 5, actions)
    b = _episode(env, 6, actions)
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1], a2[1])
    assert a1[1].sum() > 50 and not np.array_equal(a1[1], b[1])
    # unit mode: a fraction of max_rate_hz gives the same brain
    u = _episode(_env(net, mode="unit"), 5, actions / 200.0)
    np.testing.assert_array_equal(a1[0], u[0])


def test_episode_end_and_refusals(net):
    env = _env(net, max_steps=3, dt_ms=0.5)
    with pytest.raises(ValidationError, match="call reset"):
        env.step([0.0, 0.0])
    env.reset(seed=0)
    flags = [env.step([100.0, 100.0])[3] for _ in range(3)]
    assert flags == [False, False, True] and env.sim.t_s == pytest.approx(0.0015)
    with pytest.raises(ValidationError, match="call reset"):
        env.step([0.0, 0.0])
    env.reset(seed=0)
    with pytest.raises(ValidationError, match=r"shape \(2,\)"):
        env.step([1.0])
    with pytest.raises(ValidationError, match="NaN"):
        env.step([np.nan, 1.0])
    env = _env(net, reward_fn=lambda obs, action: float(obs.sum() + action.sum()))
    env.reset(seed=0)
    assert env.step([3.0, 4.0])[1] >= 7.0
    for bad, match in [({"dt_ms": 0.15}, "whole number"), ({"dt_ms": 0}, "dt_ms"), ({"mode": "hz"}, "mode"),
                       ({"max_rate_hz": 20_000.0}, "max_rate_hz"), ({"max_steps": 0}, "max_steps")]:
        with pytest.raises(ValidationError, match=match):
            _env(net, **bad)
    with pytest.raises(ValidationError, match="at least one channel"):
        BrainEnv(data=net, sensory=[], motor=_ids(10, 12))
    with pytest.raises(ValidationError, match="two sensory channels"):
        BrainEnv(data=net, sensory={"a": _ids(0, 3), "b": _ids(2, 5)}, motor=_ids(10, 12))
    with pytest.raises(UnknownNeuronError, match="motor"):
        BrainEnv(data=net, sensory=[FLYWIRE_BASE], motor={"m": [5]})
    env = BrainEnv(data=net, sensory=[FLYWIRE_BASE, (FLYWIRE_BASE + 1, FLYWIRE_BASE + 2)], motor=[FLYWIRE_BASE + 20])
    assert list(env.sensory_channels) == ["1000", "1001+1002"] and list(env.motor_channels) == ["1020"]


def test_without_gymnasium_the_import_says_how(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "brainfly.gym")
    with pytest.raises(ImportError, match=r"pip install brainfly\[gym\]"):
        importlib.import_module("brainfly.gym")


def test_closed_loop_example_runs_on_the_synthetic_brain(tmp_path, capsys):
    import matplotlib.image

    main = runpy.run_path(str(EXAMPLE), run_name="closed_loop_example")["main"]
    out = tmp_path / "tmp" / "x.png"
    out.parent.mkdir()
    assert main(["--data", "synthetic", "--seconds", "0.3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "mean MN9 rate" in text
    # on the synthetic brain the first taste starts the loop and it holds (see the example)
    touching = re.search(r"touching the sugar (\d+)% of the time \(first at (\d+) ms\)", text)
    assert touching and int(touching[1]) > 50 and int(touching[2]) < 150, text
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 200 and np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 1
