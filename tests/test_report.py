"""HTML reports (brainfly.report): a run, a run versus another, a screen folder (complete and running).

The pages are opened in a real headless browser (Chromium through selenium): no console
error, every figure decodes to a picture that is not blank, the title is right. On a
SYNTHETIC network, as every test.
"""

from __future__ import annotations

import base64
from importlib import resources
import io
import json
from pathlib import Path
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from brainfly.connectome import Connectome
from brainfly.effects import effect_table, q_values
from brainfly.errors import DataError, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.report import path_lengths, rates_by_cell_type, write_report
from brainfly.report_command import main as report_main
from brainfly.runner import run
from brainfly.testing.networks import random_network


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MN9 = (720575940660219265, 720575940618238523)
ADN1 = 720575940616185531


# =============================================================================== fixtures
def _typed_ids(n: int) -> np.ndarray:
    """*n* real FlyWire v783 IDs, several per cell type, from the tables shipped with brainfly."""
    table = resources.files("brainfly") / "data" / "flywire" / "consolidated_cell_types_783.csv.gz"
    with resources.as_file(table) as path:
        types = pd.read_csv(path, usecols=["root_id", "primary_type"]).dropna()
    counts = types["primary_type"].value_counts()
    common = types[types["primary_type"].isin(counts[counts >= 8].index)].sort_values(["primary_type", "root_id"])
    picked = common.groupby("primary_type").head(8).head(n)
    assert len(picked) == n
    return picked["root_id"].to_numpy(dtype=np.int64)


@pytest.fixture(scope="module")
def network() -> tuple[Connectome, tuple[int, ...]]:
    """A small random cascade whose neurons carry real FlyWire IDs (so cell types show), and the IDs to drive."""
    net, driven = random_network(160, 12, seed=3)
    ids = _typed_ids(net.n_neurons)
    typed = Connectome.from_edges(ids, net.pre_idx, net.post_idx, net.weight, name="tiny-typed-3", synthetic=True)
    return typed, tuple(int(i) for i in ids[driven])


@pytest.fixture(scope="module")
def runs(network, tmp_path_factory) -> tuple[Path, Path]:
    """Two runs of the network: driven (A), and driven with four recruited neurons silenced (B)."""
    net, driven = network
    folder = tmp_path_factory.mktemp("runs")
    exp = Experiment(name="driven", stimuli=(StimulusSet(driven, 150.0, "first layer"),), n_trials=4, t_run=0.25)
    a = folder / "a.parquet"
    run(exp, data=net, engine="event", out=a, progress=False)
    silenced = tuple(int(f) for f in net.flywire_ids[14:18])
    run(exp.with_(name="silenced", silenced=silenced), data=net, engine="event", out=folder / "b.parquet",
        progress=False)
    return a, folder / "b.parquet"


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (selenium) that records the console; skipped only where none is installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (test extra)")
    from selenium.webdriver.chrome.service import Service

    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists() and shutil.which(Path(tool).name) is None:
            pytest.skip(f"{tool} is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")))
    yield driver
    driver.quit()


def _decode_png(data: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return np.asarray(mpimg.imread(io.BytesIO(data), format="png"), dtype=np.float64)


def _check_in_browser(driver, page: Path, title: str, shot: Path) -> int:
    """Open *page*; no console errors, every image loaded and not blank; save a full-page screenshot.

    Returns the number of images.
    """
    driver.get_log("browser")  # drop what an earlier page left
    driver.set_window_size(1200, 900)
    driver.get(page.resolve().as_uri())
    assert driver.title == title
    height = int(driver.execute_script("return document.body.scrollHeight"))
    driver.set_window_size(1200, min(height + 120, 12000))
    driver.save_screenshot(str(shot))
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.src])")
    for complete, width, height, src in images:
        assert complete and width > 0 and height > 0, src[:80]
        assert src.startswith("data:image/png;base64,")
        pixels = _decode_png(base64.b64decode(src.split(",", 1)[1]))
        assert pixels.std() > 0.01, "a blank figure"
    screen = _decode_png(shot.read_bytes())
    assert screen.shape[0] > 500 and screen.std() > 0.01
    return len(images)


def _ids(text: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', text))


def _self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text), "a link out of the page"
    assert "url(" not in text


# =============================================================================== a run
def test_run_report_in_browser(runs, network, browser, tmp_path):
    """A run with its connectome: provenance, summary, raster, cell types, latency vs path length."""
    a, _ = runs
    net, _ = network
    out = write_report(a, tmp_path / "run.html", data=net, top=25)
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    assert {"synthetic-banner", "provenance", "summary", "raster", "raster-figure", "cell-types",
            "cell-types-figure", "cell-types-table", "propagation", "propagation-figure",
            "propagation-table"} <= _ids(text)
    assert "no-path-lengths" not in _ids(text)
    assert "SYNTHETIC connectome" in text and net.content_digest in text
    assert "first layer (12 neurons)" in text  # the manipulation, in the summary's words
    # cell types come from the shipped FlyWire tables: the table lists real type names
    table = text.split('id="cell-types-table"')[1].split("</table>")[0]
    assert "(no cell type)" not in table and table.count("<tr>") > 3
    n_images = _check_in_browser(browser, out, "brainfly report: driven", tmp_path / "run.png")
    assert n_images == 3


def test_run_report_without_connectome_says_why(runs, tmp_path):
    """The run's network cannot be loaded by name: latencies only, and the page says why."""
    a, _ = runs
    text = write_report(a, tmp_path / "run.html").read_text(encoding="utf-8")
    assert "no-path-lengths" in _ids(text) and "propagation-figure" in _ids(text)
    assert "tiny-typed-3" in text.split('id="no-path-lengths"')[1].split("</p>")[0]


def test_run_report_refuses_another_connectome(runs, tmp_path):
    a, _ = runs
    other, _ = random_network(160, 12, seed=4)
    with pytest.raises(DataError, match="not the one this run used"):
        write_report(a, tmp_path / "run.html", data=other)
    assert not (tmp_path / "run.html").exists()


def test_versus_report_in_browser(runs, browser, tmp_path):
    """A versus B: the contrast's table and the rate scatter with significant neurons marked."""
    a, b = runs
    out = tmp_path / "versus.html"
    assert report_main([str(a), "--out", str(out), "--versus", str(b), "--top", "15"]) == 0
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    assert {"contrast", "contrast-figure", "contrast-table"} <= _ids(text)
    rows = text.split('id="contrast-table"')[1].split("</table>")[0].count("<tr>") - 1
    assert rows == 15
    assert _check_in_browser(browser, out, "brainfly report: driven vs silenced", tmp_path / "versus.png") == 4


# =============================================================================== a screen folder
def _write_screen(folder: Path, *, status: str = "complete") -> Path:
    """A screen folder as ``brainfly screen`` writes it: a rate sweep, two silencings, a shuffled control."""
    rng = np.random.default_rng(7)
    readouts = pd.DataFrame({"flywire_id": [MN9[0], MN9[1], ADN1], "name": ["MN9", "MN9", "aDN1"],
                             "cell_type": ["CB0701", "CB0701", "aDN1"]})
    conds = [dict(kind="base", label="base", silence_target="", rate_hz=np.nan)]
    conds += [dict(kind="rate", label=f"rate {r:g} Hz", silence_target="", rate_hz=float(r)) for r in (25, 50, 100, 200)]
    conds += [dict(kind="silence", label=f"silence {t}", silence_target=t, rate_hz=np.nan) for t in ("DN2", "aBN1")]
    conds += [dict(kind="silence+rate", label=f"silence DN2 + rate {r:g} Hz", silence_target="DN2", rate_hz=float(r))
              for r in (50, 200)]
    rows, trials, summary = [], [], []
    n_trials = 6
    for connectome in ("real", "shuffle-1", "shuffle-2"):
        for cid, c in enumerate(conds):
            rows.append(dict(condition_id=cid, connectome=connectome, kind=c["kind"], label=c["label"],
                             silence_target=c["silence_target"], activate_target="", rate_hz=c["rate_hz"], param="",
                             param_value=np.nan, experiment=json.dumps({"name": c["label"]})))
            drive = 100.0 if np.isnan(c["rate_hz"]) else c["rate_hz"]
            for k, r in readouts.iterrows():
                true = (0.4 + 0.1 * k) * drive * (0.3 if c["silence_target"] == "DN2" and connectome == "real" else 1.0)
                if connectome != "real":
                    true = 20.0 + 0.01 * drive
                for t in range(n_trials):
                    trials.append(dict(condition_id=cid, connectome=connectome, flywire_id=r["flywire_id"], trial=t,
                                       rate_hz=max(0.0, true + rng.normal(0, 3.0))))
            summary.append(dict(condition_id=cid, connectome=connectome, n_spikes=int(rng.integers(1000, 5000)),
                                spikes_per_trial_s=float(rng.uniform(1e3, 5e3)), n_active=int(rng.integers(50, 90)),
                                runaway=False, sim_s=float(rng.uniform(0.01, 0.1))))
    trials = pd.DataFrame(trials)
    readout = (trials.groupby(["condition_id", "connectome", "flywire_id"])["rate_hz"]
               .agg(mean_hz="mean", std_hz="std", sem_hz="sem", n_trials="count").reset_index()
               .merge(readouts, on="flywire_id"))
    effects = []
    for connectome, part in trials.groupby("connectome"):
        base = part[part["condition_id"] == 0].pivot(index="trial", columns="flywire_id", values="rate_hz")
        table = []
        for cid in range(1, len(conds)):
            cond = part[part["condition_id"] == cid].pivot(index="trial", columns="flywire_id", values="rate_hz")
            eff = effect_table(base.to_numpy(), cond[base.columns].to_numpy())
            table.append(pd.DataFrame({"condition_id": cid, "connectome": connectome, "flywire_id": base.columns,
                                       "base_mean_hz": eff["mean_a_hz"], "mean_hz": eff["mean_b_hz"],
                                       **{k: eff[k] for k in ("diff_hz", "ci_low_hz", "ci_high_hz", "effect_size",
                                                              "t", "p_value")}}))
        table = pd.concat(table, ignore_index=True)
        table["q_value"] = q_values(table["p_value"].to_numpy())
        effects.append(table)
    effects = pd.concat(effects, ignore_index=True).merge(readouts, on="flywire_id")
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "conditions.parquet")
    readout[["condition_id", "connectome", "flywire_id", "name", "cell_type", "mean_hz", "std_hz", "sem_hz",
             "n_trials"]].to_parquet(folder / "readout.parquet")
    trials.to_parquet(folder / "readout_trials.parquet")
    pd.DataFrame(summary).to_parquet(folder / "summary.parquet")
    effects[["condition_id", "connectome", "flywire_id", "name", "cell_type", "base_mean_hz", "mean_hz", "diff_hz",
             "ci_low_hz", "ci_high_hz", "effect_size", "t", "p_value", "q_value"]].to_parquet(folder / "effects.parquet")
    info = {"name": "toy screen", "spec": {"base": "sugar", "rate_hz": [25, 50, 100, 200]}, "status": status,
            "engine": "event", "engine_options": {"n_threads": 1},
            "data": {"name": "synthetic-v1-seed0", "digest": "ab" * 32, "synthetic": True},
            "n_conditions": len(rows), "timings": {"total_s": 12.5}, "brainfly_version": "0.1.0",
            "hardware": {"cpu": "test CPU", "cores": 2}}
    (folder / "screen.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def test_screen_report_in_browser(browser, tmp_path):
    """Every section of a complete screen: conditions, readout, sweep, volcano, heatmap, shuffled control."""
    folder = _write_screen(tmp_path / "screen")
    out = write_report(folder, tmp_path / "screen.html", top=10)
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    assert {"synthetic-banner", "provenance", "conditions", "conditions-table", "readout", "readout-table",
            "rate-sweep", "rate-sweep-figure", "effects", "effects-figure", "effects-table", "heatmap",
            "heatmap-figure", "shuffle", "shuffle-figure", "shuffle-table"} <= _ids(text)
    assert "running-banner" not in _ids(text)
    # MN9's two neurons stay apart (name and ID); the readout table holds each condition of each connectome once
    readout = text.split('id="readout-table"')[1].split("</table>")[0]
    assert f"MN9 {MN9[0]}" in readout and "aDN1" in readout and readout.count("<tr>") == 1 + 27
    assert "silence DN2" in text.split('id="effects-table"')[1].split("</table>")[0]
    assert _check_in_browser(browser, out, "brainfly screen report: toy screen", tmp_path / "screen.png") == 4


def test_running_screen_with_empty_tables(browser, tmp_path):
    """A screen that has written its description and conditions only: the page says so and still renders."""
    folder = _write_screen(tmp_path / "screen", status="running")
    for name in ("readout", "summary", "effects"):
        (folder / f"{name}.parquet").unlink()
    out = write_report(folder, tmp_path / "running.html")
    text = out.read_text(encoding="utf-8")
    assert {"running-banner", "conditions", "readout", "effects"} <= _ids(text)
    assert "still running" in text and "0 of 27 conditions finished" in text
    assert "rate-sweep" not in _ids(text) and "heatmap" not in _ids(text)
    assert _check_in_browser(browser, out, "brainfly screen report: toy screen", tmp_path / "running.png") == 0


def test_screen_rate_sweep_in_a_product(tmp_path):
    """A rate varied only together with silencing: one panel per readout, one line per silenced neuron."""
    folder = _write_screen(tmp_path / "screen")
    conditions = pd.read_parquet(folder / "conditions.parquet")
    keep = conditions.loc[conditions["kind"] != "rate", ["condition_id", "connectome"]]
    for name in ("conditions", "readout", "summary", "effects"):
        table = pd.read_parquet(folder / f"{name}.parquet").merge(keep, on=["condition_id", "connectome"])
        table.to_parquet(folder / f"{name}.parquet")
    text = write_report(folder, tmp_path / "product.html").read_text(encoding="utf-8")
    assert {"rate-sweep", "rate-sweep-figure", "effects-figure"} <= _ids(text)


def test_screen_report_errors(tmp_path, runs):
    folder = _write_screen(tmp_path / "screen")
    with pytest.raises(ValidationError, match="--versus"):
        write_report(folder, tmp_path / "x.html", versus=runs[0])
    with pytest.raises(ValidationError, match="is a folder"):
        write_report(folder, folder)
    with pytest.raises(DataError, match="not a screen folder"):
        write_report(tmp_path, tmp_path / "x.html")
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "nothing.parquet", tmp_path / "x.html")
    (folder / "summary.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="summary.parquet"):
        write_report(folder, tmp_path / "x.html")


# =============================================================================== the numbers
def test_path_lengths_breadth_first_with_silencing():
    # 0 -> 1 -> 2 -> 3, 0 -> 4, 5 isolated; a zero-weight connection 4 -> 5 is no path
    net = Connectome.from_edges(np.arange(10, 16), [0, 1, 2, 0, 4], [1, 2, 3, 4, 5], [1.0, -2.0, 1.0, 3.0, 0.0])
    assert path_lengths(net, [0]).tolist() == [0, 1, 2, 3, 1, -1]
    assert path_lengths(net, [0, 2]).tolist() == [0, 1, 0, 1, 1, -1]
    assert path_lengths(net, [0], silenced=[1]).tolist() == [0, 1, -1, -1, 1, -1]
    assert path_lengths(net, [0], silenced=[1], silence_mode="both").tolist() == [0, -1, -1, -1, 1, -1]
    assert path_lengths(net, []).tolist() == [-1] * 6


def test_rates_by_cell_type():
    rates = pd.DataFrame({"cell_type": ["A", "A", "B", ""], "mean_hz": [10.0, 20.0, 40.0, 5.0]})
    table = rates_by_cell_type(rates)
    assert table["cell_type"].tolist() == ["B", "A", "(no cell type)"]
    assert table["mean_hz"].tolist() == [40.0, 15.0, 5.0] and table["n_neurons"].tolist() == [1, 2, 1]
    assert table["sem_hz"].iloc[1] == pytest.approx(5.0) and np.isnan(table["sem_hz"].iloc[0])
    assert len(rates_by_cell_type(rates, top=1)) == 1 and rates_by_cell_type(rates.iloc[0:0]).empty
