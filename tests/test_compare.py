"""Comparison with the ground truth: statistics, verdicts, identity and first divergence, files, JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from brainfly.compare import (
    SCHEMA_VERSION, VERDICT_TABLE_MD, Comparison, compare_results, comparison_document, fill_names, input_fingerprint,
    thresholds_dict, verdict_table_markdown,
)
from brainfly.compare_command import add_compare_arguments, run_compare_from_args
from brainfly.errors import ValidationError
from brainfly.metrics import TOLERANCES, Tolerance, first_divergence
from brainfly.results import SpikeResult
from brainfly.store import load_run, spikes_file_name

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_V630 = ROOT.parent / "shared" / "data" / "reference-v630"
FIDS = np.arange(1000, 1040, dtype=np.int64)


def make(trial, idx, step, *, trials=(0, 1, 2, 3), n_steps=10_000, engine="brian2", inp="schedule:abc", fids=FIDS):
    return SpikeResult(np.asarray(trial), np.asarray(idx), np.asarray(step), fids, list(trials), n_steps, 1e-4,
                       "exp", engine=engine, meta={} if inp is None else {"input": inp})


def poisson_like(seed, rates_hz, n_trials=4, n_steps=10_000, scale=1.0, **kw):
    """Spikes with per-neuron rates (Bernoulli per step), a stand-in for a network's output."""
    rng = np.random.default_rng(seed)
    t, i, s = [], [], []
    for trial in range(n_trials):
        for neuron, rate in enumerate(rates_hz):
            steps = np.flatnonzero(rng.random(n_steps) < rate * scale * 1e-4)
            t += [trial] * steps.size
            i += [neuron] * steps.size
            s += steps.tolist()
    return make(t, i, s, trials=range(n_trials), n_steps=n_steps, **kw)


RATES = np.r_[np.linspace(2, 80, 30), np.zeros(10)]


# ------------------------------------------------------------------ input fingerprints
def test_input_fingerprint_needs_kind_and_detail():
    assert input_fingerprint(make([], [], [], inp="schedule:ab12")) == "schedule:ab12"
    for value in (None, "PoissonInput", "schedule", "", "poisson:"):
        assert input_fingerprint(make([], [], [], inp=value)) is None


# ------------------------------------------------------------------ verdicts on hand-made results
def test_identical_with_same_input_is_match_with_identity():
    ref = poisson_like(1, RATES)
    cand = poisson_like(1, RATES, engine="event")
    c = compare_results(ref, cand)
    assert c.verdict == "MATCH" and c.same_input and c.identical is True and c.first_divergence is None
    assert c.spike_ratio == 1.0 and c.jaccard == 1.0 and c.pearson == pytest.approx(1.0)
    assert c.within_3se == 1.0 and c.median_abs_pct_diff == 0.0
    json.dumps(c.to_dict())


def test_comparison_carries_its_rates_but_the_json_does_not():
    ref = poisson_like(1, RATES)
    c = compare_results(ref, poisson_like(2, RATES, engine="event"))
    assert c.rates.flywire_ids.size == c.n_union and c.rates.reference.shape == (4, c.n_union)
    d = c.to_dict()
    assert "rates" not in d and "reference_file" not in d and "candidate_file" not in d
    doc = comparison_document([c], [{"engine": "x", "experiment": "exp", "t_run": 1.0, "n_run": 4,
                                     "reason": "why", "path": Path("a")}])
    assert doc["summary"]["event"][c.verdict] == 1 and doc["missing"][0]["path"] == "a"
    assert json.loads(json.dumps(doc))["comparisons"][0]["verdict"] == c.verdict


def test_shifted_spike_gives_first_divergence():
    ref = poisson_like(2, RATES)
    step = ref.step.copy()
    k = 57
    step[k] += 1  # one spike one step later
    cand = make(ref.trial, ref.idx, step, trials=ref.trials, engine="event")
    c = compare_results(ref, cand, names={int(FIDS[ref.idx[k]]): "MN9"})
    assert c.same_input and c.identical is False
    d = c.first_divergence
    assert (d["trial"], d["step"], d["flywire_id"], d["side"]) == (int(ref.trial[k]), int(ref.step[k]),
                                                                   int(FIDS[ref.idx[k]]), "reference")
    assert d["name"] == "MN9" and d["other"]["step"] >= d["step"]
    assert d["t"] == pytest.approx(d["step"] * 1e-4)
    assert c.verdict == "MATCH"  # one spike moved by 0.1 ms: statistically the same run
    assert first_divergence(ref, ref) is None


def test_different_input_no_identity_claim_but_statistical_match():
    ref = poisson_like(3, RATES, inp=None)
    cand = poisson_like(4, RATES, engine="torch", inp="poisson:seed=4")
    c = compare_results(ref, cand)
    assert not c.same_input and c.identical is None and c.first_divergence is None
    assert c.verdict == "MATCH", c.reasons


def test_scaled_rates_deviate():
    ref = poisson_like(5, RATES)
    cand = poisson_like(6, RATES, scale=0.5, engine="torch")
    c = compare_results(ref, cand, top=5)
    assert c.verdict == "DEVIATED" and c.spike_ratio == pytest.approx(0.5, abs=0.08)
    assert c.median_pct_diff == pytest.approx(-50, abs=15)
    assert len(c.top_deviating) == 5 and all(r["diff_hz"] < 0 for r in c.top_deviating)
    assert c.pearson > 0.9  # the pattern is kept, the rates are not: deviation is in ratio and SE test
    assert any("spike ratio" in r for r in c.reasons)


def test_slightly_off_is_close():
    ref = poisson_like(7, RATES, n_trials=8)
    cand = poisson_like(8, RATES, n_trials=8, scale=0.9, engine="torch")
    c = compare_results(ref, cand)
    assert c.verdict == "CLOSE", c.reasons


def test_no_spikes_edge_cases():
    empty = make([], [], [])
    assert compare_results(empty, make([], [], [], engine="x")).verdict == "MATCH"
    some = make([0], [1], [5], engine="x", inp=None)
    assert compare_results(empty, some).verdict == "DEVIATED"


def test_thresholds_table_documented():
    assert "| MATCH |" in VERDICT_TABLE_MD and "| DEVIATED |" in VERDICT_TABLE_MD
    assert f"{TOLERANCES['match'].pearson:g}" in VERDICT_TABLE_MD
    assert VERDICT_TABLE_MD.strip() in (ROOT / "README.md").read_text(encoding="utf-8")  # the README shows the rules
    assert thresholds_dict() == {  # the JSON's thresholds, schema version 1
        "match_ratio_tol": 0.05, "match_jaccard": 0.9, "match_pearson": 0.98, "match_within_3se": 0.95,
        "close_ratio_tol": 0.15, "close_jaccard": 0.75, "close_pearson": 0.9, "close_within_3se": 0.8, "n_se": 3.0}


def test_limits_from_the_table_decide():
    """Looser limits than the table's turn a CLOSE into a MATCH; the limits must share n_se."""
    ref = poisson_like(7, RATES, n_trials=8)
    cand = poisson_like(8, RATES, n_trials=8, scale=0.9, engine="torch")
    assert compare_results(ref, cand).verdict == "CLOSE"
    loose = Tolerance(pearson=0.5, jaccard=0.5, within_se=0.5, spike_ratio_tol=0.5)
    c = compare_results(ref, cand, match=loose)
    assert c.verdict == "MATCH" and c.limits["match_ratio_tol"] == 0.5
    assert "1 ± 0.5," not in verdict_table_markdown() and "1 ± 0.5," in verdict_table_markdown(loose)
    with pytest.raises(ValidationError, match="n_se"):
        compare_results(ref, cand, close=Tolerance(pearson=0.9, jaccard=0.75, within_se=0.8, n_se=2.0))


# ------------------------------------------------------------------ the paper's own output files
needs_v630 = pytest.mark.skipif(not (REFERENCE_V630 / "sugarR.parquet").exists(),
                                reason="../shared/data/reference-v630 not present")


@needs_v630
def test_paper_files_200_vs_100_hz_deviate_and_self_matches():
    hi = load_run(REFERENCE_V630 / "sugarR.parquet", 1.0, "brian2")
    lo = load_run(REFERENCE_V630 / "sugarR_100Hz.parquet", 1.0, "brian2-100")
    assert hi.n_steps == 10_000 and hi.n_trials == 30
    c = compare_results(hi, lo)
    assert c.verdict == "DEVIATED" and c.spike_ratio == pytest.approx(289_073 / 511_566)
    assert c.n_active_reference == 448 and c.n_active_candidate == 404
    same = compare_results(hi, hi)
    assert same.verdict == "MATCH" and same.identical is None  # no input fingerprint in the paper's files


# ------------------------------------------------------------------ saved runs -> JSON + figure
def _args(argv):
    parser = add_compare_arguments(argparse.ArgumentParser())
    return parser.parse_args(argv)


def test_compare_saved_runs_writes_json_and_figure(tmp_path):
    res = tmp_path / "results"
    poisson_like(1, RATES).write_parquet(res / spikes_file_name("brian2", "exp", 1, 4))
    poisson_like(1, RATES, engine="event").write_parquet(res / spikes_file_name("event", "exp", 1, 4))
    poisson_like(9, RATES, scale=0.5, engine="torch-cpu", inp=None).write_parquet(
        res / spikes_file_name("torch-cpu", "exp", 1, 4))
    poisson_like(9, RATES, engine="torch-cpu").write_parquet(res / spikes_file_name("torch-cpu", "exp", 0.1, 4))
    out = tmp_path / "gt.json"
    code = run_compare_from_args(_args(["--results-dir", str(res), "--out", str(out)]))
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "brainfly.ground-truth-comparison" and doc["schema_version"] == SCHEMA_VERSION
    verdicts = {(c["candidate_engine"], c["t_run"]): c["verdict"] for c in doc["comparisons"]}
    assert verdicts == {("event", 1.0): "MATCH", ("torch-cpu", 1.0): "DEVIATED"}
    event = next(c for c in doc["comparisons"] if c["candidate_engine"] == "event")
    assert event["identical"] is True and event["reference_engine"] == "brian2"
    assert event["candidate_file"].endswith("event_exp_t1_n4.parquet")
    assert doc["missing"] and doc["missing"][0]["engine"] == "torch-cpu" and "no reference" in doc["missing"][0]["reason"]
    assert doc["summary"]["torch-cpu"]["DEVIATED"] == 1
    assert Path(doc["figure"]).exists() and Path(doc["figure"]).stat().st_size > 1000


def test_compare_prefers_brian2_and_raster_when_diverged(tmp_path):
    res = tmp_path / "results"
    ref = poisson_like(1, RATES)
    ref.write_parquet(res / spikes_file_name("brian2-standalone", "exp", 1, 4))
    step = ref.step.copy()
    step[100] += 3
    make(ref.trial, ref.idx, step, trials=ref.trials, engine="event").write_parquet(
        res / spikes_file_name("event", "exp", 1, 4))
    out = tmp_path / "gt.json"
    assert run_compare_from_args(_args(["--results-dir", str(res), "--out", str(out), "--t_run", "1"])) == 0
    doc = json.loads(out.read_text())
    (c,) = doc["comparisons"]
    assert c["reference_engine"] == "brian2-standalone" and c["identical"] is False
    d = c["first_divergence"]
    assert (d["trial"], d["step"], d["flywire_id"], d["side"]) == (
        int(ref.trial[100]), int(ref.step[100]), str(FIDS[ref.idx[100]]), "reference")
    assert Path(doc["figure"]).exists()


def test_compare_two_files_directly(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    poisson_like(1, RATES, inp=None).write_parquet(a)
    poisson_like(2, RATES, scale=2.0, inp=None).write_parquet(b)
    out = tmp_path / "x.json"
    assert run_compare_from_args(_args(["--files", str(a), str(b), "--out", str(out), "--no-figure"])) == 0
    doc = json.loads(out.read_text())
    assert doc["comparisons"][0]["verdict"] == "DEVIATED" and doc["figure"] is None


def test_nothing_to_compare_is_an_error(tmp_path):
    assert run_compare_from_args(_args(["--results-dir", str(tmp_path / "none"), "--out",
                                        str(tmp_path / "x.json")])) == 1
    assert isinstance(compare_results(make([], [], []), make([], [], [])), Comparison)


def test_fill_names_is_pure():
    ref = poisson_like(5, RATES)
    c = compare_results(ref, poisson_like(6, RATES, scale=0.5), top=3)
    fill_names([c], {row["flywire_id"]: f"N{row['flywire_id']}" for row in c.top_deviating})
    assert all(row["name"] == f"N{row['flywire_id']}" for row in c.top_deviating)


@needs_v630
@pytest.mark.skipif(not (REFERENCE_V630.parent / "flywire" / "classification_783.csv.gz").exists(),
                    reason="../shared/data/flywire annotations not present")
def test_paper_files_with_names_from_annotations(tmp_path):
    out = tmp_path / "v630.json"
    argv = ["--files", str(REFERENCE_V630 / "sugarR.parquet"), str(REFERENCE_V630 / "sugarR_100Hz.parquet"),
            "--t_run", "1", "--out", str(out), "--no-figure", "--annotations", str(REFERENCE_V630.parent / "flywire")]
    assert run_compare_from_args(_args(argv)) == 0
    (c,) = json.loads(out.read_text())["comparisons"]
    assert c["verdict"] == "DEVIATED"
    assert sum(bool(r["name"]) for r in c["top_deviating"]) >= 10


def test_brian2_run_with_the_same_kicks_is_a_second_exact_reference(tmp_path):
    """Beside the PoissonInput reference, a Brian2 replay of the candidate's kicks gives spike identity."""
    res = tmp_path / "results"
    poisson_like(1, RATES, engine="brian2", inp="brian2-PoissonInput:seed=0").write_parquet(
        res / spikes_file_name("brian2", "exp", 1, 4))
    replay = poisson_like(2, RATES, engine="brian2-standalone-use-schedule", inp="kicks:00ff")
    replay.write_parquet(res / spikes_file_name("brian2-standalone-use-schedule", "exp", 1, 4))
    poisson_like(2, RATES, engine="event", inp="kicks:00ff").write_parquet(res / spikes_file_name("event", "exp", 1, 4))
    poisson_like(2, RATES, engine="torch-cpu", inp="kicks:0aaa").write_parquet(
        res / spikes_file_name("torch-cpu", "exp", 1, 4))
    out = tmp_path / "gt.json"
    assert run_compare_from_args(_args(["--results-dir", str(res), "--out", str(out)])) == 0
    pairs = {(c["reference_engine"], c["candidate_engine"]): c for c in json.loads(out.read_text())["comparisons"]}
    exact = pairs[("brian2-standalone-use-schedule", "event")]
    assert exact["same_input"] and exact["identical"] is True
    assert ("brian2-standalone-use-schedule", "torch-cpu") not in pairs  # other kicks: no identity claim
    assert pairs[("brian2", "event")]["identical"] is None
