"""The benchmark grid: per-point processes, time limits, skip reporting, CSV upsert, file naming.

The fake engines below are registered by a fixture for this module's tests only, and
reach the workers because these fork from the test process.
"""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from brainfly.bench import TARGETS, BenchConfig, build_grid, parse_target, run_bench
from brainfly.bench.hardware import hardware_info, software_versions
from brainfly.connectome import Connectome
from brainfly.engines.base import Engine, EngineOutput, RunRecord, register_engine
from brainfly.errors import EngineUnavailable, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.results import SpikeResult
from brainfly.store import spikes_file_name

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the test engines are registered in-process (fork)")


# ------------------------------------------------------------------ engines known to this module only
class _Base(Engine):
    capabilities: ClassVar[frozenset[str]] = frozenset({"poisson", "schedule", "silencing", "multi_rate"})

    def spikes(self, sim, trials, record):
        kicks = sim.kicks(trials)  # every kick makes its neuron spike, one step later
        return EngineOutput(kicks.trial, kicks.idx, np.minimum(kicks.step + 1, sim.n_steps - 1), record)


class QuickEngine(_Base):
    name: ClassVar[str] = "test-quick"

    def simulate(self, sim, trials, progress=None):
        if progress:
            progress(len(trials), len(trials))
        return self.spikes(sim, trials, RunRecord(setup_s=0.01, build_s=0.02, sim_s=0.25))


class UntimedEngine(_Base):
    name: ClassVar[str] = "test-untimed"

    def simulate(self, sim, trials, progress=None):
        return self.spikes(sim, trials, RunRecord())


class CrashEngine(_Base):
    name: ClassVar[str] = "test-crash"

    def simulate(self, sim, trials, progress=None):
        os.kill(os.getpid(), signal.SIGSEGV)


class OomEngine(_Base):
    name: ClassVar[str] = "test-oom"

    def simulate(self, sim, trials, progress=None):
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


class RaiseEngine(_Base):
    name: ClassVar[str] = "test-raise"

    def simulate(self, sim, trials, progress=None):
        raise RuntimeError("boom in the engine")


class HangEngine(_Base):
    name: ClassVar[str] = "test-hang"

    def simulate(self, sim, trials, progress=None):
        time.sleep(600)


class MissingEngine(_Base):
    name: ClassVar[str] = "test-missing"

    def is_available(self):
        return False, "no such GPU here"

    def simulate(self, sim, trials, progress=None):  # pragma: no cover - never called
        raise AssertionError


class NoDeviceEngine(_Base):
    name: ClassVar[str] = "test-nodevice"

    def simulate(self, sim, trials, progress=None):
        raise EngineUnavailable("CUDA device requested but none is visible")


_TEST_ENGINES = (QuickEngine, UntimedEngine, CrashEngine, OomEngine, RaiseEngine, HangEngine, MissingEngine,
                 NoDeviceEngine)


@pytest.fixture(autouse=True, scope="module")
def _registered_test_engines():
    """Register this module's engines for its tests only (the conformance suite must not see them)."""
    from brainfly.engines import base

    base.engine_names()  # load the built-in engines first
    for cls in _TEST_ENGINES:
        register_engine(cls)
    yield
    for cls in _TEST_ENGINES:
        base._REGISTRY.pop(cls.name, None)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny():
    ids = np.arange(101, 109, dtype=np.int64)
    net = Connectome.from_edges(ids, [0, 1, 2, 3], [1, 2, 3, 4], [5.0, 5.0, -2.0, 3.0], name="tiny", synthetic=True)
    exp = Experiment(name="tinyexp", stimuli=(StimulusSet((101, 102), 200.0),), t_run=0.01, n_trials=1, seed=3)
    return net, exp


def config(tmp_path, exp, labels, t_runs=(0.01,), n_runs=(1,), timeout=20.0, **kw):
    return BenchConfig(targets=[parse_target(x) for x in labels], t_runs=list(t_runs), n_runs=list(n_runs),
                       experiment=exp, csv_path=tmp_path / "bench.csv", results_dir=tmp_path / "results",
                       log_file=tmp_path / "results" / "benchmarks.log", timeout_s=timeout, progress=False,
                       plot=kw.pop("plot", False), **kw)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ grid
def test_grid_order_and_targets():
    targets = [parse_target("event"), parse_target("brian2:codegen_target=cython")]
    assert targets[1].label == "brian2-cython" and targets[1].options_dict == {"codegen_target": "cython"}
    assert parse_target("brian2:use_schedule=true,n_jobs=2").label == "brian2-use-schedule-2"
    assert parse_target("brian2:use_schedule=true,n_jobs=2").options_dict == {"use_schedule": True, "n_jobs": 2}
    grid = build_grid(targets, [1, 0.1], [4, 1, 4])
    assert [(p.target.label, p.t_run, p.n_run) for p in grid][:4] == [
        ("event", 0.1, 1), ("event", 0.1, 4), ("event", 1.0, 1), ("event", 1.0, 4)]
    assert len(grid) == 8
    assert {t.flag for t in TARGETS} >= {"--brian2-cpu", "--brian2cuda-gpu", "--pytorch", "--nestgpu", "--event",
                                         "--torch-cpu", "--brian2-runtime"}
    # a seed flag means its own engine only: --nestgpu never runs NEST on the CPU
    by_flag = {t.flag: t for t in TARGETS}
    assert by_flag["--nestgpu"].engines == ("nestgpu",) and by_flag["--nest"].engines == ("nest",)
    assert by_flag["--brian2cuda-gpu"].engines == ("brian2cuda",)
    with pytest.raises(ValidationError):
        parse_target("bad_name")
    with pytest.raises(ValidationError):
        build_grid(targets, [0], [1])


def test_hardware_and_versions():
    hw = hardware_info()
    assert hw["cpu_cores"] >= 1 and hw["cpu_model"] and hw["gpu"]
    assert {"python", "brainfly", "numpy"} <= set(software_versions())


# ------------------------------------------------------------------ the grid survives
def test_grid_survives_crash_hang_failure_and_reports_skips(tiny, tmp_path):
    net, exp = tiny
    cfg = config(tmp_path, exp, ["test-quick", "test-crash", "test-raise", "test-hang", "test-missing",
                                 "test-nodevice", "nest-imaginary", "test-oom"], n_runs=(1, 2), timeout=3.0)
    t0 = time.perf_counter()
    rows = run_bench(cfg, net)
    elapsed = time.perf_counter() - t0
    status = {(r["engine"], r["n_run"]): r for r in rows}
    assert len(rows) == 16
    ok = status[("test-quick", 1)]
    assert ok["status"] == "ok" and ok["sim_s"] == 0.25 and ok["setup_s"] == 0.01 and ok["build_s"] == 0.02
    assert ok["timings_source"] == "engine" and ok["realtime_ratio"] == pytest.approx(0.01 / 0.25)
    assert ok["n_spikes"] > 0 and ok["active_neurons"] == 2 and ok["peak_rss_mb"] > 0
    assert status[("test-crash", 1)]["status"] == "crashed" and "SIGSEGV" in status[("test-crash", 1)]["reason"]
    assert status[("test-raise", 1)]["status"] == "failed" and "boom" in status[("test-raise", 1)]["reason"]
    assert "boom in the engine" in Path(status[("test-raise", 1)]["log_file"]).read_text()
    hang = status[("test-hang", 1)]
    assert hang["status"] == "timeout" and hang["wall_s"] < 15
    # the larger point of a timed-out engine is skipped, not run
    assert status[("test-hang", 2)]["status"] == "skipped" and "timed out" in status[("test-hang", 2)]["reason"]
    assert status[("test-oom", 1)]["status"] == "crashed" and "SIGKILL" in status[("test-oom", 1)]["reason"]
    assert status[("test-oom", 2)]["status"] == "skipped" and "out of memory" in status[("test-oom", 2)]["reason"]
    for label, words in (("test-missing", "no such GPU"), ("test-nodevice", "CUDA device"),
                         ("nest-imaginary", "not registered")):
        for n in (1, 2):
            assert status[(label, n)]["status"] == "skipped" and words in status[(label, n)]["reason"]
    assert elapsed < 40
    rows_csv = read_csv(cfg.csv_path)
    assert len(rows_csv) == 16 and {r["status"] for r in rows_csv} == {"ok", "crashed", "failed", "timeout",
                                                                         "skipped"}
    log_text = cfg.log_file.read_text()
    assert "test-hang t=0.01s n=1: timeout" in log_text and "not registered" in log_text


def test_spikes_saved_under_the_one_name(tiny, tmp_path):
    net, exp = tiny
    cfg = config(tmp_path, exp, ["test-untimed", "test-quick"], t_runs=(0.01, 0.02), n_runs=(2,),
                 plot=True, save_spikes=True)
    rows = run_bench(cfg, net)
    assert all(r["status"] == "ok" for r in rows)
    untimed = rows[0]  # an engine that timed nothing: no real-time ratio, no division by zero
    assert untimed["timings_source"] == "engine" and untimed["sim_s"] == 0.0 and untimed["realtime_ratio"] is None
    expected = {spikes_file_name(lbl, "tinyexp", t, 2) for lbl in ("test-untimed", "test-quick") for t in (0.01, 0.02)}
    assert {p.name for p in (tmp_path / "results").glob("*.parquet")} == expected
    saved = SpikeResult.read_parquet(tmp_path / "results" / "test-quick_tinyexp_t0.02_n2.parquet")
    assert saved.n_trials == 2 and saved.meta["input"].startswith("kicks:")
    assert (tmp_path / "bench.png").stat().st_size > 1000
    # rerunning a point replaces its row (with the progress display on)
    from rich.console import Console

    buf = Console(file=__import__("io").StringIO(), force_terminal=True, width=120)
    cfg2 = config(tmp_path, exp, ["test-quick"], t_runs=(0.01,), n_runs=(2,))
    cfg2.progress = True
    run_bench(cfg2, net, console=buf)
    assert "ETA" in buf.file.getvalue() and "1/1 points" in buf.file.getvalue()
    # --resume keeps measured points (their rows untouched) and runs the others
    before = {(r["engine"], r["t_run"]): r["timestamp"] for r in read_csv(cfg.csv_path)}
    cfg3 = config(tmp_path, exp, ["test-quick", "test-untimed"], t_runs=(0.01, 0.03), n_runs=(2,), resume=True)
    rows3 = run_bench(cfg3, net)
    assert [r["status"] for r in rows3] == ["ok"] * 4
    after = {(r["engine"], r["t_run"]): r["timestamp"] for r in read_csv(cfg.csv_path)}
    assert all(after[k] == v for k, v in before.items()) and len(after) == 6
    assert "already measured" in cfg3.log_file.read_text()


_SIGTERM_SCRIPT = r'''
import os, sys, time
import numpy as np
from brainfly.bench import BenchConfig, parse_target, run_bench
from brainfly.connectome import Connectome
from brainfly.engines.base import Engine, register_engine
from brainfly.experiment import Experiment, StimulusSet

@register_engine
class Sleeper(Engine):
    name = "test-sleeper"
    capabilities = frozenset({"poisson"})
    def simulate(self, sim, trials, progress=None):
        with open(sys.argv[1] + "/worker.pid", "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(600)

net = Connectome.from_edges(np.arange(1, 5), [0], [1], [1.0], name="tiny", synthetic=True)
exp = Experiment(name="t", stimuli=(StimulusSet((1,), 100.0),), t_run=0.01)
out = sys.argv[1]
run_bench(BenchConfig([parse_target("test-sleeper")], [0.01], [1], exp, csv_path=out + "/b.csv",
                      results_dir=out + "/r", log_file=None, timeout_s=300, progress=False, plot=False), net)
'''


def test_sigterm_ends_the_running_worker(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "s.py"
    script.write_text(_SIGTERM_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "worker.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker survived the benchmark's SIGTERM"
        time.sleep(0.1)
