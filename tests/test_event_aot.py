"""The event engine's kernel compiled ahead of time (brainfly.engines._event_aot): the same
spikes as numba's JIT kernel, the GIL released during a call, a new process that never
imports numba, arguments checked against the compiled layout, and the failure paths (an
unloadable module, a build that fails) ending in the JIT kernel with the reason kept."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from brainfly.engines import _event_aot
from brainfly.engines import _event_records as R
from brainfly.engines.base import get_engine, prepare
from brainfly.experiment import Experiment, StimulusSet
from brainfly.schedule import InputSchedule
from brainfly.testing.conformance import assert_same_spikes
from brainfly.testing.networks import random_network

pytest.importorskip("numba")


@pytest.fixture
def fresh_kernel(monkeypatch):
    """This process's kernel resolved again (and restored afterwards)."""
    monkeypatch.setattr(_event_aot, "_KERNEL", None)
    return monkeypatch


def _compiled() -> _event_aot.TrialKernel:
    """This process's kernel, the compiled one (built now if it is not yet)."""
    kernel = _event_aot.trial_kernel()
    if kernel.kind != "aot":
        _event_aot.build()
        _event_aot._KERNEL = None
        kernel = _event_aot.trial_kernel()
    assert kernel.kind == "aot", kernel.note
    return kernel


def _experiments(net, driven, schedule_path: Path) -> list[Experiment]:
    ids = tuple(net.flywire_ids[driven].tolist())
    base = Experiment(name="aot", stimuli=(StimulusSet(ids[:8], 180.0), StimulusSet(ids[8:], 90.0)),
                      t_run=0.3, n_trials=3, seed=5)
    silenced = tuple(net.flywire_ids[[30, 41, 57, 80]].tolist())
    scheduled = Experiment(name="aot-schedule", t_run=0.3, n_trials=3, input_schedule=str(schedule_path))
    return [base, base.with_(silenced=silenced), base.with_(silenced=silenced, silence_mode="both"), scheduled]


def _random_schedule(net, driven, t_run: float, n_trials: int, path: Path) -> Path:
    rng = np.random.default_rng(11)
    n_steps = int(round(t_run / 1e-4))
    kicks = [(k, int(i), int(s)) for k in range(n_trials) for i in driven
             for s in np.flatnonzero(rng.random(n_steps) < rng.choice([20.0, 150.0, 600.0]) * 1e-4)]
    arr = np.asarray(kicks, dtype=np.int64)
    return InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2]).write(path, net.flywire_ids)


def test_compiled_and_jit_kernels_give_the_same_spikes(fresh_kernel, tmp_path):
    net, driven = random_network(400, 16, seed=7, fan_in=6)
    exps = _experiments(net, driven, _random_schedule(net, driven, 0.3, 3, tmp_path / "kicks.parquet"))
    _compiled()
    aot = [get_engine("event").run(net, e) for e in exps]
    fresh_kernel.setenv(_event_aot.MODE_ENV, "jit")
    fresh_kernel.setattr(_event_aot, "_KERNEL", None)
    jit = [get_engine("event").run(net, e) for e in exps]
    for a, j, what in zip(aot, jit, ["base", "silenced", "silenced both ways", "schedule"]):
        assert a.meta["kernel"] == "aot" and j.meta["kernel"] == "jit"
        assert a.n_spikes > 100
        assert_same_spikes(a, j, f"compiled vs JIT kernel, {what}")
    assert any("JIT" in c for c in jit[0].meta["choices"])  # the choice is kept in the result


def test_compiled_kernel_releases_the_gil():
    """While one thread is in the compiled kernel, another runs Python: the longest pause
    the other thread sees is a small part of the call (with the GIL held it would be all)."""
    kernel = _compiled()
    net, driven = random_network(3000, 100, seed=3, fan_in=8)
    exp = Experiment(name="gil", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                     t_run=3.0, n_trials=1, seed=1)
    eng = get_engine("event", n_threads=1)
    plan = eng._plan(prepare(net, exp), [0])
    ws = eng._ready(R.new_workspace(net.n_neurons, 1024), [plan])
    lo, hi = plan.lo_hi[0]
    args = eng._args(plan, ws, lo, hi, plan.model.n_steps)
    assert kernel.fits(args)
    kernel(*args)  # once, so that the timed call does no first-call work
    ws = eng._ready(R.new_workspace(net.n_neurons, 1024), [plan])
    args = eng._args(plan, ws, lo, hi, plan.model.n_steps)
    done = threading.Event()
    span = []

    def call() -> None:
        t0 = time.perf_counter()
        kernel(*args)
        span.append(time.perf_counter() - t0)
        done.set()

    worker = threading.Thread(target=call)
    worker.start()
    longest, last = 0.0, time.perf_counter()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    assert span[0] > 0.1, "the call is too short to tell"
    assert longest < 0.5 * span[0], f"the other thread paused {longest:.3f} s of a {span[0]:.3f} s call"


def test_layout_check():
    """What the compiled module may be given: same dtypes, dimensions and scalar kinds;
    contiguous and writeable where it was compiled so."""
    ro = np.zeros(4, np.int64)
    ro.setflags(write=False)
    compiled = _event_aot._layout(((np.zeros(4, np.int64), ro, 3, 1.5, True),))
    ok = _event_aot._layout(((np.ones(9, np.int64), np.ones(2, np.int64), 7, 2.0, False),))
    assert _event_aot._fits(compiled, ok)  # a writeable array stands for a read-only one
    bad = [((np.zeros(4, np.uint64), ro, 3, 1.5, True),),       # dtype
           ((ro, ro, 3, 1.5, True),),                            # read-only for writeable
           ((np.zeros((4, 2), np.int64)[:, 0], ro, 3, 1.5, True),),  # not contiguous
           ((np.zeros((4, 1), np.int64), ro, 3, 1.5, True),),   # dimensions
           ((np.zeros(4, np.int64), ro, 3.0, 1.5, True),),      # float for int
           ((np.zeros(4, np.int64), ro, 3, 1.5),)]               # a field missing
    for args in bad:
        assert not _event_aot._fits(compiled, _event_aot._layout(args)), args


def test_key_follows_the_cpu_and_the_build(monkeypatch):
    key = _event_aot.kernel_key()
    assert key == _event_aot.kernel_key() and len(key) == 20
    monkeypatch.setattr(_event_aot, "_cpu", lambda: "another cpu")
    assert _event_aot.kernel_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(_event_aot, "BUILD_VERSION", _event_aot.BUILD_VERSION + 1)
    assert _event_aot.kernel_key() != key


def test_unloadable_module_is_removed(tmp_path, monkeypatch, caplog):
    kernel = _compiled()
    key = _event_aot.kernel_key()
    monkeypatch.setenv(_event_aot.DIR_ENV, str(tmp_path))
    folder = tmp_path / f"event-kernel-{key}"
    shutil.copytree(kernel.path.parent, folder)
    module = folder / kernel.path.name
    module.write_bytes(module.read_bytes()[:4096])  # truncated
    assert _event_aot._load(folder) is None
    assert not folder.exists() and "cannot be loaded" in caplog.text


def test_failed_build_is_remembered_and_the_jit_kernel_used(tmp_path, fresh_kernel):
    fresh_kernel.setenv(_event_aot.DIR_ENV, str(tmp_path / "kernels"))
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\necho 'cc: not found' >&2\nexit 1\n")
    failing.chmod(0o755)
    fresh_kernel.setattr(sys, "executable", str(failing))
    with pytest.raises(_event_aot.KernelBuildError, match="could not be compiled"):
        _event_aot.build()
    failed = next((tmp_path / "kernels").glob("event-kernel-*/failed.txt"))
    assert "cc: not found" in failed.read_text() and "brainfly install event-kernel" in failed.read_text()

    def no_build(*args, **kwargs):
        raise AssertionError("a failed build is not tried again by every run")

    fresh_kernel.setattr(_event_aot, "start_background_build", no_build)
    kernel = _event_aot.trial_kernel()
    assert kernel.kind == "jit" and "failed" in kernel.note
    net, driven = random_network(60, 6, seed=1)
    res = get_engine("event").run(net, Experiment(name="f", stimuli=(StimulusSet(
        tuple(net.flywire_ids[driven].tolist()), 150.0),), t_run=0.05, n_trials=1))
    assert res.meta["kernel"] == "jit" and any("failed" in c for c in res.meta["choices"])
    fresh_kernel.setenv(_event_aot.MODE_ENV, "aot")
    fresh_kernel.setattr(_event_aot, "_KERNEL", None)
    with pytest.raises(_event_aot.KernelBuildError, match="could not be compiled"):
        _event_aot.trial_kernel()  # aot: tried again, and a failure is an error


def test_first_run_builds_in_the_background_and_later_processes_run_without_numba(tmp_path, fresh_kernel):
    """A run in an empty kernel folder uses the JIT kernel and starts the build in a
    detached process; a later process loads the module and never imports numba; and
    ``brainfly install event-kernel`` finds it built."""
    kernels = tmp_path / "kernels"
    fresh_kernel.setenv(_event_aot.DIR_ENV, str(kernels))
    fresh_kernel.delenv(_event_aot.MODE_ENV, raising=False)
    net, driven = random_network(200, 10, seed=4)
    exp = Experiment(name="fresh", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                     t_run=0.2, n_trials=4)
    first = get_engine("event").run(net, exp)
    assert first.meta["kernel"] == "jit" and any("background" in c for c in first.meta["choices"])
    folder = kernels / f"event-kernel-{_event_aot.kernel_key()}"
    deadline = time.monotonic() + 600
    while not any((folder / f).exists() for f in ("manifest.json", "failed.txt")) and time.monotonic() < deadline:
        time.sleep(0.5)  # (the folder appears whole, module and manifest, when the build is done)
    built = list(folder.glob("brainfly_event_kernel*"))
    log_text = next(kernels.glob("event-kernel-*.log")).read_text()
    assert len(built) == 1, log_text[-3000:]
    env = {**os.environ, _event_aot.DIR_ENV: str(kernels)}
    code = """
import json, sys
import brainfly
from brainfly.testing.networks import random_network
net, driven = random_network(200, 10, seed=4)
exp = brainfly.Experiment(name="fresh", stimuli=(brainfly.StimulusSet(tuple(net.flywire_ids[driven].tolist()), 150.0),),
                          t_run=0.2, n_trials=4)
res = brainfly.run(exp, data=net, progress=False)
print(json.dumps({"numba": "numba" in sys.modules, "kernel": res.meta["kernel"], "spikes": res.n_spikes}))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"numba": False, "kernel": "aot", "spikes": first.n_spikes} and first.n_spikes > 0
    proc = subprocess.run([sys.executable, "-m", "brainfly", "install", "event-kernel"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and str(built[0]) in proc.stdout, proc.stderr[-3000:]
    assert list(folder.glob("brainfly_event_kernel*")) == built


def test_a_kernel_folder_that_cannot_be_written_leaves_the_jit_kernel(tmp_path, fresh_kernel):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fresh_kernel.setenv(_event_aot.DIR_ENV, str(blocker / "kernels"))
    kernel = _event_aot.trial_kernel()
    assert kernel.kind == "jit" and _event_aot.DIR_ENV in kernel.note
    net, driven = random_network(60, 6, seed=1)
    res = get_engine("event").run(net, Experiment(name="ro", stimuli=(StimulusSet(
        tuple(net.flywire_ids[driven].tolist()), 150.0),), t_run=0.05, n_trials=1))
    assert res.n_spikes > 0 and res.meta["kernel"] == "jit"
