"""Statistics of spike trains, computed once: used by compare, the conformance suite and screens.

Neurons are matched by FlyWire ID (``flywire_id``, int64), never by model index, so runs
on different neuron lists (the paper's own output files, for one) compare correctly.
Rates are in Hz: the spikes of a neuron in one trial divided by the trial's duration
``t_run`` (s). A rate matrix has one row per trial (in the order of ``result.trials``)
and one column per neuron, like :meth:`~brainfly.results.SpikeResult.spike_counts`.

- rates: :func:`spike_count_matrix`, :func:`rate_matrix`, :func:`rate_stats` (per-neuron
  mean, std, sem), :func:`paired_rates` (two runs over the union of their active neurons);
- standard errors of a rate difference: :func:`rate_standard_error` (from the
  reference's spread, the verdicts' SE) and :func:`two_sample_standard_error` (from both
  runs' spreads, the conformance suite's SE); :func:`z_scores`, :func:`within_se_share`;
- active sets: :func:`active_set_overlap` (Jaccard, precision, recall),
  :func:`significant_jaccard`;
- correlations: :func:`pearson`, :func:`spearman` (:mod:`scipy.stats`);
- what noise alone explains: :func:`spike_ratio_noise`, :func:`noise_correlation`;
- spike identity: :func:`first_divergence`;
- :data:`TOLERANCES`: every limit a rate comparison is held to, in one table (the
  verdicts MATCH / CLOSE of :mod:`brainfly.compare` and the statistical tier of the
  conformance suite).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np
from scipy import stats

from .errors import ValidationError
from .results import SpikeResult

__all__ = [
    "Tolerance",
    "TOLERANCES",
    "tolerance",
    "active_flywire_ids",
    "spike_count_matrix",
    "rate_matrix",
    "RateStats",
    "rate_stats",
    "PairedRates",
    "paired_rates",
    "rate_standard_error",
    "two_sample_standard_error",
    "z_scores",
    "within_se_share",
    "active_set_overlap",
    "significant_jaccard",
    "pearson",
    "spearman",
    "spike_ratio_noise",
    "noise_correlation",
    "first_divergence",
]


# =============================================================================== tolerances
@dataclass(frozen=True)
class Tolerance:
    """Limits of one comparison of per-neuron rates; the comparison passes when all hold.

    Attributes
    ----------
    pearson : float
        Minimum Pearson correlation of the per-neuron mean rates over the union of the
        active neurons (a neuron silent on one side counts with rate 0).
    jaccard : float
        Minimum overlap of the active sets (:func:`active_set_overlap`; the verdicts use
        the significant Jaccard, :func:`significant_jaccard`).
    within_se : float
        Minimum share of neurons whose rate difference is within ``n_se`` standard errors.
    n_se : float
        Number of standard errors.
    spike_ratio_tol : float or None
        The spikes per trial-second of the candidate over the reference's must lie within
        ``1 ± spike_ratio_tol``; None: not tested.
    active_min_hz : float
        A neuron is active when it spiked and its mean rate is at least this, Hz (0: when
        it spiked at all).
    n_trials : int or None
        Trials of each run the limits were calibrated for (a protocol); None: any.
    t_run : float or None
        Seconds per trial of that protocol; None: any.
    """

    pearson: float
    jaccard: float
    within_se: float
    n_se: float = 3.0
    spike_ratio_tol: float | None = None
    active_min_hz: float = 0.0
    n_trials: int | None = None
    t_run: float | None = None

    def __post_init__(self) -> None:
        for key in ("pearson", "jaccard", "within_se"):
            value = getattr(self, key)
            low = -1.0 if key == "pearson" else 0.0
            if not low <= value <= 1.0:
                raise ValidationError(f"Tolerance.{key}: must be in [{low:g}, 1] (got {value!r})")
        for key in ("n_se", "spike_ratio_tol", "t_run"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValidationError(f"Tolerance.{key}: must be > 0 (got {value!r})")
        if not self.active_min_hz >= 0:
            raise ValidationError(f"Tolerance.active_min_hz: must be >= 0 Hz (got {self.active_min_hz!r})")
        if self.n_trials is not None and not self.n_trials >= 1:
            raise ValidationError(f"Tolerance.n_trials: must be >= 1 (got {self.n_trials!r})")


#: name -> limits. ``match`` and ``close`` are the verdicts of :func:`brainfly.compare.compare_results`
#: (documented in the README's verdict table; the comparison widens the spike-ratio and
#: Pearson limits by what a short run's noise explains). ``statistical`` and
#: ``statistical_ci`` are the conformance suite's statistical tier: an engine's own
#: Poisson draws against Brian2's ``PoissonInput``, calibrated by running one engine
#: against itself with two seeds; ``statistical`` is the paper's protocol (30 trials x
#: 1 s, run with ``--run-slow``), ``statistical_ci`` the small version every CI run does.
TOLERANCES: dict[str, Tolerance] = {
    "match": Tolerance(pearson=0.98, jaccard=0.90, within_se=0.95, n_se=3.0, spike_ratio_tol=0.05),
    "close": Tolerance(pearson=0.90, jaccard=0.75, within_se=0.80, n_se=3.0, spike_ratio_tol=0.15),
    "statistical": Tolerance(pearson=0.999, jaccard=0.95, within_se=0.99, n_se=3.0, active_min_hz=1.0,
                             n_trials=30, t_run=1.0),
    "statistical_ci": Tolerance(pearson=0.99, jaccard=0.95, within_se=0.95, n_se=3.0, active_min_hz=2.0,
                                n_trials=12, t_run=0.25),
}


def tolerance(name: str) -> Tolerance:
    """The limits called *name* in :data:`TOLERANCES`.

    Raises
    ------
    KeyError
        For a name not in the table (the message lists the table).
    """
    try:
        return TOLERANCES[name]
    except KeyError:
        raise KeyError(f"no tolerance {name!r}; the table has {sorted(TOLERANCES)}") from None


# =============================================================================== rates
def _spike_flywire_ids(result: SpikeResult) -> np.ndarray:
    return np.asarray(result.flywire_ids, dtype=np.int64)[np.asarray(result.idx, dtype=np.int64)]


def active_flywire_ids(result: SpikeResult) -> np.ndarray:
    """FlyWire IDs (int64, sorted) of the neurons that spiked in any trial."""
    return np.unique(_spike_flywire_ids(result))


def spike_count_matrix(result: SpikeResult, flywire_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Spikes per trial and neuron, by FlyWire ID.

    Parameters
    ----------
    result : SpikeResult
    flywire_ids : int64 array, optional
        Neurons (columns) to count, in any order; default: those that spiked, sorted.

    Returns
    -------
    flywire_ids : int64 array, shape (n,)
    counts : float64 array, shape (n_trials, n)
        Rows follow ``result.trials`` (sorted); spikes of other neurons are not counted.
    """
    spike_ids = _spike_flywire_ids(result)
    ids = np.unique(spike_ids) if flywire_ids is None else np.asarray(flywire_ids, dtype=np.int64)
    trials = np.asarray(sorted(result.trials), dtype=np.int64)
    n = ids.size
    if not (spike_ids.size and n and trials.size):
        return ids, np.zeros((trials.size, n), dtype=np.float64)
    order = np.argsort(ids, kind="stable")
    col = order[np.minimum(np.searchsorted(ids, spike_ids, sorter=order), n - 1)]
    trial = np.asarray(result.trial, dtype=np.int64)
    row = np.minimum(np.searchsorted(trials, trial), trials.size - 1)
    keep = (ids[col] == spike_ids) & (trials[row] == trial)
    flat = np.bincount(row[keep] * n + col[keep], minlength=trials.size * n)
    return ids, flat.reshape(trials.size, n).astype(np.float64)


def rate_matrix(result: SpikeResult, flywire_ids: np.ndarray | None = None,
                t_run: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial firing rates of neurons, by FlyWire ID.

    Parameters
    ----------
    result : SpikeResult
    flywire_ids : int64 array, optional
        Neurons (columns) to report, in any order; default: those that spiked, sorted.
    t_run : float, optional
        Trial duration in seconds (default ``result.t_run``; the paper's own files record
        none: pass it).

    Returns
    -------
    flywire_ids : int64 array, shape (n,)
    rates_hz : float64 array, shape (n_trials, n)
        Spikes per trial divided by ``t_run``; rows follow ``result.trials`` (sorted).

    Raises
    ------
    ValidationError
        When the duration is not > 0 s.

    Examples
    --------
    >>> import numpy as np
    >>> r = SpikeResult([0, 0, 1], [0, 0, 1], [5, 9, 3], np.array([11, 22]), [0, 1], 10_000, 1e-4, "x")
    >>> ids, rates = rate_matrix(r)
    >>> ids.tolist(), rates.tolist()
    ([11, 22], [[2.0, 0.0], [0.0, 1.0]])
    """
    duration = float(t_run if t_run is not None else result.t_run)
    if not duration > 0:
        raise ValidationError(f"rate_matrix: t_run must be > 0 s (got {duration})")
    ids, counts = spike_count_matrix(result, flywire_ids)
    return ids, counts / duration


@dataclass(frozen=True)
class RateStats:
    """Per-neuron statistics of a rate matrix over trials, Hz, each of shape (n,).

    Attributes
    ----------
    mean_hz : float64 array
    std_hz : float64 array
        Trial-to-trial standard deviation (ddof 1); 0 with fewer than two trials.
    sem_hz : float64 array
        Standard error of the mean, ``std_hz / sqrt(n_trials)``.
    n_trials : int
    """

    mean_hz: np.ndarray
    std_hz: np.ndarray
    sem_hz: np.ndarray
    n_trials: int


def rate_stats(rates: np.ndarray) -> RateStats:
    """Mean, standard deviation (ddof 1) and standard error per neuron of a (n_trials, n) rate matrix.

    >>> s = rate_stats(np.array([[10.0, 0.0], [12.0, 0.0]]))
    >>> s.mean_hz.tolist(), s.std_hz.round(3).tolist(), s.sem_hz.tolist()
    ([11.0, 0.0], [1.414, 0.0], [1.0, 0.0])
    """
    rates = np.asarray(rates, dtype=np.float64)
    n_trials, n = rates.shape
    mean = rates.mean(axis=0) if n_trials else np.zeros(n)
    std = rates.std(axis=0, ddof=1) if n_trials >= 2 else np.zeros(n)
    return RateStats(mean, std, std / math.sqrt(max(n_trials, 1)), n_trials)


@dataclass(frozen=True)
class PairedRates:
    """Rates of two runs over the same neurons: the union of their active neurons.

    Attributes
    ----------
    flywire_ids : int64 array, shape (n,)
        Sorted.
    reference, candidate : float64 arrays, shapes (n_ref_trials, n) and (n_cand_trials, n)
        Per-trial rates, Hz.
    reference_mean, candidate_mean : float64 arrays, shape (n,)
        Mean rates over trials, Hz (0 for a run without trials).
    t_reference, t_candidate : float
        Trial durations, s.
    """

    flywire_ids: np.ndarray
    reference: np.ndarray
    candidate: np.ndarray
    reference_mean: np.ndarray
    candidate_mean: np.ndarray
    t_reference: float
    t_candidate: float


def paired_rates(reference: SpikeResult, candidate: SpikeResult, t_reference: float | None = None,
                 t_candidate: float | None = None) -> PairedRates:
    """Rate matrices of two runs over the union of the neurons that spiked in either.

    Parameters
    ----------
    reference, candidate : SpikeResult
        Matched by FlyWire ID; they may cover different numbers of trials.
    t_reference, t_candidate : float, optional
        Trial durations, s (default: each result's ``t_run``).
    """
    union = np.union1d(active_flywire_ids(reference), active_flywire_ids(candidate))
    t_ref = float(t_reference if t_reference is not None else reference.t_run)
    t_cand = float(t_candidate if t_candidate is not None else candidate.t_run)
    _, ref = rate_matrix(reference, union, t_ref)
    _, cand = rate_matrix(candidate, union, t_cand)
    return PairedRates(union, ref, cand, rate_stats(ref).mean_hz, rate_stats(cand).mean_hz, t_ref, t_cand)


# =============================================================================== standard errors
def rate_standard_error(ref_rates: np.ndarray, n_cand: int, t_run: float) -> np.ndarray:
    """Standard error of the difference of mean rates, from the reference's spread.

    ``SE = max(s_ref, 1/t_run) * sqrt(1/n_ref + 1/n_cand)`` per neuron, with ``s_ref`` the
    sample standard deviation (ddof 1) of the reference's per-trial rates, or the Poisson
    estimate ``sqrt(count)/t_run`` when the reference has a single trial. The floor of one
    spike per trial keeps neurons with a regular (or no) reference rate testable. This is
    the SE of the verdicts (see :func:`brainfly.compare.compare_results`).

    Parameters
    ----------
    ref_rates : float array, shape (n_ref, n)
        Per-trial rates of the reference, Hz.
    n_cand : int
        Number of candidate trials.
    t_run : float
        Trial duration, s.

    Returns
    -------
    float64 array, shape (n,)
        Hz; always > 0.
    """
    ref_rates = np.asarray(ref_rates, dtype=np.float64)
    n_ref = ref_rates.shape[0]
    if n_ref >= 2:
        sd = ref_rates.std(axis=0, ddof=1)
    else:
        mean_count = ref_rates.mean(axis=0) * t_run if n_ref else np.zeros(ref_rates.shape[1])
        sd = np.sqrt(mean_count) / t_run
    sd = np.maximum(sd, 1.0 / t_run)
    return sd * math.sqrt(1.0 / max(n_ref, 1) + 1.0 / max(n_cand, 1))


def two_sample_standard_error(a_rates: np.ndarray, b_rates: np.ndarray) -> np.ndarray:
    """Standard error of the difference of two runs' mean rates, from both spreads.

    ``SE = sqrt(sem_a^2 + sem_b^2)`` per neuron (Welch), with the standard errors of
    :func:`rate_stats`; a run with a single trial contributes no spread. This is the SE
    of the conformance suite's statistical tier, where both runs draw their own input.

    Parameters
    ----------
    a_rates, b_rates : float arrays, shapes (n_a, n) and (n_b, n)
        Per-trial rates, Hz, of the same neurons.

    Returns
    -------
    float64 array, shape (n,)
        Hz; 0 where neither run varies.
    """
    a, b = rate_stats(a_rates), rate_stats(b_rates)
    return np.sqrt(a.sem_hz ** 2 + b.sem_hz ** 2)


def z_scores(diff: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``diff / se`` per neuron; ±inf where ``se`` is 0 and the difference is not, 0 where both are.

    >>> z_scores(np.array([2.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])).tolist()
    [2.0, inf, 0.0]
    """
    diff = np.asarray(diff, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / se
    return np.where((se == 0) & (diff == 0), 0.0, z)


def within_se_share(ref_mean: np.ndarray, cand_mean: np.ndarray, se: np.ndarray, n_se: float = 3.0) -> float:
    """Share of neurons with ``|cand - ref| <= n_se * se`` (1.0 when there are none).

    >>> within_se_share(np.array([10.0, 0.0]), np.array([10.5, 5.0]), np.array([1.0, 1.0]))
    0.5
    """
    ref_mean = np.asarray(ref_mean, dtype=np.float64)
    if ref_mean.size == 0:
        return 1.0
    ok = np.abs(np.asarray(cand_mean, dtype=np.float64) - ref_mean) <= n_se * np.asarray(se) + 1e-12
    return float(ok.mean())


# =============================================================================== active sets
def active_set_overlap(ref_active: np.ndarray, cand_active: np.ndarray) -> dict[str, Any]:
    """Overlap of two sets of active neurons (FlyWire IDs).

    Returns
    -------
    dict
        ``jaccard`` (|both| / |union|), ``precision`` (share of the candidate's active
        neurons also active in the reference), ``recall`` (share of the reference's found
        by the candidate), ``n_both``, ``only_reference`` and ``only_candidate`` (sorted
        int64 arrays). Empty sets give 1.0.

    Examples
    --------
    >>> ov = active_set_overlap(np.array([1, 2, 3]), np.array([2, 3, 4, 5]))
    >>> ov["jaccard"], ov["precision"], ov["only_candidate"].tolist()
    (0.4, 0.5, [4, 5])
    """
    r = np.unique(np.asarray(ref_active, dtype=np.int64))
    c = np.unique(np.asarray(cand_active, dtype=np.int64))
    both = np.intersect1d(r, c, assume_unique=True)
    union = np.union1d(r, c).size
    return {
        "jaccard": both.size / union if union else 1.0,
        "precision": both.size / c.size if c.size else 1.0,
        "recall": both.size / r.size if r.size else 1.0,
        "n_both": int(both.size),
        "only_reference": np.setdiff1d(r, c, assume_unique=True),
        "only_candidate": np.setdiff1d(c, r, assume_unique=True),
    }


def significant_jaccard(ref_mean: np.ndarray, cand_mean: np.ndarray, se: np.ndarray, n_se: float = 3.0) -> float:
    """Jaccard index of the active sets that counts only significant one-sided neurons.

    ``|A_ref ∩ A_cand| / (|A_ref ∩ A_cand| + k)``, with A the neurons of mean rate > 0 and
    k the neurons active on one side only whose rate difference exceeds ``n_se * se``:
    a neuron firing once by chance in a short run is no deviation. 1.0 when nothing is
    active.

    >>> significant_jaccard(np.array([5.0, 1.0, 0.0]), np.array([5.0, 0.0, 9.0]), np.ones(3))
    0.5
    """
    ref_mean = np.asarray(ref_mean, dtype=np.float64)
    cand_mean = np.asarray(cand_mean, dtype=np.float64)
    n_both = int(((ref_mean > 0) & (cand_mean > 0)).sum())
    one_sided = (ref_mean > 0) ^ (cand_mean > 0)
    n_sig = int((one_sided & (np.abs(cand_mean - ref_mean) > n_se * np.asarray(se))).sum())
    return n_both / (n_both + n_sig) if n_both + n_sig else 1.0


# =============================================================================== correlations
def _comparable(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The vectors as float64, or None when a correlation is undefined (fewer than 2, constant)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValidationError(f"{what}: needs two vectors of equal length (got shapes {a.shape} and {b.shape})")
    if a.size < 2 or (a == a[0]).all() or (b == b[0]).all():
        return None
    return a, b


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors (:func:`scipy.stats.pearsonr`).

    NaN when either has fewer than two values or is constant.

    >>> round(pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6.5])), 4)
    0.9979
    """
    pair = _comparable(a, b, "pearson")
    return float("nan") if pair is None else float(stats.pearsonr(*pair).statistic)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (:func:`scipy.stats.spearmanr`, ties at their average rank).

    NaN when either has fewer than two values or is constant.

    >>> spearman(np.array([1.0, 2, 3]), np.array([1.0, 5, 4]))
    0.5
    """
    pair = _comparable(a, b, "spearman")
    return float("nan") if pair is None else float(stats.spearmanr(*pair).statistic)


# =============================================================================== noise allowances
def spike_ratio_noise(ref_totals: np.ndarray, n_candidate: int, n_se: float = 3.0) -> float:
    """The deviation of a spike ratio from 1 that trial-to-trial variability alone explains.

    ``n_se * CV_ref * sqrt(1/n_ref + 1/n_cand)``, with ``CV_ref`` the coefficient of
    variation of the reference's spikes per trial; with one trial (or none spiking) the
    Poisson estimate ``1/sqrt(spikes)``.

    Parameters
    ----------
    ref_totals : float array, shape (n_ref,)
        The reference's spikes in each trial.
    n_candidate : int
        Number of candidate trials.
    n_se : float
    """
    totals = np.asarray(ref_totals, dtype=np.float64)
    if totals.size >= 2 and totals.mean() > 0:
        rel_sd = totals.std(ddof=1) / totals.mean()
    else:
        rel_sd = 1.0 / math.sqrt(max(float(totals.sum()), 1.0))
    return n_se * rel_sd * math.sqrt(1.0 / max(totals.size, 1) + 1.0 / max(n_candidate, 1))


def noise_correlation(ref_mean: np.ndarray, se: np.ndarray) -> float:
    """The Pearson r expected between two runs of the same model: ``1 - mean(SE²) / (2 var(rate_ref))``.

    Clipped at 0; 1.0 when the reference's mean rates do not vary (or there are none).
    """
    ref_mean = np.asarray(ref_mean, dtype=np.float64)
    var_ref = float(ref_mean.var()) if ref_mean.size else 0.0
    if not var_ref > 0:
        return 1.0
    return max(1.0 - float(np.mean(np.asarray(se, dtype=np.float64) ** 2)) / (2.0 * var_ref), 0.0)


# =============================================================================== spike identity
def _spike_keys(result: SpikeResult, trials: np.ndarray) -> np.ndarray:
    """Structured array (trial, step, flywire_id) of the spikes in *trials*, sorted."""
    fids = _spike_flywire_ids(result)
    trial = np.asarray(result.trial, dtype=np.int64)
    step = np.asarray(result.step, dtype=np.int64)
    keep = np.isin(trial, trials)
    out = np.empty(int(keep.sum()), dtype=[("trial", np.int64), ("step", np.int64), ("flywire_id", np.int64)])
    out["trial"], out["step"], out["flywire_id"] = trial[keep], step[keep], fids[keep]
    out.sort(order=("trial", "step", "flywire_id"))
    return out


def first_divergence(reference: SpikeResult, candidate: SpikeResult) -> dict[str, Any] | None:
    """The earliest spike (trial, step, flywire_id) present on one side only, or None if identical.

    Only trials both results cover are compared.

    Returns
    -------
    dict or None
        ``trial``, ``step``, ``t`` (s), ``flywire_id``, ``side`` (``"reference"`` or
        ``"candidate"``: where the spike is), ``n_identical_before`` (spikes that agree
        before it) and ``other`` (the spike the other side has at that position, as a dict
        of trial, step, flywire_id; or None).
    """
    trials = np.intersect1d(np.asarray(reference.trials, np.int64), np.asarray(candidate.trials, np.int64))
    a = _spike_keys(reference, trials)
    b = _spike_keys(candidate, trials)
    if a.size == b.size and np.array_equal(a, b):
        return None
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n] != b[:n])
    k = int(diff[0]) if diff.size else n
    ka = tuple(int(x) for x in a[k]) if k < a.size else None
    kb = tuple(int(x) for x in b[k]) if k < b.size else None
    if kb is None or (ka is not None and ka < kb):
        first, side, other = ka, "reference", kb
    else:
        first, side, other = kb, "candidate", ka
    if first is None:  # unreachable: the arrays differ, so one side has a spike at k
        raise RuntimeError("first_divergence: no differing spike found")
    return {
        "trial": first[0],
        "step": first[1],
        "t": first[1] * float(reference.dt_s),
        "flywire_id": first[2],
        "side": side,
        "n_identical_before": k,
        "other": None if other is None else {"trial": other[0], "step": other[1], "flywire_id": other[2]},
    }
