"""Experiments: which neurons are driven (several stimulus sets), which are silenced,
for how long, how many trials, with which seed and model parameters.

Times at this boundary are in seconds (``t_run``) as the paper and its users write
them; rates in Hz. An :class:`Experiment` holds neuron *specs* (FlyWire IDs or names);
:meth:`Experiment.resolve` turns them into model indices for one connectome and refuses
unknown neurons before any work starts.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, replace
import math
from pathlib import Path
import tomllib
from typing import Any, Iterable, Mapping

import numpy as np

from .connectome.lookup import SUGAR_GRNS_783, resolve_neurons
from .errors import ValidationError, suggest
from .params import ModelParams

__all__ = [
    "StimulusSet",
    "Experiment",
    "ResolvedExperiment",
    "SUGAR_GRNS_783",
    "BUILTIN_EXPERIMENTS",
    "builtin_experiment",
    "load_experiment",
    "SILENCE_MODES",
    "describe_experiment",
    "MAX_TRIALS",
    "MAX_STEPS",
]

#: ``outgoing``: zero the silenced neurons' outgoing synapses (the paper's code, default);
#: ``both``: also zero their incoming synapses (the paper's README wording).
SILENCE_MODES = ("outgoing", "both")

NeuronSpec = int | str

#: Most trials in one experiment (trial numbers are int32; a run keeps a list of its trials).
MAX_TRIALS = 1_000_000
#: Most steps in one trial (steps are counted in int32 by the engines).
MAX_STEPS = 2 ** 31 - 1024


def _as_specs(values: Iterable[NeuronSpec] | NeuronSpec, owner: str) -> tuple[NeuronSpec, ...]:
    if isinstance(values, (str, int, np.integer)) and not isinstance(values, bool):
        values = [values]
    elif isinstance(values, Mapping) or not isinstance(values, Iterable):
        raise ValidationError(f"{owner}: must be a list of FlyWire IDs or names (got {values!r}, "
                              f"a {type(values).__name__})")
    out: list[NeuronSpec] = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(int(v))
        elif isinstance(v, str) and v.strip():
            s = v.strip()
            out.append(int(s) if s.isdigit() else s)
        else:
            raise ValidationError(f"{owner}: a neuron must be a FlyWire ID or a name (got {v!r})")
    return tuple(out)


@dataclass(frozen=True)
class StimulusSet:
    """A set of neurons driven by independent Poisson inputs at one rate.

    Parameters
    ----------
    neurons : tuple of int or str
        FlyWire IDs or names (cell types, paper names such as ``P9``).
    rate_hz : float
        Poisson rate of each neuron's input, Hz (>= 0; at most 1/dt).
    label : str
        Optional name shown in summaries.
    """

    neurons: tuple[NeuronSpec, ...]
    rate_hz: float
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "neurons", _as_specs(self.neurons, "StimulusSet.neurons"))
        if not self.neurons:
            raise ValidationError("StimulusSet.neurons: needs at least one neuron (got none)")
        r = self.rate_hz
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)):
            raise ValidationError(f"StimulusSet.rate_hz: must be a number of Hz (got {r!r}, a {type(r).__name__})")
        if not math.isfinite(r) or r < 0:
            raise ValidationError(f"StimulusSet.rate_hz: must be a finite rate >= 0 Hz (got {r!r})")
        object.__setattr__(self, "rate_hz", float(r))


@dataclass(frozen=True)
class Experiment:
    """One simulated experiment: stimulus sets, silenced neurons, duration, trials, seed.

    Parameters
    ----------
    name : str
        Written to the ``exp_name`` column of the results.
    stimuli : tuple of StimulusSet
        Any number of sets; a neuron may belong to one set only.
    silenced : tuple of int or str
        Neurons whose synapses are zeroed (see ``silence_mode``).
    silence_mode : {"outgoing", "both"}
        ``outgoing`` (default) as the paper's code; ``both`` also zeroes incoming synapses.
    t_run : float
        Simulated duration of each trial, seconds (> 0).
    n_trials : int
        Number of independent trials (>= 1).
    seed : int
        Seed of the Poisson input; the same seed gives the same spikes.
    params : ModelParams
        Model parameters (the paper's by default).
    input_schedule : str or None
        Path of an explicit input schedule (parquet/CSV, see :mod:`brainfly.schedule`)
        that replaces the Poisson draws; its neurons become the activated set.
    stimulate : mapping, optional
        Short form of *stimuli*: ``{neurons: rate_hz}``, one stimulus set per entry, the
        key a name, a FlyWire ID or a tuple of them (``{"P9": 100, "LB3": 50}``). Added
        after *stimuli*.
    silence : neurons, optional
        Short form of *silenced* (``silence=["MN9"]``); give one of the two.

    Examples
    --------
    >>> Experiment(name="p9", stimulate={"P9": 100}, silence=["MN9"], n_trials=30)
    Experiment('p9': P9 @ 100 Hz; silenced MN9 (outgoing); 30 trials x 1 s, seed 0)
    """

    name: str = "experiment"
    stimuli: tuple[StimulusSet, ...] = ()
    silenced: tuple[NeuronSpec, ...] = ()
    silence_mode: str = "outgoing"
    t_run: float = 1.0
    n_trials: int = 1
    seed: int = 0
    params: ModelParams = field(default_factory=ModelParams)
    input_schedule: str | None = None
    stimulate: InitVar[Mapping[Any, float] | None] = None
    silence: InitVar[Any] = None

    def __post_init__(self, stimulate: Mapping[Any, float] | None = None, silence: Any = None) -> None:
        if isinstance(self.stimuli, (StimulusSet, str, bytes, Mapping)) or not isinstance(self.stimuli, Iterable):
            raise ValidationError(f"Experiment.stimuli: must be a sequence of StimulusSet (got {self.stimuli!r}); "
                                  "for the short form use stimulate={neurons: rate_hz}")
        sets = list(self.stimuli)
        if stimulate is not None:
            if not isinstance(stimulate, Mapping):
                raise ValidationError(f"Experiment.stimulate: must be a mapping {{neurons: rate_hz}}, e.g. "
                                      f"{{'P9': 100}} (got {stimulate!r})")
            for key, rate in stimulate.items():
                neurons = tuple(key) if isinstance(key, (tuple, list, frozenset)) else (key,)
                label = key if isinstance(key, str) else ",".join(str(n) for n in neurons)
                sets.append(StimulusSet(neurons, rate, str(label)))
        object.__setattr__(self, "stimuli", tuple(sets))
        if silence is not None:
            if self.silenced:
                raise ValidationError("Experiment: give silence= or silenced=, not both")
            object.__setattr__(self, "silenced", silence)
        silenced = self.silenced
        if isinstance(silenced, (tuple, list)) and not silenced:
            silenced = ()
        object.__setattr__(self, "silenced", _as_specs(silenced, "Experiment.silenced") if silenced != () else ())
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError(f"Experiment.name: must be a non-empty string (got {self.name!r})")
        if not self.name.isprintable():
            raise ValidationError(f"Experiment.name: must be one line of printable text, without control characters "
                                  f"(got {self.name!r})")
        for s in self.stimuli:
            if not isinstance(s, StimulusSet):
                raise ValidationError(f"Experiment.stimuli: items must be StimulusSet (got {type(s).__name__})")
        if self.silence_mode not in SILENCE_MODES:
            raise ValidationError(
                f"Experiment.silence_mode: must be one of {SILENCE_MODES} (got {self.silence_mode!r})"
            )
        t = self.t_run
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValidationError(f"Experiment.t_run: must be > 0 s (got {t!r})")
        object.__setattr__(self, "t_run", float(t))
        n_steps_f = self.t_run / self.params.dt_s
        if not n_steps_f <= MAX_STEPS:
            raise ValidationError(
                f"Experiment.t_run: at most {MAX_STEPS * self.params.dt_s:g} s per trial ({MAX_STEPS:,} steps of "
                f"dt={self.params.dt_ms} ms; got {self.t_run:g} s); run longer trials as several shorter ones")
        if abs(n_steps_f - round(n_steps_f)) > 1e-6 * max(1.0, n_steps_f):
            raise ValidationError(
                f"Experiment.t_run: must be a whole number of steps of dt={self.params.dt_ms} ms "
                f"(got {self.t_run} s = {n_steps_f:g} steps)"
            )
        n = self.n_trials
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValidationError(f"Experiment.n_trials: must be an integer >= 1 (got {n!r})")
        if n > MAX_TRIALS:
            raise ValidationError(f"Experiment.n_trials: at most {MAX_TRIALS:,} trials in one run (got {n:,}); "
                                  "split the trials over several runs with different seeds")
        object.__setattr__(self, "n_trials", int(n))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValidationError(f"Experiment.seed: must be an integer >= 0 (got {self.seed!r})")
        object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.params, ModelParams):
            raise ValidationError("Experiment.params: must be a ModelParams")
        max_rate = 1.0 / self.params.dt_s
        for s in self.stimuli:
            if s.rate_hz > max_rate:
                raise ValidationError(
                    f"StimulusSet.rate_hz: {s.rate_hz} Hz exceeds 1/dt = {max_rate:g} Hz "
                    "(PoissonInput with N=1 gives at most one kick per step)"
                )
        if not self.stimuli and self.input_schedule is None:
            raise ValidationError(
                "Experiment: nothing drives the network; give at least one stimulus set "
                "(--stimulate IDS@HZ) or an input schedule (--input-schedule FILE)"
            )
        if self.input_schedule is not None:
            object.__setattr__(self, "input_schedule", str(self.input_schedule))
            if self.stimuli:
                raise ValidationError(
                    "Experiment: stimulus rates and an input schedule given together; the schedule's kicks "
                    "replace Poisson input at set rates: give one of them (--stimulate or --input-schedule)")

    @property
    def n_steps(self) -> int:
        """Number of time steps of one trial."""
        return self.params.n_steps(self.t_run)

    def describe(self) -> str:
        """One line saying what the experiment does (stimuli, silencing, trials)."""
        return describe_experiment(self.to_dict())

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}: {self.describe()})"

    def with_(self, **changes: Any) -> "Experiment":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (TOML/JSON-compatible) saved with the results."""
        return {
            "name": self.name,
            "stimuli": [
                {"neurons": list(s.neurons), "rate_hz": s.rate_hz, "label": s.label} for s in self.stimuli
            ],
            "silenced": list(self.silenced),
            "silence_mode": self.silence_mode,
            "t_run": self.t_run,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "params": self.params.to_dict(),
            "input_schedule": self.input_schedule,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "experiment") -> "Experiment":
        """Build from the plain-dict form (as written by :meth:`to_dict` or a TOML file).

        Raises
        ------
        ValidationError
            For an unknown key, a value of the wrong type or an impossible value; the
            message starts with *source* (e.g. the file's path) and names the field.
        """
        try:
            return cls._from_dict(d, source)
        except ValidationError as exc:
            text = str(exc)
            if text.startswith(source):
                raise
            raise ValidationError(f"{source}: {text}") from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any], source: str) -> "Experiment":
        if not isinstance(d, Mapping):
            raise ValidationError(f"{source}: must be a table of experiment keys (got {type(d).__name__})")
        known = {"name", "stimuli", "stimulus", "silenced", "silence_mode", "t_run", "n_trials", "seed",
                 "params", "input_schedule"}
        unknown = set(d) - known
        if unknown:
            raise ValidationError(f"{source}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(known)}."
                                  f"{suggest(sorted(unknown)[0], known)}")
        if "stimuli" in d and "stimulus" in d:
            raise ValidationError(f"{source}: give [[stimuli]] or [[stimulus]], not both")
        raw_sets = d.get("stimuli", d.get("stimulus", []))
        if not isinstance(raw_sets, list):
            raise ValidationError(f"{source}: stimuli must be a list of tables [[stimuli]] with neurons and "
                                  f"rate_hz (got {raw_sets!r})")
        stimuli = []
        set_keys = {"neurons", "rate_hz", "label"}
        for k, s in enumerate(raw_sets):
            if not isinstance(s, dict) or "neurons" not in s or "rate_hz" not in s:
                raise ValidationError(f"{source}: stimuli[{k}] needs 'neurons' and 'rate_hz' (got {s!r})")
            extra = set(s) - set_keys
            if extra:
                raise ValidationError(f"{source}: stimuli[{k}]: unknown key(s) {sorted(extra)}; valid keys are "
                                      f"{sorted(set_keys)}.{suggest(sorted(extra)[0], set_keys)}")
            label = s.get("label", "")
            if not isinstance(label, str):
                raise ValidationError(f"{source}: stimuli[{k}].label: must be a string (got {label!r})")
            stimuli.append(StimulusSet(_as_specs(s["neurons"], f"{source}: stimuli[{k}].neurons"), s["rate_hz"],
                                       label))
        types = {"name": (str,), "silence_mode": (str,), "t_run": (int, float), "n_trials": (int,),
                 "seed": (int,), "input_schedule": (str,)}
        for key, ok in types.items():
            if key in d and not (key == "input_schedule" and d[key] is None) and (
                    isinstance(d[key], bool) or not isinstance(d[key], ok)):
                expected = {"t_run": "a number of seconds", "n_trials": "an integer", "seed": "an integer"}.get(
                    key, "a string")
                raise ValidationError(f"{source}: {key} must be {expected} (got {d[key]!r})")
        params = d.get("params", {})
        if not isinstance(params, dict):
            raise ValidationError(f"{source}: params must be a table [params] of numbers (got {params!r})")
        kwargs = {k: d[k] for k in types if k in d}
        silenced = d.get("silenced", ())
        return cls(
            stimuli=tuple(stimuli),
            silenced=_as_specs(silenced, f"{source}: silenced") if silenced != [] else (),
            params=ModelParams.from_dict(params),
            **kwargs,
        )

    def neuron_sets(self) -> list[tuple[str, tuple[NeuronSpec, ...]]]:
        """``(owner, specs)`` of every stimulus set, then of the silenced set (owners name them in errors)."""
        sets = [(f"stimulus set {k}" + (f" {s.label!r}" if s.label else "") + f" at {s.rate_hz:g} Hz", s.neurons)
                for k, s in enumerate(self.stimuli)]
        if self.silenced:
            sets.append(("silenced set", self.silenced))
        return sets

    def resolve(self, connectome: Any) -> "ResolvedExperiment":
        """Resolve neuron specs to model indices of *connectome* and check consistency.

        Raises
        ------
        UnknownNeuronError
            For an unknown ID or name (with close matches).
        ValidationError
            If a neuron is in two stimulus sets, or both stimulated and silenced.
        """
        resolved = [resolve_neurons(connectome, specs, owner=owner) for owner, specs in self.neuron_sets()]
        stim_idx = resolved[:len(self.stimuli)]
        silenced_idx = resolved[-1] if self.silenced else np.empty(0, np.int64)
        seen: dict[int, int] = {}
        for k, idx in enumerate(stim_idx):
            for i in idx.tolist():
                if i in seen and seen[i] != k:
                    raise ValidationError(
                        f"Experiment.stimuli: neuron {int(connectome.flywire_ids[i])} is in stimulus sets "
                        f"{seen[i]} and {k}; a neuron can be driven at one rate only"
                    )
                seen[i] = k
        both = set(seen) & set(silenced_idx.tolist())
        if both:
            ids = sorted(int(connectome.flywire_ids[i]) for i in both)
            raise ValidationError(
                f"Experiment: neuron(s) {ids[:5]} are both stimulated and silenced; remove them from one set"
            )
        return ResolvedExperiment(
            experiment=self,
            stim_idx=tuple(np.unique(i) for i in stim_idx),
            rates_hz=tuple(s.rate_hz for s in self.stimuli),
            silenced_idx=np.unique(silenced_idx),
        )


@dataclass(frozen=True)
class ResolvedExperiment:
    """An experiment bound to a connectome: model indices instead of neuron specs."""

    experiment: Experiment
    stim_idx: tuple[np.ndarray, ...]  #: int64 model indices of each stimulus set
    rates_hz: tuple[float, ...]  #: rate of each stimulus set, Hz
    silenced_idx: np.ndarray  #: int64 model indices of silenced neurons

    @property
    def activated_idx(self) -> np.ndarray:
        """All stimulated model indices (sorted, int64)."""
        if not self.stim_idx:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(self.stim_idx))

    def rate_of_activated(self) -> tuple[np.ndarray, np.ndarray]:
        """(idx, rate_hz) per stimulated neuron, sorted by idx."""
        if not self.stim_idx:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        idx = np.concatenate(self.stim_idx)
        rate = np.concatenate([np.full(len(i), r) for i, r in zip(self.stim_idx, self.rates_hz)])
        order = np.argsort(idx, kind="stable")
        return idx[order], rate[order]


def _neurons_text(neurons: Iterable[Any], limit: int = 4) -> str:
    items = [str(n) for n in neurons]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)


def describe_experiment(d: Mapping[str, Any]) -> str:
    """One line saying what an experiment (its :meth:`Experiment.to_dict` form) does.

    >>> describe_experiment({"stimuli": [{"neurons": ["P9"], "rate_hz": 100.0, "label": ""}],
    ...                      "silenced": ["MN9"], "silence_mode": "outgoing", "n_trials": 2, "t_run": 0.5})
    'P9 @ 100 Hz; silenced MN9 (outgoing); 2 trials x 0.5 s, seed 0'
    """
    parts = []
    if d.get("input_schedule"):
        parts.append(f"input schedule {Path(str(d['input_schedule'])).name}")
    for s in d.get("stimuli") or []:
        what = s.get("label") or _neurons_text(s.get("neurons", []))
        parts.append(f"{what} @ {float(s.get('rate_hz', 0)):g} Hz")
    if d.get("silenced"):
        parts.append(f"silenced {_neurons_text(d['silenced'])} ({d.get('silence_mode', 'outgoing')})")
    n = int(d.get("n_trials", 1))
    parts.append(f"{n} trial{'s' if n != 1 else ''} x {float(d.get('t_run', 1.0)):g} s, seed {d.get('seed', 0)}")
    return "; ".join(parts)


# -------------------------------------------------------------------- built-ins and TOML
def _sugar() -> Experiment:
    return Experiment(
        name="sugar",
        stimuli=(StimulusSet(SUGAR_GRNS_783, 200.0, "sugar GRNs"),),
        t_run=1.0,
        n_trials=30,
    )


def _p9() -> Experiment:
    return Experiment(
        name="p9",
        stimuli=(StimulusSet((720575940627652358, 720575940635872101), 100.0, "P9"),),
        t_run=1.0,
        n_trials=30,
    )


#: Built-in experiments by name: ``sugar`` (21 sugar GRNs at 200 Hz) and ``p9`` (P9 pair at 100 Hz).
BUILTIN_EXPERIMENTS = {"sugar": _sugar, "p9": _p9}


def builtin_experiment(name: str) -> Experiment:
    """Return a built-in experiment by name.

    Raises
    ------
    ValidationError
        For an unknown name, listing the built-ins.
    """
    try:
        return BUILTIN_EXPERIMENTS[name]()
    except KeyError:
        raise ValidationError(
            f"unknown experiment {name!r}; built-in experiments are {sorted(BUILTIN_EXPERIMENTS)}, "
            f"or give a TOML file.{suggest(name, BUILTIN_EXPERIMENTS)}"
        ) from None


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Load a built-in experiment by name, or an experiment TOML file.

    The TOML file has top-level keys ``name``, ``t_run``, ``n_trials``, ``seed``,
    ``silenced``, ``silence_mode``, ``input_schedule``, a ``[params]`` table and
    ``[[stimuli]]`` tables with ``neurons`` and ``rate_hz``::

        name = "sugar-100"
        t_run = 1.0
        n_trials = 30
        [[stimuli]]
        neurons = ["LB3"]
        rate_hz = 100.0
    """
    p = Path(name_or_path)
    if str(name_or_path) in BUILTIN_EXPERIMENTS:
        return builtin_experiment(str(name_or_path))
    if p.suffix.lower() == ".toml" or p.exists():
        if not p.exists():
            raise ValidationError(f"experiment file {p} does not exist")
        if not p.is_file():
            raise ValidationError(f"experiment file {p}: is a folder, not a file; give the TOML file inside it")
        try:
            data = tomllib.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValidationError(f"experiment file {p}: is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise ValidationError(f"experiment file {p}: cannot be read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"experiment file {p}: not valid TOML ({exc})") from None
        data.setdefault("name", p.stem)
        if data.get("input_schedule") and isinstance(data["input_schedule"], str):
            sched = Path(data["input_schedule"])
            if not sched.is_absolute():
                data["input_schedule"] = str(p.parent / sched)
        return Experiment.from_dict(data, source=f"experiment file {p}")
    return builtin_experiment(str(name_or_path))
