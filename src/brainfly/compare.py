"""Compare an engine's spikes with the ground truth (Brian2), and find saved runs to compare.

The core is pure functions on :class:`~brainfly.results.SpikeResult` objects, needing
only numpy, so that the conformance suite can reuse the statistics:

- :func:`compare_results` (reference, candidate) -> :class:`Comparison`, with a verdict
  MATCH / CLOSE / DEVIATED from :data:`THRESHOLDS` (see :data:`VERDICT_TABLE_MD`);
- :func:`neuron_rate_matrix`, :func:`pearson`, :func:`spearman`, :func:`within_se_share`,
  :func:`active_set_overlap`, :func:`first_divergence`: the pieces.

Neurons are matched by FlyWire ID (``flywire_id``, int64), never by model index, so runs
on different neuron lists (the paper's own output files, for one) compare correctly. Rates
are in Hz: spikes of a neuron in one trial divided by the trial's duration ``t_run`` (s).

File naming of saved runs (one spelling everywhere, :func:`format_t_run`)::

    {engine}_{experiment}_t{t_run}_n{n_run}.parquet      e.g. event_sugar_t0.1_n4.parquet

The JSON written by :func:`write_comparison_json` follows :data:`SCHEMA_VERSION` (see
:func:`comparison_document` for the schema).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import datetime as _dt
import json
import logging
import math
from pathlib import Path
import re
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import DataError, ValidationError

__all__ = [
    "VERDICTS",
    "Thresholds",
    "THRESHOLDS",
    "VERDICT_TABLE_MD",
    "REFERENCE_ENGINES",
    "SCHEMA_VERSION",
    "Comparison",
    "compare_results",
    "neuron_rate_matrix",
    "pearson",
    "spearman",
    "rankdata",
    "active_set_overlap",
    "within_se_share",
    "rate_standard_error",
    "first_divergence",
    "input_fingerprint",
    "format_t_run",
    "spikes_file_name",
    "parse_spikes_file_name",
    "find_runs",
    "load_run",
    "comparison_document",
    "write_comparison_json",
    "compare_saved_runs",
    "fill_names",
    "add_compare_arguments",
    "run_compare_from_args",
]

log = logging.getLogger(__name__)

VERDICTS = ("MATCH", "CLOSE", "DEVIATED")

#: Engines whose output is the ground truth, in order of preference when several exist.
REFERENCE_ENGINES = ("brian2", "brian2-standalone")

#: Version of the JSON document written by :func:`write_comparison_json`.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Thresholds:
    """Limits of the verdicts; a comparison gets the best verdict whose limits all hold.

    ``spike_ratio`` is the candidate's spikes per trial-second over the reference's;
    ``jaccard`` the significant overlap of the sets of active neurons (a neuron active on
    one side only counts against it when its rate difference exceeds 3 SE, so that a
    neuron firing once by chance in a short run is no deviation); ``pearson`` the correlation of
    mean rates over the union of active neurons (zeros included); ``within_3se`` the share
    of those neurons whose candidate rate lies within 3 standard errors of the reference
    rate (:func:`within_se_share`).
    """

    match_ratio_tol: float = 0.05
    match_jaccard: float = 0.90
    match_pearson: float = 0.98
    match_within_3se: float = 0.95
    close_ratio_tol: float = 0.15
    close_jaccard: float = 0.75
    close_pearson: float = 0.90
    close_within_3se: float = 0.80
    n_se: float = 3.0

    def markdown(self) -> str:
        """The verdict rules as a markdown table (for the README)."""
        return (
            "| verdict | rule (all conditions must hold) |\n"
            "|---|---|\n"
            "| MATCH | same input schedule and spike-for-spike identical; **or** "
            f"spike ratio within 1 ± {self.match_ratio_tol:g}, significant Jaccard ≥ {self.match_jaccard:g}, "
            f"rate Pearson r ≥ {self.match_pearson:g}, ≥ {self.match_within_3se:.0%} of neurons within "
            f"{self.n_se:g} SE |\n"
            f"| CLOSE | spike ratio within 1 ± {self.close_ratio_tol:g}, significant Jaccard ≥ {self.close_jaccard:g}, "
            f"Pearson r ≥ {self.close_pearson:g}, ≥ {self.close_within_3se:.0%} of neurons within "
            f"{self.n_se:g} SE |\n"
            "| DEVIATED | anything else (also: the reference has no spikes but the candidate has) |\n"
            "\n"
            "Short runs are noisy, so two limits widen to what trial-to-trial variability alone "
            f"explains: the spike-ratio tolerance becomes max(tolerance, {self.n_se:g} · CV_ref · "
            "sqrt(1/n_ref + 1/n_cand)) (CV_ref: coefficient of variation of the reference's spikes "
            "per trial; with one trial 1/sqrt(spikes)), and the Pearson limit becomes "
            "limit · r_noise, r_noise = 1 − mean(SE²) / "
            "(2 · var(rate_ref)) (the correlation expected between two runs of the same model). The "
            "limits applied are written with each comparison (`limits`).\n"
            "\n"
            "Definitions: spike ratio = candidate spikes per trial-second / reference spikes per "
            "trial-second. A = the neurons that spiked in any trial; significant Jaccard = "
            "|A_ref ∩ A_cand| / (|A_ref ∩ A_cand| + number of neurons active on one side only whose "
            "rate difference exceeds the SE limit below), so that a neuron firing once by chance in a "
            "short run is no deviation (the plain Jaccard |A_ref ∩ A_cand| / |A_ref ∪ A_cand|, "
            "precision and recall are reported too). Pearson r over the mean rates of the union of active neurons (a neuron "
            "silent on one side counts with rate 0). SE of a neuron = max(s_ref, 1/t_run) · "
            "sqrt(1/n_ref + 1/n_cand), with s_ref the reference's trial-to-trial standard deviation "
            "of the rate (ddof 1; with a single reference trial the Poisson estimate "
            "sqrt(count)/t_run) and n the numbers of trials; a neuron is within when "
            f"|rate_cand − rate_ref| ≤ {self.n_se:g} SE.\n"
        )


#: The thresholds in force (documented in the README through :data:`VERDICT_TABLE_MD`).
THRESHOLDS = Thresholds()

#: Markdown table of the verdict rules, as the README shows it.
VERDICT_TABLE_MD = THRESHOLDS.markdown()


# =============================================================================== naming
def format_t_run(t_run: float) -> str:
    """The one spelling of a duration in seconds used in file names, CSV and logs.

    >>> [format_t_run(x) for x in (0.1, 1, 1.0, 10, 1000, 0.25)]
    ['0.1', '1', '1', '10', '1000', '0.25']
    """
    value = float(t_run)
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"t_run: must be a finite duration > 0 s (got {t_run!r})")
    return np.format_float_positional(value, trim="-")


def _clean_label(label: str, owner: str) -> str:
    if not label or "_" in label or "/" in label or label != label.strip():
        raise ValidationError(
            f"{owner}: {label!r} cannot be used in a file name; use letters, digits and '-' (no '_')"
        )
    return label


def spikes_file_name(engine: str, experiment: str, t_run: float, n_run: int) -> str:
    """File name of a saved run: ``{engine}_{experiment}_t{t_run}_n{n_run}.parquet``.

    >>> spikes_file_name("event", "sugar", 0.1, 4)
    'event_sugar_t0.1_n4.parquet'
    """
    _clean_label(engine, "engine label")
    if not experiment or "/" in experiment:
        raise ValidationError(f"experiment name: {experiment!r} cannot be used in a file name")
    return f"{engine}_{experiment}_t{format_t_run(t_run)}_n{int(n_run)}.parquet"


_NAME_RE = re.compile(r"^(?P<engine>[^_/]+)_(?P<experiment>.+)_t(?P<t_run>[0-9.]+)_n(?P<n_run>\d+)\.parquet$")


def parse_spikes_file_name(name: str) -> dict[str, Any] | None:
    """Inverse of :func:`spikes_file_name`: dict(engine, experiment, t_run, n_run), or None.

    >>> parse_spikes_file_name("torch-cpu_sugar_t1_n4.parquet")
    {'engine': 'torch-cpu', 'experiment': 'sugar', 't_run': 1.0, 'n_run': 4}
    """
    m = _NAME_RE.match(Path(name).name)
    if not m:
        return None
    try:
        t_run = float(m["t_run"])
    except ValueError:
        return None
    return {"engine": m["engine"], "experiment": m["experiment"], "t_run": t_run, "n_run": int(m["n_run"])}


# =============================================================================== statistics
def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks (1-based, float64) with ties given their average rank (as scipy's default).

    >>> rankdata(np.array([10.0, 20.0, 10.0])).tolist()
    [1.5, 3.0, 1.5]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.concatenate([[True], xs[1:] != xs[:-1]])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.concatenate([starts[1:], [x.size]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors; NaN when either is constant.

    >>> round(pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6.5])), 4)
    0.9986
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes differ ({a.shape} vs {b.shape})")
    if a.size < 2:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(da @ da) * float(db @ db))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((da @ db) / denom, -1.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN when either is constant."""
    return pearson(rankdata(a), rankdata(b))


def neuron_rate_matrix(result: Any, flywire_ids: np.ndarray | None = None,
                       t_run: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial firing rates of neurons, by FlyWire ID.

    Parameters
    ----------
    result : SpikeResult
    flywire_ids : int64 array, optional
        Neurons (columns) to report; default: those that spiked, sorted.
    t_run : float, optional
        Trial duration in seconds (default ``result.t_run``).

    Returns
    -------
    flywire_ids : int64 array, shape (n,)
    rates_hz : float64 array, shape (n_trials, n)
        Spikes per trial divided by ``t_run``; rows follow ``result.trials``.
    """
    duration = float(t_run if t_run is not None else result.t_run)
    if duration <= 0:
        raise ValidationError(f"neuron_rate_matrix: t_run must be > 0 s (got {duration})")
    spike_fids = np.asarray(result.flywire_ids, dtype=np.int64)[np.asarray(result.idx, dtype=np.int64)]
    if flywire_ids is None:
        flywire_ids = np.unique(spike_fids)
    flywire_ids = np.asarray(flywire_ids, dtype=np.int64)
    trials = np.asarray(sorted(result.trials), dtype=np.int64)
    counts = np.zeros((trials.size, flywire_ids.size), dtype=np.float64)
    if spike_fids.size and flywire_ids.size:
        col = np.searchsorted(flywire_ids, spike_fids)
        col_c = np.clip(col, 0, flywire_ids.size - 1)
        keep = flywire_ids[col_c] == spike_fids
        row = np.searchsorted(trials, np.asarray(result.trial, dtype=np.int64))
        row_c = np.clip(row, 0, max(trials.size - 1, 0))
        keep &= trials[row_c] == np.asarray(result.trial, dtype=np.int64) if trials.size else False
        np.add.at(counts, (row_c[keep], col_c[keep]), 1.0)
    return flywire_ids, counts / duration


def rate_standard_error(ref_rates: np.ndarray, n_cand: int, t_run: float) -> np.ndarray:
    """Standard error of the difference of mean rates, from the reference's spread.

    ``SE = max(s_ref, 1/t_run) * sqrt(1/n_ref + 1/n_cand)`` per neuron, with ``s_ref`` the
    sample standard deviation (ddof 1) of the reference's per-trial rates, or the Poisson
    estimate ``sqrt(count)/t_run`` when the reference has a single trial. The floor of one
    spike per trial keeps neurons with a regular (or no) reference rate testable.

    Parameters
    ----------
    ref_rates : float array, shape (n_ref, n)
        Per-trial rates of the reference, Hz.
    n_cand : int
        Number of candidate trials.
    t_run : float
        Trial duration, s.
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


def within_se_share(ref_mean: np.ndarray, cand_mean: np.ndarray, se: np.ndarray,
                    n_se: float = 3.0) -> float:
    """Share of neurons with ``|cand - ref| <= n_se * se`` (1.0 when there are none)."""
    ref_mean = np.asarray(ref_mean, dtype=np.float64)
    if ref_mean.size == 0:
        return 1.0
    ok = np.abs(np.asarray(cand_mean) - ref_mean) <= n_se * np.asarray(se) + 1e-12
    return float(ok.mean())


def active_set_overlap(ref_active: np.ndarray, cand_active: np.ndarray) -> dict[str, Any]:
    """Overlap of two sets of active neurons (FlyWire IDs).

    Returns
    -------
    dict
        ``jaccard``, ``precision`` (share of the candidate's active neurons also active in
        the reference), ``recall`` (share of the reference's found by the candidate),
        ``n_both``, ``only_reference`` and ``only_candidate`` (sorted int64 arrays).
        Empty sets give 1.0.
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


def _spike_keys(result: Any, trials: np.ndarray) -> np.ndarray:
    """Structured array (trial, step, flywire_id) of the spikes in *trials*, sorted."""
    fids = np.asarray(result.flywire_ids, dtype=np.int64)[np.asarray(result.idx, dtype=np.int64)]
    trial = np.asarray(result.trial, dtype=np.int64)
    step = np.asarray(result.step, dtype=np.int64)
    keep = np.isin(trial, trials)
    out = np.empty(int(keep.sum()), dtype=[("trial", np.int64), ("step", np.int64), ("flywire_id", np.int64)])
    out["trial"], out["step"], out["flywire_id"] = trial[keep], step[keep], fids[keep]
    out.sort(order=("trial", "step", "flywire_id"))
    return out


def first_divergence(reference: Any, candidate: Any) -> dict[str, Any] | None:
    """The earliest spike (trial, step, flywire_id) present on one side only, or None if identical.

    Only trials both results cover are compared. The returned dict has ``trial``, ``step``,
    ``t`` (s), ``flywire_id``, ``side`` (``"reference"`` or ``"candidate"``: where the spike
    is), ``n_identical_before`` (spikes that agree before it) and ``other`` (the spike the
    other side has at that position, or None).
    """
    trials = np.intersect1d(np.asarray(reference.trials, np.int64), np.asarray(candidate.trials, np.int64))
    a = _spike_keys(reference, trials)
    b = _spike_keys(candidate, trials)
    n = min(a.size, b.size)
    if a.size == b.size and np.array_equal(a, b):
        return None
    diff = np.flatnonzero(a[:n] != b[:n])
    k = int(diff[0]) if diff.size else n
    ka = tuple(int(x) for x in a[k]) if k < a.size else None
    kb = tuple(int(x) for x in b[k]) if k < b.size else None
    if kb is None or (ka is not None and ka < kb):
        first, side, other = ka, "reference", kb
    else:
        first, side, other = kb, "candidate", ka
    assert first is not None
    return {
        "trial": first[0],
        "step": first[1],
        "t": first[1] * float(reference.dt_s),
        "flywire_id": first[2],
        "side": side,
        "n_identical_before": k,
        "other": None if other is None else {"trial": other[0], "step": other[1], "flywire_id": other[2]},
    }


def input_fingerprint(result: Any) -> str | None:
    """The input fingerprint an engine recorded (``meta["input"]``), or None if absent.

    ``Engine.run`` writes ``"kicks:<digest>"`` when the engine consumed brainfly's kicks
    (an explicit schedule or the shared Poisson draws: equal digests, equal input) and
    ``"<engine>-<mode>:seed=K"`` when it drew its own input (Brian2's PoissonInput), a
    value no other engine shares. A
    value without ``kind:detail`` (``"PoissonInput"``, ``"schedule"``) names no particular
    input and counts as absent.
    """
    value = (result.meta or {}).get("input")
    text = "" if value is None else str(value).strip()
    kind, _, detail = text.partition(":")
    if not kind or not detail.strip():
        return None  # e.g. "PoissonInput" or "schedule": says how, not which input
    return text


# =============================================================================== comparison
@dataclass
class Comparison:
    """Result of :func:`compare_results`; :meth:`to_dict` gives its JSON form.

    Rates in Hz, times in seconds; neurons by FlyWire ID.
    """

    reference_engine: str
    candidate_engine: str
    experiment: str
    t_run: float
    n_trials_reference: int
    n_trials_candidate: int
    n_spikes_reference: int
    n_spikes_candidate: int
    spike_ratio: float
    n_active_reference: int
    n_active_candidate: int
    n_active_both: int
    jaccard: float
    jaccard_significant: float
    precision: float
    recall: float
    only_reference: list[int]
    only_candidate: list[int]
    n_union: int
    pearson: float
    spearman: float
    median_abs_pct_diff: float
    mean_abs_pct_diff: float
    median_pct_diff: float
    within_3se: float
    top_deviating: list[dict[str, Any]]
    input_reference: str | None
    input_candidate: str | None
    same_input: bool
    identical: bool | None
    first_divergence: dict[str, Any] | None
    verdict: str
    reasons: list[str] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    synthetic: bool = False
    connectome: str = ""

    def to_dict(self, max_listed: int = 200) -> dict[str, Any]:
        """JSON-compatible dict (NaN written as None; neuron lists cut to *max_listed*)."""
        d = asdict(self)
        for key in ("only_reference", "only_candidate"):
            d[key] = [str(x) for x in d[key][:max_listed]]
        for row in d["top_deviating"]:
            row["flywire_id"] = str(row["flywire_id"])
        if d["first_divergence"]:
            d["first_divergence"]["flywire_id"] = str(d["first_divergence"]["flywire_id"])
            if d["first_divergence"].get("other"):
                d["first_divergence"]["other"]["flywire_id"] = str(d["first_divergence"]["other"]["flywire_id"])
        return _nan_to_none(d)

    def summary(self) -> str:
        """One line for logs."""
        ident = "" if self.identical is None else (" identical spikes" if self.identical else
                                                    f" first divergence at trial {self.first_divergence['trial']} "
                                                    f"t={self.first_divergence['t']:.4f}s"
                                                    if self.first_divergence else "")
        return (f"{self.candidate_engine} vs {self.reference_engine} [{self.experiment} t={format_t_run(self.t_run)}s]: "
                f"{self.verdict}; spikes {self.n_spikes_candidate}/{self.n_spikes_reference} "
                f"(ratio {self.spike_ratio:.3f}), Jaccard {self.jaccard:.3f} (significant {self.jaccard_significant:.3f}), "
                f"r={_fmt(self.pearson)}, "
                f"within 3SE {self.within_3se:.1%}{ident}")


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


def _name_of(names: Any, fid: int) -> str:
    if names is None:
        return ""
    try:
        value = names.get(int(fid), "") if hasattr(names, "get") else ""
    except Exception:  # noqa: BLE001 - names are optional decoration
        return ""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _verdict(c: dict[str, Any], th: Thresholds) -> tuple[str, list[str], dict[str, float]]:
    """Apply the thresholds, widened by the noise allowances of short runs (see Thresholds)."""
    limits: dict[str, float] = {}
    if c["same_input"] and c["identical"]:
        return "MATCH", ["same input and spike-for-spike identical"], limits
    if c["n_spikes_reference"] == 0:
        if c["n_spikes_candidate"] == 0:
            return "MATCH", ["neither run has spikes"], limits
        return "DEVIATED", ["the reference has no spikes but the candidate has"], limits
    ratio, jac, r, w = c["spike_ratio"], c["jaccard_significant"], c["pearson"], c["within_3se"]
    reasons: list[str] = []
    for verdict, tol, jmin, rmin, wmin in (
        ("MATCH", th.match_ratio_tol, th.match_jaccard, th.match_pearson, th.match_within_3se),
        ("CLOSE", th.close_ratio_tol, th.close_jaccard, th.close_pearson, th.close_within_3se),
    ):
        tol_eff = float(max(tol, c["ratio_noise"]))
        r_eff = float(rmin * c["r_noise"])
        limits[f"{verdict.lower()}_ratio_tol"] = tol_eff
        limits[f"{verdict.lower()}_pearson"] = r_eff
        failed = []
        if not abs(ratio - 1.0) <= tol_eff:
            failed.append(f"spike ratio {ratio:.3f} outside 1 ± {tol_eff:.3g}")
        if not jac >= jmin:
            failed.append(f"significant Jaccard {jac:.3f} < {jmin:g}")
        if math.isnan(r) or not r >= r_eff:
            failed.append(f"Pearson r {_fmt(r)} < {r_eff:.3g}")
        if not w >= wmin:
            failed.append(f"within {th.n_se:g} SE {w:.1%} < {wmin:.0%}")
        if not failed:
            return verdict, reasons or [f"all {verdict} limits hold"], limits
        reasons.append(f"not {verdict}: " + "; ".join(failed))
    return "DEVIATED", reasons, limits


def compare_results(reference: Any, candidate: Any, *, names: Mapping[int, str] | None = None,
                    top: int = 20, t_run: float | None = None,
                    thresholds: Thresholds = THRESHOLDS) -> Comparison:
    """Compare a candidate run with the reference run of the same experiment.

    Parameters
    ----------
    reference, candidate : SpikeResult
        Neurons are matched by FlyWire ID; trials may differ in number.
    names : mapping flywire_id -> str, optional
        Neuron names for the list of top deviating neurons.
    top : int
        How many deviating neurons to list (largest |z| first).
    t_run : float, optional
        Trial duration in seconds, when the files don't record it (the paper's own files).
    thresholds : Thresholds

    Returns
    -------
    Comparison
    """
    if abs(float(reference.dt_s) - float(candidate.dt_s)) > 1e-15:
        raise ValidationError(
            f"compare_results: dt differs (reference {reference.dt_s} s, candidate {candidate.dt_s} s)"
        )
    t_ref = float(t_run if t_run is not None else reference.t_run)
    t_cand = float(t_run if t_run is not None else candidate.t_run)
    if t_ref <= 0 or t_cand <= 0:
        raise ValidationError("compare_results: a run has no duration (n_steps 0); pass t_run")
    n_r, n_c = max(len(reference.trials), 1), max(len(candidate.trials), 1)
    ref_fids, _ = neuron_rate_matrix(reference, t_run=t_ref)
    cand_fids, _ = neuron_rate_matrix(candidate, t_run=t_cand)
    union = np.union1d(ref_fids, cand_fids)
    _, ref_rates = neuron_rate_matrix(reference, union, t_ref)
    _, cand_rates = neuron_rate_matrix(candidate, union, t_cand)
    ref_mean = ref_rates.mean(axis=0) if ref_rates.shape[0] else np.zeros(union.size)
    cand_mean = cand_rates.mean(axis=0) if cand_rates.shape[0] else np.zeros(union.size)

    ref_per_s = reference.n_spikes / (n_r * t_ref)
    cand_per_s = candidate.n_spikes / (n_c * t_cand)
    ratio = cand_per_s / ref_per_s if ref_per_s > 0 else (1.0 if cand_per_s == 0 else float("inf"))
    overlap = active_set_overlap(ref_fids, cand_fids)

    pos = ref_mean > 0
    pct = 100.0 * (cand_mean[pos] - ref_mean[pos]) / ref_mean[pos]
    se = rate_standard_error(ref_rates, n_c, t_ref)
    z = (cand_mean - ref_mean) / se if union.size else np.zeros(0)
    one_sided = (ref_mean == 0) ^ (cand_mean == 0)
    n_sig_one_sided = int((one_sided & (np.abs(cand_mean - ref_mean) > thresholds.n_se * se)).sum())
    denom = overlap["n_both"] + n_sig_one_sided
    jaccard_sig = overlap["n_both"] / denom if denom else 1.0
    order = np.lexsort((-np.abs(cand_mean - ref_mean), -np.abs(z)))[:top]
    top_rows = [{
        "flywire_id": int(union[i]),
        "name": _name_of(names, union[i]),
        "reference_hz": float(ref_mean[i]),
        "candidate_hz": float(cand_mean[i]),
        "diff_hz": float(cand_mean[i] - ref_mean[i]),
        "z": float(z[i]),
    } for i in order.tolist()]

    # Noise allowances: what trial-to-trial variability alone would explain.
    ref_totals = np.bincount(np.searchsorted(np.asarray(sorted(reference.trials)), reference.trial),
                             minlength=len(reference.trials)).astype(np.float64)
    if ref_totals.size >= 2 and ref_totals.mean() > 0:
        rel_sd = ref_totals.std(ddof=1) / ref_totals.mean()
    else:
        rel_sd = 1.0 / math.sqrt(max(reference.n_spikes, 1))
    ratio_noise = thresholds.n_se * rel_sd * math.sqrt(1.0 / n_r + 1.0 / n_c)
    var_ref = float(ref_mean.var()) if union.size else 0.0
    r_noise = 1.0 - float(np.mean(se ** 2)) / (2.0 * var_ref) if var_ref > 0 else 1.0
    r_noise = max(r_noise, 0.0)

    in_ref, in_cand = input_fingerprint(reference), input_fingerprint(candidate)
    same_input = in_ref is not None and in_ref == in_cand
    divergence = None
    identical: bool | None = None
    if same_input:
        divergence = first_divergence(reference, candidate)
        identical = divergence is None and sorted(reference.trials) == sorted(candidate.trials)
        if divergence is not None:
            divergence["name"] = _name_of(names, divergence["flywire_id"])

    fields_ = {
        "n_spikes_reference": int(reference.n_spikes),
        "n_spikes_candidate": int(candidate.n_spikes),
        "spike_ratio": float(ratio),
        "jaccard": float(overlap["jaccard"]),
        "jaccard_significant": float(jaccard_sig),
        "pearson": pearson(ref_mean, cand_mean),
        "within_3se": within_se_share(ref_mean, cand_mean, se, thresholds.n_se),
        "same_input": same_input,
        "identical": identical,
        "ratio_noise": ratio_noise,
        "r_noise": r_noise,
    }
    if union.size and math.isnan(fields_["pearson"]) and np.array_equal(ref_mean, cand_mean):
        fields_["pearson"] = 1.0  # identical constant vectors
    verdict, reasons, limits = _verdict(fields_, thresholds)
    return Comparison(
        reference_engine=reference.engine or "reference",
        candidate_engine=candidate.engine or "candidate",
        experiment=candidate.exp_name,
        t_run=t_cand,
        n_trials_reference=len(reference.trials),
        n_trials_candidate=len(candidate.trials),
        n_spikes_reference=fields_["n_spikes_reference"],
        n_spikes_candidate=fields_["n_spikes_candidate"],
        spike_ratio=fields_["spike_ratio"],
        n_active_reference=int(ref_fids.size),
        n_active_candidate=int(cand_fids.size),
        n_active_both=overlap["n_both"],
        jaccard=fields_["jaccard"],
        jaccard_significant=fields_["jaccard_significant"],
        precision=float(overlap["precision"]),
        recall=float(overlap["recall"]),
        only_reference=[int(x) for x in overlap["only_reference"]],
        only_candidate=[int(x) for x in overlap["only_candidate"]],
        n_union=int(union.size),
        pearson=fields_["pearson"],
        spearman=spearman(ref_mean, cand_mean),
        median_abs_pct_diff=float(np.median(np.abs(pct))) if pct.size else float("nan"),
        mean_abs_pct_diff=float(np.mean(np.abs(pct))) if pct.size else float("nan"),
        median_pct_diff=float(np.median(pct)) if pct.size else float("nan"),
        within_3se=fields_["within_3se"],
        top_deviating=top_rows,
        input_reference=in_ref,
        input_candidate=in_cand,
        same_input=same_input,
        identical=identical,
        first_divergence=divergence,
        verdict=verdict,
        reasons=reasons,
        limits=limits,
        synthetic=bool(getattr(reference, "synthetic", False) or getattr(candidate, "synthetic", False)),
        connectome=str(getattr(candidate, "connectome_label", "") or getattr(reference, "connectome_label", "")),
    )


# =============================================================================== saved runs
def find_runs(results_dir: str | Path) -> list[dict[str, Any]]:
    """Saved runs in *results_dir*: dicts (engine, experiment, t_run, n_run, path), sorted."""
    out = []
    for path in sorted(Path(results_dir).glob("*.parquet")):
        info = parse_spikes_file_name(path.name)
        if info is not None:
            info["path"] = path
            out.append(info)
    return out


def load_run(path: str | Path, t_run: float | None = None, engine: str | None = None) -> Any:
    """Read a saved run; fill in the duration and engine when the file lacks them.

    The paper's own files carry no duration: pass *t_run* (seconds) so that rates are
    computed over the whole trial, not up to the last spike.
    """
    from .results import SpikeResult

    result = SpikeResult.read_parquet(path)
    if t_run is not None:
        n_steps = int(round(float(t_run) / result.dt_s))
        if not result.meta or result.n_steps < n_steps:
            result.n_steps = n_steps
    if engine and not result.engine:
        result.engine = engine
    return result


def _reverse_aliases() -> dict[int, str]:
    from .connectome.lookup import PAPER_ALIASES

    out: dict[int, str] = {}
    for name, ids in PAPER_ALIASES.items():
        for fid in ids:
            out[int(fid)] = name
    return out


def comparison_document(comparisons: Iterable[Comparison], missing: Iterable[dict[str, Any]] = (),
                        thresholds: Thresholds = THRESHOLDS, figure: str | None = None) -> dict[str, Any]:
    """The JSON document of a set of comparisons (schema version :data:`SCHEMA_VERSION`).

    Schema::

        {
          "schema": "brainfly.ground-truth-comparison",
          "schema_version": 1,
          "created": ISO-8601 UTC time,
          "brainfly_version": str,
          "thresholds": {Thresholds fields},
          "figure": path or null,
          "summary": {engine: {"MATCH": n, "CLOSE": n, "DEVIATED": n}},
          "comparisons": [Comparison.to_dict() ...],   # one per (engine, experiment, t_run, n_run)
          "missing": [{"engine", "experiment", "t_run", "n_run", "reason"} ...]
        }

    Each comparison has: reference_engine, candidate_engine, experiment, t_run (s),
    n_trials_reference/candidate, n_spikes_reference/candidate, spike_ratio (per
    trial-second), n_active_reference/candidate/both, jaccard, precision, recall,
    only_reference/only_candidate (FlyWire IDs as strings, at most 200), n_union, pearson,
    spearman, median_abs_pct_diff, mean_abs_pct_diff, median_pct_diff (%, over neurons
    active in the reference), within_3se (share), top_deviating (flywire_id, name,
    reference_hz, candidate_hz, diff_hz, z), input_reference/candidate (fingerprints or
    null), same_input, identical (null unless same_input), first_divergence (trial, step,
    t, flywire_id, name, side, n_identical_before, other; or null), jaccard_significant,
    verdict, reasons, limits (the limits applied after the noise allowances), synthetic,
    connectome; plus reference_file and candidate_file when read from files.
    NaN is written as null.
    """
    from . import __version__

    comps = list(comparisons)
    summary: dict[str, dict[str, int]] = {}
    items = []
    for c in comps:
        d = c.to_dict() if isinstance(c, Comparison) else dict(c)
        items.append(d)
        s = summary.setdefault(d["candidate_engine"], {v: 0 for v in VERDICTS})
        s[d["verdict"]] += 1
    return {
        "schema": "brainfly.ground-truth-comparison",
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "brainfly_version": __version__,
        "thresholds": asdict(thresholds),
        "figure": figure,
        "summary": summary,
        "comparisons": items,
        "missing": [_nan_to_none({k: (str(v) if isinstance(v, Path) else v) for k, v in m.items()}) for m in missing],
    }


def write_comparison_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Write the comparison document atomically (folders created)."""
    from ._io import atomic_write

    text = json.dumps(document, indent=2, sort_keys=False)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def compare_saved_runs(results_dir: str | Path, *, experiment: str | None = None,
                       t_runs: Iterable[float] | None = None, n_runs: Iterable[int] | None = None,
                       engines: Iterable[str] | None = None, reference: str | None = None,
                       names: Mapping[int, str] | None = None, top: int = 20,
                       ) -> tuple[list[Comparison], list[dict[str, Any]], dict[tuple, Any]]:
    """Compare every saved run in *results_dir* with the reference run of the same point.

    A point is (experiment, t_run, n_run). The reference is *reference* if given, else the
    first of :data:`REFERENCE_ENGINES` that has a file for that point.

    Returns
    -------
    comparisons : list of Comparison
        With ``reference_file``/``candidate_file`` recorded by the caller's JSON.
    missing : list of dict
        Points or engines that could not be compared, with the reason.
    loaded : dict
        (engine, experiment, t_run key, n_run) -> SpikeResult, for figures.
    """
    runs = find_runs(results_dir)
    want_t = None if t_runs is None else {format_t_run(t) for t in t_runs}
    want_n = None if n_runs is None else {int(n) for n in n_runs}
    want_e = None if engines is None else set(engines)
    points: dict[tuple[str, str, int], dict[str, Path]] = {}
    for r in runs:
        if experiment and r["experiment"] != experiment:
            continue
        tk = format_t_run(r["t_run"])
        if want_t is not None and tk not in want_t:
            continue
        if want_n is not None and r["n_run"] not in want_n:
            continue
        points.setdefault((r["experiment"], tk, r["n_run"]), {})[r["engine"]] = r["path"]
    comparisons: list[Comparison] = []
    missing: list[dict[str, Any]] = []
    loaded: dict[tuple, Any] = {}
    if names is None:
        names = _reverse_aliases()
    for (exp, tk, n), files in sorted(points.items(), key=lambda kv: (kv[0][0], float(kv[0][1]), kv[0][2])):
        candidates = [reference] if reference else list(REFERENCE_ENGINES)
        ref_name = next((e for e in candidates if e in files), None)
        others = sorted(e for e in files if e != ref_name and (want_e is None or e in want_e))
        if ref_name is None:
            for e in others:
                missing.append({"engine": e, "experiment": exp, "t_run": float(tk), "n_run": n,
                                "reason": f"no reference run ({' or '.join(candidates)}) for this point"})
            continue
        try:
            ref = load_run(files[ref_name], float(tk), ref_name)
        except DataError as exc:
            for e in others:
                missing.append({"engine": e, "experiment": exp, "t_run": float(tk), "n_run": n,
                                "reason": f"reference file unreadable: {exc}"})
            continue
        loaded[(ref_name, exp, tk, n)] = ref
        for e in others:
            try:
                cand = load_run(files[e], float(tk), e)
            except DataError as exc:
                missing.append({"engine": e, "experiment": exp, "t_run": float(tk), "n_run": n,
                                "reason": str(exc)})
                continue
            loaded[(e, exp, tk, n)] = cand
            comp = compare_results(ref, cand, names=names, top=top, t_run=float(tk))
            comp.reference_engine, comp.candidate_engine = ref_name, e
            comp.experiment = exp
            comp._files = (str(files[ref_name]), str(files[e]))  # type: ignore[attr-defined]
            comparisons.append(comp)
        # Spike identity: a Brian2 run fed the same kicks as a candidate (e.g. the bench
        # target brian2-standalone:use_schedule=true) is a second, exact reference for it.
        same_input_refs = [e for e in files if e.startswith("brian2") and e != ref_name and not reference]
        for r_name in same_input_refs:
            try:
                r_res = loaded.get((r_name, exp, tk, n)) or load_run(files[r_name], float(tk), r_name)
            except DataError:
                continue
            fp = input_fingerprint(r_res)
            if fp is None:
                continue
            for e in others:
                cand = loaded.get((e, exp, tk, n))
                if e == r_name or cand is None or e.startswith("brian2") or input_fingerprint(cand) != fp:
                    continue
                comp = compare_results(r_res, cand, names=names, top=top, t_run=float(tk))
                comp.reference_engine, comp.candidate_engine = r_name, e
                comp.experiment = exp
                comp._files = (str(files[r_name]), str(files[e]))  # type: ignore[attr-defined]
                comparisons.append(comp)
    return comparisons, missing, loaded


# =============================================================================== CLI
def add_compare_arguments(parser: Any) -> Any:
    """Add the options of ``brainfly compare`` to an argparse parser (returns it)."""
    parser.add_argument("--results-dir", default="data/results",
                        help="folder of saved runs {engine}_{experiment}_t{T}_n{N}.parquet (default: %(default)s)")
    parser.add_argument("--experiment", default=None, help="only this experiment (default: all found)")
    parser.add_argument("--t-run", "--t_run", dest="t_run", type=float, nargs="+", default=None,
                        help="only these durations, s (default: all found)")
    parser.add_argument("--n-run", "--n_run", dest="n_run", type=int, nargs="+", default=None,
                        help="only these trial counts (default: all found)")
    parser.add_argument("--engines", nargs="+", default=None, help="only these candidate engines")
    parser.add_argument("--reference", default=None,
                        help=f"reference engine label (default: the first found of {list(REFERENCE_ENGINES)})")
    parser.add_argument("--files", nargs=2, metavar=("REFERENCE", "CANDIDATE"), default=None,
                        help="compare two spike files directly (e.g. the paper's own parquet output)")
    parser.add_argument("--data", default=None,
                        help="connectome (folder or dataset name) for neuron names; optional")
    parser.add_argument("--annotations", default=None, metavar="DIR",
                        help="folder of FlyWire annotation tables (Codex classification / consolidated cell "
                             "types, or the supplemental annotations) for neuron names; default: the data and "
                             "cache folders")
    parser.add_argument("--top", type=int, default=20, help="deviating neurons to list (default: %(default)s)")
    parser.add_argument("--out", default="data/ground-truth-comparison.json",
                        help="JSON output (default: %(default)s)")
    parser.add_argument("--figure", default=None,
                        help="figure output (default: beside the JSON, .png)")
    parser.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    return parser


def _names_from_data(data: str | None) -> Mapping[int, str] | None:
    names = _reverse_aliases()
    if not data:
        return names
    try:
        from .connectome import load_connectome  # type: ignore[attr-defined]
        from .connectome.lookup import neuron_names  # type: ignore[attr-defined]
    except ImportError as exc:
        log.warning("neuron names unavailable (%s); listing FlyWire IDs only", exc)
        return names
    try:
        more = neuron_names(load_connectome(data))
    except Exception as exc:  # noqa: BLE001 - names are optional
        log.warning("neuron names unavailable (%s); listing FlyWire IDs only", exc)
        return names
    merged = dict(names)
    try:
        merged.update({int(k): str(v) for k, v in dict(more).items() if v is not None and str(v)})
    except (TypeError, ValueError):
        pass
    return merged


def _names_from_annotations(flywire_ids: Iterable[int], folder: str | None) -> dict[int, str]:
    """Cell-type names of *flywire_ids* from annotation tables, without loading any connectivity."""
    ids = np.unique(np.asarray(list(flywire_ids), dtype=np.int64))
    if ids.size == 0:
        return {}
    try:
        from .connectome import Connectome
        from .connectome.lookup import attach_annotations, neuron_names

        net = Connectome.from_edges(ids, [], [], [], name="names")
        attach_annotations(net, dirs=None if folder is None else [folder])
        return {int(k): str(v) for k, v in neuron_names(net).items()}
    except Exception as exc:  # noqa: BLE001 - names are optional decoration
        log.debug("no neuron names from annotations: %s", exc)
        return {}


def fill_names(comparisons: Iterable[Comparison], names: Mapping[int, str]) -> None:
    """Fill empty ``name`` fields of top deviating neurons and first divergences from *names*."""
    for c in comparisons:
        for row in c.top_deviating:
            if not row.get("name"):
                row["name"] = _name_of(names, row["flywire_id"])
        if c.first_divergence and not c.first_divergence.get("name"):
            c.first_divergence["name"] = _name_of(names, c.first_divergence["flywire_id"])


def run_compare_from_args(args: Any) -> int:
    """Run ``brainfly compare`` from parsed arguments; returns the exit status.

    0: comparisons written; 1: nothing to compare (no reference or no runs found).
    """
    import sys

    names = _names_from_data(getattr(args, "data", None))
    out = Path(args.out)
    figure = None if args.no_figure else Path(args.figure) if args.figure else out.with_suffix(".png")
    if args.files:
        ref_path, cand_path = (Path(p) for p in args.files)
        t_run = args.t_run[0] if args.t_run else None
        ref = load_run(ref_path, t_run, engine=args.reference or ref_path.stem)
        cand = load_run(cand_path, t_run, engine=cand_path.stem)
        comp = compare_results(ref, cand, names=names, top=args.top, t_run=t_run)
        comp._files = (str(ref_path), str(cand_path))  # type: ignore[attr-defined]
        comparisons, missing, loaded = [comp], [], {
            (comp.reference_engine, comp.experiment, format_t_run(comp.t_run), ref.n_trials): ref,
            (comp.candidate_engine, comp.experiment, format_t_run(comp.t_run), cand.n_trials): cand,
        }
    else:
        if not Path(args.results_dir).is_dir():
            print(f"brainfly compare: results folder {args.results_dir} does not exist; "
                  "run the benchmark first (python main.py or brainfly bench)", file=sys.stderr)
            return 1
        comparisons, missing, loaded = compare_saved_runs(
            args.results_dir, experiment=args.experiment, t_runs=args.t_run, n_runs=args.n_run,
            engines=args.engines, reference=args.reference, names=names, top=args.top)
    wanted = {row["flywire_id"] for c in comparisons for row in c.top_deviating if not row.get("name")}
    wanted |= {c.first_divergence["flywire_id"] for c in comparisons if c.first_divergence}
    if wanted:
        fill_names(comparisons, _names_from_annotations(wanted, getattr(args, "annotations", None)))
    for c in comparisons:
        print(c.summary())
    for m in missing:
        print(f"not compared: {m['engine']} [{m['experiment']} t={format_t_run(m['t_run'])}s "
              f"n={m['n_run']}]: {m['reason']}")
    fig_written = None
    if figure is not None and comparisons:
        try:
            from .plots import plot_comparisons

            fig_written = str(plot_comparisons(comparisons, loaded, figure))
        except Exception as exc:  # noqa: BLE001 - a figure failure must not lose the JSON
            log.warning("comparison figure not drawn: %s", exc)
            print(f"warning: comparison figure not drawn: {exc}", file=sys.stderr)
    doc = comparison_document(comparisons, missing, figure=fig_written)
    for d, c in zip(doc["comparisons"], comparisons):
        files = getattr(c, "_files", None)
        if files:
            d["reference_file"], d["candidate_file"] = files
    write_comparison_json(out, doc)
    print(f"wrote {out}" + (f" and {fig_written}" if fig_written else ""))
    if not comparisons:
        print("brainfly compare: nothing compared (no candidate run with a reference run of the same "
              f"experiment, t_run and n_run in {args.results_dir})", file=sys.stderr)
        return 1
    return 0
