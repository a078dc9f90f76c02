"""Simulation results: spikes as (trial, neuron, step), paper-format parquet, rates, summaries, plots.

In memory a spike is ``(trial, idx, step)`` with ``idx`` the model index; on disk the
paper's columns are written: ``t`` (float64 s = step * dt, as Brian2's SpikeMonitor
records it), ``trial`` (int64), ``flywire_id`` (int64), ``exp_name`` (str,
dictionary-encoded), plus ``step`` (int64). Rates are in Hz, times in seconds.

Spike files are written and read with pyarrow and rates computed with numpy, without
pandas (whose import alone takes ~0.4 s); :meth:`SpikeResult.to_frame`,
:meth:`SpikeResult.rates` and :meth:`SpikeResult.propagation_front` return pandas
DataFrames for notebooks. Names (paper names such as MN9, cell types, classes) come from
:func:`brainfly.connectome.lookup.neuron_labels`: the connectome's annotation files when
the result carries them, else the FlyWire v783 tables shipped with brainfly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._io import atomic_write
from ._order import event_order
# the numpy <-> pyarrow helpers of lookup (pyarrow's own conversions import pandas)
from .connectome.lookup import _arrow_from_numpy, _arrow_strings, _numpy_from_arrow, neuron_labels, resolve_neurons
from .connectome.network import Connectome
from .errors import DataError, UnknownNeuronError, ValidationError
from .schedule import combine_digests

__all__ = ["SpikeResult", "merge_results"]

#: Columns of a spike file, in order (the paper's four, then ``step``).
SPIKE_COLUMNS = ("t", "trial", "flywire_id", "exp_name", "step")
_SILENCE_MODES = {
    "outgoing": "outgoing synapses removed (the paper's silencing)",
    "both": "incoming and outgoing synapses removed",
}


def _jsonable(value: Any, key: str = "", max_items: int = 1000) -> Any:
    """Meta values as JSON: numpy scalars to Python, small arrays to lists, large arrays summarised.

    Large per-neuron tables (the propagation front) are written to their own file by the
    caller, not into the parquet header.
    """
    if isinstance(value, dict):
        return {str(k): _jsonable(v, str(k), max_items) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key, max_items) for v in value]
    if isinstance(value, np.ndarray):
        if value.size <= max_items:
            return value.tolist()
        return f"<array {key} of {value.size} {value.dtype} values, not stored in the header>"
    if isinstance(value, np.generic):
        return value.item()
    return value


def _count(n: int, what: str) -> str:
    """``1 trial``, ``2 trials``, ``16,433 spikes``."""
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _write_columns(cols: dict[str, np.ndarray], path: str | Path, nan_as_null: bool = False,
                   header: dict[str, Any] | None = None) -> Path:
    """Write numpy columns (object arrays of str, or numbers) as parquet or, for ``.csv``, CSV; atomically.

    *header* (JSON) goes into a parquet file's schema metadata under ``brainfly``, as in a
    spike file. A CSV has no place for it but its columns: when ``header["synthetic"]`` is
    true, a last column ``synthetic`` (``true`` in every row) marks the file, so that the
    marker is in the header line even of a file without rows and every CSV reader keeps it.
    """
    import pyarrow as pa

    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    if is_csv and header and header.get("synthetic"):
        n = len(next(iter(cols.values()))) if cols else 0
        cols = {**cols, "synthetic": np.ones(n, dtype=bool)}
    arrays = [_arrow_strings(v.tolist()) if v.dtype == object
              else pa.Array.from_buffers(pa.bool_(), len(v), [None, pa.py_buffer(np.packbits(v, bitorder="little"))])
              if v.dtype == bool
              else _arrow_from_numpy(v, valid=np.isfinite(v) if nan_as_null and v.dtype.kind == "f" else None)
              for v in cols.values()]
    table = pa.Table.from_arrays(arrays, names=list(cols))
    if is_csv:
        import pyarrow.csv as pcsv

        return atomic_write(path, lambda tmp: pcsv.write_csv(table, tmp))
    import pyarrow.parquet as pq

    if header is not None:
        table = table.replace_schema_metadata({b"brainfly": json.dumps(_jsonable(header), default=str).encode()})
    repeated = [c for c in ("trial", "flywire_id", "name", "cell_type", "class") if c in cols]
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, use_dictionary=repeated,
                                                         write_statistics=[c for c in ("trial",) if c in cols]))


def _specs_text(specs: list[Any], label: str = "", most: int = 3) -> str:
    """A stimulus or silenced set's specs, shortened: ``sugar (21 IDs)``, ``MN9, P9``."""
    if label:
        return label
    shown = ", ".join(str(s) for s in specs[:most])
    return shown + (f", ... ({len(specs)} specs)" if len(specs) > most else "")


@dataclass
class SpikeResult:
    """Spikes of some trials of one experiment on one connectome.

    Parameters
    ----------
    trial, idx : int32 arrays, shape (n_spikes,)
    step : int64 array, shape (n_spikes,)
        Sorted by (trial, step, idx).
    flywire_ids : int64 array, shape (n_neurons,)
        The connectome's neuron list (to map idx -> flywire_id).
    trials : list of int
        Trials this result covers (a trial without spikes is still covered).
    n_steps : int
    dt_s : float
    exp_name : str
    engine : str
    connectome_label : str
    synthetic : bool
    meta : dict
        Timings, versions, choices made for the user, runaway detection, and (from
        :func:`brainfly.run`) ``experiment``: the experiment's ``to_dict()``.
    annotations : pandas.DataFrame or AnnotationTable, optional
        The connectome's annotation table (``connectome.annotations``), for names; when
        None, names come from the FlyWire v783 tables shipped with brainfly. Not saved.

    Examples
    --------
    >>> res = SpikeResult([0, 0], [1, 0], [5, 9], [720575940660219265, 5], [0], 10_000, 1e-4, "demo")
    >>> res
    <SpikeResult 'demo': 1 trial x 1 s, 2 spikes, 2 active neurons>
    >>> res.rates(names=True)[["name", "cell_type", "mean_hz"]].values.tolist()
    [['MN9', 'CB0701', 1.0], ['', '', 1.0]]
    """

    trial: np.ndarray
    idx: np.ndarray
    step: np.ndarray
    flywire_ids: np.ndarray
    trials: list[int]
    n_steps: int
    dt_s: float
    exp_name: str
    engine: str = ""
    connectome_label: str = ""
    synthetic: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    annotations: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.trial, dtype=np.int32)
        i = np.asarray(self.idx, dtype=np.int32)
        s = np.asarray(self.step, dtype=np.int64)
        order = event_order(t, s, i)  # (engines return sorted spikes: an O(n) check)
        if order is not None:
            t, i, s = t[order], i[order], s[order]
        for arr in (t, i, s):
            if arr.flags.writeable and arr.flags.owndata:
                arr.setflags(write=False)  # the spikes do not change (derived figures are kept)
        self.trial, self.idx, self.step = t, i, s
        self.flywire_ids = np.asarray(self.flywire_ids, dtype=np.int64)
        self.trials = sorted(int(k) for k in self.trials)

    def __repr__(self) -> str:
        where = f" on {self.connectome_label}" if self.connectome_label else ""
        if self.synthetic and "SYNTHETIC" not in where:
            where += " [SYNTHETIC connectome]"
        engine = f" ({self.engine})" if self.engine else ""
        return (f"<SpikeResult {self.exp_name!r}{engine}{where}: {_count(self.n_trials, 'trial')} x "
                f"{self.t_run:g} s, {_count(self.n_spikes, 'spike')}, {_count(self.n_active, 'active neuron')}>")

    # ------------------------------------------------------------ basic figures
    @property
    def n_spikes(self) -> int:
        """Total spikes over all trials."""
        return int(self.step.shape[0])

    @property
    def n_trials(self) -> int:
        """Number of trials covered."""
        return len(self.trials)

    @property
    def n_neurons(self) -> int:
        """Number of neurons of the connectome."""
        return int(self.flywire_ids.shape[0])

    @property
    def n_active(self) -> int:
        """Number of neurons that spiked in any trial."""
        return int(self.active_idx().shape[0])

    @property
    def t_run(self) -> float:
        """Duration of one trial, seconds."""
        return self.n_steps * self.dt_s

    @property
    def t(self) -> np.ndarray:
        """Spike times in seconds (float64, step * dt as Brian2 records them)."""
        return self.step * self.dt_s

    def active_idx(self) -> np.ndarray:
        """Model indices that spiked in any trial (sorted, int64)."""
        if not self.n_spikes:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.bincount(self.idx, minlength=self.n_neurons)).astype(np.int64)

    def _trial_rows(self) -> np.ndarray:
        """Row of each spike's trial in :attr:`trials` (int64)."""
        return np.searchsorted(np.asarray(self.trials, dtype=np.int64), self.trial).astype(np.int64)

    def _active_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(active idx, int64 counts of shape (n_trials, n_active)): spikes per trial and active neuron.

        Kept for the spikes it was computed from (the same read-only arrays and trials):
        the rates file, the summary and the rate table each need it."""
        basis = (self.trial, self.idx, tuple(self.trials), self.n_neurons)
        kept = self.__dict__.get("_counts_kept")
        if (kept is not None and kept[0][0] is basis[0] and kept[0][1] is basis[1] and kept[0][2:] == basis[2:]
                and not (basis[0].flags.writeable or basis[1].flags.writeable)):
            return kept[1]
        counts = self._count_active()
        self.__dict__["_counts_kept"] = (basis, counts)
        return counts

    def _count_active(self) -> tuple[np.ndarray, np.ndarray]:
        active = self.active_idx()
        col = np.zeros(self.n_neurons, dtype=np.int64)
        col[active] = np.arange(active.shape[0])
        flat = self._trial_rows() * active.shape[0] + col[self.idx]
        counts = np.bincount(flat, minlength=self.n_trials * active.shape[0])
        return active, counts.reshape(self.n_trials, active.shape[0])

    def spike_counts(self) -> np.ndarray:
        """int64 array (n_trials, n_neurons) of spike counts per trial and neuron."""
        flat = self._trial_rows() * self.n_neurons + self.idx
        return np.bincount(flat, minlength=self.n_trials * self.n_neurons).reshape(self.n_trials, self.n_neurons)

    # ------------------------------------------------------------ rates and names
    def labels(self, flywire_ids: Any) -> dict[str, np.ndarray]:
        """Name, cell type and class of some neurons (see :func:`~brainfly.connectome.lookup.neuron_labels`)."""
        return neuron_labels(flywire_ids, self.annotations)

    def _rate_stats(self) -> dict[str, np.ndarray]:
        """Per active neuron, sorted by mean rate (highest first, ties by model index):
        ``idx``, ``n_spikes``, ``mean_hz``, ``std_hz`` (ddof 1; NaN with one trial), ``sem_hz``."""
        active, counts = self._active_counts()
        n = self.n_trials
        hz = counts / self.t_run if n and self.t_run > 0 else np.zeros(counts.shape)
        mean = hz.mean(axis=0) if n else np.zeros(active.shape[0])
        std = hz.std(axis=0, ddof=1) if n > 1 else np.full(active.shape[0], np.nan)
        order = np.argsort(-mean, kind="stable")
        return {"idx": active[order], "n_spikes": counts.sum(axis=0)[order].astype(np.int64),
                "mean_hz": mean[order], "std_hz": std[order], "sem_hz": std[order] / np.sqrt(max(n, 1))}

    def _names(self, fids: np.ndarray, names: Any) -> dict[str, np.ndarray]:
        """Name columns for *fids*: all three (names=True), ``name`` from a mapping, or none."""
        if names is True:
            return self.labels(fids)
        if names is not None and names is not False and hasattr(names, "get"):
            return {"name": np.array([str(names.get(int(f), "") or "") for f in fids.tolist()], dtype=object)}
        return {}

    def _rate_columns(self, names: Any = False) -> dict[str, np.ndarray]:
        """The columns of :meth:`rates` as numpy arrays, in order."""
        stats = self._rate_stats()
        fids = self.flywire_ids[stats.pop("idx")]
        return {"flywire_id": fids, **self._names(fids, names), **stats}

    def rates(self, names: Any = False) -> Any:
        """Per-neuron firing rates over trials, for every neuron that spiked.

        Parameters
        ----------
        names : bool or mapping, default False
            True adds ``name`` (the paper name, e.g. ``MN9`` or ``P9``, else the cell
            type), ``cell_type`` and ``class`` from the connectome's annotations or the
            shipped FlyWire v783 tables (``""`` where unknown); a mapping flywire_id -> str
            adds ``name`` from it.

        Returns
        -------
        pandas.DataFrame
            Columns ``flywire_id`` (int64), [``name``, ``cell_type``, ``class``],
            ``n_spikes`` (int64, over all trials), ``mean_hz``, ``std_hz`` (over trials,
            ddof 1), ``sem_hz`` (std / sqrt(n_trials)); sorted by mean rate, highest
            first. With one trial, ``std_hz`` and ``sem_hz`` are NaN (undefined).
        """
        import pandas as pd

        return pd.DataFrame(self._rate_columns(names))

    def write_rates(self, path: str | Path, names: Any = True) -> Path:
        """Write :meth:`rates` to a ``.csv`` (else parquet) file atomically, without pandas.

        Undefined standard deviations (one trial) are written as empty cells (nulls). The
        file says where the rates come from: a parquet file in its schema metadata
        (``brainfly``: experiment, engine, connectome, ``synthetic``, trials); a CSV of a
        synthetic connectome's result in a last column ``synthetic`` (``true`` in every
        row, absent for real data), which any CSV reader keeps.

        Returns
        -------
        Path
        """
        return _write_columns(self._rate_columns(names), path, nan_as_null=True, header=self._file_header())

    def _file_header(self) -> dict[str, Any]:
        """What a rates or front file says about its origin (the spike file's header without the meta)."""
        return {"exp_name": self.exp_name, "engine": self.engine, "connectome": self.connectome_label,
                "synthetic": bool(self.synthetic), "trials": self.trials, "n_steps": self.n_steps,
                "dt_s": self.dt_s}

    # ------------------------------------------------------------ tables and files
    def to_frame(self) -> Any:
        """DataFrame with the paper's columns ``t``, ``trial``, ``flywire_id``, ``exp_name`` plus ``step``.

        ``exp_name`` is categorical (one category), as it is dictionary-encoded on disk.
        """
        import pandas as pd

        return pd.DataFrame({
            "t": self.t.astype(np.float64),
            "trial": self.trial.astype(np.int64),
            "flywire_id": self.flywire_ids[self.idx],
            "exp_name": pd.Categorical.from_codes(np.zeros(self.n_spikes, dtype=np.int8), [self.exp_name]),
            "step": self.step.astype(np.int64),
        })

    def header(self) -> dict[str, Any]:
        """Everything but the spikes, JSON-compatible."""
        return {
            "exp_name": self.exp_name,
            "engine": self.engine,
            "connectome": self.connectome_label,
            "synthetic": self.synthetic,
            "trials": self.trials,
            "n_steps": self.n_steps,
            "dt_s": self.dt_s,
            "meta": _jsonable(self.meta),
        }

    def to_arrow(self) -> Any:
        """pyarrow Table of the spikes (paper columns, ``exp_name`` dictionary-encoded, header in the schema)."""
        import pyarrow as pa

        n = self.n_spikes
        exp_name = pa.DictionaryArray.from_arrays(_arrow_from_numpy(np.zeros(n, dtype=np.int32)),
                                                  _arrow_strings([self.exp_name]))
        arrays = [
            _arrow_from_numpy(self.t),
            _arrow_from_numpy(self.trial.astype(np.int64)),
            _arrow_from_numpy(self.flywire_ids[self.idx]),
            exp_name,
            _arrow_from_numpy(self.step),
        ]
        table = pa.Table.from_arrays(arrays, names=list(SPIKE_COLUMNS))
        return table.replace_schema_metadata({b"brainfly": json.dumps(self.header(), default=str).encode()})

    def write_parquet(self, path: str | Path, *, before_rename: Callable[[], Any] | None = None) -> Path:
        """Write the spikes (paper columns) atomically; metadata goes into the file's schema.

        Parameters
        ----------
        path : str or Path
        before_rename : callable, optional
            Called once the file is written, before it takes its name (an exception there
            leaves no file): the runner finishes the run's other files in it, so that a
            spike file still means a complete run.

        Returns
        -------
        Path
        """
        import pyarrow.parquet as pq

        table = self.to_arrow()

        def write(tmp: Path) -> None:
            # dictionary pages only where values repeat (IDs, trials, the name), statistics
            # only for trial (readers filter by trial): 2.5x faster to write than the defaults
            pq.write_table(table, tmp, use_dictionary=["trial", "flywire_id", "exp_name"], write_statistics=["trial"])
            if before_rename is not None:
                before_rename()

        return atomic_write(path, write)

    @classmethod
    def read_parquet(cls, path: str | Path, flywire_ids: np.ndarray | None = None) -> "SpikeResult":
        """Read a spike file written by brainfly or by the paper's code (columns t, trial, flywire_id).

        Without brainfly metadata, ``step`` is recovered as ``round(t / 1e-4)`` and the
        neuron list is the set of neurons in the file unless *flywire_ids* is given.

        Raises
        ------
        DataError
            The file is not parquet, lacks a column, or names neurons not in *flywire_ids*.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            pfile = pq.ParquetFile(path)
            names = set(pfile.schema_arrow.names)
            missing = {"t", "trial", "flywire_id"} - names
            if missing:
                raise DataError(f"spike file {path}: missing column(s) {sorted(missing)}")
            raw = (pfile.schema_arrow.metadata or {}).get(b"brainfly")
            header = json.loads(raw) if raw else {}
            wanted = ["trial", "flywire_id", "step" if "step" in names else "t"]
            table = pfile.read(columns=wanted)
            exp_name = header.get("exp_name")
            if not exp_name and "exp_name" in names and pfile.metadata.num_rows:
                first = pfile.read_row_group(0, columns=["exp_name"]).column(0)
                exp_name = str(first[0].as_py()) if len(first) else None
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"spike file {path}: cannot be read as parquet ({exc})") from None
        dt_s = float(header.get("dt_s", 1e-4))
        if "step" in names:
            step = _numpy_from_arrow(table.column("step")).astype(np.int64)
        else:
            step = np.rint(_numpy_from_arrow(table.column("t")).astype(np.float64) / dt_s).astype(np.int64)
        fids_col = pc.cast(table.column("flywire_id"), pa.int64()).combine_chunks()
        if flywire_ids is None:
            flywire_ids = np.sort(_numpy_from_arrow(pc.unique(fids_col)))
        flywire_ids = np.asarray(flywire_ids, dtype=np.int64)
        found = pc.index_in(fids_col, value_set=_arrow_from_numpy(flywire_ids))  # hashing: O(n_spikes)
        if found.null_count:
            raise DataError(f"spike file {path}: has FlyWire IDs that are not in the given neuron list")
        idx = _numpy_from_arrow(found)
        trial = _numpy_from_arrow(table.column("trial")).astype(np.int64)
        trials = header.get("trials") or (np.unique(trial).tolist() if trial.size else [0])
        n_steps = int(header.get("n_steps") or (int(step.max()) + 1 if step.size else 0))
        return cls(trial, idx, step, flywire_ids, trials, n_steps, dt_s, exp_name or path.stem,
                   engine=header.get("engine", ""), connectome_label=header.get("connectome", ""),
                   synthetic=bool(header.get("synthetic", False)), meta=header.get("meta", {}))

    def propagation_front(self) -> Any:
        """Per trial, the neurons reached and their latencies from stimulus onset, or None.

        Returns
        -------
        pandas.DataFrame or None
            Columns ``trial``, ``flywire_id``, ``first_input_step``, ``first_spike_step``
            (-1 if it never spiked), ``latency_s`` (first spike after stimulus onset, NaN if
            none); available when the engine records it (the event engine does).
        """
        import pandas as pd

        cols = self._front_columns()
        return None if cols is None else pd.DataFrame(cols)

    def write_propagation_front(self, path: str | Path) -> Path | None:
        """Write :meth:`propagation_front` to parquet (or ``.csv``) atomically, without pandas.

        The origin (experiment, engine, connectome, ``synthetic``) is in a parquet file's
        schema metadata (``brainfly``), or for a ``.csv`` of a synthetic connectome's
        result in a last column ``synthetic``, as for :meth:`write_rates`.

        Returns
        -------
        Path or None
            None (and nothing written) when the engine recorded no front.
        """
        cols = self._front_columns()
        return None if cols is None else _write_columns(cols, path, header=self._file_header())

    @property
    def has_propagation_front(self) -> bool:
        """Whether the engine recorded the propagation front (first input and spike steps)."""
        front = self.meta.get("first_spike_step")
        return isinstance(front, dict) and isinstance(front.get("idx"), np.ndarray)

    def _front_columns(self) -> dict[str, np.ndarray] | None:
        if not self.has_propagation_front:
            return None
        front = self.meta["first_spike_step"]
        lat = np.asarray(front["latency_steps"], dtype=np.float64)
        return {
            "trial": np.asarray(front["trial"], dtype=np.int64),
            "flywire_id": self.flywire_ids[np.asarray(front["idx"], dtype=np.int64)],
            "first_input_step": np.asarray(front["first_input_step"], dtype=np.int64),
            "first_spike_step": np.asarray(front["first_spike_step"], dtype=np.int64),
            "latency_s": np.where(lat >= 0, lat * self.dt_s, np.nan),
        }

    # ------------------------------------------------------------ the experiment
    @property
    def _experiment(self) -> dict[str, Any] | None:
        """The experiment as :func:`brainfly.run` recorded it (``Experiment.to_dict()``), or None."""
        exp = self.meta.get("experiment")
        return exp if isinstance(exp, dict) else None

    def _neurons_view(self) -> Connectome:
        """A connectome of this result's neuron list only (no connections), to resolve specs."""
        conn = self.meta.get("connectome")
        version = conn.get("version") if isinstance(conn, dict) else None
        n = self.n_neurons
        return Connectome(self.flywire_ids.copy(), np.zeros(n + 1, dtype=np.int64), np.empty(0, np.int32),
                          np.empty(0, np.float64), name=self.connectome_label or "this result's connectome",
                          synthetic=self.synthetic, annotations=self.annotations, meta={"version": version})

    @staticmethod
    def _resolve(view: Connectome, specs: list[Any], owner: str) -> np.ndarray | None:
        """Model indices of some specs (unique, sorted), or None when they do not resolve here."""
        if not specs:
            return None
        try:
            return np.unique(resolve_neurons(view, specs, owner=owner))
        except UnknownNeuronError:
            return None

    def _stimulus_sets(self, view: Connectome) -> list[tuple[str, float, np.ndarray | None]]:
        """The recorded experiment's stimulus sets: (description, rate_hz, model indices or None)."""
        out = []
        for k, s in enumerate((self._experiment or {}).get("stimuli") or []):
            specs = list(s.get("neurons") or [])
            out.append((_specs_text(specs, s.get("label") or ""), float(s.get("rate_hz", float("nan"))),
                        self._resolve(view, specs, f"stimulus set {k}")))
        return out

    def _stimulated_idx(self) -> np.ndarray:
        """Model indices of the recorded experiment's stimulated neurons (empty if unknown)."""
        if not (self._experiment or {}).get("stimuli"):
            return np.empty(0, dtype=np.int64)
        found = [i for _, _, i in self._stimulus_sets(self._neurons_view()) if i is not None]
        return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)

    def _manipulation_lines(self, rate_of: dict[int, float]) -> tuple[list[str], list[tuple[str, float, Any]]]:
        """Lines saying what was stimulated and silenced, and the stimulus sets (see :meth:`_stimulus_sets`)."""
        exp = self._experiment
        if not exp:
            return [], []
        lines: list[str] = []
        view = self._neurons_view()
        sets = self._stimulus_sets(view)
        schedule = exp.get("input_schedule")
        if schedule:
            lines.append(f"input: the kicks of schedule {schedule} (stimulus rates are not used)")
        for text, rate, idx in sets:
            count = f" ({_count(idx.size, 'neuron')})" if idx is not None else ""
            lines.append(f"stimulated: {text}{count}" + ("" if schedule else f" with Poisson input at {rate:g} Hz"))
        silenced = list(exp.get("silenced") or [])
        if silenced:
            mode = str(exp.get("silence_mode", "outgoing"))
            idx = self._resolve(view, silenced, "silenced set")
            count = f" ({_count(idx.size, 'neuron')})" if idx is not None else ""
            lines.append(f"silenced: {_specs_text(silenced)}{count}: {_SILENCE_MODES.get(mode, mode)}")
            firing = [i for i in (idx.tolist() if idx is not None else []) if rate_of.get(i, 0.0) > 0]
            if firing and mode == "outgoing":
                fids = self.flywire_ids[firing]
                labels = self.labels(fids)["name"]
                who = ", ".join(f"{n or f} ({rate_of[i]:.1f} Hz)" for f, n, i in zip(fids.tolist(), labels, firing))
                lines.append(f"note: silenced but firing: {who}. Outgoing-only silencing leaves a neuron's own "
                             "firing intact: it only stops its synapses from reaching other neurons "
                             "(silence_mode='both' also removes its inputs).")
        if not lines:
            lines.append("no stimulus and nothing silenced")
        return lines, sets

    # ------------------------------------------------------------ summary
    def summary(self, names: Any = True, top: int = 10, stimulated_idx: Any = None) -> str:
        """A readable summary: the manipulation, spikes, active neurons, top neurons by rate with names.

        Parameters
        ----------
        names : bool or mapping, default True
            True: names from the annotations (paper names, else cell types; see
            :meth:`rates`); a mapping flywire_id -> str; False: no names.
        top : int
            How many neurons to list.
        stimulated_idx : int array, optional
            Model indices of the driven neurons; default: resolved from the recorded
            experiment (``meta["experiment"]``). They are summarised in one line and left
            out of the top list, which then shows the neurons the stimulus recruited.

        Returns
        -------
        str
        """
        n = self.n_trials
        per_s = self.n_spikes / max(n * self.t_run, 1e-12)
        per_trial_active = (np.count_nonzero(self._active_counts()[1], axis=1) if n else np.zeros(0))
        label = self.connectome_label or "an unnamed connectome"
        if self.synthetic and "SYNTHETIC" not in label:
            label += "  [SYNTHETIC connectome]"
        lines = [
            f"experiment {self.exp_name!r} on {label}",
            f"engine {self.engine or '?'}: {_count(n, 'trial')} x {self.t_run:g} s"
            + ("  (n = 1: no spread over trials, std and sem undefined)" if n == 1 else ""),
        ]
        stats = self._rate_stats()
        rate_of = dict(zip(stats["idx"].tolist(), stats["mean_hz"].tolist()))
        manipulation, sets = self._manipulation_lines(rate_of)
        lines += manipulation
        found = [idx for _, _, idx in sets if idx is not None]
        resolved = np.unique(np.concatenate(found)) if found else None
        lines += [
            f"spikes: {self.n_spikes:,} in total, {per_s:,.0f} per trial-second",
            f"active neurons: {self.n_active:,} in any trial, "
            f"{float(np.mean(per_trial_active)) if n else 0:.1f} per trial on average",
        ]
        runaway = self.meta.get("runaway")
        if runaway:
            onsets = [r.get("onset_s", float("nan")) for r in runaway if isinstance(r, dict)]
            lines.append(f"SELF-SUSTAINING (runaway) activity in {len(runaway)} of {n} trial(s)"
                         + (f", earliest onset at {min(onsets):.4f} s" if onsets else ""))
        stim = np.asarray(stimulated_idx, dtype=np.int64) if stimulated_idx is not None else resolved
        keep = np.ones(stats["idx"].shape[0], dtype=bool)
        if stim is not None and stim.size:
            stim = np.unique(stim)
            is_stim = np.isin(stats["idx"], stim)
            rates = np.zeros(stim.size)
            rates[: int(is_stim.sum())] = stats["mean_hz"][is_stim]  # silent stimulated neurons count as 0 Hz
            by_set = ""
            if stimulated_idx is None and len(found) > 1:
                by_set = "; by set: " + ", ".join(
                    f"{text} {np.mean([rate_of.get(i, 0.0) for i in idx.tolist()]):.1f} Hz"
                    for text, _, idx in sets if idx is not None)
            lines.append(f"stimulated neurons: {stim.size}, mean rate {rates.mean():.1f} Hz "
                         f"(min {rates.min():.1f}, max {rates.max():.1f}"
                         + (f", {int((rates == 0).sum())} silent)" if (rates == 0).any() else ")") + by_set)
            keep = ~is_stim
        shown = np.flatnonzero(keep)[:top]
        if shown.size:
            fids = self.flywire_ids[stats["idx"][shown]]
            blank = np.full(fids.size, "", dtype=object)
            labels = self._names(fids, names)
            name, ctype = labels.get("name", blank), labels.get("cell_type", blank)
            what = "recruited neurons" if stim is not None and stim.size else "neurons"
            spread = "mean over 1 trial" if n == 1 else f"mean ± sem over {n} trials"
            lines.append(f"top {shown.size} {what} by rate ({spread}):")
            for k, row in enumerate(shown.tolist()):
                extra = ctype[k] if ctype[k] and ctype[k] != name[k] else ""
                sem = stats["sem_hz"][row]
                err = "  (sem undefined)" if not math.isfinite(sem) else f" ± {sem:.1f}"
                lines.append(f"  {fids[k]:>20d}  {name[k]:<12s} {extra:<10s} {stats['mean_hz'][row]:8.1f} Hz{err}")
        return "\n".join(lines)

    # ------------------------------------------------------------ plots
    def _figure(self, ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
        if ax is not None:
            return ax.figure, ax
        import matplotlib.pyplot  # noqa: F401 - loads the backend (a notebook's display hooks; Agg headless)
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, layout="constrained")  # not registered with pyplot: no leaks, no double display
        return fig, fig.add_subplot()

    def _title(self, what: str) -> str:
        label = self.connectome_label or ""
        if self.synthetic and "SYNTHETIC" not in label:
            label += " (SYNTHETIC connectome)"
        return f"{self.exp_name}: {what}" + (f"\n{label}" if label else "")

    @staticmethod
    def _save(fig: Any, path: str | Path | None) -> None:
        if path is not None:
            path = Path(path)
            atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=path.suffix[1:] or "png"))

    def _plotted(self, neurons: Any, owner: str) -> np.ndarray | None:
        """Model indices of the neurons asked for (in the order given, each once), or None."""
        if neurons is None:
            return None
        specs = [neurons] if isinstance(neurons, (int, str, np.integer)) else list(neurons)
        rows = resolve_neurons(self._neurons_view(), specs, owner=f"SpikeResult.{owner}")
        return rows[np.sort(np.unique(rows, return_index=True)[1])]

    def _display_names(self, fids: np.ndarray) -> list[str]:
        labels = self.labels(fids)
        return [f"{n} ({f})" if n else str(f) for n, f in zip(labels["name"].tolist(), fids.tolist())]

    def plot_raster(self, trial: int | None = None, top: int = 40, neurons: Any = None, *,
                    t_window: tuple[float, float] | None = None, ax: Any = None,
                    path: str | Path | None = None) -> Any:
        """Spike raster of one trial: the most active neurons, labelled by name.

        Parameters
        ----------
        trial : int, optional
            Which trial (default: the first covered).
        top : int
            How many neurons (the most active over all trials) when *neurons* is not given.
        neurons : sequence of int or str, optional
            FlyWire IDs or names (as in experiments) to show instead, in that order.
        t_window : (float, float), optional
            Time range in seconds (default: the whole trial).
        ax : matplotlib Axes, optional
            Draw here (default: a new Figure).
        path : str or Path, optional
            Also save the figure there (format from the suffix; written atomically).

        Returns
        -------
        matplotlib.figure.Figure
        """
        k = self.trials[0] if trial is None and self.trials else trial
        if k not in self.trials:
            covered = ", ".join(map(str, self.trials[:8])) + (", ..." if len(self.trials) > 8 else "")
            raise ValidationError(f"SpikeResult.plot_raster: trial {k!r} is not in this result (trials: {covered})")
        rows = self._plotted(neurons, "plot_raster")
        if rows is None:
            active, counts = self._active_counts()
            rows = active[np.argsort(-counts.sum(axis=0), kind="stable")[:top]]
        fig, ax = self._figure(ax, (9.0, 1.8 + 0.16 * min(rows.size, 60)))
        in_trial = self.trial == k
        t, idx = self.t[in_trial], self.idx[in_trial]
        lane = np.full(self.n_neurons, -1, dtype=np.int64)
        lane[rows] = np.arange(rows.shape[0])
        shown = lane[idx] >= 0
        lanes = lane[idx[shown]]
        order = np.argsort(lanes, kind="stable")
        positions = np.split(t[shown][order], np.cumsum(np.bincount(lanes, minlength=rows.shape[0]))[:-1])
        if rows.size:
            ax.eventplot(positions, lineoffsets=np.arange(rows.shape[0]), linelengths=0.8, linewidths=0.8,
                         colors="k")
            ax.set_yticks(np.arange(rows.shape[0]))
            ax.set_yticklabels(self._display_names(self.flywire_ids[rows]), fontsize=7)
            ax.set_ylim(rows.shape[0] - 0.5, -0.5)
        ax.set_xlim(*(t_window or (0.0, self.t_run)))
        ax.set_xlabel("time (s)")
        ax.set_title(self._title(f"trial {k}, {int(shown.sum()):,} spikes of {rows.size} neurons"), fontsize=9)
        self._save(fig, path)
        return fig

    def plot_rates(self, top: int = 30, neurons: Any = None, *, ax: Any = None,
                   path: str | Path | None = None) -> Any:
        """Mean firing rates with their standard errors over trials, labelled by name.

        Parameters
        ----------
        top : int
            How many neurons (the highest rates) when *neurons* is not given.
        neurons : sequence of int or str, optional
            FlyWire IDs or names to show instead (silent ones at 0 Hz).
        ax : matplotlib Axes, optional
            Draw here (default: a new Figure).
        path : str or Path, optional
            Also save the figure there.

        Returns
        -------
        matplotlib.figure.Figure
            Horizontal bars (mean rate, Hz) with sem error bars (none with one trial);
            stimulated neurons of the recorded experiment are drawn in another colour.
        """
        cols = self._rate_columns(False)
        rows = self._plotted(neurons, "plot_rates")
        if rows is not None:
            fids = self.flywire_ids[rows]
            pos = {f: j for j, f in enumerate(cols["flywire_id"].tolist())}
            at = np.array([pos.get(f, -1) for f in fids.tolist()], dtype=np.int64)
            mean = np.where(at >= 0, cols["mean_hz"][at], 0.0)
            sem = np.where(at >= 0, cols["sem_hz"][at], np.nan if self.n_trials < 2 else 0.0)
        else:
            fids, mean, sem = cols["flywire_id"][:top], cols["mean_hz"][:top], cols["sem_hz"][:top]
        is_stim = np.isin(fids, self.flywire_ids[self._stimulated_idx()])
        fig, ax = self._figure(ax, (7.0, 1.8 + 0.2 * min(len(fids), 60)))
        y = np.arange(len(fids))
        err = None if self.n_trials < 2 else np.nan_to_num(sem)
        ax.barh(y, mean, xerr=err, color=np.where(is_stim, "tab:orange", "tab:blue").tolist(), capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels(self._display_names(fids), fontsize=7)
        ax.set_ylim(len(fids) - 0.5, -0.5)
        ax.set_xlabel("firing rate (Hz)" + (", mean ± sem" if self.n_trials > 1 else ", n = 1 trial"))
        what = f"rates over {_count(self.n_trials, 'trial')}"
        ax.set_title(self._title(what + (" (orange: stimulated)" if is_stim.any() else "")), fontsize=9)
        self._save(fig, path)
        return fig


def merge_results(parts: list[SpikeResult]) -> SpikeResult:
    """Concatenate results of disjoint trial subsets of the same run."""
    if not parts:
        raise ValueError("merge_results: nothing to merge")
    first = parts[0]
    if len(parts) == 1:  # nothing to concatenate: the same (sorted) arrays, a meta of its own
        merged = copy.copy(first)
        merged.meta = dict(first.meta)
        return merged
    trials = sorted({k for p in parts for k in p.trials})
    meta = dict(first.meta)
    digests = {k: v for p in parts for k, v in (p.meta.get("input_digests") or {}).items()}
    fronts = [p.meta.get("first_spike_step") for p in parts]
    if all(isinstance(f, dict) and isinstance(f.get("idx"), np.ndarray) for f in fronts):
        meta["first_spike_step"] = {k: np.concatenate([f[k] for f in fronts]) for k in fronts[0]}
    for key in ("runaway", "runaway_by_trial", "stimulus_onset_step"):
        if all(isinstance(p.meta.get(key), list) for p in parts):
            meta[key] = [x for p in parts for x in p.meta[key]]
    if all(p.meta.get("input_digests") for p in parts) and len(digests) == len(trials):
        meta["input_digests"] = digests
        meta["input"] = combine_digests(digests)
    return SpikeResult(
        np.concatenate([p.trial for p in parts]),
        np.concatenate([p.idx for p in parts]),
        np.concatenate([p.step for p in parts]),
        first.flywire_ids, trials, first.n_steps, first.dt_s, first.exp_name,
        first.engine, first.connectome_label, first.synthetic, meta, first.annotations,
    )
