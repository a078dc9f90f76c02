"""SpikeResult: repr, paper-format parquet (pyarrow, dictionary exp_name), rates with names, summaries, plots."""

import json
import os
from pathlib import Path
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from brainfly._io import atomic_write
from brainfly.connectome import Connectome
from brainfly.connectome.lookup import PAPER_ALIASES, SUGAR_GRNS_783
from brainfly.results import SpikeResult, merge_results
from brainfly.schedule import InputSchedule

MN9 = PAPER_ALIASES["MN9"][0]  # 720575940660219265
LB3 = SUGAR_GRNS_783[0]  # 720575940624963786, a sugar GRN of Codex type LB3
OTHER_783 = 720575940596125868  # a v783 neuron of Codex type T5c


def make(trials=(0, 1)):
    fids = np.array([10, 20, 30], dtype=np.int64)
    return SpikeResult(trial=[1, 0, 0, 1], idx=[2, 0, 2, 2], step=[5, 7, 3, 9], flywire_ids=fids,
                       trials=list(trials), n_steps=10000, dt_s=1e-4, exp_name="x", engine="e",
                       connectome_label="tiny (SYNTHETIC connectome)", synthetic=True)


def experiment(stimuli=(("LB3", 100.0),), silenced=("MN9",), mode="outgoing", n_trials=3):
    """The dict that brainfly.run stores as meta["experiment"] (Experiment.to_dict())."""
    return {"name": "sugar", "stimuli": [{"neurons": [s], "rate_hz": r, "label": ""} for s, r in stimuli],
            "silenced": list(silenced), "silence_mode": mode, "t_run": 1.0, "n_trials": n_trials, "seed": 0,
            "params": {}, "input_schedule": None}


def v783_result(n_trials=3, seed=1, **meta):
    """21 sugar GRNs at 100 Hz, MN9 at 60-62 Hz (its pair silent), a T5c neuron at 5 Hz, an unnamed one at 2 Hz."""
    fids = np.array([*SUGAR_GRNS_783, *PAPER_ALIASES["MN9"], OTHER_783, 5], dtype=np.int64)
    rng = np.random.default_rng(seed)
    trial, idx, step = [], [], []
    for k in range(n_trials):
        for i, n in [*((i, 100) for i in range(21)), (21, 60 + k), (23, 5), (24, 2)]:
            s = np.sort(rng.choice(10_000, n, replace=False))
            trial += [k] * n
            idx += [i] * n
            step += s.tolist()
    return SpikeResult(trial, idx, step, fids, list(range(n_trials)), 10_000, 1e-4, "sugar", engine="event",
                       connectome_label="synthetic-v1-seed0 (SYNTHETIC connectome)", synthetic=True, meta=meta)


# ------------------------------------------------------------------ repr and basic figures
def test_repr_is_short_and_says_what_ran():
    r = v783_result(meta_key=np.arange(100_000))
    text = repr(r)
    assert text == ("<SpikeResult 'sugar' (event) on synthetic-v1-seed0 (SYNTHETIC connectome): "
                    f"3 trials x 1 s, {r.n_spikes:,} spikes, 24 active neurons>")
    assert len(text) < 200 and "array" not in text
    plain = SpikeResult([0], [0], [1], [7], [0], 100, 1e-4, "p", synthetic=True)
    assert repr(plain) == "<SpikeResult 'p' [SYNTHETIC connectome]: 1 trial x 0.01 s, 1 spike, 1 active neuron>"


def test_sorted_and_counts():
    r = make()
    assert r.trial.tolist() == [0, 0, 1, 1] and r.step.tolist() == [3, 7, 5, 9]
    assert r.spike_counts().tolist() == [[1, 0, 1], [0, 0, 2]]
    assert r.active_idx().tolist() == [0, 2] and r.n_active == 2
    gap = make(trials=(0, 1, 5))  # a covered trial without spikes is a row of zeros
    assert gap.spike_counts().shape == (3, 3) and gap.spike_counts()[2].sum() == 0


def test_unsorted_input_is_sorted_and_sorted_input_kept():
    r = SpikeResult(trial=[0, 0, 0], idx=[5 % 3, 1, 0], step=[2, 2, 1], flywire_ids=np.arange(3),
                    trials=[0], n_steps=10, dt_s=1e-4, exp_name="x")
    assert r.step.tolist() == [1, 2, 2] and r.idx.tolist() == [0, 1, 2]


# ------------------------------------------------------------------ files
def test_parquet_paper_columns_and_dictionary_exp_name(tmp_path):
    r = make()
    path = r.write_parquet(tmp_path / "out" / "spikes.parquet")
    schema = pq.read_schema(path)
    assert schema.names == ["t", "trial", "flywire_id", "exp_name", "step"]
    assert pa.types.is_dictionary(schema.field("exp_name").type)
    assert schema.field("flywire_id").type == pa.int64() and schema.field("t").type == pa.float64()
    frame = pd.read_parquet(path)
    assert frame.t.tolist() == pytest.approx([3e-4, 7e-4, 5e-4, 9e-4])
    assert frame.flywire_id.tolist() == [30, 10, 30, 30] and (frame.exp_name == "x").all()
    back = SpikeResult.read_parquet(path, r.flywire_ids)
    assert np.array_equal(back.step, r.step) and np.array_equal(back.idx, r.idx) and back.trials == [0, 1]
    assert back.synthetic and back.exp_name == "x" and back.engine == "e" and back.n_steps == 10000
    assert back.to_frame().equals(r.to_frame())
    empty = SpikeResult([], [], [], r.flywire_ids, [0], 100, 1e-4, "none")
    again = SpikeResult.read_parquet(empty.write_parquet(tmp_path / "empty.parquet"), r.flywire_ids)
    assert again.n_spikes == 0 and again.trials == [0] and again.n_steps == 100


def test_to_frame_has_the_paper_columns():
    frame = make().to_frame()
    assert list(frame.columns) == ["t", "trial", "flywire_id", "exp_name", "step"]
    assert frame.flywire_id.dtype == np.int64 and frame.trial.dtype == np.int64 and frame.t.dtype == np.float64
    assert frame.exp_name.astype(str).tolist() == ["x"] * 4


def test_reads_files_of_the_paper_and_of_older_brainfly(tmp_path):
    paper = pd.DataFrame({"t": [0.0012, 0.5], "trial": [0, 1], "flywire_id": [MN9, LB3],
                          "exp_name": ["sugar_100", "sugar_100"]})
    paper.to_parquet(tmp_path / "paper.parquet")  # with a pandas index, no brainfly header, plain strings
    r = SpikeResult.read_parquet(tmp_path / "paper.parquet")
    assert r.step.tolist() == [12, 5000] and r.exp_name == "sugar_100" and r.trials == [0, 1]
    assert r.flywire_ids.tolist() == sorted([MN9, LB3]) and r.n_steps == 5001
    old = make()  # the layout written before: pandas object strings, header in the schema metadata
    table = pa.Table.from_pandas(old.to_frame().astype({"exp_name": object}), preserve_index=False)
    table = table.replace_schema_metadata({b"brainfly": json.dumps(old.header()).encode()})
    pq.write_table(table, tmp_path / "old.parquet")
    back = SpikeResult.read_parquet(tmp_path / "old.parquet", old.flywire_ids)
    assert np.array_equal(back.idx, old.idx) and back.trials == [0, 1] and back.exp_name == "x"


def test_read_errors(tmp_path):
    from brainfly.errors import DataError

    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        SpikeResult.read_parquet(tmp_path / "bad.parquet")
    pd.DataFrame({"t": [0.1]}).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) \['flywire_id', 'trial'\]"):
        SpikeResult.read_parquet(tmp_path / "cols.parquet")
    path = make().write_parquet(tmp_path / "s.parquet")
    with pytest.raises(DataError, match="not in the given neuron list"):
        SpikeResult.read_parquet(path, np.array([10, 20]))


def test_header_is_json_with_large_arrays_summarised(tmp_path):
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
    assert pd.read_parquet(r.write_propagation_front(tmp_path / "front.parquet")).equals(front)
    assert make().propagation_front() is None and make().write_propagation_front(tmp_path / "no.parquet") is None


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_write_gives_the_umasks_permissions_and_leaves_no_temporary(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for target in (tmp_path / "new.txt", tmp_path / "sub" / "r.parquet"):
            atomic_write(target, lambda tmp: tmp.write_text("x"))
            assert stat.S_IMODE(target.stat().st_mode) == mode  # not mkstemp's 0600
        make().write_parquet(tmp_path / "spikes.parquet")
        assert stat.S_IMODE((tmp_path / "spikes.parquet").stat().st_mode) == mode
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("new"))
    assert events == [("fsync", "file"), ("rename", "f.txt"), ("fsync", "dir")]
    assert (tmp_path / "f.txt").read_text() == "new"


def test_merge():
    a, b = make(trials=(0,)), make(trials=(1,))
    a = SpikeResult(a.trial[a.trial == 0], a.idx[a.trial == 0], a.step[a.trial == 0], a.flywire_ids, [0], 10000, 1e-4, "x")
    b = SpikeResult(b.trial[b.trial == 1], b.idx[b.trial == 1], b.step[b.trial == 1], b.flywire_ids, [1], 10000, 1e-4, "x",
                    annotations="table")
    m = merge_results([b, a])
    assert m.trials == [0, 1] and m.n_spikes == 4 and m.annotations == "table"
    assert m.spike_counts().tolist() == make().spike_counts().tolist()


# ------------------------------------------------------------------ rates
def test_rates_over_trials():
    rates = make().rates({30: "MN9"})
    assert list(rates.columns) == ["flywire_id", "name", "n_spikes", "mean_hz", "std_hz", "sem_hz"]
    top = rates.iloc[0]
    assert (top.flywire_id, top["name"], top.n_spikes) == (30, "MN9", 3)
    assert top.mean_hz == pytest.approx(1.5) and top.sem_hz == pytest.approx(np.std([1, 2], ddof=1) / np.sqrt(2))
    assert list(make().rates().columns) == ["flywire_id", "n_spikes", "mean_hz", "std_hz", "sem_hz"]


def test_rates_match_a_per_neuron_computation():
    rng = np.random.default_rng(3)
    n, trials = 50, [0, 2, 3, 7]
    r = SpikeResult(rng.choice(trials, 3000), rng.integers(0, n, 3000) // 2, rng.integers(0, 5000, 3000),
                    np.arange(100, 100 + n), trials, 5000, 1e-4, "x")
    rates = r.rates().set_index("flywire_id")
    for i in np.unique(r.idx):
        per_trial = np.array([np.sum((r.idx == i) & (r.trial == k)) for k in trials]) / 0.5
        row = rates.loc[100 + i]
        assert row.n_spikes == per_trial.sum() * 0.5 and row.mean_hz == pytest.approx(per_trial.mean())
        assert row.std_hz == pytest.approx(per_trial.std(ddof=1))
        assert row.sem_hz == pytest.approx(per_trial.std(ddof=1) / 2)
    assert rates.mean_hz.is_monotonic_decreasing and len(rates) == np.unique(r.idx).size


def test_one_trial_has_undefined_spread():
    rates = make(trials=(0, 1)).rates()
    one = SpikeResult([0, 0], [0, 0], [1, 2], [10], [0], 10000, 1e-4, "x").rates()
    assert rates.std_hz.notna().all() and one.mean_hz.tolist() == [2.0]
    assert np.isnan(one.std_hz[0]) and np.isnan(one.sem_hz[0])


def test_rates_with_names_on_v783_ids():
    rates = v783_result().rates(names=True)
    assert list(rates.columns) == ["flywire_id", "name", "cell_type", "class", "n_spikes", "mean_hz",
                                   "std_hz", "sem_hz"]
    by_id = rates.set_index("flywire_id")
    assert by_id.loc[MN9, "name"] == "MN9" and by_id.loc[MN9, "cell_type"] == "CB0701"
    assert by_id.loc[LB3, "cell_type"] == "LB3" and by_id.loc[LB3, "class"] == "gustatory"
    assert by_id.loc[OTHER_783, "name"] == "T5c"  # no paper name: the cell type
    assert by_id.loc[5, ["name", "cell_type", "class"]].tolist() == ["", "", ""]  # not a v783 ID


def test_names_from_the_connectomes_annotations():
    r = v783_result()
    r.annotations = pd.DataFrame({"cell_type": ["mine"], "class": ["c"]}, index=pd.Index([5], name="flywire_id"))
    by_id = r.rates(names=True).set_index("flywire_id")
    assert by_id.loc[5, "name"] == "mine" and by_id.loc[MN9, "name"] == "MN9" and by_id.loc[LB3, "cell_type"] == ""


@pytest.mark.parametrize("n_trials", [1, 3])
def test_write_rates_without_pandas_reads_back(tmp_path, n_trials):
    r = v783_result(n_trials=n_trials)
    back = pd.read_csv(r.write_rates(tmp_path / "rates.csv"))
    expect = r.rates(names=True)
    assert back.flywire_id.tolist() == expect.flywire_id.tolist()
    assert back.name.fillna("").tolist() == expect.name.tolist()
    assert np.allclose(back.mean_hz, expect.mean_hz) and back.sem_hz.isna().all() == (n_trials == 1)
    assert pd.read_parquet(r.write_rates(tmp_path / "rates.parquet")).n_spikes.tolist() == expect.n_spikes.tolist()


def test_every_file_of_a_synthetic_result_says_so(tmp_path):
    r = v783_result(first_spike_step={"trial": np.array([0, 0]), "idx": np.array([21, 23]),
                                      "first_input_step": np.array([3, -1]), "first_spike_step": np.array([9, 40]),
                                      "latency_steps": np.array([6, -1])})
    rates = pd.read_csv(r.write_rates(tmp_path / "rates.csv"))
    assert list(rates.columns)[-1] == "synthetic" and rates.synthetic.tolist() == [True] * len(rates)
    front = r.write_propagation_front(tmp_path / "front.parquet")
    header = json.loads(pq.read_schema(front).metadata[b"brainfly"])
    assert header["synthetic"] is True and header["connectome"].startswith("synthetic-v1")
    assert pd.read_csv(r.write_propagation_front(tmp_path / "front.csv")).synthetic.all()
    assert json.loads(pq.read_schema(r.write_rates(tmp_path / "rates.parquet")).metadata[b"brainfly"])["synthetic"]
    # no rows: the marker is still in the header line
    empty = SpikeResult([], [], [], [1], [0], 100, 1e-4, "quiet", synthetic=True)
    assert "synthetic" in pd.read_csv(empty.write_rates(tmp_path / "empty.csv")).columns
    # real data: the files keep their columns, and say synthetic = false where there is a header
    real = SpikeResult([0], [0], [1], [7], [0], 100, 1e-4, "p")
    assert "synthetic" not in pd.read_csv(real.write_rates(tmp_path / "real.csv")).columns
    assert json.loads(pq.read_schema(real.write_rates(tmp_path / "real.parquet")).metadata[b"brainfly"]) \
        ["synthetic"] is False


def test_schedule_files_of_a_synthetic_connectome_say_so(tmp_path):
    sched = InputSchedule([0, 0, 1], [0, 1, 1], [5, 9, 2])
    fids = np.array([11, 22], dtype=np.int64)
    csv = pd.read_csv(sched.write(tmp_path / "k.csv", fids, synthetic=True))
    assert list(csv.columns) == ["trial", "flywire_id", "step", "synthetic"] and csv.synthetic.all()
    meta = pq.read_schema(sched.write(tmp_path / "k.parquet", fids, synthetic=True)).metadata
    assert json.loads(meta[b"brainfly"]) == {"synthetic": True} and b"pandas" in meta
    assert pd.read_parquet(tmp_path / "k.parquet").equals(pd.read_csv(tmp_path / "k.csv").drop(columns="synthetic"))
    real = pq.read_schema(sched.write(tmp_path / "r.parquet", fids)).metadata
    assert json.loads(real[b"brainfly"]) == {"synthetic": False}
    assert list(pd.read_csv(sched.write(tmp_path / "r.csv", fids)).columns) == ["trial", "flywire_id", "step"]
    net = Connectome.from_edges(fids, [0], [1], [1.0], name="two")
    for name in ("k.csv", "k.parquet"):  # the marker does not stand in the reader's way
        back = InputSchedule.read(tmp_path / name, net)
        assert back.idx.tolist() == sched.idx.tolist() and back.step.tolist() == sched.step.tolist()


# ------------------------------------------------------------------ summaries
def test_summary_states_the_manipulation():
    r = v783_result(experiment=experiment())
    text = r.summary()
    lines = text.splitlines()
    assert "SYNTHETIC" in lines[0] and "engine event: 3 trials x 1 s" in text
    assert "stimulated: LB3 (21 neurons) with Poisson input at 100 Hz" in lines
    assert "silenced: MN9 (2 neurons): outgoing synapses removed (the paper's silencing)" in lines
    note = next(x for x in lines if x.startswith("note:"))
    assert "MN9 (61.0 Hz)" in note and "leaves a neuron's own firing intact" in note
    stim = next(x for x in lines if x.startswith("stimulated neurons"))
    assert stim == "stimulated neurons: 21, mean rate 100.0 Hz (min 100.0, max 100.0)"
    top = lines[lines.index(next(x for x in lines if x.startswith("top 3 recruited"))) + 1:]
    assert "MN9" in top[0] and "CB0701" in top[0] and "61.0 Hz ± " in top[0] and "T5c" in top[1]
    assert top[2].split() == ["5", "2.0", "Hz", "±", "0.0"]
    assert not any("sugar_GRN" in x for x in top)


def test_summary_both_mode_no_note_and_one_trial():
    r = v783_result(n_trials=1, experiment=experiment(mode="both", n_trials=1))
    text = r.summary()
    assert "incoming and outgoing synapses removed" in text and "note:" not in text
    assert "n = 1" in text and "(sem undefined)" in text and "± 0.0" not in text


def test_summary_without_a_recorded_experiment_keeps_the_old_arguments():
    r = make()
    text = r.summary({30: "MN9"}, top=1, stimulated_idx=[0])
    assert "SYNTHETIC" in text and "stimulated neurons: 1, mean rate 0.5 Hz" in text
    assert "top 1 recruited neurons" in text and "MN9" in text
    assert "stimulated:" not in text and "top 2 neurons by rate" in make().summary(names=False)


def test_summary_survives_unresolvable_specs_and_schedules():
    exp = experiment(stimuli=(("NOPE", 50.0),), silenced=())
    exp["input_schedule"] = "kicks.parquet"
    text = v783_result(experiment=exp).summary()
    assert "stimulated: NOPE" in text.splitlines()  # unresolved here: no count; the schedule drives: no rate
    assert "input: the kicks of schedule kicks.parquet" in text and "top 10 neurons by rate" in text


def test_runaway_is_reported():
    r = make()
    r.meta["runaway"] = [{"trial": 0, "onset_s": 0.25}]
    assert "SELF-SUSTAINING (runaway) activity in 1 of 2 trial(s), earliest onset at 0.2500 s" in r.summary()


# ------------------------------------------------------------------ plots
def _has_data(fig):
    ax = fig.axes[0]
    return bool(ax.collections or ax.patches or ax.lines)


def test_plot_raster_and_rates(tmp_path):
    from matplotlib.figure import Figure

    r = v783_result(experiment=experiment())
    fig = r.plot_raster(top=5, path=tmp_path / "raster.png")
    assert isinstance(fig, Figure) and _has_data(fig)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 5 and labels[0].startswith("sugar_GRN (")
    segments = sum(len(c.get_positions()) for c in fig.axes[0].collections)
    assert segments == 500  # the first five GRNs (equal counts: model order), 100 spikes each in trial 0
    assert (tmp_path / "raster.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = r.plot_rates(top=30, path=tmp_path / "rates.svg")
    bars = fig.axes[0].patches
    assert len(bars) == 24 and bars[0].get_width() == pytest.approx(100.0)
    assert "MN9 (720575940660219265)" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert (tmp_path / "rates.svg").stat().st_size > 1000


def test_plots_draw_into_a_given_axes_and_choose_neurons():
    from matplotlib.figure import Figure

    r = v783_result(n_trials=1)
    ax = Figure().add_subplot()
    assert r.plot_rates(neurons=["MN9", 5], ax=ax) is ax.figure
    assert [p.get_width() for p in ax.patches] == [60.0, 0.0, 2.0]  # both MN9 neurons (one silent), then 5
    fig = r.plot_raster(neurons=["MN9", MN9], t_window=(0.0, 0.5))  # each neuron once
    assert fig.axes[0].get_xlim() == (0.0, 0.5) and _has_data(fig) and len(fig.axes[0].get_yticks()) == 2
    with pytest.raises(ValueError, match=r"plot_raster: trial 4 is not in this result \(trials: 0\)"):
        r.plot_raster(trial=4)


def test_numbers_names_and_files_need_no_pandas(tmp_path):
    """Writing and reading spikes, rates files, summaries and reprs import neither pandas nor matplotlib."""
    code = f"""
import sys
import numpy as np
from brainfly.results import SpikeResult
r = SpikeResult([0, 0], [0, 1], [3, 4], [{MN9}, {LB3}], [0], 100, 1e-4, "x", meta={{"experiment": {experiment()!r}}})
back = SpikeResult.read_parquet(r.write_parquet({str(tmp_path / 's.parquet')!r}))
r.write_rates({str(tmp_path / 'r.csv')!r})
r.meta["first_spike_step"] = {{k: np.zeros(2, np.int64) for k in ("trial", "idx", "first_input_step",
                                                                  "first_spike_step", "latency_steps")}}
assert r.write_propagation_front({str(tmp_path / 'f.parquet')!r})
assert "MN9" in r.summary() and "stimulated: LB3 (1 neuron)" in r.summary() and repr(back)
print(sorted(m for m in ("pandas", "matplotlib") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_summary_gives_each_stimulus_sets_rate():
    r = v783_result(experiment=experiment(stimuli=(("LB3", 100.0), ("type:T5c", 20.0)), silenced=()))
    lines = r.summary().splitlines()
    assert "stimulated: type:T5c (1 neuron) with Poisson input at 20 Hz" in lines
    stim = next(x for x in lines if x.startswith("stimulated neurons"))
    assert stim.startswith("stimulated neurons: 22, mean rate 95.7 Hz (min 5.0, max 100.0)")
    assert stim.endswith("; by set: LB3 100.0 Hz, type:T5c 5.0 Hz")
