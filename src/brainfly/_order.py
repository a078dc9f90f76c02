"""Ordering of (trial, step, neuron) records, shared by spike results and input schedules."""

from __future__ import annotations

import numpy as np

__all__ = ["event_order"]


def event_order(trial: np.ndarray, step: np.ndarray, idx: np.ndarray) -> np.ndarray | None:
    """The permutation that sorts records by (trial, step, idx), or None when they are
    sorted already (an O(n) check first: engines and the Poisson draws produce them so)."""
    if trial.size < 2:
        return None
    dt, ds, di = np.diff(trial), np.diff(step), np.diff(idx.astype(np.int64, copy=False))
    if bool(np.all((dt > 0) | ((dt == 0) & ((ds > 0) | ((ds == 0) & (di >= 0)))))):
        return None
    return np.lexsort((idx, step, trial))
