"""The command line: run, schedule replay, errors as one clear line, resume after interruption."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainfly import cli
from brainfly.connectome.synthetic import generate_synthetic, write_synthetic
from brainfly.engines import base
from brainfly.experiment import Experiment, StimulusSet
from brainfly.results import SpikeResult


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


class _Flaky(base.Engine):
    """Kick-echo test engine that fails once at a chosen trial (an interrupted run)."""

    name = "_flaky"
    capabilities = frozenset({"poisson"})
    trials_per_chunk = 1
    calls: list = []
    fail_at: int | None = None

    def simulate(self, sim, trials, progress=None):
        if self.fail_at in trials:
            type(self).fail_at = None
            raise KeyboardInterrupt
        type(self).calls.append(list(trials))
        k = sim.kicks(trials)
        return SpikeResult(k.trial, k.idx, k.step + 1, sim.connectome.flywire_ids, trials, sim.n_steps,
                           sim.params.dt_s, sim.experiment.name, engine=self.name)


def test_interrupted_run_resumes_without_recomputing(data_folder, tmp_path):
    from brainfly.connectome import load_connectome

    base._REGISTRY["_flaky"] = _Flaky
    try:
        net = load_connectome(str(data_folder), progress=False)
        ex = Experiment(stimuli=(StimulusSet(("sugar_GRN",), 200.0),), t_run=0.05, n_trials=4)
        out = tmp_path / "r.parquet"
        _Flaky.fail_at, _Flaky.calls = 2, []
        with pytest.raises(KeyboardInterrupt):
            cli.run_experiment("_flaky", net, ex, out, progress=False)
        assert _Flaky.calls == [[0], [1]] and not out.exists()
        assert len(list(out.with_name(out.name + ".parts").glob("trials-*.parquet"))) == 2
        result = cli.run_experiment("_flaky", net, ex, out, progress=False)
        assert _Flaky.calls == [[0], [1], [2], [3]]  # trials 0 and 1 were not run again
        whole = SpikeResult.read_parquet(out, net.flywire_ids)
        assert whole.trials == [0, 1, 2, 3] and whole.n_spikes == result.n_spikes > 0
        assert not out.with_name(out.name + ".parts").exists()
    finally:
        base._REGISTRY.pop("_flaky", None)
