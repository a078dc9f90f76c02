"""The runner: provenance, files, refusal before work, overwrite protection, resume by content."""

import shutil

import numpy as np
import pandas as pd
import pytest

import brainfly
from brainfly.connectome import Connectome
from brainfly.engines import base
from brainfly.errors import DataError, OutputExistsError, UnknownNeuronError, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.results import SpikeResult
from brainfly import runner
from brainfly.runner import output_paths, run


def net() -> Connectome:
    return Connectome.from_edges(np.arange(1, 9, dtype=np.int64), [0, 1], [1, 2], [1.0, 2.0], name="tiny")


def exp(**kw) -> Experiment:
    base_kw = dict(name="echo", stimuli=(StimulusSet((1, 2), 400.0),), t_run=0.02, n_trials=5, seed=3)
    base_kw.update(kw)
    return Experiment(**base_kw)


def test_in_memory_run_records_the_provenance(echo_engine):
    res = brainfly.run(exp(), data=net(), engine=echo_engine.name, progress=False)
    m = res.meta
    assert m["experiment"] == exp().to_dict()
    assert m["engine"] == "_kick_echo" and m["engine_options"] == {}
    assert m["connectome"]["digest"] == net().content_digest and m["connectome"]["name"] == "tiny"
    assert m["versions"]["brainfly"] == brainfly.__version__ and m["wall_s"] > 0
    assert res.trials == [0, 1, 2, 3, 4] and res.n_spikes > 0


def test_run_writes_spikes_and_rates_atomically(echo_engine, tmp_path):
    out = tmp_path / "a" / "spikes.parquet"
    res = run(exp(), data=net(), engine=echo_engine.name, out=out, progress=False, chunk_trials=2)
    assert echo_engine.calls == [[0, 1], [2, 3], [4]]
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["t", "trial", "flywire_id", "exp_name", "step"] and len(frame) == res.n_spikes
    rates = pd.read_csv(output_paths(out)["rates"])
    assert {"flywire_id", "mean_hz", "std_hz", "sem_hz"} <= set(rates.columns)
    assert not output_paths(out)["parts"].exists()
    assert SpikeResult.read_parquet(out).meta["experiment"]["name"] == "echo"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]


def test_no_spike_file_unless_the_other_files_are_written(echo_engine, tmp_path, monkeypatch):
    """The rates and front files are written beside the spike file's encoding; the spike
    file takes its name only after both: one that fails leaves no spike file (and a run
    again writes all three)."""
    out = tmp_path / "spikes.parquet"

    def broken(self, path, names=True):
        raise OSError("disk full (test)")

    with monkeypatch.context() as m:
        m.setattr(SpikeResult, "write_rates", broken)
        with pytest.raises(OSError, match="disk full"):
            run(exp(), data=net(), engine=echo_engine.name, out=out, progress=False)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    res = run(exp(), data=net(), engine=echo_engine.name, out=out, progress=False)
    assert out.exists() and output_paths(out)["rates"].exists()
    assert SpikeResult.read_parquet(out).n_spikes == res.n_spikes


@pytest.mark.parametrize("bad, error", [
    (dict(stimuli=(StimulusSet((99,), 100.0),)), UnknownNeuronError),
])
def test_a_refused_run_writes_nothing(echo_engine, tmp_path, bad, error):
    out = tmp_path / "sub" / "x.parquet"
    with pytest.raises(error):
        run(exp(**bad), data=net(), engine=echo_engine.name, out=out, progress=False)
    assert not (tmp_path / "sub").exists()


def test_bad_output_paths_are_refused(echo_engine, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        run(exp(), data=net(), engine=echo_engine.name, out=tmp_path / "file" / "x.parquet", progress=False)
    with pytest.raises(ValidationError, match="must be a .parquet file"):
        run(exp(), data=net(), engine=echo_engine.name, out=tmp_path / "x.csv", progress=False)


def test_a_finished_result_is_not_overwritten_unless_asked(echo_engine, tmp_path):
    out = tmp_path / "r.parquet"
    run(exp(), data=net(), engine=echo_engine.name, out=out, progress=False)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        run(exp(seed=9), data=net(), engine=echo_engine.name, out=out, progress=False)
    assert out.read_bytes() == before
    run(exp(seed=9), data=net(), engine=echo_engine.name, out=out, progress=False, overwrite=True)
    assert out.read_bytes() != before


class _Interrupting(base.Engine):
    name = "_interrupting"
    capabilities = frozenset({"poisson", "schedule"})
    trials_per_chunk = 1
    fail_at: int | None = None
    calls: list = []

    def simulate(self, sim, trials, progress=None):
        if self.fail_at in trials:
            type(self).fail_at = None
            raise KeyboardInterrupt
        type(self).calls.append(list(trials))
        k = sim.kicks(trials)
        return base.EngineOutput(k.trial, k.idx, k.step + 1, base.RunRecord())


@pytest.fixture
def interrupting():
    base.register_engine(_Interrupting)
    _Interrupting.calls = []
    yield _Interrupting
    base._REGISTRY.pop(_Interrupting.name, None)


def test_an_interrupted_run_resumes_without_recomputing(interrupting, tmp_path):
    out = tmp_path / "r.parquet"
    interrupting.fail_at = 2
    with pytest.raises(KeyboardInterrupt):
        run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False)
    assert interrupting.calls == [[0], [1]] and not out.exists()
    assert len(list(output_paths(out)["parts"].glob("trials-*.parquet"))) == 2
    result = run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False)
    assert interrupting.calls == [[0], [1], [2], [3]]  # trials 0 and 1 were not run again
    whole = SpikeResult.read_parquet(out, net().flywire_ids)
    assert whole.trials == [0, 1, 2, 3] and whole.n_spikes == result.n_spikes > 0
    fresh = run(exp(n_trials=4), data=net(), engine=interrupting.name, progress=False)
    assert np.array_equal(fresh.step, whole.step) and np.array_equal(fresh.idx, whole.idx)


def _interrupt_after_two(engine, out, experiment, data):
    engine.fail_at = 2
    with pytest.raises(KeyboardInterrupt):
        run(experiment, data=data, engine=engine.name, out=out, progress=False)


def test_resume_keys_on_content_not_names(interrupting, tmp_path):
    # the same schedule path with other kicks: the parts of the old file are not reused
    sched = tmp_path / "k.csv"
    pd.DataFrame({"trial": [0, 1, 2, 3], "flywire_id": [1, 1, 1, 1], "step": [5, 5, 5, 5]}).to_csv(sched, index=False)
    e = Experiment(name="s", input_schedule=str(sched), t_run=0.02, n_trials=4)
    out = tmp_path / "r.parquet"
    _interrupt_after_two(interrupting, out, e, net())
    pd.DataFrame({"trial": [0, 1, 2, 3], "flywire_id": [2, 2, 2, 2], "step": [7, 7, 7, 7]}).to_csv(sched, index=False)
    res = run(e, data=net(), engine=interrupting.name, out=out, progress=False)
    assert interrupting.calls[-4:] == [[0], [1], [2], [3]]
    assert set(res.flywire_ids[res.idx].tolist()) == {2} and set(res.step.tolist()) == {8}
    # a connectome with other weights (same name and sizes) does not reuse parts either
    out2 = tmp_path / "w.parquet"
    _interrupt_after_two(interrupting, out2, exp(n_trials=4), net())
    other = net().with_weights([5.0, 6.0])
    interrupting.calls = []
    run(exp(n_trials=4), data=other, engine=interrupting.name, out=out2, progress=False)
    assert interrupting.calls == [[0], [1], [2], [3]]


def test_a_damaged_part_is_named_with_the_way_out(interrupting, tmp_path):
    out = tmp_path / "r.parquet"
    _interrupt_after_two(interrupting, out, exp(n_trials=4), net())
    part = sorted(output_paths(out)["parts"].glob("trials-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(DataError, match=r"trials-00000-00000.parquet.*--no-resume"):
        run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False)
    res = run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False, resume=False)
    assert res.trials == [0, 1, 2, 3]


def test_a_part_of_another_run_is_not_merged(interrupting, tmp_path):
    # a part copied from another run's folder (another seed) into this run's parts is left out and run again
    out, other = tmp_path / "r.parquet", tmp_path / "other.parquet"
    _interrupt_after_two(interrupting, out, exp(n_trials=4), net())
    _interrupt_after_two(interrupting, other, exp(n_trials=4, seed=11), net())
    stranger = output_paths(other)["parts"] / "trials-00001-00001.parquet"
    shutil.copy(stranger, output_paths(out)["parts"] / stranger.name)
    interrupting.calls = []
    res = run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False)
    assert interrupting.calls == [[1], [2], [3]]  # trial 1 again, not the stranger's
    fresh = run(exp(n_trials=4), data=net(), engine=interrupting.name, progress=False)
    assert np.array_equal(fresh.step, res.step) and np.array_equal(fresh.idx, res.idx)


def test_parts_of_another_brainfly_version_are_not_merged(interrupting, tmp_path, monkeypatch):
    out = tmp_path / "r.parquet"
    monkeypatch.setattr(runner, "__version__", "0.0.1-older")
    _interrupt_after_two(interrupting, out, exp(n_trials=4), net())
    monkeypatch.undo()
    interrupting.calls = []
    run(exp(n_trials=4), data=net(), engine=interrupting.name, out=out, progress=False)
    assert interrupting.calls == [[0], [1], [2], [3]]


def test_resume_with_other_chunks_runs_each_trial_once(interrupting, tmp_path):
    out = tmp_path / "r.parquet"
    _interrupt_after_two(interrupting, out, exp(n_trials=5), net())  # parts of trials 0 and 1
    interrupting.calls = []
    res = run(exp(n_trials=5), data=net(), engine=interrupting.name, out=out, progress=False, chunk_trials=3)
    assert interrupting.calls == [[2, 3, 4]] and res.trials == [0, 1, 2, 3, 4]
    fresh = run(exp(n_trials=5), data=net(), engine=interrupting.name, progress=False)
    assert np.array_equal(fresh.step, res.step) and np.array_equal(fresh.trial, res.trial)


def test_run_many_records_each_condition(echo_engine):
    exps = [exp(name="a"), exp(name="b", stimuli=(StimulusSet((3,), 400.0),))]
    results = brainfly.run_many(exps, data=net(), engine=echo_engine.name, progress=False)
    assert [r.meta["experiment"]["name"] for r in results] == ["a", "b"]
    assert set(results[1].flywire_ids[results[1].idx].tolist()) == {3}


def test_engine_options_are_checked_before_the_data_is_loaded(tmp_path):
    with pytest.raises(ValidationError, match="valid options are"):
        run("sugar", data=tmp_path / "does-not-exist", engine="event", n_thread=2, progress=False)


def test_experiment_short_forms():
    e = Experiment(name="p9", stimulate={"P9": 100, ("MN9", 5): 20}, silence=["aDN1"], n_trials=3)
    assert [s.neurons for s in e.stimuli] == [("P9",), ("MN9", 5)] and e.stimuli[0].rate_hz == 100.0
    assert e.silenced == ("aDN1",)
    assert repr(e) == "Experiment('p9': P9 @ 100 Hz; MN9,5 @ 20 Hz; silenced aDN1 (outgoing); 3 trials x 1 s, seed 0)"
    with pytest.raises(ValidationError, match="not both"):
        Experiment(stimulate={"P9": 1}, silence=["a"], silenced=("b",))
    with pytest.raises(ValidationError, match="stimulate"):
        Experiment(stimulate=["P9"])


def test_import_brainfly_is_light():
    import subprocess
    import sys

    code = "import sys, brainfly; print(sorted(m for m in ('numpy', 'pandas', 'numba', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"Experiment", "run", "load_connectome", "lookup", "compare", "engines"} <= set(dir(brainfly))


def test_an_output_path_with_a_nul_is_refused(echo_engine, tmp_path):
    with pytest.raises(ValidationError, match="NUL"):
        run(exp(), data=net(), engine=echo_engine.name, out=str(tmp_path / "a\0b.parquet"), progress=False)


def test_unknown_names_are_refused_before_a_brain_is_generated(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINFLY_DATA", raising=False)
    bad = Experiment(name="typo", stimulate={"P8": 100}, t_run=0.01)
    with pytest.raises(UnknownNeuronError, match=r"stimulus set 0 'P8' at 100 Hz.*Did you mean 'P9'"):
        run(bad, data="synthetic", progress=False)
    with pytest.raises(UnknownNeuronError, match="silenced set"):
        run(exp(name="s", stimuli=(StimulusSet(("LB3",), 100.0),), silenced=("NOT_A_TYPE_X",)), data="synthetic",
            progress=False)
    assert not list((tmp_path / "cache").glob("synthetic-*"))  # nothing was generated
