"""The external Poisson drive as explicit events, shared by all engines.

An input schedule is a table of kicks: one row = one kick of ``f_poi * w_syn`` onto
``v`` of one neuron in one step of one trial, applied where Brian2's ``PoissonInput``
applies it (the ``synapses`` slot of that step: after the state update and the
threshold test, before the reset). File columns: ``trial`` (int), ``flywire_id``
(int64), ``step`` (int, 0-based). In memory, model indices ``idx`` are used.

:func:`draw_poisson` is the one place where brainfly draws Poisson input itself
(PoissonInput with N=1 is a Bernoulli draw with p = rate * dt in every step); engines
that have no Poisson generator of their own consume its schedule, so the same seed gives
the same input whatever the engine or the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ._io import atomic_write
from ._order import event_order
from .connectome.lookup import resolve_neurons
from .errors import DataError, ValidationError

__all__ = ["InputSchedule", "trial_seed_sequence", "draw_poisson", "combine_digests"]


@dataclass(frozen=True)
class InputSchedule:
    """Kicks as parallel arrays, sorted by (trial, step, idx).

    Parameters
    ----------
    trial : int32 array, shape (n_kicks,)
    idx : int32 array, shape (n_kicks,)
        Model index of the kicked neuron.
    step : int64 array, shape (n_kicks,)
        0-based step index.
    """

    trial: np.ndarray
    idx: np.ndarray
    step: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.trial, dtype=np.int32)
        i = np.asarray(self.idx, dtype=np.int32)
        s = np.asarray(self.step, dtype=np.int64)
        if not (t.shape == i.shape == s.shape) or t.ndim != 1:
            raise ValidationError("InputSchedule: trial, idx and step must be 1-D arrays of equal length")
        order = event_order(t, s, i)  # (draw_poisson gives them sorted: an O(n) check)
        if order is not None:
            t, i, s = t[order], i[order], s[order]
        object.__setattr__(self, "trial", np.ascontiguousarray(t))
        object.__setattr__(self, "idx", np.ascontiguousarray(i))
        object.__setattr__(self, "step", np.ascontiguousarray(s))

    @property
    def n_kicks(self) -> int:
        """Number of kicks in all trials."""
        return int(self.trial.shape[0])

    @property
    def activated_idx(self) -> np.ndarray:
        """Model indices that receive at least one kick (sorted, int64)."""
        return np.unique(self.idx).astype(np.int64)

    def for_trial(self, trial: int) -> "InputSchedule":
        """The kicks of one trial (trial column kept)."""
        lo, hi = np.searchsorted(self.trial, [trial, trial + 1])
        return InputSchedule(self.trial[lo:hi], self.idx[lo:hi], self.step[lo:hi])

    def trial_bounds(self, n_trials: int) -> np.ndarray:
        """int64 array (n_trials + 1,): kicks of trial k are ``[bounds[k], bounds[k+1])``."""
        return np.searchsorted(self.trial, np.arange(n_trials + 1)).astype(np.int64)

    def check(self, n_trials: int, n_steps: int, owner: str = "input schedule") -> None:
        """Refuse kicks outside the trials or steps of the experiment."""
        if self.n_kicks == 0:
            raise ValidationError(f"{owner}: holds no kicks; nothing would drive the network")
        if self.trial.min() < 0:
            raise ValidationError(f"{owner}: trial numbers must be >= 0 (got {self.trial.min()})")
        covered = int(self.trial.max()) + 1
        if covered != n_trials:
            # fewer trials than asked would run silent trials and divide every rate by the wrong count
            raise ValidationError(
                f"{owner}: covers trials 0..{covered - 1} ({covered} trials) but the experiment has n_trials = "
                f"{n_trials}; give --n-trials {covered} (n_trials = {covered}), or a schedule of {n_trials} trials"
            )
        if self.step.min() < 0 or self.step.max() >= n_steps:
            raise ValidationError(
                f"{owner}: steps must lie in 0..{n_steps - 1} for this t_run (got {self.step.min()}..{self.step.max()})"
            )

    def trial_digests(self, flywire_ids: np.ndarray, trials: Iterable[int]) -> dict[int, str]:
        """SHA-256 of each trial's kicks as (flywire_id, step) pairs.

        Two runs whose digests agree were driven by identical input, whether it came from
        a schedule file or from the shared Poisson draws; the comparison uses this to
        decide when spike-for-spike identity is expected.
        """
        fids = np.asarray(flywire_ids, dtype=np.int64)
        bounds = {int(k): np.searchsorted(self.trial, [k, k + 1]) for k in trials}
        out = {}
        for k, (lo, hi) in bounds.items():
            h = hashlib.sha256()
            h.update(fids[self.idx[lo:hi]].astype("<i8").tobytes())
            h.update(self.step[lo:hi].astype("<i8").tobytes())
            out[k] = h.hexdigest()
        return out

    # ------------------------------------------------------------ file I/O
    def to_frame(self, flywire_ids: np.ndarray) -> Any:
        """DataFrame with the file columns ``trial``, ``flywire_id``, ``step``."""
        import pandas as pd

        return pd.DataFrame({
            "trial": self.trial.astype(np.int64),
            "flywire_id": np.asarray(flywire_ids, dtype=np.int64)[self.idx],
            "step": self.step,
        })

    def write(self, path: str | Path, flywire_ids: np.ndarray, *, synthetic: bool = False) -> Path:
        """Write as parquet (or CSV if the suffix is .csv), atomically.

        Parameters
        ----------
        path : str or Path
        flywire_ids : int64 array
            The connectome's neuron list (model index -> FlyWire ID).
        synthetic : bool
            The kicks were drawn on a synthetic connectome (``connectome.synthetic``): a
            parquet file says so in its schema metadata (``brainfly``: ``{"synthetic":
            true}``), a CSV in a last column ``synthetic`` (``true`` in every row), which
            readers of the three file columns ignore.
        """
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        frame = self.to_frame(flywire_ids)
        if path.suffix.lower() == ".csv":
            if synthetic:
                frame["synthetic"] = True
            atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            marker = {b"brainfly": json.dumps({"synthetic": bool(synthetic)}).encode()}
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **marker})
            atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    @classmethod
    def read(cls, path: str | Path, connectome: Any) -> "InputSchedule":
        """Read a schedule file (parquet or CSV) and map FlyWire IDs to model indices.

        Raises
        ------
        DataError
            If the file cannot be read or lacks the columns ``trial``, ``flywire_id``, ``step``.
        UnknownNeuronError
            If a FlyWire ID is not in the connectome.
        """
        import pandas as pd

        path = Path(path)
        if not path.exists():
            raise ValidationError(f"input schedule {path}: file does not exist")
        try:
            if path.suffix.lower() == ".csv":
                frame = pd.read_csv(path)
            else:
                frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
            raise DataError(f"input schedule {path}: cannot be read as "
                            f"{'CSV' if path.suffix.lower() == '.csv' else 'parquet'} ({exc})") from None
        missing = {"trial", "flywire_id", "step"} - set(frame.columns)
        if missing:
            raise DataError(
                f"input schedule {path}: missing column(s) {sorted(missing)}; "
                "expected columns trial (int), flywire_id (int64), step (int)"
            )
        if len(frame) == 0:
            raise DataError(f"input schedule {path}: holds no kicks (only a header); nothing would drive the network")
        for col in ("trial", "flywire_id", "step"):
            column = frame[col]
            if column.isna().any():
                row = int(np.flatnonzero(column.isna().to_numpy())[0])
                raise DataError(f"input schedule {path}: column {col!r} is empty in row {row + 1}; every kick needs "
                                "trial, flywire_id and step")
            if not pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
                raise DataError(f"input schedule {path}: column {col!r} must hold whole numbers (got {column.dtype}"
                                f", e.g. {column.iloc[0]!r})")
            if column.dtype.kind == "u" and len(column) and int(column.max()) > np.iinfo(np.int64).max:
                raise DataError(f"input schedule {path}: column {col!r} holds {int(column.max())}, beyond int64")
        trial = frame["trial"].to_numpy(np.int64)
        step = frame["step"].to_numpy(np.int64)
        if trial.size and (trial.min() < 0 or trial.max() > np.iinfo(np.int32).max):
            bad = trial.min() if trial.min() < 0 else trial.max()
            raise DataError(f"input schedule {path}: trial {bad} is out of range; trials are numbered 0..n_trials-1")
        if step.size and step.min() < 0:
            raise DataError(f"input schedule {path}: step {step.min()} is negative; steps are numbered from 0")
        fids = frame["flywire_id"].to_numpy(np.int64)
        uniq, inverse = np.unique(fids, return_inverse=True)
        idx_uniq = resolve_neurons(connectome, uniq.tolist(), owner=f"input schedule {path}")
        return cls(trial, idx_uniq[inverse], step)


def trial_seed_sequence(seed: int, trial: int) -> np.random.SeedSequence:
    """The seed sequence of one trial: independent streams per (seed, trial)."""
    return np.random.SeedSequence([int(seed), int(trial)])


def draw_poisson(
    idx: np.ndarray,
    rate_hz: np.ndarray,
    n_steps: int,
    dt_s: float,
    seed: int,
    trials: range | list[int],
) -> InputSchedule:
    """Draw PoissonInput-equivalent kicks: per neuron and step, Bernoulli(rate * dt).

    Parameters
    ----------
    idx : int array, shape (n,)
        Model indices of the stimulated neurons.
    rate_hz : float array, shape (n,)
        Rate of each, Hz.
    n_steps : int
        Steps per trial.
    dt_s : float
        Time step, seconds.
    seed : int
        Experiment seed; each trial's stream depends on (seed, trial) only.
    trials : iterable of int
        Which trials to draw.
    """
    idx = np.asarray(idx, dtype=np.int64)
    p_all = np.asarray(rate_hz, dtype=np.float64) * dt_s
    out_t, out_i, out_s = [], [], []
    for trial in trials:
        rng = np.random.Generator(np.random.PCG64(trial_seed_sequence(seed, trial)))
        trial_i, trial_s = [], []
        for neuron, p in zip(idx.tolist(), p_all.tolist()):
            if p <= 0:
                continue
            if p >= 1:
                steps = np.arange(n_steps, dtype=np.int64)
            else:
                # Gaps between Bernoulli successes are geometric; draw enough in one go.
                expect = n_steps * p
                n_draw = int(expect + 6 * np.sqrt(expect + 1) + 16)
                steps = np.cumsum(rng.geometric(p, size=n_draw)) - 1
                while steps[-1] < n_steps:
                    more = np.cumsum(rng.geometric(p, size=n_draw)) + steps[-1]
                    steps = np.concatenate([steps, more])
                steps = steps[steps < n_steps]
            trial_i.append(np.full(steps.shape[0], neuron, np.int32))
            trial_s.append(steps)
        if trial_s:
            # the trial's kicks in (step, idx) order, so that the schedule needs no sort
            t_i, t_s = np.concatenate(trial_i), np.concatenate(trial_s)
            order = np.lexsort((t_i, t_s))
            out_t.append(np.full(t_s.shape[0], trial, np.int32))
            out_i.append(t_i[order])
            out_s.append(t_s[order])
    if not out_t:
        return InputSchedule(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64))
    return InputSchedule(np.concatenate(out_t), np.concatenate(out_i), np.concatenate(out_s))


def combine_digests(digests: dict[Any, str]) -> str:
    """One fingerprint ``kicks:<sha256[:16]>`` for a set of per-trial input digests.

    Independent of how the trials were split into chunks; keys are trial numbers.
    """
    h = hashlib.sha256()
    for trial in sorted(digests, key=int):
        h.update(f"{int(trial)}:{digests[trial]};".encode())
    return "kicks:" + h.hexdigest()[:16]
