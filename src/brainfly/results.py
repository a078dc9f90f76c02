"""Simulation results: spikes as (trial, neuron, step), paper-format parquet, rates, summaries.

In memory a spike is ``(trial, idx, step)`` with ``idx`` the model index; on disk the
paper's columns are written: ``t`` (float64 s = step * dt, as Brian2's SpikeMonitor
records it), ``trial``, ``flywire_id`` (int64), ``exp_name`` (str), plus ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write
from ._order import event_order

__all__ = ["SpikeResult", "merge_results"]


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
        Timings, versions, choices made for the user, runaway detection, ...
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

    def __post_init__(self) -> None:
        t = np.asarray(self.trial, dtype=np.int32)
        i = np.asarray(self.idx, dtype=np.int32)
        s = np.asarray(self.step, dtype=np.int64)
        order = event_order(t, s, i)  # (engines return sorted spikes: an O(n) check)
        if order is not None:
            t, i, s = t[order], i[order], s[order]
        self.trial, self.idx, self.step = t, i, s
        self.trials = sorted(int(k) for k in self.trials)

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
    def t_run(self) -> float:
        """Duration of one trial, seconds."""
        return self.n_steps * self.dt_s

    @property
    def t(self) -> np.ndarray:
        """Spike times in seconds (float64, step * dt as Brian2 records them)."""
        return self.step * self.dt_s

    def active_idx(self) -> np.ndarray:
        """Model indices that spiked in any trial (sorted)."""
        return np.unique(self.idx).astype(np.int64)

    def spike_counts(self) -> np.ndarray:
        """int64 array (n_trials, n_neurons) of spike counts per trial and neuron."""
        pos = {k: j for j, k in enumerate(self.trials)}
        rows = np.array([pos[int(k)] for k in self.trial], dtype=np.int64) if self.n_spikes else np.empty(0, np.int64)
        counts = np.zeros((self.n_trials, self.flywire_ids.shape[0]), dtype=np.int64)
        np.add.at(counts, (rows, self.idx), 1)
        return counts

    # ------------------------------------------------------------ tables
    def to_frame(self) -> Any:
        """DataFrame with the paper's columns plus ``step``."""
        import pandas as pd

        return pd.DataFrame({
            "t": self.t.astype(np.float64),
            "trial": self.trial.astype(np.int64),
            "flywire_id": self.flywire_ids[self.idx].astype(np.int64),
            "exp_name": pd.Series([self.exp_name] * self.n_spikes, dtype="object"),
            "step": self.step.astype(np.int64),
        })

    def write_parquet(self, path: str | Path) -> Path:
        """Write the spikes (paper columns) atomically; metadata goes into the file's schema."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"brainfly"] = json.dumps(self.header(), default=str).encode()
        table = table.replace_schema_metadata(meta)
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp))

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

    @classmethod
    def read_parquet(cls, path: str | Path, flywire_ids: np.ndarray | None = None) -> "SpikeResult":
        """Read a spike file written by brainfly or by the paper's code (columns t, trial, flywire_id).

        Without brainfly metadata, ``step`` is recovered as ``round(t / 1e-4)`` and the
        neuron list is the set of neurons in the file unless *flywire_ids* is given.
        """
        import pyarrow.parquet as pq

        from .errors import DataError

        path = Path(path)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"spike file {path}: cannot be read as parquet ({exc})") from None
        frame = table.to_pandas()
        missing = {"t", "trial", "flywire_id"} - set(frame.columns)
        if missing:
            raise DataError(f"spike file {path}: missing column(s) {sorted(missing)}")
        header = {}
        raw = (table.schema.metadata or {}).get(b"brainfly")
        if raw:
            header = json.loads(raw)
        dt_s = float(header.get("dt_s", 1e-4))
        step = frame["step"].to_numpy(np.int64) if "step" in frame else np.rint(frame["t"].to_numpy() / dt_s).astype(np.int64)
        fids_col = frame["flywire_id"].to_numpy(np.int64)
        if flywire_ids is None:
            flywire_ids = np.unique(fids_col)
        flywire_ids = np.asarray(flywire_ids, dtype=np.int64)
        sorter = np.argsort(flywire_ids)
        pos = np.searchsorted(flywire_ids, fids_col, sorter=sorter)
        pos = np.clip(pos, 0, len(flywire_ids) - 1)
        idx = sorter[pos]
        if fids_col.size and not np.array_equal(flywire_ids[idx], fids_col):
            raise DataError(f"spike file {path}: has FlyWire IDs that are not in the given neuron list")
        trial = frame["trial"].to_numpy(np.int64)
        trials = header.get("trials") or (sorted(np.unique(trial).tolist()) if trial.size else [0])
        exp_name = header.get("exp_name") or (str(frame["exp_name"].iloc[0]) if "exp_name" in frame and len(frame) else path.stem)
        n_steps = int(header.get("n_steps") or (int(step.max()) + 1 if step.size else 0))
        return cls(trial, idx, step, flywire_ids, trials, n_steps, dt_s, exp_name,
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

        front = self.meta.get("first_spike_step")
        if not isinstance(front, dict) or not isinstance(front.get("idx"), np.ndarray):
            return None
        lat = np.asarray(front["latency_steps"], dtype=np.float64)
        return pd.DataFrame({
            "trial": np.asarray(front["trial"], dtype=np.int64),
            "flywire_id": self.flywire_ids[np.asarray(front["idx"], dtype=np.int64)],
            "first_input_step": np.asarray(front["first_input_step"], dtype=np.int64),
            "first_spike_step": np.asarray(front["first_spike_step"], dtype=np.int64),
            "latency_s": np.where(lat >= 0, lat * self.dt_s, np.nan),
        })

    def rates(self, names: Any = None) -> Any:
        """Per-neuron firing rates over trials for every neuron that spiked.

        Returns
        -------
        pandas.DataFrame
            Columns ``flywire_id``, ``name`` (if *names* maps flywire_id -> name),
            ``n_spikes``, ``mean_hz``, ``std_hz`` (ddof=1), ``sem_hz``, sorted by mean rate.
        """
        import pandas as pd

        active = self.active_idx()
        counts = self.spike_counts()[:, active] / self.t_run if self.n_trials else np.zeros((0, active.size))
        n = max(self.n_trials, 1)
        std = counts.std(axis=0, ddof=1) if self.n_trials > 1 else np.zeros(active.size)
        frame = pd.DataFrame({
            "flywire_id": self.flywire_ids[active].astype(np.int64),
            "n_spikes": (counts.sum(axis=0) * self.t_run).round().astype(np.int64),
            "mean_hz": counts.mean(axis=0) if self.n_trials else np.zeros(active.size),
            "std_hz": std,
            "sem_hz": std / np.sqrt(n),
        })
        if names is not None:
            frame.insert(1, "name", [names.get(int(f), "") if hasattr(names, "get") else "" for f in frame["flywire_id"]])
        return frame.sort_values("mean_hz", ascending=False, kind="stable").reset_index(drop=True)

    def summary(self, names: Any = None, top: int = 10, stimulated_idx: Any = None) -> str:
        """A readable summary: spikes, active neurons, top neurons by rate (with names).

        Parameters
        ----------
        names : mapping flywire_id -> str, optional
        top : int
            How many neurons to list.
        stimulated_idx : int array, optional
            Model indices of the driven neurons: summarised in one line and left out of
            the top list, which then shows the neurons the stimulus recruited.
        """
        per_s = self.n_spikes / max(self.n_trials * self.t_run, 1e-12)
        per_trial_active = [np.unique(self.idx[self.trial == k]).size for k in self.trials]
        lines = [
            f"experiment {self.exp_name!r} on {self.connectome_label}" + ("  [SYNTHETIC connectome]" if self.synthetic and "SYNTHETIC" not in self.connectome_label else ""),
            f"engine {self.engine}: {self.n_trials} trial(s) x {self.t_run:g} s",
            f"spikes: {self.n_spikes} in total, {per_s:,.0f} per trial-second",
            f"active neurons: {self.active_idx().size} in any trial, "
            f"{np.mean(per_trial_active) if per_trial_active else 0:.1f} per trial on average",
        ]
        runaway = self.meta.get("runaway")
        if runaway:
            onsets = [r.get("onset_s", float("nan")) for r in runaway if isinstance(r, dict)]
            lines.append(f"SELF-SUSTAINING (runaway) activity in {len(runaway)} of {self.n_trials} trial(s)"
                         + (f", earliest onset at {min(onsets):.4f} s" if onsets else ""))
        rates = self.rates(names)
        if stimulated_idx is not None and len(stimulated_idx):
            stim_ids = set(self.flywire_ids[np.asarray(stimulated_idx, dtype=np.int64)].tolist())
            driven = rates[rates.flywire_id.isin(stim_ids)]
            lines.append(f"stimulated neurons: {len(stim_ids)}, mean rate "
                         f"{driven.mean_hz.sum() / len(stim_ids):.1f} Hz")
            rates = rates[~rates.flywire_id.isin(stim_ids)]
        if len(rates):
            label = "recruited neurons" if stimulated_idx is not None else "neurons"
            lines.append(f"top {min(top, len(rates))} {label} by rate:")
            for row in rates.head(top).itertuples():
                name = getattr(row, "name", "") or ""
                lines.append(f"  {row.flywire_id:>20d}  {name:<14s} {row.mean_hz:8.1f} Hz  (sem {row.sem_hz:.1f})")
        return "\n".join(lines)


def merge_results(parts: list[SpikeResult]) -> SpikeResult:
    """Concatenate results of disjoint trial subsets of the same run."""
    if not parts:
        raise ValueError("merge_results: nothing to merge")
    first = parts[0]
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
        from .schedule import combine_digests

        meta["input_digests"] = digests
        meta["input"] = combine_digests(digests)
    return SpikeResult(
        np.concatenate([p.trial for p in parts]),
        np.concatenate([p.idx for p in parts]),
        np.concatenate([p.step for p in parts]),
        first.flywire_ids, trials, first.n_steps, first.dt_s, first.exp_name,
        first.engine, first.connectome_label, first.synthetic, meta,
    )
