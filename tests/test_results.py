"""SpikeResult: paper-format parquet, rates, atomic writes, merging."""

import numpy as np
import pandas as pd
import pytest

from brainfly._io import atomic_write
from brainfly.results import SpikeResult, merge_results


def make(trials=(0, 1)):
    fids = np.array([10, 20, 30], dtype=np.int64)
    return SpikeResult(trial=[1, 0, 0, 1], idx=[2, 0, 2, 2], step=[5, 7, 3, 9], flywire_ids=fids,
                       trials=list(trials), n_steps=10000, dt_s=1e-4, exp_name="x", engine="e",
                       connectome_label="tiny (SYNTHETIC connectome)", synthetic=True)


def test_sorted_and_paper_columns(tmp_path):
    r = make()
    assert r.trial.tolist() == [0, 0, 1, 1] and r.step.tolist() == [3, 7, 5, 9]
    path = r.write_parquet(tmp_path / "out" / "spikes.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["t", "trial", "flywire_id", "exp_name", "step"]
    assert frame.t.tolist() == pytest.approx([3e-4, 7e-4, 5e-4, 9e-4])
    assert frame.flywire_id.dtype == np.int64 and frame.flywire_id.tolist() == [30, 10, 30, 30]
    back = SpikeResult.read_parquet(path, r.flywire_ids)
    assert np.array_equal(back.step, r.step) and back.trials == [0, 1] and back.synthetic


def test_rates_over_trials():
    rates = make().rates({30: "MN9"})
    top = rates.iloc[0]
    assert (top.flywire_id, top["name"], top.n_spikes) == (30, "MN9", 3)
    assert top.mean_hz == pytest.approx(1.5) and top.sem_hz == pytest.approx(np.std([1, 2], ddof=1) / np.sqrt(2))
    assert "SYNTHETIC" in make().summary()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_merge():
    a, b = make(trials=(0,)), make(trials=(1,))
    a = SpikeResult(a.trial[a.trial == 0], a.idx[a.trial == 0], a.step[a.trial == 0], a.flywire_ids, [0], 10000, 1e-4, "x")
    b = SpikeResult(b.trial[b.trial == 1], b.idx[b.trial == 1], b.step[b.trial == 1], b.flywire_ids, [1], 10000, 1e-4, "x")
    m = merge_results([b, a])
    assert m.trials == [0, 1] and m.n_spikes == 4


def test_header_is_json_with_large_arrays_summarised(tmp_path):
    import json

    import pyarrow.parquet as pq

    r = make()
    r.meta = {"small": np.arange(3), "n": np.int64(5),
              "first_spike_step": {"trial": np.zeros(5000, np.int32), "idx": np.zeros(5000, np.int32),
                                   "first_input_step": np.zeros(5000), "first_spike_step": np.zeros(5000),
                                   "latency_steps": np.zeros(5000)}}
    path = r.write_parquet(tmp_path / "s.parquet")
    header = json.loads(pq.read_table(path).schema.metadata[b"brainfly"])
    assert header["meta"]["small"] == [0, 1, 2] and header["meta"]["n"] == 5
    assert "not stored" in header["meta"]["first_spike_step"]["idx"]
    front = r.propagation_front()
    assert len(front) == 5000 and list(front.columns)[:2] == ["trial", "flywire_id"]


def test_unsorted_input_is_sorted_and_sorted_input_kept():
    r = SpikeResult(trial=[0, 0, 0], idx=[5 % 3, 1, 0], step=[2, 2, 1], flywire_ids=np.arange(3),
                    trials=[0], n_steps=10, dt_s=1e-4, exp_name="x")
    assert r.step.tolist() == [1, 2, 2] and r.idx.tolist() == [0, 1, 2]
