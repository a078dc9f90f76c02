"""Statistics of spike trains (brainfly.metrics): rates by FlyWire ID, standard errors, overlap, correlations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from brainfly.errors import ValidationError
from brainfly.metrics import (
    TOLERANCES, Tolerance, active_set_overlap, first_divergence, noise_correlation, paired_rates, pearson,
    rate_matrix, rate_standard_error, rate_stats, significant_jaccard, spearman, spike_count_matrix,
    spike_ratio_noise, tolerance, two_sample_standard_error, within_se_share, z_scores,
)
from brainfly.results import SpikeResult

FIDS = np.arange(1000, 1040, dtype=np.int64)


def make(trial, idx, step, *, trials=(0, 1, 2, 3), n_steps=10_000, fids=FIDS):
    return SpikeResult(np.asarray(trial), np.asarray(idx), np.asarray(step), fids, list(trials), n_steps, 1e-4, "exp")


def test_rate_matrix_by_flywire_id():
    r = make([0, 0, 1], [3, 3, 5], [1, 2, 3], trials=(0, 1))
    fids, rates = rate_matrix(r)
    assert fids.tolist() == [1003, 1005] and rates.tolist() == [[2.0, 0.0], [0.0, 1.0]]
    _, rates = rate_matrix(r, np.array([1003, 1004]), t_run=2.0)
    assert rates.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # any column order; rows follow the covered trials, a trial without spikes included
    _, counts = spike_count_matrix(make([2, 2], [5, 3], [1, 2], trials=(0, 2)), np.array([1005, 1003]))
    assert counts.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    with pytest.raises(ValidationError, match="t_run"):
        rate_matrix(r, t_run=0.0)


def test_rate_matrix_agrees_with_spike_counts():
    """The FlyWire-ID rate matrix is the result's own count matrix, columns by ID."""
    rng = np.random.default_rng(1)
    n = 2000
    r = make(rng.integers(0, 3, n), rng.integers(0, 40, n), rng.integers(0, 10_000, n), trials=(0, 1, 2))
    fids, rates = rate_matrix(r, FIDS)
    assert np.array_equal(rates * r.t_run, r.spike_counts())
    assert fids.tolist() == FIDS.tolist()


def test_rate_stats_and_standard_errors():
    s = rate_stats(np.array([[10.0, 0.0], [12.0, 0.0]]))
    assert s.mean_hz.tolist() == [11.0, 0.0] and s.std_hz[0] == pytest.approx(np.std([10, 12], ddof=1))
    assert s.sem_hz[0] == pytest.approx(1.0) and s.n_trials == 2
    one = rate_stats(np.array([[4.0, 2.0]]))
    assert one.std_hz.tolist() == [0.0, 0.0] and one.mean_hz.tolist() == [4.0, 2.0]
    assert rate_stats(np.zeros((0, 3))).mean_hz.tolist() == [0.0, 0.0, 0.0]

    se = rate_standard_error(np.array([[10.0, 0.0], [12.0, 0.0]]), n_cand=2, t_run=1.0)
    assert se[0] == pytest.approx(np.std([10, 12], ddof=1) * 1.0) and se[1] == pytest.approx(1.0)
    single = rate_standard_error(np.array([[9.0]]), n_cand=1, t_run=1.0)  # Poisson: sqrt(9) * sqrt(2)
    assert single[0] == pytest.approx(3.0 * np.sqrt(2))
    assert within_se_share(np.array([10.0, 0.0]), np.array([10.5, 5.0]), se) == 0.5
    assert within_se_share(np.array([]), np.array([]), np.array([])) == 1.0

    a = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    b = np.array([[2.0, 5.0], [4.0, 5.0]])
    two = two_sample_standard_error(a, b)
    assert two[0] == pytest.approx(np.sqrt(a[:, 0].var(ddof=1) / 3 + b[:, 0].var(ddof=1) / 2))
    assert two[1] == 0.0
    assert z_scores(np.array([-2.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])).tolist() == [-2.0, np.inf, 0.0]


def test_overlap_and_significant_jaccard():
    ov = active_set_overlap(np.array([1, 2, 3]), np.array([2, 3, 4, 5]))
    assert ov["jaccard"] == pytest.approx(2 / 5) and ov["precision"] == 0.5 and ov["recall"] == pytest.approx(2 / 3)
    assert ov["only_reference"].tolist() == [1] and ov["only_candidate"].tolist() == [4, 5]
    assert active_set_overlap(np.array([], np.int64), np.array([], np.int64))["jaccard"] == 1.0
    # one neuron active on one side only within 3 SE: no deviation; far outside: counts against
    ref, cand = np.array([5.0, 1.0, 0.0]), np.array([5.0, 0.0, 9.0])
    assert significant_jaccard(ref, cand, np.ones(3)) == 0.5
    assert significant_jaccard(ref, cand, np.full(3, 10.0)) == 1.0
    assert significant_jaccard(np.zeros(2), np.zeros(2), np.ones(2)) == 1.0


def test_correlations_are_scipys_and_nan_when_undefined():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 50).astype(float)
    b = a + rng.normal(0, 1, 50)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], rel=1e-14)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], rel=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning: undefined is NaN, quietly
        assert np.isnan(pearson(np.ones(3), np.arange(3.0)))
        assert np.isnan(spearman(np.arange(3.0), np.zeros(3)))
        assert np.isnan(pearson(np.array([1.0]), np.array([2.0])))
    with pytest.raises(ValidationError, match="pearson"):
        pearson(np.arange(3.0), np.arange(4.0))


def test_noise_allowances():
    assert spike_ratio_noise(np.array([100.0, 100.0, 100.0]), 3) == 0.0
    assert spike_ratio_noise(np.array([100.0]), 1) == pytest.approx(3 * 0.1 * np.sqrt(2))
    totals = np.array([90.0, 110.0])
    assert spike_ratio_noise(totals, 2, n_se=2.0) == pytest.approx(2 * totals.std(ddof=1) / 100 * 1.0)
    assert noise_correlation(np.array([1.0, 1.0]), np.ones(2)) == 1.0
    assert noise_correlation(np.array([0.0, 2.0]), np.ones(2)) == pytest.approx(0.5)
    assert noise_correlation(np.array([0.0, 2.0]), np.full(2, 10.0)) == 0.0


def test_paired_rates_over_the_union():
    ref = make([0, 1], [1, 1], [5, 5], trials=(0, 1))
    cand = make([0], [2], [7], trials=(0,))
    p = paired_rates(ref, cand)
    assert p.flywire_ids.tolist() == [1001, 1002]
    assert p.reference.shape == (2, 2) and p.candidate.shape == (1, 2)
    assert p.reference_mean.tolist() == [1.0, 0.0] and p.candidate_mean.tolist() == [0.0, 1.0]
    assert paired_rates(ref, cand, t_reference=2.0).reference_mean.tolist() == [0.5, 0.0]


def test_first_divergence():
    ref = make([0, 0, 1], [1, 2, 3], [10, 20, 30], trials=(0, 1))
    assert first_divergence(ref, ref) is None
    moved = make([0, 0, 1], [1, 2, 3], [10, 21, 30], trials=(0, 1))
    d = first_divergence(ref, moved)
    assert (d["trial"], d["step"], d["flywire_id"], d["side"], d["n_identical_before"]) == (0, 20, 1002, "reference", 1)
    assert d["t"] == pytest.approx(20e-4) and d["other"] == {"trial": 0, "step": 21, "flywire_id": 1002}
    extra = make([0, 0, 1, 1], [1, 2, 3, 4], [10, 20, 30, 40], trials=(0, 1))
    d = first_divergence(ref, extra)
    assert d["side"] == "candidate" and d["step"] == 40 and d["other"] is None
    # only the trials both cover count
    assert first_divergence(ref, make([0, 0], [1, 2], [10, 20], trials=(0,))) is None


def test_one_tolerance_table():
    assert {"match", "close", "statistical", "statistical_ci"} <= set(TOLERANCES)
    m, c = tolerance("match"), tolerance("close")
    assert (m.spike_ratio_tol, m.jaccard, m.pearson, m.within_se, m.n_se) == (0.05, 0.90, 0.98, 0.95, 3.0)
    assert (c.spike_ratio_tol, c.jaccard, c.pearson, c.within_se, c.n_se) == (0.15, 0.75, 0.90, 0.80, 3.0)
    ci = tolerance("statistical_ci")
    assert (ci.n_trials, ci.t_run, ci.active_min_hz, ci.pearson) == (12, 0.25, 2.0, 0.99)
    with pytest.raises(KeyError, match="statistical_ci"):
        tolerance("nope")
    with pytest.raises(ValidationError, match=r"Tolerance.pearson: must be in \[-1, 1\] \(got 2\)"):
        Tolerance(pearson=2, jaccard=0.5, within_se=0.5)
    with pytest.raises(ValidationError, match="Tolerance.n_se"):
        Tolerance(pearson=0.5, jaccard=0.5, within_se=0.5, n_se=0)
