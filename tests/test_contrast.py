"""Two-condition contrast: Welch's test, intervals, Hedges' g, q values, two real runs, the command."""

from __future__ import annotations

import argparse
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import brainfly
from brainfly.effects import EFFECT_COLUMNS, contrast, effect_table, format_contrast, q_values
from brainfly.contrast_command import add_contrast_arguments, run_contrast_from_args, write_contrast
from brainfly.errors import DataError, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.metrics import rate_matrix
from brainfly.results import SpikeResult
from brainfly.testing.networks import random_network


# ------------------------------------------------------------------ effect_table against scipy
@pytest.mark.parametrize("n_a, n_b", [(2, 2), (5, 9), (30, 12)])
def test_effect_table_matches_scipy_welch_column_by_column(n_a, n_b):
    rng = np.random.default_rng(n_a * 100 + n_b)
    n = 40
    a = rng.gamma(2.0, 10.0, size=(n_a, n)) * rng.uniform(0.2, 3, size=n)
    b = rng.gamma(2.0, 10.0, size=(n_b, n)) * rng.uniform(0.2, 3, size=n)
    e = effect_table(a, b)
    assert list(e) == list(EFFECT_COLUMNS)
    m = n_a + n_b - 2
    j = special.gamma(m / 2) / (np.sqrt(m / 2) * special.gamma((m - 1) / 2))
    for k in range(n):
        res = stats.ttest_ind(b[:, k], a[:, k], equal_var=False)
        ci = res.confidence_interval(0.95)
        assert e["t"][k] == pytest.approx(res.statistic, rel=1e-10)
        assert e["p_value"][k] == pytest.approx(res.pvalue, rel=1e-8)
        assert (e["ci_low_hz"][k], e["ci_high_hz"][k]) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert e["mean_a_hz"][k] == pytest.approx(a[:, k].mean())
        assert e["diff_hz"][k] == pytest.approx(b[:, k].mean() - a[:, k].mean())
        pooled = np.sqrt(((n_a - 1) * a[:, k].var(ddof=1) + (n_b - 1) * b[:, k].var(ddof=1)) / m)
        assert e["effect_size"][k] == pytest.approx(j * e["diff_hz"][k] / pooled, rel=1e-10)
    # the exact correction is close to the textbook approximation 1 - 3 / (4 m - 1)
    assert j == pytest.approx(1 - 3 / (4 * m - 1), rel=0.02)


def test_confidence_interval_covers_the_true_difference_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    n_sims = 4000
    true_a, true_b = 20.0, 26.0
    a = rng.normal(true_a, 4.0, size=(6, n_sims))
    b = rng.normal(true_b, 9.0, size=(9, n_sims))  # unequal variances: Welch's interval
    for alpha in (0.05, 0.2):
        e = effect_table(a, b, alpha=alpha)
        covered = np.mean((e["ci_low_hz"] <= true_b - true_a) & (true_b - true_a <= e["ci_high_hz"]))
        sd = np.sqrt(alpha * (1 - alpha) / n_sims)
        assert abs(covered - (1 - alpha)) < 4 * sd, (alpha, covered)
    # and p < alpha about alpha of the time when there is no difference
    e = effect_table(a, rng.normal(true_a, 9.0, size=(9, n_sims)))
    assert abs(np.mean(e["p_value"] < 0.05) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n_sims)


# ------------------------------------------------------------------ edge cases
def test_fewer_than_two_trials_gives_no_test_but_the_difference():
    a = np.array([[3.0, 0.0]])
    b = np.array([[5.0, 1.0], [7.0, 1.0], [9.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = effect_table(a, b)
    assert e["diff_hz"].tolist() == [4.0, 1.0]
    for key in ("t", "p_value", "ci_low_hz", "ci_high_hz", "effect_size"):
        assert np.isnan(e[key]).all(), key
    e = effect_table(np.zeros((0, 2)), b)
    assert np.isnan(e["mean_a_hz"]).all() and np.isnan(e["diff_hz"]).all() and np.isnan(e["p_value"]).all()


def test_zero_variance_on_both_sides_is_an_exact_difference():
    # rates that are multiples of 1 / t_run: 0.1 * 3 / 3 rounds, yet a constant column has variance 0
    a = np.array([[0.1, 0.0, 5.0, 5.0, 2.0], [0.1, 0.0, 5.0, 5.0, 4.0], [0.1, 0.0, 5.0, 5.0, 3.0]])
    b = np.array([[0.1, 0.0, 15.0, 1.0, 9.0], [0.1, 0.0, 15.0, 1.0, 9.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks (division by zero, precision loss)
        e = effect_table(a, b)
    # equal means, no spread: nothing changed
    for k in (0, 1):
        assert e["diff_hz"][k] == 0 and e["t"][k] == 0 and e["p_value"][k] == 1 and e["effect_size"][k] == 0
        assert e["ci_low_hz"][k] == 0 and e["ci_high_hz"][k] == 0
    # different means, no spread: a deterministic difference
    assert e["diff_hz"][2] == 10 and e["t"][2] == np.inf and e["effect_size"][2] == np.inf and e["p_value"][2] == 0
    assert e["ci_low_hz"][2] == e["ci_high_hz"][2] == 10
    assert e["t"][3] == -np.inf and e["effect_size"][3] == -np.inf and e["p_value"][3] == 0
    assert e["ci_low_hz"][3] == e["ci_high_hz"][3] == -4
    # spread on one side only: an ordinary Welch test (df = n_a - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's own precision note on the constant side
        res = stats.ttest_ind(b[:, 4], a[:, 4], equal_var=False)
    assert np.isfinite(e["t"][4]) and e["t"][4] == pytest.approx(res.statistic)
    assert e["p_value"][4] == pytest.approx(res.pvalue)


def test_effect_table_refuses_bad_input():
    with pytest.raises(ValidationError, match="rates_a has 3 neurons"):
        effect_table(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValidationError, match="NaN or infinite"):
        effect_table(np.array([[np.nan], [1.0]]), np.zeros((2, 1)))
    with pytest.raises(ValidationError, match="matrix"):
        effect_table(np.zeros(3), np.zeros(3))
    with pytest.raises(ValidationError, match="alpha"):
        effect_table(np.zeros((2, 1)), np.zeros((2, 1)), alpha=1.5)


# ------------------------------------------------------------------ q values
def test_q_values_are_benjamini_hochberg_over_the_tested():
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, 1, 50), rng.uniform(0, 1e-3, 10)])
    np.testing.assert_allclose(q_values(p), stats.false_discovery_control(p), rtol=1e-12)
    with_nan = p.copy()
    with_nan[[2, 7, 55]] = np.nan
    q = q_values(with_nan)
    keep = ~np.isnan(with_nan)
    assert np.isnan(q[~keep]).all()
    np.testing.assert_allclose(q[keep], stats.false_discovery_control(with_nan[keep]), rtol=1e-12)
    assert q_values(np.array([np.nan, np.nan])).tolist() == pytest.approx([np.nan, np.nan], nan_ok=True)
    assert q_values(np.array([])).size == 0
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        q_values(np.array([0.5, 1.5]))


# ------------------------------------------------------------------ two real runs
@pytest.fixture(scope="module")
def runs():
    """A random network driven at 150 Hz, and the same with the driven neurons' strongest target silenced."""
    net, driven = random_network(60, 6, seed=3)
    fids = net.flywire_ids
    pre = np.repeat(np.arange(fids.size), np.diff(net.indptr))
    from_driven = np.flatnonzero(np.isin(pre, driven) & (net.weight > 0))
    strongest = from_driven[np.argmax(net.weight[from_driven])]
    target = int(net.post_idx[strongest])
    out = slice(net.indptr[target], net.indptr[target + 1])
    downstream = net.post_idx[out][net.weight[out] > 0]
    stim = (StimulusSet(tuple(int(f) for f in fids[driven]), 150.0),)
    kw = dict(stimuli=stim, t_run=0.2, n_trials=6, seed=1)
    base = brainfly.run(Experiment(name="base", **kw), data=net, progress=False)
    silenced = brainfly.run(Experiment(name="silence-target", silenced=(int(fids[target]),), silence_mode="both",
                                       **kw), data=net, progress=False)
    return {"net": net, "base": base, "silenced": silenced, "target": int(fids[target]),
            "downstream": fids[downstream], "driven": fids[driven]}


def test_contrast_of_silencing_a_driven_neurons_strongest_target(runs):
    a, b = runs["base"], runs["silenced"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = contrast(a, b)
    assert list(df.columns) == ["flywire_id", "name", "cell_type", "class", "rate_a_hz", "sem_a_hz", "rate_b_hz",
                                "sem_b_hz", "diff_hz", "ci_low_hz", "ci_high_hz", "effect_size", "t", "p_value",
                                "q_value"]
    # every neuron that spiked in either, once; silent ones count 0 Hz on their silent side
    active_a = set(a.rates()["flywire_id"].tolist())
    active_b = set(b.rates()["flywire_id"].tolist())
    assert set(df["flywire_id"].tolist()) == active_a | active_b and df["flywire_id"].is_unique
    only_a = active_a - active_b
    assert runs["target"] in only_a  # silenced both ways: it never fires
    row = df.set_index("flywire_id")
    for fid in only_a:
        assert row.loc[fid, "rate_b_hz"] == 0 and row.loc[fid, "sem_b_hz"] == 0 and row.loc[fid, "rate_a_hz"] > 0
    for fid in active_b - active_a:
        assert row.loc[fid, "rate_a_hz"] == 0 and row.loc[fid, "rate_b_hz"] > 0
    # rates are the results' own
    rates_a = a.rates().set_index("flywire_id")
    np.testing.assert_allclose(row.loc[rates_a.index, "rate_a_hz"], rates_a["mean_hz"])
    np.testing.assert_allclose(row.loc[rates_a.index, "sem_a_hz"], rates_a["sem_hz"])
    # the silenced target changed the most, surely; its excitatory targets lost activity
    assert df["flywire_id"].iloc[0] == runs["target"]
    assert row.loc[runs["target"], "diff_hz"] == -row.loc[runs["target"], "rate_a_hz"]
    assert row.loc[runs["target"], "q_value"] < 1e-3 and row.loc[runs["target"], "effect_size"] < -5
    lost = row.reindex(runs["downstream"])["diff_hz"].fillna(0.0)
    assert (lost < 0).any() and lost.min() < -10
    # the driven neurons receive no synapses and the same input: no difference at all
    for fid in runs["driven"]:
        assert row.loc[fid, "diff_hz"] == 0 and row.loc[fid, "p_value"] == 1 and row.loc[fid, "t"] == 0
    # sorted by |diff|, largest first, ties by FlyWire ID
    key = list(zip((-df["diff_hz"].abs()).tolist(), df["flywire_id"].tolist()))
    assert key == sorted(key)
    # the same numbers as effect_table and q_values on the rate matrices
    ids = df["flywire_id"].to_numpy()
    e = effect_table(rate_matrix(a, ids)[1], rate_matrix(b, ids)[1])
    for col in ("diff_hz", "ci_low_hz", "ci_high_hz", "effect_size", "t", "p_value"):
        np.testing.assert_array_equal(df[col].to_numpy(), e[col], err_msg=col)
    np.testing.assert_array_equal(df["q_value"].to_numpy(), q_values(e["p_value"]))
    # what each condition was
    assert df.attrs["n_trials_a"] == df.attrs["n_trials_b"] == 6 and df.attrs["t_run"] == pytest.approx(0.2)
    assert df.attrs["a"]["label"] == "base" and df.attrs["a"]["engine"] == "event"
    assert "silenced" not in df.attrs["a"]["manipulation"]
    assert "silenced: 1011" in df.attrs["b"]["manipulation"].replace(str(runs["target"]), "1011")
    assert df.attrs["b"]["synthetic"] is True


def test_contrast_without_names_and_text_rendering(runs):
    df = contrast(runs["base"], runs["silenced"], names=False)
    assert "name" not in df and "class" not in df
    text = format_contrast(contrast(runs["base"], runs["silenced"]), top=5)
    lines = text.splitlines()
    assert lines[0].startswith("A: base (event, 6 trials x 0.2 s") and "SYNTHETIC" in lines[0]
    assert any(line.startswith("B: silence-target") for line in lines)
    header = next(k for k, line in enumerate(lines) if line.startswith("flywire_id"))
    table = lines[header + 1:]
    assert len(table) == 5
    first = table[0].split()
    assert first[0] == str(runs["target"]) and "down" in first
    assert re.fullmatch(r"\d\.\de[-+]\d\d", first[-1])  # q in scientific notation
    # the columns line up: each row's q ends where the header's q does
    assert len({len(line) for line in [lines[header], *table]}) == 1
    assert "changed at q < 0.05" in text
    assert "no neuron spiked" in format_contrast(contrast(_silent(runs["base"]), _silent(runs["base"])))


def _silent(res: SpikeResult) -> SpikeResult:
    return SpikeResult([], [], [], res.flywire_ids, res.trials, res.n_steps, res.dt_s, "quiet")


def _written(res: SpikeResult, path):
    res.write_parquet(path)
    return path


def test_contrast_refuses_different_neuron_tables_and_durations(runs, tmp_path):
    a = runs["base"]
    other = SpikeResult(a.trial, a.idx, a.step, a.flywire_ids + 1, a.trials, a.n_steps, a.dt_s, "elsewhere")
    with pytest.raises(ValidationError, match="different neuron tables.*2 FlyWire IDs in only one.*same connectome"):
        contrast(a, other)
    # a spike file holds only its active neurons: checked against the recorded size and the other's table
    read = SpikeResult.read_parquet(_written(a, tmp_path / "a.parquet"))
    assert read.n_neurons < a.n_neurons
    pd.testing.assert_frame_equal(contrast(read, runs["silenced"]), contrast(a, runs["silenced"]))
    stray = SpikeResult(read.trial, read.idx, read.step, read.flywire_ids + 10_000, read.trials, read.n_steps,
                        read.dt_s, "stray", meta=read.meta)
    with pytest.raises(ValidationError, match="neurons of one are not in the other's table"):
        contrast(stray, runs["silenced"])
    bigger = SpikeResult(read.trial, read.idx, read.step, read.flywire_ids, read.trials, read.n_steps, read.dt_s,
                         "bigger", meta={"connectome": {**read.meta["connectome"], "n_neurons": 61}})
    with pytest.raises(ValidationError, match="60 neurons against 61"):
        contrast(read, bigger)
    longer = SpikeResult(a.trial, a.idx, a.step, a.flywire_ids, a.trials, 2 * a.n_steps, a.dt_s, "longer")
    with pytest.raises(ValidationError, match=r"t_run 0.2 s; B 'longer': 0.4 s.*pass t_run="):
        contrast(a, longer)
    # a given duration overrides both: the same spikes over the same 0.4 s give no difference
    df = contrast(a, longer, t_run=0.4)
    assert (df["diff_hz"] == 0).all() and df.attrs["t_run"] == 0.4
    np.testing.assert_allclose(df["rate_a_hz"], contrast(a, a)["rate_a_hz"] / 2)
    with pytest.raises(ValidationError, match="covers no trials"):
        contrast(a, SpikeResult([], [], [], a.flywire_ids, [], a.n_steps, a.dt_s, "none"))


# ------------------------------------------------------------------ the command
def _parser() -> argparse.ArgumentParser:
    return add_contrast_arguments(argparse.ArgumentParser(prog="brainfly contrast"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_command_prints_the_table_and_writes_it(runs, tmp_path, capsys, suffix):
    pa, pb = tmp_path / "a.parquet", tmp_path / "b.parquet"
    runs["base"].write_parquet(pa)
    runs["silenced"].write_parquet(pb)
    out = tmp_path / "sub" / f"contrast{suffix}"
    args = _parser().parse_args([str(pa), str(pb), "--top", "3", "--out", str(out)])
    assert run_contrast_from_args(args) == 0
    printed = capsys.readouterr().out
    assert "A: base" in printed and "B: silence-target" in printed and f"wrote {out}" in printed
    assert re.search(rf"^\s*{runs['target']}\s", printed, re.M)
    written = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected = contrast(runs["base"], runs["silenced"])
    assert written["flywire_id"].tolist() == expected["flywire_id"].tolist()
    np.testing.assert_allclose(written["q_value"], expected["q_value"], rtol=1e-12)
    assert not list(tmp_path.glob("sub/.*part"))  # written atomically, nothing left over
    if suffix == ".parquet":
        assert written.attrs["b"]["label"] == "silence-target"


def test_command_labels_runs_of_one_experiment_by_file_and_drops_names(runs, tmp_path, capsys):
    pa, pb = tmp_path / "first.parquet", tmp_path / "second.parquet"
    runs["base"].write_parquet(pa)
    runs["base"].write_parquet(pb)
    assert run_contrast_from_args(_parser().parse_args([str(pa), str(pb), "--no-names"])) == 0
    printed = capsys.readouterr().out
    assert "A: first.parquet" in printed and "B: second.parquet" in printed
    assert "name" not in printed.split("flywire_id", 1)[1].splitlines()[0]


def test_command_refuses_bad_files(runs, tmp_path):
    good = tmp_path / "a.parquet"
    runs["base"].write_parquet(good)
    with pytest.raises(DataError, match="missing.parquet does not exist"):
        run_contrast_from_args(_parser().parse_args([str(good), str(tmp_path / "missing.parquet")]))
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        run_contrast_from_args(_parser().parse_args([str(good), str(junk)]))
    with pytest.raises(ValidationError, match=r"\.csv or \.parquet"):
        run_contrast_from_args(_parser().parse_args([str(good), str(good), "--out", str(tmp_path / "x.json")]))
    with pytest.raises(ValidationError, match=r"\.csv or \.parquet"):
        write_contrast(pd.DataFrame({"flywire_id": [1]}), tmp_path / "x.txt")


def test_through_the_brainfly_command_line(runs, tmp_path, capsys, monkeypatch):
    from brainfly import cli

    monkeypatch.setitem(cli.COMMANDS, "contrast", ("brainfly.contrast_command", "add_contrast_arguments",
                                                   "run_contrast_from_args", "rates of two runs, neuron by neuron"))
    pa, pb = _written(runs["base"], tmp_path / "a.parquet"), _written(runs["silenced"], tmp_path / "b.parquet")
    assert cli.main(["contrast", str(pa), str(pb), "--top", "2"]) == 0
    assert str(runs["target"]) in capsys.readouterr().out
    assert cli.main(["contrast", str(pa), str(tmp_path / "nope.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: brainfly contrast: B file") and "does not exist" in err[0]
