"""Where runs live (brainfly.store): file naming, finding and loading saved runs, the benchmark CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from brainfly.errors import DataError, ValidationError
from brainfly.results import SpikeResult
from brainfly.store import (
    CSV_COLUMNS, find_runs, format_t_run, load_run, parse_spikes_file_name, read_results, read_rows, row_key,
    spikes_file_name, upsert_row,
)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_file_naming_one_spelling():
    assert [format_t_run(t) for t in (0.1, 1, 1.0, 10.0, 1000)] == ["0.1", "1", "1", "10", "1000"]
    name = spikes_file_name("torch-cuda", "sugar", 1000.0, 32)
    assert name == "torch-cuda_sugar_t1000_n32.parquet"
    assert parse_spikes_file_name(name) == {"engine": "torch-cuda", "experiment": "sugar", "t_run": 1000.0,
                                            "n_run": 32}
    assert parse_spikes_file_name("brian2_sugar_100Hz_t0.1_n1.parquet")["experiment"] == "sugar_100Hz"
    assert parse_spikes_file_name("notes.parquet") is None
    with pytest.raises(ValidationError, match="engine label"):
        spikes_file_name("bad_label", "sugar", 1, 1)
    with pytest.raises(ValidationError, match="experiment name"):
        spikes_file_name("event", "a/b", 1, 1)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="t_run: must be a finite duration > 0 s"):
            format_t_run(bad)


def _result(engine="event", n_steps=1000, meta=None):
    return SpikeResult(np.array([0, 1]), np.array([0, 1]), np.array([5, 7]), np.array([11, 22], np.int64), [0, 1],
                       n_steps, 1e-4, "sugar", engine=engine, meta={"input": "kicks:ab"} if meta is None else meta)


def test_find_and_load_runs(tmp_path):
    _result().write_parquet(tmp_path / spikes_file_name("event", "sugar", 0.1, 2))
    _result("brian2").write_parquet(tmp_path / spikes_file_name("brian2", "sugar", 0.1, 2))
    (tmp_path / "other.parquet").write_bytes(b"not a run")
    runs = find_runs(tmp_path)
    assert [(r["engine"], r["experiment"], r["t_run"], r["n_run"]) for r in runs] == [
        ("brian2", "sugar", 0.1, 2), ("event", "sugar", 0.1, 2)]
    loaded = load_run(runs[1]["path"])
    assert loaded.engine == "event" and loaded.n_steps == 1000 and loaded.n_spikes == 2
    assert find_runs(tmp_path / "missing") == []
    with pytest.raises(DataError):
        load_run(tmp_path / "other.parquet")


def test_load_run_fills_what_the_paper_files_lack(tmp_path):
    path = tmp_path / "paper.parquet"
    _result(engine="", n_steps=8, meta={}).to_frame().drop(columns="step").to_parquet(path)
    r = load_run(path, t_run=1.0, engine="brian2-paper")
    assert r.n_steps == 10_000 and r.t_run == pytest.approx(1.0) and r.engine == "brian2-paper"
    assert load_run(path).n_steps == 8  # without t_run: up to the last spike


def test_upsert_replaces_same_key_and_keeps_others(tmp_path):
    path = tmp_path / "r.csv"
    assert read_rows(path) == ([], list(CSV_COLUMNS))
    base = {"engine": "event", "experiment": "sugar", "t_run": 0.1, "n_run": 1, "status": "ok", "sim_s": 1.0}
    upsert_row(path, base)
    upsert_row(path, {**base, "n_run": 4, "sim_s": 2.0})
    upsert_row(path, {**base, "t_run": "0.10", "sim_s": 3.0})  # same key, other spelling
    rows = read_csv(path)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["t_run"], r["n_run"], r["sim_s"]) for r in rows] == [("0.1", "1", "3.0"), ("0.1", "4", "2.0")]
    assert row_key(rows[0]) == ("event", "sugar", "1", "0.1")
    # a skipped row does not erase a measurement; a failure does replace it
    assert not upsert_row(path, {**base, "status": "skipped", "reason": "no GPU"})
    upsert_row(path, {**base, "status": "timeout", "reason": "slow"})
    rows = read_csv(path)
    assert [r["status"] for r in rows] == ["timeout", "ok"]
    assert not list(tmp_path.glob(".*part"))  # atomic write leaves no temporary file
    # JSON cells, extra columns of an existing file kept
    upsert_row(path, {**base, "n_run": 8, "versions": {"numpy": "2"}})
    frame = read_results(path)
    assert frame["sim_s"].dtype.kind == "f" and frame["n_run"].tolist() == [1, 4, 8]
    assert frame.loc[frame["n_run"] == 8, "versions"].iloc[0] == '{"numpy": "2"}'
    text = path.read_text().replace("timestamp\n", "timestamp,note\n", 1)
    path.write_text(text)
    upsert_row(path, {**base, "n_run": 16, "note": "kept"})
    _, columns = read_rows(path)
    assert columns[-1] == "note" and read_csv(path)[-1]["note"] == "kept"


def test_update_fields_sets_end_to_end_beside_the_kernel_time(tmp_path):
    from brainfly.store import read_rows, update_fields, upsert_row

    csv_path = tmp_path / "b.csv"
    upsert_row(csv_path, {"engine": "event", "experiment": "sugar", "t_run": 1.0, "n_run": 30, "status": "ok",
                          "sim_s": 0.15, "n_spikes": 500000})
    assert update_fields(csv_path, {"engine": "event", "experiment": "sugar", "t_run": 1, "n_run": 30},
                         {"e2e_s": 1.4}) is True
    assert update_fields(csv_path, {"engine": "event", "experiment": "sugar", "t_run": 101, "n_run": 1},
                         {"e2e_s": 2.5}) is False
    rows, columns = read_rows(csv_path)
    assert columns.index("e2e_s") == columns.index("total_s") + 1
    by = {(r["n_run"], r["t_run"]): r for r in rows}
    assert by[("30", "1")]["e2e_s"] == "1.4" and by[("30", "1")]["sim_s"] == "0.15"
    assert by[("1", "101")]["e2e_s"] == "2.5" and by[("1", "101")]["status"] == "ok"
