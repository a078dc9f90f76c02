"""The command line: run, schedule replay, errors as one clear line, resume after interruption."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainfly import cli
from brainfly.connectome.synthetic import generate_synthetic, write_synthetic


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("net")
    write_synthetic(generate_synthetic(600, seed=2), folder)
    return folder


def run_cli(*argv: str) -> int:
    return cli.main(list(argv))


def test_run_writes_paper_columns_rates_and_summary(data_folder, tmp_path, capsys):
    out = tmp_path / "spikes.parquet"
    code = run_cli("run", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.1",
                   "--n-trials", "3", "--seed", "5", "--out", str(out), "-q")
    assert code == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["t", "trial", "flywire_id", "exp_name", "step"]
    assert set(frame.trial) == {0, 1, 2} and len(frame) > 0
    assert np.allclose(frame.t, frame.step * 1e-4)
    rates = pd.read_csv(tmp_path / "spikes_rates.csv")
    assert {"flywire_id", "mean_hz", "std_hz", "sem_hz"} <= set(rates.columns)
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "stimulated neurons: 21" in text


def test_schedule_round_trip_gives_identical_spikes(data_folder, tmp_path):
    sched = tmp_path / "kicks.parquet"
    assert run_cli("schedule", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.1",
                   "--n-trials", "2", "--out", str(sched), "-q") == 0
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run_cli("run", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.1",
                   "--n-trials", "2", "--out", str(a), "-q") == 0
    assert run_cli("run", "--data", str(data_folder), "--input-schedule", str(sched), "--t-run", "0.1",
                   "--n-trials", "2", "--out", str(b), "-q") == 0
    fa, fb = pd.read_parquet(a), pd.read_parquet(b)
    assert len(fa) > 0 and fa[["trial", "flywire_id", "step"]].equals(fb[["trial", "flywire_id", "step"]])


@pytest.mark.parametrize("argv,needle", [
    (["--stimulate", "720575940000000001@200"], "720575940000000001"),
    (["--stimulate", "sugar_GRM@200"], "sugar_GRN"),
    (["--stimulate", "sugar_GRN@-5"], "rate_hz"),
    (["--stimulate", "sugar_GRN@200", "--n-trials", "0"], "n_trials"),
    (["--stimulate", "sugar_GRN@200", "--engine", "evnt"], "registered engines"),
    (["--stimulate", "sugar_GRN"], "IDS@HZ"),
])
def test_bad_input_is_one_clear_line(data_folder, tmp_path, capsys, argv, needle):
    code = run_cli("run", "--data", str(data_folder), "--t-run", "0.05", "--out", str(tmp_path / "x.parquet"),
                   "-q", *argv)
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x.parquet").exists()


def test_a_finished_result_is_kept_unless_overwrite(data_folder, tmp_path, capsys):
    out = tmp_path / "o.parquet"
    argv = ["run", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.05", "--out", str(out),
            "-q"]
    assert run_cli(*argv) == 0
    before = out.read_bytes()
    assert run_cli(*argv, "--seed", "9") == 2
    err = capsys.readouterr().err
    assert "already there" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert run_cli(*argv, "--seed", "9", "--overwrite") == 0 and out.read_bytes() != before


def test_default_output_names_tell_experiments_apart(data_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base_argv = ["run", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.05", "-q"]
    assert run_cli(*base_argv) == 0
    assert run_cli(*base_argv, "--silence", "MN9") == 0  # a second experiment: its own file, nothing overwritten
    files = sorted(p.name for p in (tmp_path / "output").glob("*.parquet") if not p.name.endswith("_front.parquet"))
    assert len(files) == 2 and all(f.startswith("event_custom-") for f in files)


def test_engines_lists_devices(capsys):
    assert run_cli("engines") == 0
    out = capsys.readouterr().out
    assert "event" in out and "torch" in out and "cpu" in out and "cuda" in out


def test_stimulate_with_a_schedule_is_refused(data_folder, tmp_path, capsys):
    sched = tmp_path / "k.csv"
    sched.write_text("trial,flywire_id,step\n0,1,1\n")
    code = run_cli("run", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--input-schedule", str(sched),
                   "--out", str(tmp_path / "x.parquet"), "-q")
    assert code == 2 and "given together" in capsys.readouterr().err and not (tmp_path / "x.parquet").exists()


def test_schedule_files_of_a_synthetic_brain_say_so(data_folder, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "k.parquet"
    assert run_cli("schedule", "--data", str(data_folder), "--stimulate", "sugar_GRN@200", "--t-run", "0.02",
                   "--out", str(out), "-q") == 0
    assert b'"synthetic": true' in pq.read_schema(out).metadata[b"brainfly"]
