"""The engine contract, stated once.

An engine is a class registered with :func:`register_engine` that has

- ``name`` (str) and ``capabilities`` (frozenset of :data:`CAPABILITIES`),
- ``exact`` (bool): claims spike-for-spike identity with Brian2 given the same schedule,
- ``is_available() -> (ok, reason)``: probes its library/hardware by trying,
- ``validate(sim)``: raises :class:`~brainfly.errors.UnsupportedFeature` before any work,
- ``simulate(sim, trials, progress) -> SpikeResult``: the actual run.

Callers use :meth:`Engine.run` (validate, prepare, simulate) with a connectome and an
experiment. Engines receive a :class:`SimulationInput`: everything resolved to model
indices, steps and volts, prepared once here so no engine re-derives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
import importlib
import logging
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from ..errors import EngineUnavailable, UnknownEngineError, UnsupportedFeature, suggest
from ..experiment import Experiment, ResolvedExperiment
from ..params import ModelParams, StepCoefficients
from ..schedule import InputSchedule, combine_digests, draw_poisson

__all__ = [
    "CAPABILITIES",
    "SimulationInput",
    "Engine",
    "register_engine",
    "get_engine",
    "engine_names",
    "available_engines",
    "prepare",
    "record_input",
]

log = logging.getLogger(__name__)

#: What an engine may claim (tests declare what they need with ``@requires``).
CAPABILITIES = frozenset({
    "poisson",          # draws its own Poisson input (or uses draw_poisson)
    "schedule",         # replays an explicit input schedule exactly
    "silencing",        # outgoing-only silencing
    "silencing_both",   # both-ways silencing
    "multi_rate",       # several stimulus sets with different rates
    "float64",          # computes in float64
})

ProgressCallback = Callable[[int, int], None]  # (trials done, trials total)


@dataclass
class SimulationInput:
    """Everything an engine needs, in model indices, steps and SI units.

    Attributes
    ----------
    connectome : Connectome
    experiment : Experiment
    resolved : ResolvedExperiment
    coeffs : StepCoefficients
        Constants of one integration step (volts).
    n_steps, delay_steps : int
    refractory_steps : int32 array (n_neurons,)
        Brian2's ``timestep(rfc, dt)`` per neuron: 0 for activated neurons.
    activated_idx : int64 array
        Neurons that receive Poisson kicks (refractory 0).
    activated_rate_hz : float64 array
        Rate of each activated neuron (NaN when a schedule drives them).
    silenced_mask : bool array (n_neurons,)
    schedule : InputSchedule or None
        The explicit schedule, when the experiment gives one.
    """

    connectome: Any
    experiment: Experiment
    resolved: ResolvedExperiment
    coeffs: StepCoefficients
    n_steps: int
    delay_steps: int
    refractory_steps: np.ndarray
    activated_idx: np.ndarray
    activated_rate_hz: np.ndarray
    silenced_mask: np.ndarray
    schedule: InputSchedule | None
    _weight_v: np.ndarray | None = field(default=None, repr=False)
    #: Per-trial digests of the kicks handed out by :meth:`kicks` (trial -> sha256).
    kick_digests: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def params(self) -> ModelParams:
        """The experiment's model parameters."""
        return self.experiment.params

    @property
    def n_neurons(self) -> int:
        """Number of model neurons."""
        return self.connectome.n_neurons

    @property
    def n_trials(self) -> int:
        """Number of trials of the experiment."""
        return self.experiment.n_trials

    def weight_v(self) -> np.ndarray:
        """Connection weights in volts (float64, CSR order) with silencing applied.

        Outgoing silencing zeroes the rows of silenced neurons; ``both`` also zeroes the
        connections onto them. Computed as Brian2 does: ``count * w_syn``.
        """
        if self._weight_v is None:
            c = self.connectome
            w = c.weight * self.coeffs.w_syn
            if self.silenced_mask.any():
                w = w.copy()
                rows = np.flatnonzero(self.silenced_mask)
                for i in rows.tolist():
                    w[c.indptr[i]:c.indptr[i + 1]] = 0.0
                if self.experiment.silence_mode == "both":
                    w[self.silenced_mask[c.post_idx]] = 0.0
            self._weight_v = w
        return self._weight_v

    def kicks(self, trials: Iterable[int]) -> InputSchedule:
        """The Poisson kicks of the given trials: the explicit schedule, or shared draws."""
        trials = list(trials)
        if self.schedule is not None:
            keep = np.isin(self.schedule.trial, trials)
            kicks = InputSchedule(self.schedule.trial[keep], self.schedule.idx[keep], self.schedule.step[keep])
        else:
            kicks = draw_poisson(self.activated_idx, self.activated_rate_hz, self.n_steps,
                                 self.params.dt_s, self.experiment.seed, trials)
        self.kick_digests.update(kicks.trial_digests(self.connectome.flywire_ids, trials))
        return kicks


def prepare(connectome: Any, experiment: Experiment) -> SimulationInput:
    """Resolve *experiment* against *connectome* into a :class:`SimulationInput`.

    Raises
    ------
    UnknownNeuronError, ValidationError, DataError
        Before any simulation work.
    """
    resolved = experiment.resolve(connectome)
    params = experiment.params
    n = connectome.n_neurons
    schedule = None
    if experiment.input_schedule is not None:
        schedule = InputSchedule.read(experiment.input_schedule, connectome)
        schedule.check(experiment.n_trials, experiment.n_steps, owner=f"input schedule {experiment.input_schedule}")
        activated = schedule.activated_idx
        if resolved.silenced_idx.size and np.isin(activated, resolved.silenced_idx).any():
            from ..errors import ValidationError

            raise ValidationError("input schedule: kicks neurons that are also silenced; remove them from one")
        rates = np.full(activated.shape[0], np.nan)
    else:
        activated, rates = resolved.rate_of_activated()
    refractory = np.full(n, params.refractory_steps, dtype=np.int32)
    refractory[activated] = 0
    silenced = np.zeros(n, dtype=bool)
    silenced[resolved.silenced_idx] = True
    return SimulationInput(
        connectome=connectome,
        experiment=experiment,
        resolved=resolved,
        coeffs=params.step_coefficients(),
        n_steps=experiment.n_steps,
        delay_steps=params.delay_steps,
        refractory_steps=refractory,
        activated_idx=activated.astype(np.int64),
        activated_rate_hz=rates.astype(np.float64),
        silenced_mask=silenced,
        schedule=schedule,
    )


class Engine(ABC):
    """Base class of all engines; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    exact: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: Trials the CLI hands to one ``run`` call (each chunk is written to disk before the
    #: next starts, so an interrupted run resumes): small for slow engines, large for
    #: engines that batch trials (a GPU batch wants all of them at once).
    trials_per_chunk: ClassVar[int] = 8
    #: Engines of one family draw identical input of their own for the same seed (Brian2's
    #: runtime and standalone modes): their input fingerprints agree, so identity is expected.
    input_family: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """(True, "") if the engine can run here, else (False, reason). Probes by trying."""
        return True, ""

    def validate(self, sim: SimulationInput) -> None:
        """Raise UnsupportedFeature if this engine cannot run *sim* as asked."""
        needs = set()
        if sim.schedule is not None:
            needs.add("schedule")
        else:
            needs.add("poisson")
        if sim.silenced_mask.any():
            needs.add("silencing_both" if sim.experiment.silence_mode == "both" else "silencing")
        if len(set(sim.resolved.rates_hz)) > 1:
            needs.add("multi_rate")
        missing = needs - set(self.capabilities)
        if missing:
            raise UnsupportedFeature(
                f"engine {self.name!r} does not support {sorted(missing)} needed by experiment "
                f"{sim.experiment.name!r}; engines that do: "
                f"{[n for n in engine_names() if missing <= set(_REGISTRY[n].capabilities)]}"
            )

    @abstractmethod
    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> "SpikeResult":  # noqa: F821
        """Run the given trials of *sim* and return their spikes."""

    def run(self, connectome: Any, experiment: Experiment, *, trials: list[int] | None = None,
            progress: ProgressCallback | None = None) -> "SpikeResult":  # noqa: F821
        """Validate, prepare and simulate; returns a :class:`~brainfly.results.SpikeResult`.

        Parameters
        ----------
        trials : list of int, optional
            Subset of trials to run (default all); used to resume interrupted runs.
        """
        ok, reason = self.is_available()
        if not ok:
            raise EngineUnavailable(f"engine {self.name!r} cannot run here: {reason}")
        sim = prepare(connectome, experiment)
        self.validate(sim)
        result = self.simulate(sim, list(range(experiment.n_trials)) if trials is None else list(trials), progress)
        result.meta = dict(result.meta)
        record_input(result, sim, self.input_family or self.name)
        return result


def record_input(result: "SpikeResult", sim: SimulationInput, engine_name: str) -> None:  # noqa: F821
    """Write which input drove *result* into ``meta["input"]`` (and per-trial digests).

    Engines that took their kicks from :meth:`SimulationInput.kicks` (explicit schedule
    or brainfly's shared draws) get ``kicks:<digest>``, equal for equal input whatever
    the engine; an engine that drew its own input (Brian2's PoissonInput) gets a label
    no other engine shares, so no spike identity is expected from it.
    """
    said = result.meta.get("input")
    how = said if isinstance(said, str) and ":" not in said else None  # e.g. "PoissonInput", "schedule"
    if how:
        result.meta["input_mode"] = how
    digests = {k: sim.kick_digests[k] for k in result.trials if k in sim.kick_digests}
    if len(digests) == len(result.trials):
        result.meta["input_digests"] = {str(k): v for k, v in digests.items()}
        result.meta["input"] = combine_digests(digests)
    else:
        result.meta.pop("input_digests", None)
        result.meta["input"] = f"{engine_name}-{how or 'own-draws'}:seed={sim.experiment.seed}"


# -------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Engine]] = {}
#: Modules that register the built-in engines (imported lazily on first lookup).
_BUILTIN_MODULES = ("event", "torch_engine", "brian2_engine", "brian2cuda_engine", "nest_engine")


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: add an engine to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty name")
    unknown = set(cls.capabilities) - CAPABILITIES
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown capabilities {sorted(unknown)}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"brainfly.engines.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"brainfly.engines.{mod}":
                raise


def engine_names() -> list[str]:
    """Names of all registered engines (available here or not)."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_engine(name: str, **options: Any) -> Engine:
    """Instantiate the engine registered as *name*.

    Raises
    ------
    UnknownEngineError
        Listing the registered engines and close matches.
    """
    _load_builtins()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise UnknownEngineError(
            f"unknown engine {name!r}; registered engines are {sorted(_REGISTRY)}.{suggest(name, _REGISTRY)}"
        ) from None
    return cls(**options)


def available_engines() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every registered engine."""
    _load_builtins()
    return {n: _REGISTRY[n].is_available() for n in sorted(_REGISTRY)}
