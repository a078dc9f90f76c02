"""Every tolerance of the conformance suite, in one table.

The reference tier has none: an engine that claims exactness gives Brian2's spikes
``(trial, neuron, step)`` exactly. The statistical tier compares per-neuron firing rates
over trials of an engine with its own Poisson draws against Brian2's ``PoissonInput``;
two independent Poisson realisations of the same model differ by sampling noise only, so
the thresholds below are what sampling noise allows at the given numbers of trials
(calibrated by running one engine against itself with two seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StatTolerance", "TOLERANCES", "tolerance"]


@dataclass(frozen=True)
class StatTolerance:
    """Thresholds of one statistical comparison.

    Attributes
    ----------
    pearson : float
        Minimum Pearson correlation of per-neuron mean rates (over the union of active
        neurons).
    jaccard : float
        Minimum Jaccard index of the active sets (neurons with a mean rate of at least
        ``active_min_hz`` in either run; the paper counts a neuron active when it fires).
    within_3se : float
        Minimum fraction of active neurons whose rate difference is within ``n_se``
        standard errors (of the difference of the two means).
    n_se : float
        Number of standard errors.
    active_min_hz : float
        Mean rate above which a neuron counts as active for the Jaccard index.
    n_trials : int
        Trials of each run.
    t_run : float
        Seconds per trial.
    """

    pearson: float
    jaccard: float
    within_3se: float
    n_se: float
    active_min_hz: float
    n_trials: int
    t_run: float


#: name -> thresholds. ``statistical`` is the paper's protocol (30 trials x 1 s, run with
#: ``--run-slow``); ``statistical_ci`` is the small version every CI run does.
TOLERANCES: dict[str, StatTolerance] = {
    "statistical": StatTolerance(pearson=0.999, jaccard=0.95, within_3se=0.99, n_se=3.0,
                                 active_min_hz=1.0, n_trials=30, t_run=1.0),
    "statistical_ci": StatTolerance(pearson=0.99, jaccard=0.95, within_3se=0.95, n_se=3.0,
                                    active_min_hz=2.0, n_trials=12, t_run=0.25),
}


def tolerance(name: str) -> StatTolerance:
    """The thresholds called *name* (KeyError lists the table)."""
    try:
        return TOLERANCES[name]
    except KeyError:
        raise KeyError(f"no tolerance {name!r}; the table has {sorted(TOLERANCES)}") from None
