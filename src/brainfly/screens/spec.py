"""A screen: a base experiment, what to vary, what to read out, and controls.

A screen spec is a TOML file or a :class:`Screen` object::

    name = "sugar-silencing"
    base = "sugar"                # built-in, experiment file, or an inline [base] table
    t_run = 1.0
    n_trials = 8
    seed = 1
    readout = ["MN9"]             # neurons or cell types whose rates are reported
    [[vary]]
    kind = "silence"              # each listed neuron silenced alone
    neurons = ["type:LB3", "720575940..."]
    [[vary]]
    kind = "rate"                 # sweep the base stimulus rate
    values = [10, 50, 100, 150, 200]
    [controls]
    shuffles = 2                  # degree-preserving shuffled connectomes as a null model

Kinds (:data:`KINDS`): ``silence`` and ``activate`` (each neuron alone; a cell type or
other group either neuron by neuron or, with ``group = true``, as one group), ``rate``
(the base stimulus rate; ``set`` picks one stimulus set by label or index, default all),
``param`` (a model parameter: ``name`` and ``values``). Several ``[[vary]]`` tables give
their product. The base condition (id 0) is always run.

Every condition keeps the base's seed, so conditions see the same Poisson input wherever
they stimulate the same neurons at the same rates (common random numbers; an input
schedule in the base makes it exact): differences between conditions come from the
manipulation, not from the draws.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._io import digest_text
from ..connectome.graph import hop_distances
from ..connectome.lookup import neuron_labels, resolve_neurons
from ..errors import ValidationError, suggest
from ..experiment import Experiment, StimulusSet, load_experiment
from ..params import ModelParams

__all__ = ["KINDS", "DEFAULT_MAX_CONDITIONS", "Vary", "Controls", "Screen", "Condition", "load_screen"]

#: What a ``[[vary]]`` table may change.
KINDS = ("silence", "activate", "rate", "param")

#: Screens with more conditions (shuffled controls included) are refused unless confirmed
#: (``yes=True`` / ``--yes``): a typo in a cell type can ask for days of simulation.
DEFAULT_MAX_CONDITIONS = 10_000

_VARY_KEYS = {
    "silence": {"kind", "neurons", "group", "select"},
    "activate": {"kind", "neurons", "group", "rate_hz", "with_base", "select"},
    "rate": {"kind", "values", "set"},
    "param": {"kind", "name", "values"},
}
_SCREEN_KEYS = {"name", "base", "t_run", "n_trials", "seed", "readout", "vary", "controls", "max_conditions",
                "silence_mode"}
_PARAM_NAMES = tuple(ModelParams().to_dict())


def _param_name(name: str, owner: str) -> str:
    """The ModelParams field *name* stands for (``w_syn`` -> ``w_syn_mv``, ``v_th`` -> ``v_th_mv``)."""
    if name in _PARAM_NAMES:
        return name
    for full in _PARAM_NAMES:
        if full.rsplit("_", 1)[0] == name and full.rsplit("_", 1)[1] in ("mv", "ms"):
            return full
    raise ValidationError(f"{owner}: unknown model parameter {name!r}; parameters are "
                          f"{', '.join(_PARAM_NAMES)} (units in the name; w_syn, v_th, ... work too)."
                          f"{suggest(name, _PARAM_NAMES)}")


def _specs(values: Any, owner: str) -> tuple[int | str, ...]:
    if isinstance(values, (str, int)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise ValidationError(f"{owner}: neurons must be a non-empty list of FlyWire IDs, names or cell types "
                              f"(got {values!r})")
    out: list[int | str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str, np.integer)):
            raise ValidationError(f"{owner}: {v!r} is not a FlyWire ID, name or cell type")
        out.append(int(v) if isinstance(v, np.integer) else v)
    return tuple(out)


def _numbers(values: Any, owner: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValidationError(f"{owner}: values must be a non-empty list of numbers (got {values!r})")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ValidationError(f"{owner}: {v!r} is not a finite number")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Selection:
    """Neurons chosen by their place in the circuit rather than listed.

    Parameters
    ----------
    upstream_of : tuple of int or str
        Target neurons (IDs, names, cell types): select neurons with a path of at most
        *max_hops* connections onto one of them (any sign), the targets left out.
    max_hops : int
        Longest path, in connections (1: direct inputs).
    active_in_base : bool
        Keep only neurons that spike in the base condition (run first, once); the base's
        stimulated neurons are left out either way when silencing.
    limit : int or None
        Keep at most this many: the most active in the base first (else the nearest, then
        by model index).

    Examples
    --------
    In a spec: ``select = { upstream_of = ["MN9"], max_hops = 2, active_in_base = true }``.
    """

    upstream_of: tuple[int | str, ...]
    max_hops: int = 2
    active_in_base: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream_of", _specs(self.upstream_of, "select: upstream_of"))
        if isinstance(self.max_hops, bool) or not isinstance(self.max_hops, int) or self.max_hops < 1:
            raise ValidationError(f"select: max_hops must be an integer >= 1 (got {self.max_hops!r})")
        if not isinstance(self.active_in_base, bool):
            raise ValidationError(f"select: active_in_base must be true or false (got {self.active_in_base!r})")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ValidationError(f"select: limit must be an integer >= 1 (got {self.limit!r})")

    @classmethod
    def from_dict(cls, d: Any, owner: str = "select") -> "Selection":
        """From a ``select = {...}`` table, with its keys checked."""
        keys = {"upstream_of", "max_hops", "active_in_base", "limit"}
        if not isinstance(d, Mapping) or "upstream_of" not in d:
            raise ValidationError(f"{owner}: a table with upstream_of (and max_hops, active_in_base, limit); "
                                  f"got {d!r}")
        extra = set(d) - keys
        if extra:
            raise ValidationError(f"{owner}: unknown key(s) {sorted(extra)}; valid keys are {sorted(keys)}."
                                  f"{suggest(sorted(extra)[0], keys)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        d: dict[str, Any] = {"upstream_of": list(self.upstream_of), "max_hops": self.max_hops,
                             "active_in_base": self.active_in_base}
        if self.limit is not None:
            d["limit"] = self.limit
        return d

    def neurons(self, connectome: Any, base_counts: np.ndarray | None, exclude: np.ndarray, owner: str) -> np.ndarray:
        """Model indices selected, in order (most active first where *base_counts* is given,
        else nearest first), *exclude* (model indices) left out.

        *base_counts*: spikes of each neuron in the base run (needed with active_in_base)."""
        targets = resolve_neurons(connectome, self.upstream_of, owner=f"{owner}: upstream_of")
        hops = hop_distances(connectome, targets, upstream=True, max_hops=self.max_hops)
        chosen = np.flatnonzero(hops >= 1)  # (at most max_hops: the search stopped there)
        chosen = np.setdiff1d(chosen, np.concatenate([targets, exclude]).astype(np.int64))
        if self.active_in_base:
            if base_counts is None:
                raise ValidationError(f"{owner}: active_in_base needs the base run")
            chosen = chosen[base_counts[chosen] > 0]
        if base_counts is not None:
            chosen = chosen[np.lexsort((chosen, hops[chosen], -base_counts[chosen]))]
        else:
            chosen = chosen[np.lexsort((chosen, hops[chosen]))]
        if self.limit is not None:
            chosen = chosen[:self.limit]
        return chosen


@dataclass(frozen=True)
class Vary:
    """One ``[[vary]]`` table: what changes from one condition to the next.

    Parameters
    ----------
    kind : {"silence", "activate", "rate", "param"}
    neurons : tuple of int or str
        ``silence``/``activate``: the neurons, each alone (a group spec such as
        ``type:LB3``: each of its neurons alone, or the group as one with *group*).
    group : bool
        ``silence``/``activate``: a group spec is one condition, not one per neuron.
    rate_hz : float or None
        ``activate``: the rate of the activated neuron (default: the base's first
        stimulus rate, else 150 Hz).
    with_base : bool
        ``activate``: on top of the base stimulus (default: alone, the base stimulus off).
    values : tuple of float
        ``rate``: rates in Hz; ``param``: the parameter's values (in its unit).
    set : int, str or None
        ``rate``: the stimulus set (label or index) whose rate is swept; default all.
    name : str
        ``param``: the model parameter (``w_syn_mv`` or ``w_syn``, ``f_poi``, ``v_th``, ...).
    select : Selection or dict, optional
        ``silence``/``activate``: the neurons chosen from the connectome (and the base run)
        instead of listed, e.g. every neuron within two synapses upstream of MN9 that the
        base activates.
    """

    kind: str
    neurons: tuple[int | str, ...] = ()
    group: bool = False
    rate_hz: float | None = None
    with_base: bool = False
    values: tuple[float, ...] = ()
    set: int | str | None = None
    name: str = ""
    select: Selection | None = None

    def __post_init__(self) -> None:
        owner = f"vary {self.kind!r}"
        if self.kind not in KINDS:
            raise ValidationError(f"vary: unknown kind {self.kind!r}; kinds are {', '.join(KINDS)}."
                                  f"{suggest(str(self.kind), KINDS)}")
        if self.select is not None and not isinstance(self.select, Selection):
            object.__setattr__(self, "select", Selection.from_dict(self.select, f"{owner}: select"))
        if self.kind in ("silence", "activate"):
            if self.select is None:
                object.__setattr__(self, "neurons", _specs(self.neurons, owner))
            elif self.neurons:
                raise ValidationError(f"{owner}: give neurons or select, not both")
            if self.values:
                raise ValidationError(f"{owner}: takes neurons, not values")
        else:
            object.__setattr__(self, "values", _numbers(self.values, owner))
            if self.neurons or self.select is not None:
                raise ValidationError(f"{owner}: takes values, not neurons")
        if self.kind == "rate" and any(v < 0 for v in self.values):
            raise ValidationError(f"{owner}: rates must be >= 0 Hz (got {list(self.values)})")
        if self.kind == "param":
            object.__setattr__(self, "name", _param_name(str(self.name), owner))
        if self.rate_hz is not None and (isinstance(self.rate_hz, bool) or not float(self.rate_hz) > 0):
            raise ValidationError(f"{owner}: rate_hz must be a rate > 0 Hz (got {self.rate_hz!r})")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], owner: str = "vary") -> "Vary":
        """From a ``[[vary]]`` table, with its keys checked."""
        if not isinstance(d, Mapping) or "kind" not in d:
            raise ValidationError(f"{owner}: each [[vary]] table needs a kind ({', '.join(KINDS)}); got {d!r}")
        kind = d["kind"]
        if kind not in _VARY_KEYS:
            raise ValidationError(f"{owner}: unknown kind {kind!r}; kinds are {', '.join(KINDS)}."
                                  f"{suggest(str(kind), KINDS)}")
        extra = set(d) - _VARY_KEYS[kind]
        if extra:
            raise ValidationError(f"{owner}: unknown key(s) {sorted(extra)} for kind {kind!r}; valid keys are "
                                  f"{sorted(_VARY_KEYS[kind])}.{suggest(sorted(extra)[0], _VARY_KEYS[kind])}")
        for key in ("group", "with_base"):
            if key in d and not isinstance(d[key], bool):
                raise ValidationError(f"{owner}: {key} must be true or false (got {d[key]!r})")
        kwargs = dict(d)
        if "neurons" in kwargs:
            kwargs["neurons"] = _specs(kwargs["neurons"], f"{owner} ({kind})")
        if "values" in kwargs:
            kwargs["values"] = _numbers(kwargs["values"], f"{owner} ({kind})")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (TOML/JSON)."""
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("silence", "activate"):
            d.update(neurons=list(self.neurons), group=self.group)
            if self.select is not None:
                d["select"] = self.select.to_dict()
        if self.kind == "activate":
            d.update(with_base=self.with_base)
            if self.rate_hz is not None:
                d["rate_hz"] = float(self.rate_hz)
        if self.kind in ("rate", "param"):
            d["values"] = list(self.values)
        if self.kind == "rate" and self.set is not None:
            d["set"] = self.set
        if self.kind == "param":
            d["name"] = self.name
        return d


@dataclass(frozen=True)
class Controls:
    """Controls run beside the screen.

    Parameters
    ----------
    shuffles : int
        Number of degree-preserving shuffled connectomes
        (:func:`brainfly.connectome.shuffle.shuffled_connectome`, seeds 1..shuffles): every
        condition also runs on each, as a null model for its effects.
    """

    shuffles: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.shuffles, bool) or not isinstance(self.shuffles, int) or self.shuffles < 0:
            raise ValidationError(f"controls: shuffles must be an integer >= 0 (got {self.shuffles!r})")


@dataclass(frozen=True)
class Condition:
    """One condition of a screen, resolved against a connectome.

    Attributes
    ----------
    condition_id : int
        0 for the base; in the order of the product of the ``[[vary]]`` tables.
    kind : str
        ``base``, a kind, or kinds joined by ``+`` for a product.
    label : str
        What was changed, for people (``silence MN9``, ``rate 50 Hz``).
    experiment : Experiment
    columns : dict
        ``silence_target``, ``activate_target``, ``rate_hz``, ``param``, ``param_value``.
    """

    condition_id: int
    kind: str
    label: str
    experiment: Experiment
    columns: dict[str, Any] = field(default_factory=dict)


def _empty_columns() -> dict[str, Any]:
    return {"silence_target": "", "activate_target": "", "rate_hz": float("nan"), "param": "",
            "param_value": float("nan")}


@dataclass(frozen=True)
class Screen:
    """A screen: conditions made from a base experiment, read out at chosen neurons.

    Parameters
    ----------
    base : Experiment, str or Path
        The base condition: an Experiment, a built-in name (``sugar``, ``p9``) or a TOML file.
    readout : tuple of int or str
        Neurons or cell types whose rates are reported for every condition.
    vary : tuple of Vary (or dicts)
        What changes; several give their product.
    name : str
    t_run, n_trials, seed : optional
        Override the base's.
    controls : Controls (or dict)
    max_conditions : int
        More conditions than this are refused unless confirmed (``yes=True``).

    Examples
    --------
    >>> s = Screen(base="sugar", readout=["MN9"], vary=[{"kind": "rate", "values": [50, 100]}], n_trials=4)
    >>> s.n_conditions_hint
    3
    """

    base: Experiment | str | Path
    readout: tuple[int | str, ...]
    vary: tuple[Vary, ...] = ()
    name: str = "screen"
    t_run: float | None = None
    n_trials: int | None = None
    seed: int | None = None
    controls: Controls = field(default_factory=Controls)
    max_conditions: int = DEFAULT_MAX_CONDITIONS
    silence_mode: str | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        owner = f"screen {self.name!r}"
        base = self.base
        if not isinstance(base, Experiment):
            base = load_experiment(base)
        changes: dict[str, Any] = {}
        for key in ("t_run", "n_trials", "seed", "silence_mode"):
            value = getattr(self, key)
            if value is not None:
                changes[key] = value
        if changes:
            base = base.with_(**changes)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "readout", _specs(self.readout, f"{owner}: readout"))
        vary = tuple(v if isinstance(v, Vary) else Vary.from_dict(v, f"{owner}: vary[{k}]")
                     for k, v in enumerate(self.vary))
        object.__setattr__(self, "vary", vary)
        if not isinstance(self.controls, Controls):
            controls = self.controls
            if not isinstance(controls, Mapping) or set(controls) - {"shuffles"}:
                raise ValidationError(f"{owner}: [controls] takes shuffles only (got {controls!r})")
            object.__setattr__(self, "controls", Controls(**controls))
        if isinstance(self.max_conditions, bool) or not isinstance(self.max_conditions, int) or self.max_conditions < 1:
            raise ValidationError(f"{owner}: max_conditions must be an integer >= 1 (got {self.max_conditions!r})")
        if base.input_schedule is not None:
            for v in vary:
                if v.kind == "rate" or (v.kind == "activate"):
                    raise ValidationError(f"{owner}: vary kind {v.kind!r} changes Poisson stimuli, but the base "
                                          "is driven by an input schedule; drop the schedule or vary silence/param")
        for v in vary:
            if v.kind == "rate" and not base.stimuli:
                raise ValidationError(f"{owner}: vary kind 'rate' sweeps the base stimulus, but the base has none")

    # ------------------------------------------------------------ reading and writing
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "screen", root: Path | None = None) -> "Screen":
        """From the plain-dict form of a spec (a parsed TOML file).

        *root*: folder that relative experiment paths in ``base`` are taken from.
        """
        if not isinstance(d, Mapping):
            raise ValidationError(f"{source}: a screen spec is a table of keys (got {type(d).__name__})")
        unknown = set(d) - _SCREEN_KEYS
        if unknown:
            raise ValidationError(f"{source}: unknown key(s) {sorted(unknown)}; valid keys are "
                                  f"{sorted(_SCREEN_KEYS)}.{suggest(sorted(unknown)[0], _SCREEN_KEYS)}")
        for key in ("base", "readout"):
            if key not in d:
                raise ValidationError(f"{source}: missing key {key!r} (see `brainfly screen --help` for a spec)")
        base = d["base"]
        if isinstance(base, Mapping):
            base = Experiment.from_dict(dict(base), source=f"{source}: [base]")
        elif isinstance(base, str):
            candidate = (root / base) if root is not None else Path(base)
            if base.endswith(".toml") and candidate.is_file():
                base = candidate
        else:
            raise ValidationError(f"{source}: base must be a built-in experiment name, an experiment file or an "
                                  f"inline [base] table (got {base!r})")
        types = {"name": str, "t_run": (int, float), "n_trials": int, "seed": int, "max_conditions": int,
                 "silence_mode": str}
        for key, ok in types.items():
            if key in d and (isinstance(d[key], bool) or not isinstance(d[key], ok)):
                raise ValidationError(f"{source}: {key} has the wrong type (got {d[key]!r})")
        vary = d.get("vary", [])
        if not isinstance(vary, list):
            raise ValidationError(f"{source}: vary must be a list of [[vary]] tables (got {vary!r})")
        kwargs = {k: d[k] for k in types if k in d}
        try:
            return cls(base=base, readout=d["readout"], vary=tuple(vary), controls=d.get("controls", Controls()),
                       source=source, **kwargs)
        except ValidationError as exc:
            text = str(exc)
            raise ValidationError(text if text.startswith(source) else f"{source}: {text}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form with the base written out in full (recorded with the results)."""
        assert isinstance(self.base, Experiment)
        return {
            "name": self.name, "base": self.base.to_dict(), "readout": list(self.readout),
            "vary": [v.to_dict() for v in self.vary], "controls": {"shuffles": self.controls.shuffles},
            "max_conditions": self.max_conditions,
        }

    @property
    def digest(self) -> str:
        """Content digest of what the spec computes (canonical JSON of :meth:`to_dict`, less
        ``max_conditions``, a safety limit that changes no number: raising it resumes)."""
        d = self.to_dict()
        d.pop("max_conditions")
        return digest_text("brainfly-screen", json.dumps(d, sort_keys=True, default=str))

    @property
    def n_conditions_hint(self) -> int | None:
        """Conditions per connectome where every neuron spec stands for one condition (groups
        expanded neuron by neuron may give more: see :meth:`conditions`); None where a
        selection decides."""
        n = 1
        for v in self.vary:
            if v.select is not None:
                return None
            n *= len(v.neurons) if v.kind in ("silence", "activate") else len(v.values)
        return (1 + n) if self.vary else 1

    # ------------------------------------------------------------ the conditions
    def readout_ids(self, connectome: Any) -> np.ndarray:
        """FlyWire IDs of the readout neurons (a cell type gives all of its neurons), unique, in order."""
        idx = resolve_neurons(connectome, self.readout, owner=f"screen {self.name!r}: readout")
        _, first = np.unique(idx, return_index=True)
        return connectome.flywire_ids[idx[np.sort(first)]]

    @property
    def needs_base_run(self) -> bool:
        """Whether choosing the conditions needs the base run first (a selection keeps the
        neurons the base activates, or puts the most active first)."""
        return any(v.select is not None for v in self.vary)

    def conditions(self, connectome: Any, base_counts: np.ndarray | None = None) -> list[Condition]:
        """The conditions, base first, with every neuron resolved against *connectome*.

        *base_counts*: spikes per neuron (model index) in the base run, for selections that
        keep active neurons or order by activity (:attr:`needs_base_run`).

        Raises
        ------
        UnknownNeuronError, ValidationError
            For an unknown neuron, an empty group, or an impossible combination (a neuron
            both stimulated and silenced), before anything runs.
        """
        base = self.base
        assert isinstance(base, Experiment)
        owner = f"screen {self.name!r}"
        base.resolve(connectome)
        choices = [self._choices(v, connectome, f"{owner}: vary[{k}] ({v.kind})", base_counts)
                   for k, v in enumerate(self.vary)]
        out = [Condition(0, "base", "base", base.with_(name=f"{self.name}-base"), _empty_columns())]
        if not choices:
            return out
        for combo in itertools.product(*choices):
            cid = len(out)
            exp = base
            cols = _empty_columns()
            parts = []
            for v, (label, apply, col) in zip(self.vary, combo):
                try:
                    exp = apply(exp)
                except ValidationError as exc:
                    raise ValidationError(f"{owner}: condition {cid} ({'; '.join(parts + [label])}): {exc}; drop "
                                          "that value from the [[vary]] table") from None
                cols.update(col)
                parts.append(label)
            exp = exp.with_(name=f"{self.name}-{cid}")
            kind = "+".join(v.kind for v in self.vary)
            out.append(Condition(cid, kind, "; ".join(parts), exp, cols))
        for c in out[1:]:
            try:
                c.experiment.resolve(connectome)  # stimulated and silenced at once, unknown IDs, ...
            except ValidationError as exc:
                raise ValidationError(f"{owner}: condition {c.condition_id} ({c.label}): {exc}; drop it from the "
                                      "[[vary]] list") from None
        return out

    def _choices(self, v: Vary, connectome: Any, owner: str,
                 base_counts: np.ndarray | None = None) -> list[tuple[str, Any, dict[str, Any]]]:
        """``(label, apply(experiment) -> experiment, columns)`` for each value of *v*."""
        base = self.base
        assert isinstance(base, Experiment)
        if v.kind in ("silence", "activate"):
            targets: list[tuple[str, tuple[int | str, ...]]] = []
            specs: tuple[int | str, ...] = v.neurons
            if v.select is not None:
                stimulated = np.concatenate([np.empty(0, np.int64), *base.resolve(connectome).stim_idx])
                picked = v.select.neurons(connectome, base_counts, stimulated, owner)
                if picked.size == 0:
                    raise ValidationError(f"{owner}: the selection {v.select.to_dict()} holds no neuron of "
                                          f"{connectome.label}")
                specs = tuple(int(i) for i in connectome.flywire_ids[picked])
            if v.select is not None and v.group:
                ids = tuple(int(i) for i in specs)
                targets.append((f"{len(ids)} neurons upstream of {', '.join(map(str, v.select.upstream_of))}", ids))
                specs = ()
            annotations = getattr(connectome, "annotations", None)
            # IDs resolved and named together (a screen may list thousands)
            given = np.array([int(x) for x in specs if not isinstance(x, str)], dtype=np.int64)
            resolve_neurons(connectome, given.tolist(), owner=owner)  # unknown IDs: one clear error
            id_names = dict(zip(given.tolist(), neuron_labels(given, annotations)["name"].tolist()))
            for spec in specs:
                if not isinstance(spec, str):
                    fid = int(spec)
                    targets.append((f"{id_names[fid]} {fid}" if id_names[fid] else str(fid), (fid,)))
                    continue
                idx = resolve_neurons(connectome, [spec], owner=owner)
                if idx.size == 0:
                    raise ValidationError(f"{owner}: {spec!r} stands for no neuron of {connectome.label}")
                ids = connectome.flywire_ids[idx]
                if idx.size == 1:
                    targets.append((spec, (int(ids[0]),)))
                elif v.group:
                    targets.append((str(spec), tuple(int(i) for i in ids)))
                else:
                    names = neuron_labels(ids, annotations)["name"]
                    targets += [(f"{n or spec} {int(i)}", (int(i),)) for n, i in zip(names, ids)]
            return [self._target_choice(v, text, ids) for text, ids in targets]
        if v.kind == "rate":
            sets = self._rate_sets(v, owner)
            return [(f"rate {x:g} Hz",
                     lambda e, x=x: e.with_(stimuli=tuple(replace(s, rate_hz=x) if k in sets else s
                                                          for k, s in enumerate(e.stimuli))) if x > 0 else
                     e.with_(stimuli=tuple(s for k, s in enumerate(e.stimuli) if k not in sets)),
                     {"rate_hz": x}) for x in v.values]
        # param
        return [(f"{v.name} = {x:g}", lambda e, x=x: e.with_(params=replace(e.params, **{v.name: x})),
                 {"param": v.name, "param_value": x}) for x in v.values]

    def _target_choice(self, v: Vary, text: str, ids: tuple[int, ...]) -> tuple[str, Any, dict[str, Any]]:
        base = self.base
        assert isinstance(base, Experiment)
        if v.kind == "silence":
            return (f"silence {text}", lambda e: e.with_(silenced=tuple(e.silenced) + ids),
                    {"silence_target": text})
        rate = v.rate_hz if v.rate_hz is not None else (base.stimuli[0].rate_hz if base.stimuli else 150.0)
        new = StimulusSet(ids, float(rate), label=f"activate {text}")
        return (f"activate {text} @ {rate:g} Hz",
                lambda e: e.with_(stimuli=(tuple(e.stimuli) if v.with_base else ()) + (new,)),
                {"activate_target": text})

    def _rate_sets(self, v: Vary, owner: str) -> set[int]:
        base = self.base
        assert isinstance(base, Experiment)
        if v.set is None:
            return set(range(len(base.stimuli)))
        if isinstance(v.set, int) and not isinstance(v.set, bool):
            if not 0 <= v.set < len(base.stimuli):
                raise ValidationError(f"{owner}: set {v.set} is out of range (the base has {len(base.stimuli)} "
                                      "stimulus sets, numbered from 0)")
            return {v.set}
        labels = [s.label for s in base.stimuli]
        if v.set not in labels:
            raise ValidationError(f"{owner}: no stimulus set labelled {v.set!r} in the base (labels: {labels})")
        return {labels.index(v.set)}


def load_screen(path: str | Path) -> Screen:
    """Read a screen spec from a TOML file (relative experiment paths from its folder).

    Raises
    ------
    ValidationError
        For a missing file, bad TOML or a bad spec, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"screen spec {path}: no such file")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"screen spec {path}: not valid TOML ({exc})") from None
    d.setdefault("name", path.stem)
    return Screen.from_dict(d, source=f"screen spec {path}", root=path.parent)
