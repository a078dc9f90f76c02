"""The tables of a screen: readout rates, summaries and effects against the base.

Each finished condition gives three small column sets (:func:`condition_tables`):
per-trial readout rates, their statistics, and a summary of the whole brain's activity.
When all conditions are done, :func:`effects_table` compares every condition with the
base of its connectome by the same statistics as :func:`brainfly.effects.contrast`
(Welch's t over trials, 95% CI, Hedges' g, Benjamini–Hochberg q over all conditions x
readouts of one connectome).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..connectome.lookup import neuron_labels
from ..effects import effect_table, q_values
from ..metrics import rate_matrix, rate_stats
from ..results import SpikeResult

__all__ = ["TABLES", "condition_tables", "concat_columns", "effects_table", "readout_labels"]

#: Tables written per chunk of conditions (the last one marks the chunk as done).
TABLES = ("readout_trials", "readout", "summary")


def readout_labels(flywire_ids: np.ndarray, annotations: Any = None) -> dict[str, np.ndarray]:
    """``name`` and ``cell_type`` of the readout neurons ("" where unknown)."""
    labels = neuron_labels(flywire_ids, annotations)
    return {"name": labels["name"].astype(str), "cell_type": labels["cell_type"].astype(str)}


def condition_tables(result: SpikeResult, condition_id: int, connectome: str, readout_ids: np.ndarray,
                     labels: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The rows one condition adds to each table of :data:`TABLES`.

    Parameters
    ----------
    result : SpikeResult
        The condition's run (every trial).
    condition_id : int
    connectome : str
        ``real`` or ``shuffle-K``.
    readout_ids : int64 array
        FlyWire IDs of the readout neurons (zero rates included).
    labels : dict
        :func:`readout_labels` of *readout_ids*.
    """
    ids, rates = rate_matrix(result, readout_ids)
    n_trials, n = rates.shape
    stats = rate_stats(rates)
    trials = np.asarray(result.trials, dtype=np.int64)
    t_run = float(result.t_run)
    timings = result.meta.get("timings") or {}
    runaway = result.meta.get("runaway") or []
    return {
        "readout_trials": {
            "condition_id": np.full(n_trials * n, condition_id, np.int64),
            "connectome": np.full(n_trials * n, connectome, dtype=object),
            "flywire_id": np.tile(ids, n_trials),
            "trial": np.repeat(trials, n),
            "rate_hz": rates.reshape(-1),
        },
        "readout": {
            "condition_id": np.full(n, condition_id, np.int64),
            "connectome": np.full(n, connectome, dtype=object),
            "flywire_id": ids,
            "name": labels["name"],
            "cell_type": labels["cell_type"],
            "mean_hz": stats.mean_hz,
            "std_hz": stats.std_hz if n_trials >= 2 else np.full(n, np.nan),
            "sem_hz": stats.sem_hz if n_trials >= 2 else np.full(n, np.nan),
            "n_trials": np.full(n, n_trials, np.int64),
        },
        "summary": {
            "condition_id": np.array([condition_id], np.int64),
            "connectome": np.array([connectome], dtype=object),
            "n_spikes": np.array([result.n_spikes], np.int64),
            "spikes_per_trial_s": np.array([result.n_spikes / max(n_trials * t_run, 1e-300)]),
            "n_active": np.array([result.n_active], np.int64),
            "runaway": np.array([bool(runaway)]),
            "runaway_trials": np.array([len(runaway)], np.int64),
            "sim_s": np.array([float(timings.get("sim_s", np.nan))]),
        },
    }


def concat_columns(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise concatenation of several column sets with the same columns."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def effects_table(readout_trials: Any, readout: Any) -> Any:
    """Every condition against the base of its connectome, per readout neuron.

    Parameters
    ----------
    readout_trials : pandas.DataFrame
        ``condition_id, connectome, flywire_id, trial, rate_hz`` (all conditions, base included).
    readout : pandas.DataFrame
        ``condition_id, connectome, flywire_id, name, cell_type, ...`` (for the labels).

    Returns
    -------
    pandas.DataFrame
        ``condition_id, connectome, flywire_id, name, cell_type, base_mean_hz, mean_hz,
        diff_hz, ci_low_hz, ci_high_hz, effect_size, t, p_value, q_value``; the base rows
        left out; q over all conditions x readouts of one connectome.
    """
    import pandas as pd

    frames = []
    names = readout.drop_duplicates("flywire_id").set_index("flywire_id")[["name", "cell_type"]]
    for label, block in readout_trials.groupby("connectome", sort=True):
        table = block.pivot_table(index=["condition_id", "trial"], columns="flywire_id", values="rate_hz",
                                  aggfunc="first", sort=True)
        cids = table.index.get_level_values(0).unique().to_numpy()
        if 0 not in cids or cids.size < 2:
            continue
        fids = table.columns.to_numpy(dtype=np.int64)
        base = table.loc[0].to_numpy(dtype=np.float64)
        others = [c for c in cids if c != 0]
        # every (condition, readout) pair as one column: one vectorised call
        cond = np.hstack([table.loc[c].to_numpy(dtype=np.float64) for c in others])  # same trials each
        eff = effect_table(np.tile(base, (1, len(others))), cond)
        frame = pd.DataFrame({
            "condition_id": np.repeat(np.asarray(others, np.int64), fids.size),
            "connectome": label,
            "flywire_id": np.tile(fids, len(others)),
        })
        frame["name"] = names["name"].reindex(frame["flywire_id"]).to_numpy()
        frame["cell_type"] = names["cell_type"].reindex(frame["flywire_id"]).to_numpy()
        frame["base_mean_hz"] = eff["mean_a_hz"]
        frame["mean_hz"] = eff["mean_b_hz"]
        for col in ("diff_hz", "ci_low_hz", "ci_high_hz", "effect_size", "t", "p_value"):
            frame[col] = eff[col]
        frame["q_value"] = q_values(np.asarray(eff["p_value"], dtype=np.float64))
        frames.append(frame)
    if not frames:
        return pd.DataFrame({c: [] for c in ("condition_id", "connectome", "flywire_id", "name", "cell_type",
                                             "base_mean_hz", "mean_hz", "diff_hz", "ci_low_hz", "ci_high_hz",
                                             "effect_size", "t", "p_value", "q_value")})
    return pd.concat(frames, ignore_index=True)
