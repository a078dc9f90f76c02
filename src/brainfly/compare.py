"""An engine's spikes against the ground truth (Brian2): verdicts from :mod:`brainfly.metrics`.

- :func:`compare_results` (reference, candidate) -> :class:`Comparison`, with a verdict
  MATCH / CLOSE / DEVIATED from the ``match`` and ``close`` limits of
  :data:`brainfly.metrics.TOLERANCES` (the rules: :data:`VERDICT_TABLE_MD`, as the README
  shows them);
- :func:`compare_saved_runs`: every saved run of a folder (:mod:`brainfly.store`) against
  the reference run of the same experiment, duration and trial count;
- :func:`comparison_document` and :func:`write_comparison_json`: the JSON document
  (schema version :data:`SCHEMA_VERSION`).

Neurons are matched by FlyWire ID (``flywire_id``, int64), never by model index; rates
are in Hz, durations in seconds. The command ``brainfly compare`` is
:mod:`brainfly.compare_command`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ._io import atomic_write
from ._version import __version__
from .errors import DataError, ValidationError
from .metrics import (
    TOLERANCES, PairedRates, Tolerance, active_set_overlap, first_divergence, noise_correlation, paired_rates,
    pearson, rate_standard_error, significant_jaccard, spearman, spike_ratio_noise, within_se_share, z_scores,
)
from .results import SpikeResult
from .store import find_runs, format_t_run, load_run

__all__ = [
    "VERDICTS",
    "REFERENCE_ENGINES",
    "SCHEMA_VERSION",
    "VERDICT_TABLE_MD",
    "verdict_table_markdown",
    "thresholds_dict",
    "Comparison",
    "compare_results",
    "input_fingerprint",
    "fill_names",
    "compare_saved_runs",
    "comparison_document",
    "write_comparison_json",
]

VERDICTS = ("MATCH", "CLOSE", "DEVIATED")

#: Engines whose output is the ground truth, in order of preference when several exist.
REFERENCE_ENGINES = ("brian2", "brian2-standalone")

#: Version of the JSON document written by :func:`write_comparison_json`.
SCHEMA_VERSION = 1

_MATCH = TOLERANCES["match"]
_CLOSE = TOLERANCES["close"]


# =============================================================================== the rules
def verdict_table_markdown(match: Tolerance = _MATCH, close: Tolerance = _CLOSE) -> str:
    """The verdict rules as a markdown table with their definitions (for the README).

    Parameters
    ----------
    match, close : Tolerance
        The limits of the verdicts MATCH and CLOSE (default: :data:`brainfly.metrics.TOLERANCES`).
    """
    n_se = match.n_se
    return (
        "| verdict | rule (all conditions must hold) |\n"
        "|---|---|\n"
        "| MATCH | same input schedule and spike-for-spike identical; **or** "
        f"spike ratio within 1 ± {match.spike_ratio_tol:g}, significant Jaccard ≥ {match.jaccard:g}, "
        f"rate Pearson r ≥ {match.pearson:g}, ≥ {match.within_se:.0%} of neurons within "
        f"{n_se:g} SE |\n"
        f"| CLOSE | spike ratio within 1 ± {close.spike_ratio_tol:g}, significant Jaccard ≥ {close.jaccard:g}, "
        f"Pearson r ≥ {close.pearson:g}, ≥ {close.within_se:.0%} of neurons within "
        f"{n_se:g} SE |\n"
        "| DEVIATED | anything else (also: the reference has no spikes but the candidate has) |\n"
        "\n"
        "Short runs are noisy, so two limits widen to what trial-to-trial variability alone "
        f"explains: the spike-ratio tolerance becomes max(tolerance, {n_se:g} · CV_ref · "
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
        f"|rate_cand − rate_ref| ≤ {n_se:g} SE.\n"
    )


#: Markdown table of the verdict rules in force, as the README shows it.
VERDICT_TABLE_MD = verdict_table_markdown()


def thresholds_dict(match: Tolerance = _MATCH, close: Tolerance = _CLOSE) -> dict[str, float | None]:
    """The verdict limits as the JSON document records them (``thresholds``, schema version 1).

    >>> thresholds_dict()["close_pearson"]
    0.9
    """
    out: dict[str, float | None] = {}
    for prefix, tol in (("match", match), ("close", close)):
        out[f"{prefix}_ratio_tol"] = tol.spike_ratio_tol
        out[f"{prefix}_jaccard"] = tol.jaccard
        out[f"{prefix}_pearson"] = tol.pearson
        out[f"{prefix}_within_3se"] = tol.within_se
    out["n_se"] = match.n_se
    return out


def input_fingerprint(result: SpikeResult) -> str | None:
    """The input fingerprint an engine recorded (``meta["input"]``), or None if absent.

    ``Engine.run`` writes ``"kicks:<digest>"`` when the engine consumed brainfly's kicks
    (an explicit schedule or the shared Poisson draws: equal digests, equal input) and
    ``"<engine>-<mode>:seed=K"`` when it drew its own input (Brian2's PoissonInput), a
    value no other engine shares. A value without ``kind:detail`` (``"PoissonInput"``,
    ``"schedule"``) names no particular input and counts as absent.
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

    Rates in Hz, times in seconds; neurons by FlyWire ID. ``rates`` (the per-neuron rates
    of both runs, for figures) and the file paths, when None, stay out of the JSON.
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
    reference_file: str | None = None
    candidate_file: str | None = None
    rates: PairedRates | None = field(default=None, repr=False, compare=False)

    def to_dict(self, max_listed: int = 200) -> dict[str, Any]:
        """JSON-compatible dict (NaN written as None; neuron lists cut to *max_listed*)."""
        d = asdict(replace(self, rates=None))
        del d["rates"]
        for key in ("reference_file", "candidate_file"):
            if d[key] is None:
                del d[key]
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


def _fmt(x: float | None) -> str:
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


def _name_of(names: Mapping[int, str] | None, fid: int) -> str:
    if names is None:
        return ""
    value = names.get(int(fid), "")
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _verdict(c: dict[str, Any], match: Tolerance, close: Tolerance) -> tuple[str, list[str], dict[str, float]]:
    """Apply the limits, widened by the noise allowances of short runs (see :data:`VERDICT_TABLE_MD`)."""
    limits: dict[str, float] = {}
    if c["same_input"] and c["identical"]:
        return "MATCH", ["same input and spike-for-spike identical"], limits
    if c["n_spikes_reference"] == 0:
        if c["n_spikes_candidate"] == 0:
            return "MATCH", ["neither run has spikes"], limits
        return "DEVIATED", ["the reference has no spikes but the candidate has"], limits
    ratio, jac, r, w = c["spike_ratio"], c["jaccard_significant"], c["pearson"], c["within_3se"]
    reasons: list[str] = []
    for verdict, tol in (("MATCH", match), ("CLOSE", close)):
        failed = []
        if tol.spike_ratio_tol is not None:
            tol_eff = float(max(tol.spike_ratio_tol, c["ratio_noise"]))
            limits[f"{verdict.lower()}_ratio_tol"] = tol_eff
            if not abs(ratio - 1.0) <= tol_eff:
                failed.append(f"spike ratio {ratio:.3f} outside 1 ± {tol_eff:.3g}")
        r_eff = float(tol.pearson * c["r_noise"])
        limits[f"{verdict.lower()}_pearson"] = r_eff
        if not jac >= tol.jaccard:
            failed.append(f"significant Jaccard {jac:.3f} < {tol.jaccard:g}")
        if math.isnan(r) or not r >= r_eff:
            failed.append(f"Pearson r {_fmt(r)} < {r_eff:.3g}")
        if not w >= tol.within_se:
            failed.append(f"within {tol.n_se:g} SE {w:.1%} < {tol.within_se:.0%}")
        if not failed:
            return verdict, reasons or [f"all {verdict} limits hold"], limits
        reasons.append(f"not {verdict}: " + "; ".join(failed))
    return "DEVIATED", reasons, limits


def compare_results(reference: SpikeResult, candidate: SpikeResult, *, names: Mapping[int, str] | None = None,
                    top: int = 20, t_run: float | None = None, match: Tolerance = _MATCH,
                    close: Tolerance = _CLOSE) -> Comparison:
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
    match, close : Tolerance
        Limits of the verdicts MATCH and CLOSE (default: :data:`brainfly.metrics.TOLERANCES`);
        they use ``pearson``, ``jaccard`` (on the significant Jaccard), ``within_se``,
        ``spike_ratio_tol`` and one ``n_se``.

    Returns
    -------
    Comparison

    Raises
    ------
    ValidationError
        When the time steps differ, a run has no duration, or the two limits differ in ``n_se``.
    """
    if abs(float(reference.dt_s) - float(candidate.dt_s)) > 1e-15:
        raise ValidationError(
            f"compare_results: dt differs (reference {reference.dt_s} s, candidate {candidate.dt_s} s)"
        )
    if match.n_se != close.n_se:
        raise ValidationError(f"compare_results: the MATCH and CLOSE limits must use the same n_se "
                              f"(got {match.n_se:g} and {close.n_se:g})")
    n_se = match.n_se
    t_ref = float(t_run if t_run is not None else reference.t_run)
    t_cand = float(t_run if t_run is not None else candidate.t_run)
    if t_ref <= 0 or t_cand <= 0:
        raise ValidationError("compare_results: a run has no duration (n_steps 0); pass t_run")
    n_r, n_c = max(len(reference.trials), 1), max(len(candidate.trials), 1)
    rates = paired_rates(reference, candidate, t_ref, t_cand)
    union, ref_mean, cand_mean = rates.flywire_ids, rates.reference_mean, rates.candidate_mean
    ref_active, cand_active = union[ref_mean > 0], union[cand_mean > 0]

    ref_per_s = reference.n_spikes / (n_r * t_ref)
    cand_per_s = candidate.n_spikes / (n_c * t_cand)
    ratio = cand_per_s / ref_per_s if ref_per_s > 0 else (1.0 if cand_per_s == 0 else float("inf"))
    overlap = active_set_overlap(ref_active, cand_active)

    pos = ref_mean > 0
    pct = 100.0 * (cand_mean[pos] - ref_mean[pos]) / ref_mean[pos]
    se = rate_standard_error(rates.reference, n_c, t_ref)
    z = z_scores(cand_mean - ref_mean, se)
    order = np.lexsort((-np.abs(cand_mean - ref_mean), -np.abs(z)))[:top]
    top_rows = [{
        "flywire_id": int(union[i]),
        "name": _name_of(names, union[i]),
        "reference_hz": float(ref_mean[i]),
        "candidate_hz": float(cand_mean[i]),
        "diff_hz": float(cand_mean[i] - ref_mean[i]),
        "z": float(z[i]),
    } for i in order.tolist()]

    in_ref, in_cand = input_fingerprint(reference), input_fingerprint(candidate)
    same_input = in_ref is not None and in_ref == in_cand
    divergence = None
    identical: bool | None = None
    if same_input:
        divergence = first_divergence(reference, candidate)
        identical = divergence is None and sorted(reference.trials) == sorted(candidate.trials)
        if divergence is not None:
            divergence["name"] = _name_of(names, divergence["flywire_id"])

    r = pearson(ref_mean, cand_mean)
    if union.size and math.isnan(r) and np.array_equal(ref_mean, cand_mean):
        r = 1.0  # identical constant vectors
    fields_ = {
        "n_spikes_reference": int(reference.n_spikes),
        "n_spikes_candidate": int(candidate.n_spikes),
        "spike_ratio": float(ratio),
        "jaccard_significant": significant_jaccard(ref_mean, cand_mean, se, n_se),
        "pearson": r,
        "within_3se": within_se_share(ref_mean, cand_mean, se, n_se),
        "same_input": same_input,
        "identical": identical,
        # noise allowances: what trial-to-trial variability alone would explain
        "ratio_noise": spike_ratio_noise(rates.reference.sum(axis=1) * t_ref, n_c, n_se),
        "r_noise": noise_correlation(ref_mean, se),
    }
    verdict, reasons, limits = _verdict(fields_, match, close)
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
        n_active_reference=int(ref_active.size),
        n_active_candidate=int(cand_active.size),
        n_active_both=overlap["n_both"],
        jaccard=float(overlap["jaccard"]),
        jaccard_significant=fields_["jaccard_significant"],
        precision=float(overlap["precision"]),
        recall=float(overlap["recall"]),
        only_reference=[int(x) for x in overlap["only_reference"]],
        only_candidate=[int(x) for x in overlap["only_candidate"]],
        n_union=int(union.size),
        pearson=r,
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
        synthetic=bool(reference.synthetic or candidate.synthetic),
        connectome=str(candidate.connectome_label or reference.connectome_label),
        rates=rates,
    )


def fill_names(comparisons: Iterable[Comparison], names: Mapping[int, str]) -> None:
    """Fill empty ``name`` fields of top deviating neurons and first divergences from *names*."""
    for c in comparisons:
        for row in c.top_deviating:
            if not row.get("name"):
                row["name"] = _name_of(names, row["flywire_id"])
        if c.first_divergence and not c.first_divergence.get("name"):
            c.first_divergence["name"] = _name_of(names, c.first_divergence["flywire_id"])


# =============================================================================== saved runs
def _missing(engine: str, experiment: str, t_key: str, n_run: int, reason: str) -> dict[str, Any]:
    return {"engine": engine, "experiment": experiment, "t_run": float(t_key), "n_run": n_run, "reason": reason}


def compare_saved_runs(results_dir: str | Path, *, experiment: str | None = None,
                       t_runs: Iterable[float] | None = None, n_runs: Iterable[int] | None = None,
                       engines: Iterable[str] | None = None, reference: str | None = None,
                       names: Mapping[int, str] | None = None, top: int = 20,
                       ) -> tuple[list[Comparison], list[dict[str, Any]], dict[str, SpikeResult]]:
    """Compare every saved run in *results_dir* with the reference run of the same point.

    A point is (experiment, t_run, n_run) in the file names of :mod:`brainfly.store`. The
    reference is *reference* if given, else the first of :data:`REFERENCE_ENGINES` that has
    a file for that point. A Brian2 run fed the same kicks as a candidate (the bench target
    ``brian2-standalone:use_schedule=true``, say) is a second, exact reference for it.

    Parameters
    ----------
    results_dir : str or Path
    experiment : str, optional
        Only this experiment.
    t_runs, n_runs : iterables, optional
        Only these durations (s) and trial counts.
    engines : iterable of str, optional
        Only these candidate engine labels.
    reference : str, optional
        Reference engine label.
    names : mapping flywire_id -> str, optional
        Neuron names for the lists of deviating neurons.
    top : int
        Deviating neurons to list per comparison.

    Returns
    -------
    comparisons : list of Comparison
        With ``reference_file`` and ``candidate_file`` set.
    missing : list of dict
        Points or engines that could not be compared: engine, experiment, t_run, n_run, reason.
    loaded : dict
        File path (str) -> SpikeResult of every run read (for figures).
    """
    want_t = None if t_runs is None else {format_t_run(t) for t in t_runs}
    want_n = None if n_runs is None else {int(n) for n in n_runs}
    want_e = None if engines is None else set(engines)
    points: dict[tuple[str, str, int], dict[str, Path]] = {}
    for r in find_runs(results_dir):
        tk = format_t_run(r["t_run"])
        if ((experiment and r["experiment"] != experiment) or (want_t is not None and tk not in want_t)
                or (want_n is not None and r["n_run"] not in want_n)):
            continue
        points.setdefault((r["experiment"], tk, r["n_run"]), {})[r["engine"]] = r["path"]
    comparisons: list[Comparison] = []
    missing: list[dict[str, Any]] = []
    loaded: dict[str, SpikeResult] = {}

    def load(engine: str, files: dict[str, Path], t_key: str) -> SpikeResult:
        key = str(files[engine])
        if key not in loaded:
            loaded[key] = load_run(files[engine], float(t_key), engine)
        return loaded[key]

    def compare(ref_name: str, cand_name: str, files: dict[str, Path], exp: str, t_key: str) -> None:
        comp = compare_results(load(ref_name, files, t_key), load(cand_name, files, t_key), names=names, top=top,
                               t_run=float(t_key))
        comp.reference_engine, comp.candidate_engine, comp.experiment = ref_name, cand_name, exp
        comp.reference_file, comp.candidate_file = str(files[ref_name]), str(files[cand_name])
        comparisons.append(comp)

    for (exp, tk, n), files in sorted(points.items(), key=lambda kv: (kv[0][0], float(kv[0][1]), kv[0][2])):
        candidates = [reference] if reference else list(REFERENCE_ENGINES)
        ref_name = next((e for e in candidates if e in files), None)
        others = sorted(e for e in files if e != ref_name and (want_e is None or e in want_e))
        if ref_name is None:
            missing += [_missing(e, exp, tk, n, f"no reference run ({' or '.join(candidates)}) for this point")
                        for e in others]
            continue
        try:
            load(ref_name, files, tk)
        except DataError as exc:
            missing += [_missing(e, exp, tk, n, f"reference file unreadable: {exc}") for e in others]
            continue
        readable = []
        for e in others:
            try:
                load(e, files, tk)
            except DataError as exc:
                missing.append(_missing(e, exp, tk, n, str(exc)))
                continue
            readable.append(e)
            compare(ref_name, e, files, exp, tk)
        if reference:
            continue
        # Spike identity: a Brian2 run fed the same kicks as a candidate is a second, exact reference.
        for r_name in (e for e in files if e.startswith("brian2") and e != ref_name):
            try:
                fp = input_fingerprint(load(r_name, files, tk))
            except DataError:
                continue
            if fp is None:
                continue
            for e in readable:
                if e != r_name and not e.startswith("brian2") and input_fingerprint(load(e, files, tk)) == fp:
                    compare(r_name, e, files, exp, tk)
    return comparisons, missing, loaded


# =============================================================================== JSON
def comparison_document(comparisons: Iterable[Comparison], missing: Iterable[dict[str, Any]] = (), *,
                        match: Tolerance = _MATCH, close: Tolerance = _CLOSE,
                        figure: str | None = None) -> dict[str, Any]:
    """The JSON document of a set of comparisons (schema version :data:`SCHEMA_VERSION`).

    Schema::

        {
          "schema": "brainfly.ground-truth-comparison",
          "schema_version": 1,
          "created": ISO-8601 UTC time,
          "brainfly_version": str,
          "thresholds": {thresholds_dict(match, close)},
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
    items = [c.to_dict() for c in comparisons]
    summary: dict[str, dict[str, int]] = {}
    for d in items:
        summary.setdefault(d["candidate_engine"], {v: 0 for v in VERDICTS})[d["verdict"]] += 1
    return {
        "schema": "brainfly.ground-truth-comparison",
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "brainfly_version": __version__,
        "thresholds": thresholds_dict(match, close),
        "figure": figure,
        "summary": summary,
        "comparisons": items,
        "missing": [_nan_to_none({k: (str(v) if isinstance(v, Path) else v) for k, v in m.items()}) for m in missing],
    }


def write_comparison_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Write the comparison document atomically (folders created); returns the path."""
    text = json.dumps(document, indent=2, sort_keys=False)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
