"""Two conditions, neuron by neuron: which rates changed, by how much, and how surely.

The statistics of a contrast live here, once: :func:`effect_table` (Welch's t test over
trials, the confidence interval of the difference, Hedges' g) and :func:`q_values`
(Benjamini-Hochberg), used by :func:`contrast` (two spike results), by the screens'
effects tables and by ``brainfly report A --versus B``.

Rates are in Hz (spikes of a neuron in one trial over the trial's duration ``t_run``, s),
one row per trial and one column per neuron, as :func:`brainfly.metrics.rate_matrix`
returns them. Neurons are matched by FlyWire ID (``flywire_id``, int64). A difference is
always ``b - a``: condition B (the manipulation) minus condition A (the baseline).
"""

from __future__ import annotations

import math
from typing import Any
import warnings

import numpy as np
import pandas as pd
from scipy import special, stats

from .errors import ValidationError
from .metrics import active_flywire_ids, rate_matrix, rate_stats
from .results import SpikeResult

__all__ = ["EFFECT_COLUMNS", "effect_table", "q_values", "contrast", "format_contrast"]

#: Columns of :func:`effect_table`, in order.
EFFECT_COLUMNS: tuple[str, ...] = ("mean_a_hz", "mean_b_hz", "diff_hz", "ci_low_hz", "ci_high_hz", "effect_size",
                                   "t", "p_value")


def _rate_array(rates: Any, what: str) -> np.ndarray:
    arr = np.asarray(rates, dtype=np.float64)
    if arr.ndim != 2:
        raise ValidationError(f"effect_table: {what} must be a (n_trials, n_neurons) matrix of rates in Hz "
                              f"(got shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValidationError(f"effect_table: {what} holds NaN or infinite rates; rates are finite numbers of Hz "
                              "(a silent neuron counts 0 Hz)")
    return arr


def _constant(rates: np.ndarray) -> np.ndarray:
    """Columns whose values are all equal (exactly: a variance of 0, not a rounding residue)."""
    if rates.shape[0] == 0:
        return np.ones(rates.shape[1], dtype=bool)
    return (rates == rates[:1]).all(axis=0)


def effect_table(rates_a: np.ndarray, rates_b: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Per neuron, the difference of mean rates between two conditions and its statistics.

    Parameters
    ----------
    rates_a, rates_b : float64 arrays, shapes (n_trials_a, n) and (n_trials_b, n)
        Per-trial rates of the same n neurons (columns) in conditions A and B, Hz; the
        trial counts may differ. Finite (a silent neuron counts 0 Hz).
    alpha : float
        1 - the confidence level of the interval (0.05: a 95% interval).

    Returns
    -------
    dict of str -> float64 array, shape (n,)
        ``mean_a_hz``, ``mean_b_hz``: mean rates over trials (NaN without trials);
        ``diff_hz``: ``mean_b_hz - mean_a_hz``;
        ``ci_low_hz``, ``ci_high_hz``: the ``1 - alpha`` confidence interval of the
        difference, ``diff ± t_{1-alpha/2, df} * se`` with Welch's standard error
        ``se = sqrt(var_a / n_a + var_b / n_b)`` (variances ddof 1) and the
        Welch-Satterthwaite degrees of freedom ``df``;
        ``effect_size``: Hedges' g, the difference over the pooled standard deviation
        ``sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2))``, times the exact
        small-sample correction ``J = Gamma(m / 2) / (sqrt(m / 2) Gamma((m - 1) / 2))``,
        ``m = n_a + n_b - 2`` (about ``1 - 3 / (4 m - 1)``);
        ``t``, ``p_value``: Welch's t statistic of B against A and its two-sided p value
        (:func:`scipy.stats.ttest_ind` with ``equal_var=False``; the interval is its
        ``confidence_interval``).

    Raises
    ------
    ValidationError
        For matrices of different widths, non-finite rates, or *alpha* outside (0, 1).

    Notes
    -----
    Edge cases, column by column (no warning is emitted for any of them):

    - fewer than two trials in either condition: no spread to test against, so ``t``,
      ``p_value``, the interval and ``effect_size`` are NaN (the means and ``diff_hz`` are
      still given);
    - no variance in either condition and equal means (a neuron silent in both, or one
      driven identically): ``diff_hz`` 0, ``t`` 0, ``p_value`` 1, interval [0, 0],
      ``effect_size`` 0;
    - no variance in either condition and different means: a deterministic difference
      (conditions driven by the same input schedule often give one): ``t`` and
      ``effect_size`` ±inf, ``p_value`` 0, interval [diff, diff].

    Examples
    --------
    >>> a = np.array([[10.0, 5.0], [12.0, 5.0], [11.0, 5.0]])
    >>> b = np.array([[20.0, 5.0], [22.0, 5.0], [24.0, 5.0]])
    >>> e = effect_table(a, b)
    >>> e["diff_hz"].tolist(), e["p_value"].round(4).tolist(), e["ci_low_hz"].round(2).tolist()
    ([11.0, 0.0], [0.0037, 1.0], [6.84, 0.0])
    """
    a = _rate_array(rates_a, "rates_a")
    b = _rate_array(rates_b, "rates_b")
    if a.shape[1] != b.shape[1]:
        raise ValidationError(f"effect_table: rates_a has {a.shape[1]} neurons (columns) and rates_b "
                              f"{b.shape[1]}; give both conditions' rates of the same neurons")
    if not 0.0 < float(alpha) < 1.0:
        raise ValidationError(f"effect_table: alpha must be in (0, 1), e.g. 0.05 for a 95% interval (got {alpha!r})")
    n_a, n_b, n = a.shape[0], b.shape[0], a.shape[1]
    const_a, const_b = _constant(a), _constant(b)
    with np.errstate(all="ignore"):
        # a constant column's mean is its value exactly (a sum can round 0.1 * 3 / 3 away from 0.1)
        mean_a = np.where(const_a, a[0] if n_a else np.nan, a.mean(axis=0) if n_a else np.nan)
        mean_b = np.where(const_b, b[0] if n_b else np.nan, b.mean(axis=0) if n_b else np.nan)
        diff = mean_b - mean_a
    out = {"mean_a_hz": mean_a, "mean_b_hz": mean_b, "diff_hz": diff}
    for key in EFFECT_COLUMNS[3:]:
        out[key] = np.full(n, np.nan)
    if n_a < 2 or n_b < 2:
        return out
    var_a = np.where(const_a, 0.0, a.var(axis=0, ddof=1))
    var_b = np.where(const_b, 0.0, b.var(axis=0, ddof=1))
    fixed = const_a & const_b  # no spread on either side: the difference is exact
    spread = ~fixed
    if spread.any():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # scipy's precision-loss warning for nearly constant columns: the result stands
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_ind(b[:, spread], a[:, spread], axis=0, equal_var=False)
            ci = res.confidence_interval(confidence_level=1.0 - float(alpha))
        out["t"][spread], out["p_value"][spread] = res.statistic, res.pvalue
        out["ci_low_hz"][spread], out["ci_high_hz"][spread] = ci.low, ci.high
        m = n_a + n_b - 2
        correction = math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
        pooled = np.sqrt(((n_a - 1) * var_a[spread] + (n_b - 1) * var_b[spread]) / m)
        out["effect_size"][spread] = correction * diff[spread] / pooled
    d = diff[fixed]
    exact = np.where(d == 0, 0.0, np.copysign(np.inf, d))
    out["t"][fixed] = exact
    out["effect_size"][fixed] = exact
    out["p_value"][fixed] = np.where(d == 0, 1.0, 0.0)
    out["ci_low_hz"][fixed] = d
    out["ci_high_hz"][fixed] = d
    return out


def q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values (false discovery rates) of some p values.

    Parameters
    ----------
    p : float array, shape (n,)
        p values in [0, 1]; NaN (not tested) stays NaN and is left out of the count of
        tests.

    Returns
    -------
    float64 array, shape (n,)
        :func:`scipy.stats.false_discovery_control` of the finite p values, NaN elsewhere.

    Examples
    --------
    >>> q_values(np.array([0.01, np.nan, 0.02, 0.5])).tolist()
    [0.03, nan, 0.03, 0.5]
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValidationError(f"q_values: p must be a one-dimensional array (got shape {p.shape})")
    tested = ~np.isnan(p)
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        raise ValidationError("q_values: p values must lie in [0, 1] (or be NaN for an untested neuron)")
    q = np.full(p.shape, np.nan)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    return q


# =============================================================================== two results
def _describe(result: SpikeResult, label: str | None) -> dict[str, Any]:
    """What ``df.attrs`` says about one condition."""
    lines, _ = result._manipulation_lines({})  # noqa: SLF001 - the results' own wording of the manipulation
    return {
        "label": label or result.exp_name,
        "exp_name": result.exp_name,
        "engine": result.engine,
        "connectome": result.connectome_label,
        "synthetic": bool(result.synthetic),
        "n_trials": result.n_trials,
        "t_run": result.t_run,
        "manipulation": "; ".join(lines),
    }


def _neuron_table(result: SpikeResult) -> tuple[int, Any, np.ndarray]:
    """(neurons of its connectome, the connectome's version or None, the FlyWire IDs it holds).

    A result read from a spike file holds only the neurons that spiked; the number of the
    connectome's neurons is then the one :func:`brainfly.run` recorded (``meta["connectome"]``).
    """
    conn = result.meta.get("connectome") if isinstance(result.meta, dict) else None
    conn = conn if isinstance(conn, dict) else {}
    n = conn.get("n_neurons")
    return (int(n) if isinstance(n, int) else result.n_neurons), conn.get("version"), result.flywire_ids


def _check_pair(a: SpikeResult, b: SpikeResult, t_run: float | None) -> float | None:
    """Refuse two results that cannot be contrasted; the trial duration to use (None: each its own)."""
    (n_a, version_a, ids_a), (n_b, version_b, ids_b) = _neuron_table(a), _neuron_table(b)
    problem = ""
    if n_a != n_b:
        problem = f"{n_a:,} neurons against {n_b:,}"
    elif version_a is not None and version_b is not None and version_a != version_b:
        problem = f"connectome version {version_a!r} against {version_b!r}"
    elif ids_a.size == n_a and ids_b.size == n_b and not np.array_equal(ids_a, ids_b):
        differ = np.setxor1d(ids_a, ids_b).size
        problem = f"{differ} FlyWire IDs in only one of them" if differ else "the same IDs in another order"
    elif ids_a.size == n_a or ids_b.size == n_b:  # a whole table and a file's active neurons
        whole, part = (ids_a, ids_b) if ids_a.size == n_a else (ids_b, ids_a)
        stray = np.setdiff1d(part, whole).size
        problem = f"{stray} neurons of one are not in the other's table" if stray else ""
    if problem:
        raise ValidationError(
            f"contrast: the two results have different neuron tables (A {a.exp_name!r} on "
            f"{a.connectome_label or '?'}, B {b.exp_name!r} on {b.connectome_label or '?'}: {problem}); "
            "contrast runs of the same connectome")
    for which, res in (("A", a), ("B", b)):
        if res.n_trials < 1:
            raise ValidationError(f"contrast: result {which} ({res.exp_name!r}) covers no trials; nothing to compare")
    if t_run is not None:
        if not (math.isfinite(float(t_run)) and float(t_run) > 0):
            raise ValidationError(f"contrast: t_run must be a duration > 0 s (got {t_run!r})")
        return float(t_run)
    if not math.isclose(a.t_run, b.t_run, rel_tol=1e-9):
        raise ValidationError(
            f"contrast: the trials have different durations (A {a.exp_name!r}: t_run {a.t_run:g} s; B "
            f"{b.exp_name!r}: {b.t_run:g} s); contrast runs of the same duration, or pass t_run= (the trials' "
            "true duration, for files that do not record it)")
    return None


def contrast(a: SpikeResult, b: SpikeResult, names: bool = True, *, t_run: float | None = None,
             alpha: float = 0.05, labels: tuple[str, str] | None = None) -> pd.DataFrame:
    """Every neuron that spiked in either of two results: its rates in both, the difference, the test.

    Parameters
    ----------
    a, b : SpikeResult
        Condition A (the baseline) and condition B (the manipulation), on the same neuron
        table; the trial counts may differ.
    names : bool
        Add ``name``, ``cell_type`` and ``class`` (as :meth:`SpikeResult.rates` with
        ``names=True``: the annotations of the result that carries them, else the shipped
        FlyWire v783 tables; ``""`` where unknown).
    t_run : float, optional
        Trial duration, s, used for both results' rates; default each result's own, which
        must then be equal.
    alpha : float
        1 - the confidence level of the interval of the difference.
    labels : (str, str), optional
        How to call A and B in ``df.attrs`` and :func:`format_contrast` (default: their
        experiment names).

    Returns
    -------
    pandas.DataFrame
        One row per neuron active in A or B, with columns ``flywire_id`` (int64),
        [``name``, ``cell_type``, ``class``], ``rate_a_hz``, ``sem_a_hz``, ``rate_b_hz``,
        ``sem_b_hz`` (mean rates over trials and their standard errors, Hz; a neuron
        silent in one condition counts 0 Hz in each of its trials there; sem NaN with one
        trial), ``diff_hz``, ``ci_low_hz``, ``ci_high_hz``, ``effect_size``, ``t``,
        ``p_value`` (see :func:`effect_table`; its ``mean_a_hz`` and ``mean_b_hz`` are the
        rate columns), ``q_value`` (:func:`q_values` over the rows); sorted by
        ``|diff_hz|``, largest first, ties by ``flywire_id``. ``df.attrs`` holds ``a`` and
        ``b`` (label, experiment name, engine, connectome, ``synthetic``, n_trials, t_run,
        ``manipulation``: what was stimulated and silenced, in one line), ``n_trials_a``,
        ``n_trials_b``, ``alpha`` and ``t_run``.

    Raises
    ------
    ValidationError
        When the neuron tables differ, the trial durations differ (and *t_run* is not
        given), or a result covers no trials.
    """
    duration = _check_pair(a, b, t_run)
    ids = np.union1d(active_flywire_ids(a), active_flywire_ids(b))
    _, ra = rate_matrix(a, ids, duration)
    _, rb = rate_matrix(b, ids, duration)
    eff = effect_table(ra, rb, alpha=alpha)
    cols: dict[str, Any] = {"flywire_id": ids}
    if names:
        cols.update((b if a.annotations is None and b.annotations is not None else a).labels(ids))
    for side, rates in (("a", ra), ("b", rb)):
        st = rate_stats(rates)
        cols[f"rate_{side}_hz"] = eff[f"mean_{side}_hz"]
        cols[f"sem_{side}_hz"] = st.sem_hz if st.n_trials >= 2 else np.full(ids.size, np.nan)
    cols.update((k, v) for k, v in eff.items() if k not in ("mean_a_hz", "mean_b_hz"))
    cols["q_value"] = q_values(eff["p_value"])
    order = np.lexsort((ids, -np.abs(eff["diff_hz"])))
    df = pd.DataFrame({k: np.asarray(v)[order] for k, v in cols.items()})
    label_a, label_b = labels if labels is not None else (None, None)
    df.attrs.update({"a": _describe(a, label_a), "b": _describe(b, label_b), "n_trials_a": a.n_trials,
                     "n_trials_b": b.n_trials, "alpha": float(alpha),
                     "t_run": duration if duration is not None else a.t_run})
    return df


# =============================================================================== text
def _number(x: float, fmt: str) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return format(x, fmt)


def _condition_line(key: str, info: dict[str, Any]) -> str:
    if not info:
        return f"{key}: ?"
    runs = f"{info.get('n_trials', '?')} trials x {info.get('t_run', float('nan')):g} s"
    where = info.get("connectome") or ""
    if info.get("synthetic") and "SYNTHETIC" not in where:
        where += " [SYNTHETIC connectome]"
    head = f"{key}: {info.get('label', '?')} ({', '.join(x for x in (info.get('engine'), runs, where) if x)})"
    return head + (f"\n   {info['manipulation']}" if info.get("manipulation") else "")


def format_contrast(df: pd.DataFrame, top: int = 20) -> str:
    """A contrast (:func:`contrast`) as text: the two conditions, then the neurons that changed most.

    Parameters
    ----------
    df : pandas.DataFrame
        As :func:`contrast` returns it (sorted by ``|diff_hz|``).
    top : int
        How many rows to show.

    Returns
    -------
    str
        Aligned columns: FlyWire ID, name and cell type (when the frame has them), rate in
        A and in B (mean ± sem, Hz), the signed difference B - A with ``up``/``down``,
        its confidence interval, Hedges' g and the q value in scientific notation.
    """
    attrs = df.attrs
    alpha = float(attrs.get("alpha", 0.05))
    q = df["q_value"].to_numpy(dtype=np.float64) if "q_value" in df else np.full(len(df), np.nan)
    changed = int(np.sum(q < alpha))
    lines = [_condition_line("A", attrs.get("a", {})), _condition_line("B", attrs.get("b", {})),
             f"{len(df):,} neurons active in A or B; {changed:,} changed at q < {alpha:g} "
             f"(Welch's t over trials, Benjamini-Hochberg); difference = B - A"]
    shown = df.head(max(int(top), 0))
    if shown.empty:
        lines.append("no neuron spiked in either condition")
        return "\n".join(lines)
    ci_pct = f"{100 * (1 - alpha):g}% CI"
    header = ["flywire_id"]
    has_names = "name" in df
    if has_names:
        header += ["name", "cell_type"]
    header += ["A (Hz)", "B (Hz)", "B - A (Hz)", "", ci_pct, "g", "q"]
    rows = []
    for r in shown.itertuples(index=False):
        rec = r._asdict()
        row = [str(int(rec["flywire_id"]))]
        if has_names:
            name, ctype = str(rec.get("name") or ""), str(rec.get("cell_type") or "")
            row += [name, ctype if ctype != name else ""]
        diff = float(rec["diff_hz"])
        for side in ("a", "b"):
            sem = float(rec[f"sem_{side}_hz"])
            row.append(f"{float(rec[f'rate_{side}_hz']):.1f}" + ("" if math.isnan(sem) else f" ± {sem:.1f}"))
        row += [_number(diff, "+.1f"), "up" if diff > 0 else "down" if diff < 0 else "=",
                f"[{_number(float(rec['ci_low_hz']), '+.1f')}, {_number(float(rec['ci_high_hz']), '+.1f')}]",
                _number(float(rec["effect_size"]), "+.2f"), _number(float(rec["q_value"]), ".1e")]
        rows.append(row)
    left = {"name", "cell_type", ""}
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if h in left else c.rjust(w)
                         for c, w, h in zip(cells, widths, header)).rstrip()

    lines.append(f"top {len(shown)} of {len(df):,} by |B - A|:")
    lines.append(line(header))
    lines += [line(row) for row in rows]
    return "\n".join(lines)
