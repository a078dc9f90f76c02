"""A steppable whole-brain simulation for closed loops: sensory input in, spikes out.

>>> sim = brainfly.Simulation(data="synthetic", readout=["MN9"])     # doctest: +SKIP
>>> sim.set_rates({"sugar_GRN": 200})                                # doctest: +SKIP
>>> out = sim.advance(1.0)              # 1 ms: spikes of that interval, MN9's rate   # doctest: +SKIP

The state persists between calls. Advancing in pieces of any size with the same input
gives, spike for spike, what one :func:`brainfly.run` of the whole duration gives with the
equivalent input schedule (:meth:`Simulation.input_schedule` writes it): the event engine's
exact kernel is advanced step range by step range (:mod:`brainfly.engines.event_live`).

Input: Poisson drive (:meth:`set_rates`, any number of sets, from the next step on: per
neuron and step a kick with probability rate x dt, drawn in blocks by numpy's PCG64 from
*seed*, so that the draws do not depend on the sizes of the pieces), single kicks
(:meth:`kick`: one event on each neuron in the next step, as a schedule row of that step)
and an input schedule's trial (played as the simulation advances). Every neuron so driven
is *activated*, as in the model: refractory period 0. Neurons activated at construction
(``activated=``, and those given rates or the schedule there) are activated from step 0,
as a run's stimulated neurons are; a neuron first driven later becomes activated at the
first step boundary at which it is not refractory (a spike it fired before keeps its
refractory period), and stays activated. Silencing (:meth:`silence`, :meth:`unsilence`)
takes effect from the next step: the neuron's spikes reach nobody (outgoing silencing),
including spikes already on their way (their delivery is after the change).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np

from .connectome import Connectome
from .connectome.lookup import resolve_neurons
from .engines.base import get_engine
from .engines.event_live import EventStepper
from .errors import UnsupportedFeature, ValidationError
from .params import ModelParams
from .runner import DataLike, resolve_data
from .schedule import InputSchedule

__all__ = ["Simulation", "Advance", "Checkpoint"]

NeuronsLike = int | str | Iterable[int | str]


class Advance(NamedTuple):
    """What one :meth:`Simulation.advance` gives.

    Attributes
    ----------
    trial : int
        The trial number the spikes carry (the input schedule's trial, else 0).
    flywire_id : int64 array
    step : int64 array
        Absolute step of each spike (from the simulation's start; ``t = step * dt``).
    rates_hz : float64 array
        Rate of each readout neuron over the last ``window_ms`` (in ``readout`` order).
    t_s : float
        Simulated time at the end of the interval, s.
    """

    trial: int
    flywire_id: np.ndarray
    step: np.ndarray
    rates_hz: np.ndarray
    t_s: float


@dataclass(frozen=True)
class Checkpoint:
    """A saved state of a :class:`Simulation` (:meth:`Simulation.save`)."""

    engine_state: dict[str, Any]
    inputs: dict[str, Any]


def _specs(neurons: NeuronsLike) -> list[int | str]:
    if isinstance(neurons, (int, str, np.integer)):
        return [neurons]
    return list(neurons)


class Simulation:
    """A live network whose state persists between calls (event engine).

    Parameters
    ----------
    data : Connectome, str or Path, optional
        As for :func:`brainfly.run`.
    engine : str
        ``event`` (the one engine that steps).
    params : ModelParams, optional
    seed : int
        Seed of the Poisson drive.
    rates : mapping, optional
        ``{neurons: Hz}`` driven from step 0 (neurons: a name, an ID, a cell type or a tuple).
    activated : neurons, optional
        Also activated from step 0 (refractory 0) without drive yet (neurons the loop will
        drive later: then the run equivalent to the loop's input is exact from step 0).
    silenced : neurons, optional
        Silenced from step 0.
    input_schedule : str or Path, optional
        A schedule file whose *trial* is played as the simulation advances.
    trial : int
    readout : neurons, optional
        Neurons whose rates :meth:`advance` reports (over the last *window_ms*).
    window_ms : float
    """

    #: Steps of Poisson draws made at once (fewer for many driven neurons); after a change
    #: of rates the blocks start at FIRST_BLOCK_STEPS and double.
    DRAW_BLOCK_STEPS = 2000
    FIRST_BLOCK_STEPS = 16

    def __init__(self, data: DataLike = None, engine: str = "event", params: ModelParams | None = None, seed: int = 0,
                 *, rates: Mapping[Any, float] | None = None, activated: NeuronsLike = (),
                 silenced: NeuronsLike = (), input_schedule: str | Path | None = None, trial: int = 0,
                 readout: NeuronsLike = (), window_ms: float = 50.0,
                 progress: bool = False) -> None:
        if engine != "event":
            eng = get_engine(engine)
            raise UnsupportedFeature(f"engine {eng.name!r} cannot be stepped; a Simulation runs on the event engine "
                                     "(engine='event'); run batches of closed loops as screens instead")
        self.params = params or ModelParams()
        self.seed = int(seed)
        if not (isinstance(window_ms, (int, float)) and window_ms > 0):
            raise ValidationError(f"Simulation: window_ms must be > 0 (got {window_ms!r})")
        self.net: Connectome = resolve_data(data, progress=progress)
        self.dt_s = self.params.dt_s
        self._steps_per_ms = 1e-3 / self.dt_s
        self.trial = int(trial)
        self.readout_idx = self.idx(readout, "readout") if _specs(readout) else np.empty(0, np.int64)
        self.readout_ids = self.net.flywire_ids[self.readout_idx]
        self._window_steps = max(1, int(round(window_ms * 1e-3 / self.dt_s)))
        self.window_ms = float(window_ms)
        # the schedule's trial: its kicks and its neurons (activated from step 0)
        self._sched_idx = np.empty(0, np.int64)
        self._sched_step = np.empty(0, np.int64)
        if input_schedule is not None:
            sched = InputSchedule.read(input_schedule, self.net)
            keep = sched.trial == self.trial
            if not keep.any():
                raise ValidationError(f"Simulation: the input schedule {input_schedule} has no kicks in trial "
                                      f"{self.trial}; choose another trial=")
            order = np.argsort(sched.step[keep], kind="stable")
            self._sched_idx = sched.idx[keep][order].astype(np.int64)
            self._sched_step = sched.step[keep][order].astype(np.int64)
        self._init = {"rates": dict(rates or {}), "activated": activated, "silenced": silenced}
        act = [self.idx(activated, "activated")] if _specs(activated) else []
        for neurons, _ in (rates or {}).items():
            act.append(self.idx(neurons, "rates"))
        act.append(np.unique(self._sched_idx))
        self._activated0 = np.unique(np.concatenate(act)) if act else np.empty(0, np.int64)
        self._stepper = EventStepper(get_engine("event"), self.net, self.params, self._activated0, self.readout_idx,
                                     self._window_steps)
        self._start_inputs()

    # ------------------------------------------------------------------ neurons
    def idx(self, neurons: NeuronsLike, owner: str = "neurons") -> np.ndarray:
        """Model indices of neuron specs (IDs, names, cell types), refused when unknown."""
        specs = _specs(neurons)
        flat: list[int | str] = []
        for s in specs:
            flat.extend(s if isinstance(s, tuple) else [s])
        return resolve_neurons(self.net, flat, owner=f"Simulation: {owner}")

    def _start_inputs(self) -> None:
        self._rate_idx = np.empty(0, np.int64)
        self._rate_p = np.empty(0, np.float64)
        self._runaway_kind = 0
        self._block = self.DRAW_BLOCK_STEPS
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.trial, 0x11FE])))
        # the kicks to come, by source (model index, step): Poisson draws made up to
        # _drawn_until; schedule rows and single kicks. The stepper holds them merged.
        self._pois_idx = np.empty(0, np.int64)
        self._pois_step = np.empty(0, np.int64)
        self._drawn_until = 0
        self._extra_idx = self._sched_idx.copy()
        self._extra_step = self._sched_step.copy()
        self._merged: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self._merged_from = 0  # the step from which _merged holds the kicks
        self._log: list[tuple[np.ndarray, np.ndarray]] = []  # kicks delivered before _merged_from
        self._merge()
        rates = self._init["rates"]
        if rates:
            self.set_rates(rates)
        if _specs(self._init["silenced"]):
            self.silence(self._init["silenced"])

    # ------------------------------------------------------------------ state
    @property
    def step(self) -> int:
        """The next step to simulate (steps simulated so far)."""
        return self._stepper.step

    @property
    def t_s(self) -> float:
        """Simulated time so far, s."""
        return self.step * self.dt_s

    @property
    def runaway(self) -> dict[str, Any] | None:
        """The runaway detection's verdict so far (None: none), as a run records it."""
        if not self._runaway_kind:
            return None  # (known from the last advance: reading the stepper's state costs more)
        kind, onset = self._stepper.runaway_state()
        return {"runaway": True, "onset_s": onset * self.dt_s, "criterion": "activity bound"}

    # ------------------------------------------------------------------ input
    def set_rates(self, rates: Mapping[Any, float]) -> None:
        """Poisson drive from the next step on: ``{neurons: Hz}`` (0 stops a neuron's drive;
        other driven neurons keep theirs). The neurons become activated (see the module)."""
        idx_all, p_all = list(self._rate_idx), list(self._rate_p)
        current = dict(zip(idx_all, p_all))
        for neurons, hz in rates.items():
            if isinstance(hz, bool) or not isinstance(hz, (int, float, np.integer, np.floating)) or not hz >= 0:
                raise ValidationError(f"Simulation.set_rates: the rate of {neurons!r} must be a number >= 0 Hz "
                                      f"(got {hz!r})")
            p = float(hz) * self.dt_s
            if p > 1:
                raise ValidationError(f"Simulation.set_rates: {hz} Hz is more than one kick per step "
                                      f"(at most {1 / self.dt_s:g} Hz)")
            for i in self.idx(neurons, "set_rates").tolist():
                if p > 0:
                    current[i] = p
                else:
                    current.pop(i, None)
        idx = np.array(sorted(current), np.int64)
        self._rate_idx = idx
        self._rate_p = np.array([current[i] for i in idx.tolist()], np.float64)
        if idx.size:
            self._stepper.activate(idx)
        # draws from the next step on are made again with the new rates, in blocks that
        # start small (a loop that changes rates every step draws little) and double
        self._pois_idx = self._pois_step = np.empty(0, np.int64)
        self._drawn_until = self.step
        self._block = self.FIRST_BLOCK_STEPS
        self._merge()

    def kick(self, neurons: NeuronsLike) -> None:
        """One input event (a Poisson kick's weight) on each neuron in the next step."""
        idx = self.idx(neurons, "kick")
        self._stepper.activate(idx)
        self._merge()  # (drops the kicks delivered from the sources)
        pos = np.searchsorted(self._extra_step, self.step, side="right")
        self._extra_idx = np.insert(self._extra_idx, pos, idx)
        self._extra_step = np.insert(self._extra_step, pos, np.full(idx.shape[0], self.step, np.int64))
        self._merge()

    def silence(self, neurons: NeuronsLike) -> None:
        """Silence neurons from the next step on (their spikes reach nobody)."""
        self._stepper.silence(self.idx(neurons, "silence"), True)

    def unsilence(self, neurons: NeuronsLike) -> None:
        """Undo :meth:`silence` from the next step on."""
        self._stepper.silence(self.idx(neurons, "unsilence"), False)

    def _draw_to(self, n_stop: int) -> None:
        """Poisson kicks for whole blocks from the last change of rates up to *n_stop* (the
        blocks start at that change: the draws do not depend on the pieces advanced)."""
        n = self._rate_idx.shape[0]
        cap = max(self.FIRST_BLOCK_STEPS, min(self.DRAW_BLOCK_STEPS, 4_000_000 // max(n, 1)))
        parts_i, parts_s = [self._pois_idx], [self._pois_step]
        while self._drawn_until < n_stop:
            lo = self._drawn_until
            block = min(self._block, cap)
            self._block = min(2 * self._block, self.DRAW_BLOCK_STEPS)
            if n:
                hit = self._rng.random((block, n)) < self._rate_p  # (step, neuron): Bernoulli(rate dt)
                s, k = np.nonzero(hit)  # by step, then neuron
                parts_i.append(self._rate_idx[k])
                parts_s.append(s.astype(np.int64) + lo)
            self._drawn_until = lo + block
        self._pois_idx = np.concatenate(parts_i)
        self._pois_step = np.concatenate(parts_s)
        self._merge()

    def _merge(self) -> None:
        """Hand the stepper the kicks from the next step on, both sources merged by step;
        log those delivered since the last merge."""
        now = self.step
        if self._merged_from < now:
            idx, step = self._merged
            done = step < now
            if done.any():
                self._log.append((idx[done], step[done]))
        keep = self._pois_step >= now
        self._pois_idx, self._pois_step = self._pois_idx[keep], self._pois_step[keep]
        keep = self._extra_step >= now
        self._extra_idx, self._extra_step = self._extra_idx[keep], self._extra_step[keep]
        idx = np.concatenate([self._pois_idx, self._extra_idx])
        step = np.concatenate([self._pois_step, self._extra_step])
        order = np.argsort(step, kind="stable")
        self._merged = (idx[order], step[order])
        self._merged_from = now
        self._stepper.set_kicks(*self._merged)

    # ------------------------------------------------------------------ running
    def advance(self, ms: float) -> Advance:
        """Simulate *ms* milliseconds (rounded to steps); return their spikes and the
        readout rates."""
        if not ms >= 0 or not math.isfinite(ms):
            raise ValidationError(f"Simulation.advance: ms must be a duration >= 0 (got {ms!r})")
        return self.advance_steps(int(round(ms * self._steps_per_ms)))

    def advance_steps(self, n_steps: int) -> Advance:
        """As :meth:`advance`, in steps."""
        if n_steps < 0:
            raise ValidationError(f"Simulation.advance_steps: n_steps must be >= 0 (got {n_steps})")
        n_stop = self._stepper.n + n_steps
        if self._drawn_until < n_stop and self._rate_idx.size:
            self._draw_to(n_stop)
        fids, steps, rates, self._runaway_kind = self._stepper.advance(n_steps)
        return Advance(self.trial, fids, steps, rates, n_stop * self.dt_s)

    # ------------------------------------------------------------------ records
    def input_schedule(self) -> InputSchedule:
        """Every kick delivered so far, as an input schedule (trial :attr:`trial`): a
        :func:`brainfly.run` driven by it (``t_run`` = :attr:`t_s`) gives the same spikes."""
        m_idx, m_step = self._merged
        done = m_step < self.step
        parts = self._log + [(m_idx[done], m_step[done])]
        idx = np.concatenate([a for a, _ in parts])
        step = np.concatenate([b for _, b in parts])
        return InputSchedule(np.full(idx.shape[0], self.trial, np.int32), idx.astype(np.int32), step)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Checkpoint:
        """The whole state (network state, inputs to come, random generator, readout)."""
        inputs = {"rate_idx": self._rate_idx.copy(), "rate_p": self._rate_p.copy(),
                  "rng": self._rng.bit_generator.state, "block": self._block, "runaway": self._runaway_kind,
                  "pois_idx": self._pois_idx.copy(),
                  "pois_step": self._pois_step.copy(), "drawn_until": self._drawn_until,
                  "extra_idx": self._extra_idx.copy(), "extra_step": self._extra_step.copy(),
                  "merged": self._merged, "merged_from": self._merged_from, "log": list(self._log)}
        return Checkpoint(self._stepper.save(), inputs)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue exactly from *checkpoint* (it stays usable: restore it again at will)."""
        self._stepper.restore(checkpoint.engine_state)
        s = checkpoint.inputs
        self._rate_idx, self._rate_p = s["rate_idx"].copy(), s["rate_p"].copy()
        self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = s["rng"]
        self._pois_idx, self._pois_step = s["pois_idx"].copy(), s["pois_step"].copy()
        self._drawn_until = s["drawn_until"]
        self._block, self._runaway_kind = s["block"], s["runaway"]
        self._extra_idx, self._extra_step = s["extra_idx"].copy(), s["extra_step"].copy()
        self._log = list(s["log"])
        self._merged, self._merged_from = s["merged"], s["merged_from"]
        self._merge()

    def reset(self, seed: int | None = None) -> None:
        """Back to step 0 with the construction's drive and silencing; with the same seed
        (the same input again) or *seed*."""
        if seed is not None:
            self.seed = int(seed)
        self._stepper.reset(self._activated0)
        self._start_inputs()

    def __repr__(self) -> str:
        return (f"<Simulation on {self.net.label}: t = {self.t_s:.4f} s, {self._rate_idx.size} neurons driven, "
                f"readout {len(self.readout_idx)}>")
