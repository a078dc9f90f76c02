"""The engine contract, stated once.

An engine is a subclass of :class:`Engine` that declares

- ``name`` (str), ``description`` (str) and ``capabilities`` (frozenset of :data:`CAPABILITIES`);
- ``exact`` (bool): claims spike-for-spike identity with Brian2 given the same input schedule;
- ``Options``: a frozen dataclass of its options with defaults (subclass of
  :class:`EngineOptions`), validated once by :func:`get_engine`: an unknown option is a
  one-line error listing the valid ones, a bad value names the option and what it expects;
- ``is_available() -> (ok, reason)`` on the instance (the options may ask for a device
  that is missing) and ``devices() -> {device: (ok, reason)}``, probed by trying;
- ``validate(sim)``: raises :class:`~brainfly.errors.UnsupportedFeature` before any work;
- ``simulate(sim, trials, progress) -> EngineOutput``: the spikes of the trials plus a
  :class:`RunRecord` (timings setup / build / simulate, versions, device, choices made for
  the user, engine-specific details).

The base class does the rest once for every engine: :meth:`Engine.run` (availability,
:func:`prepare`, validation, simulation, and the :class:`~brainfly.results.SpikeResult`
whose ``meta`` has one layout for all engines, see :meth:`Engine.run`) and
:meth:`Engine.run_many` (several conditions on one connectome: a loop here; engines with
the ``batch`` capability override it). Engines receive a :class:`SimulationInput`:
everything resolved to model indices, steps and volts, prepared once here so no engine
re-derives it.

Engines are found by name in a registry: the built-in ones and any that another package
declares in the entry-point group ``brainfly.engines`` (``name = "module:Class"``) are
imported on first use; :func:`register_engine` adds a class directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
import importlib
from importlib import metadata as _metadata
import logging
import math
import threading
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from .._io import digest_text
from .._version import __version__
from ..errors import EngineUnavailable, UnknownEngineError, UnsupportedFeature, ValidationError, suggest
from ..experiment import Experiment, ResolvedExperiment
from ..params import ModelParams, StepCoefficients
from ..results import SpikeResult
from ..schedule import InputSchedule, combine_digests, draw_poisson

__all__ = [
    "CAPABILITIES",
    "SimulationInput",
    "EngineOptions",
    "RunRecord",
    "EngineOutput",
    "Engine",
    "register_engine",
    "get_engine",
    "engine_class",
    "engines_with",
    "ENTRY_POINT_GROUP",
    "BUILTIN_ENGINES",
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
    "batch",            # run_many runs several conditions together (not one after another)
    # its Poisson input is the shared draws of draw_poisson (SimulationInput.kicks): the same
    # seed gives it the kicks every such engine gets (Brian2's own PoissonInput does not)
    "shared_draws",
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
    #: Content digest of the per-neuron settings (refractory steps, activated neurons), from
    #: the values that make them: engines key per-neuron arrays on it.
    neurons_key: str = ""
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
            self.kick_digests.update(kicks.trial_digests(self.connectome.flywire_ids, trials))
            return kicks
        key = digest_text("brainfly-kicks", self.connectome.content_digest,
                          digest_text(np.ascontiguousarray(self.activated_idx, "<i8").tobytes().hex()),
                          np.ascontiguousarray(self.activated_rate_hz, "<f8").tobytes().hex(), str(self.n_steps),
                          float(self.params.dt_s).hex(), str(self.experiment.seed), ",".join(map(str, trials)))
        with _KICKS_LOCK:
            hit = _KICKS.get(key)
        if hit is None:
            kicks = draw_poisson(self.activated_idx, self.activated_rate_hz, self.n_steps,
                                 self.params.dt_s, self.experiment.seed, trials)
            hit = (kicks, kicks.trial_digests(self.connectome.flywire_ids, trials))
            with _KICKS_LOCK:
                _KICKS[key] = hit
                while len(_KICKS) > 8:
                    _KICKS.pop(next(iter(_KICKS)))
        self.kick_digests.update(hit[1])
        return hit[0]


#: The last few Poisson draws by content (the connectome, the driven neurons and their
#: rates, steps, dt, seed, trials): the conditions of a screen that drive the same neurons
#: share one draw instead of drawing it again each.
_KICKS: dict[str, tuple[InputSchedule, dict[int, str]]] = {}
_KICKS_LOCK = threading.Lock()


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
        neurons_key=digest_text("brainfly-neurons", str(n), str(int(params.refractory_steps)),
                                digest_text(np.ascontiguousarray(activated, "<i8").tobytes().hex())),
    )


# -------------------------------------------------------------------- options and records
@dataclass(frozen=True)
class EngineOptions:
    """Options of an engine: each engine subclasses this with its own fields and defaults.

    Subclasses check their values in ``__post_init__`` with :meth:`_check`, so that an
    instance always holds valid options.
    """

    #: Name of the engine these options belong to (set by :func:`register_engine`).
    engine: ClassVar[str] = "engine"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "EngineOptions":
        """Build from a plain mapping, refusing unknown names with the list of valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValidationError(
                f"engine {cls.engine!r}: unknown option(s) {unknown}; valid options are "
                f"{valid if valid else 'none'}.{suggest(unknown[0], valid) if valid else ''}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-compatible), saved in every result's ``meta``."""
        return asdict(self)

    def _check(self, key: str, ok: bool, expected: str) -> None:
        """Raise ``ValidationError`` naming the option, what it got and what it expects."""
        if not ok:
            raise ValidationError(
                f"engine {self.engine!r} option {key}: must be {expected} (got {getattr(self, key)!r})")

    @staticmethod
    def is_int(value: Any, minimum: int | None = None) -> bool:
        """True for an integer (not a bool) of at least *minimum*."""
        return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                and (minimum is None or value >= minimum))

    @staticmethod
    def is_number(value: Any, minimum: float | None = None) -> bool:
        """True for a finite real number (not a bool) of at least *minimum*."""
        return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and math.isfinite(value) and (minimum is None or value >= minimum))


@dataclass
class RunRecord:
    """What an engine reports about one simulation besides the spikes.

    Attributes
    ----------
    setup_s : float
        Seconds preparing inputs, tables and data structures (and assembling the output).
    build_s : float
        Seconds compiling code (0 when nothing was compiled in this run).
    sim_s : float
        Seconds of the simulation itself.
    device : str
        Where it ran (``cpu``, ``cuda:0``, ...).
    versions : dict of str
        Versions of the libraries the engine used (``numba``, ``torch``, ``brian2``, ...).
    choices : list of str
        Choices made for the user (fallbacks, defaults derived from the machine); each is
        logged once and kept in the result.
    details : dict
        Engine-specific facts kept in the result's ``meta`` under their own keys
        (runaway detection, propagation front, event counts, ...).
    """

    setup_s: float = 0.0
    build_s: float = 0.0
    sim_s: float = 0.0
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def timings(self) -> dict[str, float]:
        """``{"setup_s", "build_s", "sim_s"}``."""
        return {"setup_s": float(self.setup_s), "build_s": float(self.build_s), "sim_s": float(self.sim_s)}


@dataclass
class EngineOutput:
    """What :meth:`Engine.simulate` returns: spikes ``(trial, idx, step)`` and the run record.

    Attributes
    ----------
    trial, idx : int arrays, shape (n_spikes,)
        Trial number and model index of each spike.
    step : int64 array, shape (n_spikes,)
        Time step of each spike (``t = step * dt``).
    record : RunRecord
    """

    trial: np.ndarray
    idx: np.ndarray
    step: np.ndarray
    record: RunRecord


# -------------------------------------------------------------------- the engine
class Engine(ABC):
    """Base class of all engines; see the module docstring for the contract.

    Parameters
    ----------
    options : EngineOptions, optional
        An instance of the engine's ``Options``; or give the options as keywords.
    **kwargs
        Options by name (validated by ``Options``).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    exact: ClassVar[bool] = False
    description: ClassVar[str] = ""
    Options: ClassVar[type[EngineOptions]] = EngineOptions
    #: Trials the runner hands to one ``run`` call (each chunk is written to disk before
    #: the next starts, so an interrupted run resumes): small for slow engines, large for
    #: engines that batch trials (a GPU batch wants all of them at once).
    trials_per_chunk: ClassVar[int] = 8
    #: Conditions a screen hands to one ``run_many`` call (a chunk, written when done):
    #: engines that batch conditions take many; slow ones few, so that a chunk ends soon.
    conditions_per_chunk: int = 64
    #: Engines of one family draw identical input of their own for the same seed (Brian2's
    #: runtime and standalone modes): their input fingerprints agree, so identity is expected.
    input_family: ClassVar[str] = ""

    def __init__(self, options: EngineOptions | None = None, **kwargs: Any) -> None:
        if options is not None and kwargs:
            raise TypeError(f"engine {self.name!r}: give an Options instance or keywords, not both")
        if options is None:
            options = self.Options.from_mapping(kwargs)
        elif not isinstance(options, self.Options):
            raise ValidationError(f"engine {self.name!r}: options must be a {self.Options.__name__} "
                                  f"(got {type(options).__name__})")
        self.options = options

    def __repr__(self) -> str:
        changed = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if getattr(self.options, f.name) != f.default}
        return f"<engine {self.name}" + (f" {changed}" if changed else "") + ">"

    def is_available(self) -> tuple[bool, str]:
        """(True, "") if the engine can run here with these options, else (False, reason)."""
        return True, ""

    def devices(self) -> dict[str, tuple[bool, str]]:
        """Each device the engine can use -> (available here, reason if not)."""
        return {"cpu": self.is_available()}

    def versions(self) -> dict[str, str]:
        """Versions of the libraries the engine runs on (recorded with every result)."""
        return {}

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
                f"{sim.experiment.name!r}; engines that do: {engines_with(missing)}"
            )

    @abstractmethod
    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run the given trials of *sim*; return their spikes and the run record."""

    def start_warm_up(self) -> threading.Thread | None:
        """Start, in a background thread, loading (or compiling) what the first simulation
        needs, so that it overlaps loading the data; None when there is nothing to do (the
        default). The runner joins the thread before the first simulation."""
        return None

    def check_available(self) -> None:
        """Raise :class:`~brainfly.errors.EngineUnavailable` with the reason when it cannot run here."""
        ok, reason = self.is_available()
        if not ok:
            raise EngineUnavailable(f"engine {self.name!r} cannot run here: {reason}")

    def prepare(self, connectome: Any, experiment: Experiment) -> SimulationInput:
        """Check availability, resolve *experiment* (:func:`prepare`) and validate it for this engine.

        Everything that can refuse an experiment happens here, before any simulation.
        """
        self.check_available()
        sim = prepare(connectome, experiment)
        self.validate(sim)
        return sim

    def run_prepared(self, sim: SimulationInput, trials: Sequence[int] | None = None,
                     progress: ProgressCallback | None = None) -> SpikeResult:
        """Simulate some trials of a prepared experiment (see :meth:`prepare`).

        Parameters
        ----------
        trials : sequence of int, optional
            Subset of trials to run (default all); the runner hands out chunks of trials.
        """
        trial_list = list(range(sim.n_trials)) if trials is None else [int(k) for k in trials]
        return self.result(sim, trial_list, self.simulate(sim, trial_list, progress))

    def run(self, connectome: Any, experiment: Experiment, *, trials: Sequence[int] | None = None,
            progress: ProgressCallback | None = None) -> SpikeResult:
        """Prepare, validate and simulate; returns a :class:`~brainfly.results.SpikeResult`.

        The result's ``meta`` has the same layout for every engine: ``engine_options``,
        ``exact``, ``device``, ``versions``, ``timings`` (``setup_s``, ``build_s``,
        ``sim_s``), ``choices``, ``input`` (see :func:`record_input`), then the engine's
        own ``details``. (:func:`brainfly.run` adds the experiment, the connectome and the
        wall time, and writes files.)

        Parameters
        ----------
        trials : sequence of int, optional
            Subset of trials to run (default all).
        """
        return self.run_prepared(self.prepare(connectome, experiment), trials, progress)

    def run_many(self, connectome: Any, experiments: Sequence[Experiment], *,
                 progress: ProgressCallback | None = None) -> list[SpikeResult]:
        """Run several conditions (experiments) on one connectome, all trials of each.

        Every condition is validated before any runs (:meth:`prepare`); then
        :meth:`simulate_many` runs them. *progress* counts trials over all conditions.
        """
        sims = [self.prepare(connectome, e) for e in experiments]
        trial_lists = [list(range(sim.n_trials)) for sim in sims]
        outs = self.simulate_many(sims, trial_lists, progress)
        return [self.result(sim, trials, out) for sim, trials, out in zip(sims, trial_lists, outs)]

    def simulate_many(self, sims: Sequence[SimulationInput], trial_lists: Sequence[list[int]],
                      progress: ProgressCallback | None = None) -> list[EngineOutput]:
        """Simulate several prepared conditions; the base class runs them one after another.

        Engines with the ``batch`` capability override this to run them together (the
        event engine spreads all their trials over its threads, torch makes one batch).
        """
        total = sum(len(t) for t in trial_lists)
        outs: list[EngineOutput] = []
        done = 0
        for sim, trials in zip(sims, trial_lists):
            def sub(k: int, n: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + k, total)

            outs.append(self.simulate(sim, trials, sub))
            done += len(trials)
        return outs

    def result(self, sim: SimulationInput, trials: list[int], out: EngineOutput) -> SpikeResult:
        """The :class:`~brainfly.results.SpikeResult` of one simulation, ``meta`` in the common layout."""
        rec = out.record
        for choice in rec.choices:
            log.info("engine %s: %s", self.name, choice)
        meta: dict[str, Any] = {
            "engine_options": self.options.to_dict(),
            "exact": bool(self.exact),
            "device": rec.device,
            "versions": {"brainfly": __version__, **self.versions(), **rec.versions},
            "timings": rec.timings,
            "choices": list(rec.choices),
        }
        for key, value in rec.details.items():
            meta.setdefault(key, value)
        c = sim.connectome
        result = SpikeResult(
            out.trial, out.idx, out.step, np.asarray(c.flywire_ids, dtype=np.int64), trials, sim.n_steps,
            sim.params.dt_s, sim.experiment.name, engine=self.name, connectome_label=c.label,
            synthetic=bool(c.synthetic), meta=meta, annotations=c.annotations,
        )
        record_input(result, sim, self.input_family or self.name)
        return result


def record_input(result: SpikeResult, sim: SimulationInput, engine_name: str) -> None:  # noqa: F821
    """Write which input drove *result* into ``meta["input"]`` (and per-trial digests).

    Engines that took their kicks from :meth:`SimulationInput.kicks` (explicit schedule
    or brainfly's shared draws) get ``kicks:<digest>``, equal for equal input whatever
    the engine; an engine that drew its own input (Brian2's PoissonInput) says so in
    ``details["input"]`` and gets a label no other engine shares, so no spike identity
    is expected from it.
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
#: Group of the entry points through which other packages add engines (``name = "module:Class"``).
ENTRY_POINT_GROUP = "brainfly.engines"
#: The engines that ship with brainfly (imported on first use).
BUILTIN_ENGINES: dict[str, str] = {
    "event": "brainfly.engines.event:EventEngine",
    "torch": "brainfly.engines.torch:TorchEngine",
    "brian2": "brainfly.engines.brian2_engine:Brian2Engine",
    "brian2-standalone": "brainfly.engines.brian2_engine:Brian2StandaloneEngine",
    "nest": "brainfly.engines.nest_engine:NestEngine",
    "brian2cuda": "brainfly.engines.brian2cuda_engine:Brian2CUDAEngine",
    "nestgpu": "brainfly.engines.nestgpu_engine:NestGpuEngine",
}
_REGISTRY: dict[str, type[Engine]] = {}
_FAILED: dict[str, str] = {}  # engines whose module could not be imported -> why


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: add an engine to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty name")
    unknown = set(cls.capabilities) - CAPABILITIES
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown capabilities {sorted(unknown)}")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, EngineOptions)):
        raise TypeError(f"{cls.__name__}.Options must subclass EngineOptions")
    if "engine" not in cls.Options.__dict__:
        cls.Options.engine = cls.name
    _REGISTRY[cls.name] = cls
    return cls


def _declared() -> dict[str, str]:
    """name -> "module:Class" of every engine declared (built-in, then entry points)."""
    table = dict(BUILTIN_ENGINES)
    try:
        for ep in _metadata.entry_points(group=ENTRY_POINT_GROUP):
            table.setdefault(ep.name, ep.value)
    except Exception as exc:  # noqa: BLE001 - broken metadata of another package must not stop brainfly
        log.debug("cannot read the %s entry points: %s", ENTRY_POINT_GROUP, exc)
    return table


def _load(name: str, target: str) -> type[Engine] | None:
    if name in _REGISTRY:
        return _REGISTRY[name]
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as exc:  # noqa: BLE001 - a third-party engine that fails to import is reported, not fatal
        _FAILED[name] = f"cannot import {target} ({type(exc).__name__}: {exc})"
        log.debug("engine %s: %s", name, _FAILED[name])
        return None
    if cls.name != name:
        _FAILED[name] = f"{target} declares name {cls.name!r}, not {name!r}"
        return None
    return _REGISTRY.get(name) or register_engine(cls)


def engine_names() -> list[str]:
    """Names of all registered and declared engines (available here or not)."""
    return sorted(set(_REGISTRY) | set(_declared()))


def engine_class(name: str) -> type[Engine]:
    """The class registered or declared as *name* (imported on first use).

    Raises
    ------
    UnknownEngineError
        Listing the engines and close matches, or why a declared engine cannot be imported.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    declared = _declared()
    if name in declared:
        cls = _load(name, declared[name])
        if cls is not None:
            return cls
        raise UnknownEngineError(f"engine {name!r} is declared but cannot be loaded: {_FAILED[name]}")
    names = engine_names()
    raise UnknownEngineError(f"unknown engine {name!r}; registered engines are {names}.{suggest(name, names)}")


def get_engine(name: str, **options: Any) -> Engine:
    """Instantiate the engine *name* with validated options.

    Raises
    ------
    UnknownEngineError
        Listing the engines and close matches.
    ValidationError
        For an unknown option (listing the valid ones) or a bad value.
    """
    return engine_class(name)(**options)


def engines_with(capabilities: Iterable[str]) -> list[str]:
    """Names of the engines that have all of *capabilities*."""
    need = set(capabilities)
    out = []
    for n in engine_names():
        try:
            cls = engine_class(n)
        except UnknownEngineError:
            continue
        if need <= set(cls.capabilities):
            out.append(n)
    return out


def available_engines() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every engine, with default options."""
    out: dict[str, tuple[bool, str]] = {}
    for n in engine_names():
        try:
            out[n] = engine_class(n)().is_available()
        except UnknownEngineError as exc:
            out[n] = (False, str(exc))
    return out
