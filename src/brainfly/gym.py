"""The brain as a Gymnasium environment: a controller for a body model in a closed loop.

Which way is which: in a closed loop the *body* is what an agent usually controls, but here
the environment is the *brain*, so the names turn around:

==============  ==============================================  =================================
Gymnasium name  what it is here                                 units
==============  ==============================================  =================================
``action``      what the body senses, as the drive of each      Hz per sensory channel
                *sensory* channel (Poisson input to its         (``mode="unit"``: a fraction of
                neurons, from the next step on)                 ``max_rate_hz``)
``observation`` what the brain commands: the firing rate of     Hz per motor channel
                each *motor* channel (mean over its neurons
                of their rates over the last ``window_ms``)
``reward``      0, or ``reward_fn(observation, action)``: the
                body model defines what is rewarded
==============  ==============================================  =================================

Each :meth:`BrainEnv.step` advances the brain by ``dt_ms`` (the control step) on the exact
event engine (:class:`brainfly.simulation.Simulation`, reachable as :attr:`BrainEnv.sim` for
kicks and silencing). A sensory channel's rate changes only when the action changes it, so
a constant action gives the same Poisson drive as one long run. A change of rate redraws
the channel's Poisson input ahead (blocks of up to 2,000 steps): cheap for a few dozen
neurons (sugar GRNs: ~0.5 ms a step), costly for large channels whose rate changes at
every step (1,000 neurons: ~12 ms a step, against ~0.1 ms for a constant rate). Episodes end by truncation
after ``max_steps`` control steps; the brain never terminates an episode by itself (a
runaway is reported in ``info``).

>>> env = BrainEnv(data="synthetic", sensory={"sugar": "sugar_GRN"},          # doctest: +SKIP
...                motor={"MN9": "MN9"}, dt_ms=1.0, max_rate_hz=200.0)
>>> obs, info = env.reset(seed=1)                                             # doctest: +SKIP
>>> obs, reward, terminated, truncated, info = env.step([200.0])  # sugar at 200 Hz, 1 ms  # doctest: +SKIP

``gymnasium`` is an optional dependency (``pip install brainfly[gym]``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as exc:  # an optional dependency: say how to get it
    raise ImportError("brainfly.gym needs gymnasium, an optional dependency: pip install brainfly[gym] "
                      f"(or pip install gymnasium==1.4.0); importing it failed: {exc}") from exc

from .connectome import Connectome
from .connectome.lookup import resolve_neurons
from .errors import ValidationError
from .params import ModelParams
from .runner import DataLike, resolve_data
from .simulation import Simulation

__all__ = ["BrainEnv", "ChannelsLike"]

#: Channels: a list of neuron specs (one channel each, named by the spec) or a mapping
#: name -> neuron specs (a spec: a FlyWire ID, a paper name, a cell type, or a list of these).
ChannelsLike = Mapping[str, Any] | Sequence[Any]

MODES = ("rates", "unit")


def _channels(channels: ChannelsLike, owner: str) -> dict[str, list[int | str]]:
    """``{name: flat list of specs}`` from a mapping or a list of specs."""
    if isinstance(channels, Mapping):
        items = [(str(k), v) for k, v in channels.items()]
    elif isinstance(channels, (str, int, np.integer)):
        items = [(str(channels), channels)]
    elif isinstance(channels, Iterable):
        items = []
        for spec in channels:
            name = "+".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)
            items.append((name, spec))
    else:
        raise ValidationError(f"BrainEnv.{owner}: must be a mapping name -> neurons or a list of neuron specs "
                              f"(got {type(channels).__name__})")
    if not items:
        raise ValidationError(f"BrainEnv.{owner}: needs at least one channel (got none)")
    out: dict[str, list[int | str]] = {}
    for name, spec in items:
        if name in out:
            raise ValidationError(f"BrainEnv.{owner}: channel {name!r} is given twice; name the channels with a "
                                  "mapping {name: neurons}")
        flat = list(spec) if isinstance(spec, (list, tuple, np.ndarray)) else [spec]
        if not flat:
            raise ValidationError(f"BrainEnv.{owner}: channel {name!r} has no neurons")
        out[name] = [int(s) if isinstance(s, np.integer) else s for s in flat]
    return out


class BrainEnv(gymnasium.Env):
    """A whole-brain simulation as a Gymnasium environment: sensory drive in, motor rates out.

    See the module docstring for which way is which.

    Parameters
    ----------
    data : Connectome, str or Path, optional
        As for :func:`brainfly.run` (``"synthetic"``, ``"flywire-783"``, a folder).
    sensory : mapping or list
        The sensory channels, the inputs the action drives: ``{name: neurons}`` or a list of
        neuron specs (FlyWire IDs, paper names such as ``sugar_GRN``, cell types; a list of
        them makes one channel). Every neuron of a channel gets the channel's rate (each its
        own Poisson train); the channels are disjoint.
    motor : mapping or list
        The motor (or descending) channels the observation reports, as *sensory* (they may
        share neurons).
    dt_ms : float
        The control step, ms: a whole number of simulation steps (0.1 ms).
    window_ms : float
        The sliding window of the motor rates, ms.
    max_rate_hz : float
        The highest sensory rate, Hz (the action space's bound; at most one kick per step,
        10 kHz).
    mode : {"rates", "unit"}
        ``rates``: the action is in Hz, in ``[0, max_rate_hz]``; ``unit``: in ``[0, 1]``,
        times *max_rate_hz* (the normalised space that reinforcement-learning libraries
        prefer). Actions outside the bounds are clipped (NaN is refused).
    max_steps : int or None
        Control steps per episode (``truncated`` at the last one); None: never truncated.
    reward_fn : callable, optional
        ``reward_fn(observation, action) -> float`` (the action as given, after clipping);
        default: reward 0.
    params : ModelParams, optional
    silenced : neurons, optional
        Silenced throughout (see :class:`~brainfly.simulation.Simulation`).
    render_mode : None
        No rendering (the body model draws).

    Attributes
    ----------
    sim : Simulation
        The brain (kick, silence, save/restore between steps).
    sensory_channels, motor_channels : dict
        Channel name -> FlyWire IDs (int64 arrays), in action / observation order.

    Raises
    ------
    ValidationError
        A bad channel, control step, rate bound or mode.
    UnknownNeuronError
        A neuron spec the connectome lacks.
    """

    metadata = {"render_modes": []}

    def __init__(self, data: DataLike = None, sensory: ChannelsLike = (), motor: ChannelsLike = (), *,
                 dt_ms: float = 1.0, window_ms: float = 50.0, max_rate_hz: float = 200.0, mode: str = "rates",
                 max_steps: int | None = 1000, reward_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
                 params: ModelParams | None = None, silenced: Any = (), render_mode: str | None = None,
                 progress: bool = False) -> None:
        super().__init__()
        if render_mode is not None:
            raise ValidationError(f"BrainEnv.render_mode: only None (no rendering; got {render_mode!r})")
        if mode not in MODES:
            raise ValidationError(f"BrainEnv.mode: must be one of {', '.join(MODES)} (got {mode!r})")
        params = params or ModelParams()
        dt_s = params.dt_s
        if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or not dt_ms > 0:
            raise ValidationError(f"BrainEnv.dt_ms: must be a duration > 0 ms (got {dt_ms!r})")
        n_steps = round(dt_ms * 1e-3 / dt_s)
        if n_steps < 1 or abs(n_steps * dt_s * 1e3 - dt_ms) > 1e-9:
            raise ValidationError(f"BrainEnv.dt_ms: must be a whole number of simulation steps of "
                                  f"{dt_s * 1e3:g} ms (got {dt_ms!r})")
        max_hz = 1.0 / dt_s
        if isinstance(max_rate_hz, bool) or not isinstance(max_rate_hz, (int, float)) \
                or not 0 < max_rate_hz <= max_hz:
            raise ValidationError(f"BrainEnv.max_rate_hz: must be in (0, {max_hz:g}] Hz (one kick per step at most; "
                                  f"got {max_rate_hz!r})")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                      or max_steps < 1):
            raise ValidationError(f"BrainEnv.max_steps: must be an integer >= 1 or None (got {max_steps!r})")
        if reward_fn is not None and not callable(reward_fn):
            raise ValidationError(f"BrainEnv.reward_fn: must be callable (got {type(reward_fn).__name__})")
        net: Connectome = resolve_data(data, progress=progress)
        self.sensory_channels = {name: net.flywire_ids[resolve_neurons(net, specs, owner=f"BrainEnv: sensory {name!r}")]
                                 for name, specs in _channels(sensory, "sensory").items()}
        self.motor_channels = {name: net.flywire_ids[resolve_neurons(net, specs, owner=f"BrainEnv: motor {name!r}")]
                               for name, specs in _channels(motor, "motor").items()}
        sensory_ids = np.concatenate([np.unique(f) for f in self.sensory_channels.values()])
        shared, counts = np.unique(sensory_ids, return_counts=True)
        if (counts > 1).any():
            raise ValidationError(f"BrainEnv.sensory: neuron {int(shared[counts > 1][0])} is in two sensory channels; "
                                  "a neuron takes one channel's rate: make the channels disjoint")
        readout = np.unique(np.concatenate(list(self.motor_channels.values())))
        # observation = mean over each channel's neurons: rows of a (channels x readout) matrix
        self._mean = np.zeros((len(self.motor_channels), readout.size))
        for k, fids in enumerate(self.motor_channels.values()):
            pos = np.searchsorted(readout, fids)
            np.add.at(self._mean[k], pos, 1.0 / fids.size)
        self._sensory_keys = [tuple(np.unique(f).tolist()) for f in self.sensory_channels.values()]
        activated = shared
        # every sensory neuron activated from step 0: the loop's input is then exactly a run's
        self.sim = Simulation(data=net, params=params, seed=0, activated=activated.tolist(), silenced=silenced,
                              readout=readout.tolist(), window_ms=window_ms)
        self.dt_ms = float(dt_ms)
        self.window_ms = float(window_ms)
        self.max_rate_hz = float(max_rate_hz)
        self.mode = mode
        self.max_steps = None if max_steps is None else int(max_steps)
        self.reward_fn = reward_fn
        self.render_mode = None
        self._n_sim_steps = int(n_steps)
        high = 1.0 if mode == "unit" else self.max_rate_hz
        self.action_space = spaces.Box(0.0, high, shape=(len(self.sensory_channels),), dtype=np.float32)
        # a neuron spikes at most once a step: no rate exceeds 1 / dt
        self.observation_space = spaces.Box(0.0, max_hz, shape=(len(self.motor_channels),), dtype=np.float32)
        self._rates_hz = np.full(len(self.sensory_channels), -1.0)  # the drive now (-1: not set yet)
        self._n = 0
        self._ready = False

    # ------------------------------------------------------------------ gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Back to a resting brain at t = 0 with no sensory drive.

        Parameters
        ----------
        seed : int, optional
            Seeds the environment's generator, from which the brain's Poisson drive takes its
            seed: the same seed gives the same episode for the same actions, spike for spike.
            None: the next seed of the generator (episodes differ, reproducibly after a seeded
            reset).
        options : dict, optional
            Unused.

        Returns
        -------
        observation : float32 array (n_motor,)
            The motor channels' rates, Hz: zeros.
        info : dict
            As :meth:`step` gives.
        """
        super().reset(seed=seed)
        self.sim.reset(seed=int(self.np_random.integers(2 ** 63 - 1)))
        self._rates_hz[:] = -1.0
        self._n = 0
        self._ready = True
        return np.zeros(self.observation_space.shape, np.float32), self._info(0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Drive the sensory channels at *action* and advance the brain by ``dt_ms``.

        Parameters
        ----------
        action : array-like (n_sensory,)
            Each sensory channel's rate: Hz (``mode="rates"``) or a fraction of
            ``max_rate_hz`` (``mode="unit"``); clipped to the action space.

        Returns
        -------
        observation : float32 array (n_motor,)
            Each motor channel's rate, Hz: the mean over its neurons of their spike counts
            in the last ``window_ms`` divided by the window (shorter at the start: the
            window counts from t = 0, so the first milliseconds' rates are coarse: one spike
            in the first 1 ms reads 1000 Hz). At most ``1 / dt`` (10 kHz).
        reward : float
            ``reward_fn(observation, action)``, else 0.
        terminated : bool
            False (the body model decides).
        truncated : bool
            True at the ``max_steps``-th step.
        info : dict
            ``n_spikes`` (spikes of the whole brain in this step), ``t_s`` (simulated time
            at the end of the step), ``runaway`` (None, or the runaway detection's verdict),
            ``step`` (control steps in this episode), ``sensory_hz`` (the drive applied).

        Raises
        ------
        ValidationError
            Before :meth:`reset`, or an action of the wrong shape or with NaN.
        """
        if not self._ready:
            raise ValidationError("BrainEnv.step: call reset() first (and again after an episode is truncated)")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValidationError(f"BrainEnv.step: the action must have shape {self.action_space.shape} (one value "
                                  f"per sensory channel: {', '.join(self.sensory_channels)}; got shape {a.shape})")
        if np.isnan(a).any():
            raise ValidationError(f"BrainEnv.step: the action has NaN (got {a.tolist()})")
        a = np.clip(a, 0.0, float(self.action_space.high[0]))
        hz = a * self.max_rate_hz if self.mode == "unit" else a
        changed = np.flatnonzero(hz != self._rates_hz)
        if changed.size:  # only changes redraw the Poisson drive
            self.sim.set_rates({self._sensory_keys[k]: float(hz[k]) for k in changed.tolist()})
            self._rates_hz[changed] = hz[changed]
        out = self.sim.advance_steps(self._n_sim_steps)
        obs = (self._mean @ out.rates_hz).astype(np.float32)
        reward = 0.0 if self.reward_fn is None else float(self.reward_fn(obs, a.astype(np.float32)))
        self._n += 1
        truncated = self.max_steps is not None and self._n >= self.max_steps
        if truncated:
            self._ready = False
        return obs, reward, False, truncated, self._info(int(out.flywire_id.shape[0]))

    def _info(self, n_spikes: int) -> dict[str, Any]:
        return {"n_spikes": n_spikes, "t_s": self.sim.t_s, "runaway": self.sim.runaway, "step": self._n,
                "sensory_hz": np.maximum(self._rates_hz, 0.0)}

    def __repr__(self) -> str:
        return (f"<BrainEnv on {self.sim.net.label}: sensory {list(self.sensory_channels)} -> motor "
                f"{list(self.motor_channels)}, dt {self.dt_ms:g} ms>")
