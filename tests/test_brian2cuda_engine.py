"""The Brian2CUDA engine: registration, availability, code generation without a GPU, GPU runs.

Without a GPU: the CUDA project of a tiny network is generated (GPU detection off, compute
capability 9.0) and its sources are checked for the model's update with brainfly's
constants and the strict nvcc flags. Compiling needs the CUDA toolkit with cuRAND
(``curand.h``); where it is missing the compile test is skipped with that reason. Tests
marked ``gpu`` run with ``--run-gpu``.
"""

from __future__ import annotations

from pathlib import Path
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("brian2cuda")

from brainfly.engines import engine_names, get_engine, prepare  # noqa: E402
from brainfly.engines import brian2cuda_engine as b2c  # noqa: E402
from brainfly.errors import ValidationError  # noqa: E402
from brainfly.experiment import Experiment, StimulusSet  # noqa: E402
from brainfly.params import ModelParams  # noqa: E402
from brainfly.testing.networks import random_network  # noqa: E402


def _sim(n_trials: int = 2, t_run: float = 0.02):
    net, drive = random_network(40, 4, seed=1)
    exp = Experiment(name="t", stimuli=(StimulusSet(tuple(net.flywire_ids[drive].tolist()), 200.0),),
                     t_run=t_run, n_trials=n_trials, seed=1)
    return prepare(net, exp)


def test_registered_with_options() -> None:
    assert "brian2cuda" in engine_names()
    eng = get_engine("brian2cuda")
    assert isinstance(eng, b2c.Brian2CUDAEngine)
    assert eng.options.use_schedule is True and eng.mode == "standalone"
    with pytest.raises(ValidationError):
        get_engine("brian2cuda", n_jobs=2)
    with pytest.raises(ValidationError):
        get_engine("brian2cuda", compute_capability=3.0)


def test_availability_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = get_engine("brian2cuda")
    monkeypatch.setattr(b2c, "_brian2cuda_version", lambda: (None, "brian2cuda cannot be imported; "
                                                                    + b2c.INSTALL_HINT))
    ok, reason = eng.is_available()
    assert not ok and "pip install --pre brian2cuda==1.0a7" in reason
    monkeypatch.undo()
    monkeypatch.setattr(b2c, "cuda_gpus", lambda: ([], "no CUDA device: nvidia-smi is not on PATH"))
    if b2c.nvcc_path() is not None:
        ok, reason = eng.is_available()
        assert not ok and "no CUDA device" in reason
    assert set(eng.devices()) == {"cuda"}


def test_no_gpu_here_is_reported() -> None:
    gpus, why = b2c.cuda_gpus()
    ok, reason = get_engine("brian2cuda").is_available()
    if not gpus:
        assert not ok and reason
        assert why.startswith("no CUDA device")


def test_strict_nvcc_flags() -> None:
    args = b2c.nvcc_compile_args()
    assert "--fmad=false" in args and "-use_fast_math" not in args
    assert "-use_fast_math" in b2c.nvcc_compile_args(fast_math=True)


def test_generated_sources_hold_the_model(tmp_path: Path) -> None:
    """Generate the project (no GPU): update with our constants, strict flags, schedule kicks."""
    sim = _sim()
    info = b2c.generate_project(sim, [0, 1], tmp_path / "proj", compute_capability=9.0)
    proj = info.directory
    assert (proj / "main.cu").exists() and (proj / "makefile").exists()
    make = (proj / "makefile").read_text()
    assert "-arch=sm_90" in make and "--fmad=false" in make and "-use_fast_math" not in make
    assert "-ffp-contract=off" in make  # host code: the reference's strict flags
    code = proj / "code_objects"
    update = (code / "neurons_stateupdater_codeobject.cu").read_text()
    p = ModelParams()
    for name, value in (("t_mbr", p.t_mbr_ms * 1e-3), ("tau", p.tau_ms * 1e-3)):
        m = re.search(rf"const double {name} = ([-\d.e ]+);", update)
        assert m is not None and float(m.group(1).replace(" ", "")) == pytest.approx(value, rel=1e-15)
    assert "_v = _lio_8 + ((_lio_9 * g) + (_lio_10 * v));" in update  # Brian2's parenthesisation
    thresh = (code / "neurons_spike_thresholder_codeobject.cu").read_text()
    assert "(v > v_th)" in thresh and "const double v_th = - 0.045;" in thresh
    kick = (code / "kick_synapses_pre_codeobject.cu").read_text()
    assert "_ptr_array_neurons_v" in kick  # the schedule's kicks go onto v
    assert len(info.digest) == 64 and info.codegen_s > 0


def test_build_digest_ignores_seeds_not_shape(tmp_path: Path) -> None:
    a = b2c.generate_project(_sim(), [0, 1], tmp_path / "a", compute_capability=9.0)
    b = b2c.generate_project(_sim(), [0, 1], tmp_path / "b", compute_capability=9.0)
    c = b2c.generate_project(_sim(t_run=0.03), [0, 1], tmp_path / "c", compute_capability=9.0)
    d = b2c.generate_project(_sim(), [0, 1], tmp_path / "d", compute_capability=8.0)
    assert a.digest == b.digest and len({a.digest, c.digest, d.digest}) == 3


@pytest.mark.slow  # nvcc compiles some 40 files: about 3.5 minutes on 2 cores
@pytest.mark.skipif(b2c.nvcc_path() is None or b2c.curand() is None or shutil.which("make") is None,
                    reason="compiling needs nvcc, cuRAND (toolkit or pip's nvidia-curand) and make")
def test_generated_project_compiles(tmp_path: Path) -> None:
    info = b2c.generate_project(_sim(), [0, 1], tmp_path / "proj", compile=True, compute_capability=9.0)
    assert (info.directory / "main").exists() and info.compile_s > 0


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_equals_reference_and_cache(tmp_path: Path) -> None:
    """On a GPU: Brian2's spikes for the shared schedule; a second run finds the project."""
    sim = _sim(n_trials=3, t_run=0.1)
    ref = get_engine("brian2", use_schedule=True, n_jobs=1).simulate(sim, [0, 1, 2])
    eng = get_engine("brian2cuda", build_root=str(tmp_path))
    first = eng.simulate(sim, [0, 1, 2])
    second = eng.simulate(sim, [0, 1, 2])
    got = sorted(zip(first.trial.tolist(), first.idx.tolist(), first.step.tolist()))
    want = sorted(zip(ref.trial.tolist(), ref.idx.tolist(), ref.step.tolist()))
    assert got == want
    assert np.array_equal(np.sort(first.step), np.sort(second.step))
    assert first.record.details["builds"][0]["cached_project"] is False
    assert second.record.details["builds"][0]["cached_project"] is True
    assert second.record.build_s < first.record.build_s
    assert first.record.device.startswith("cuda")


@pytest.mark.gpu
def test_gpu_poisson_input_runs(tmp_path: Path) -> None:
    sim = _sim(n_trials=2, t_run=0.1)
    out = get_engine("brian2cuda", use_schedule=False, build_root=str(tmp_path)).simulate(sim, [0, 1])
    assert out.record.details["input"] == "PoissonInput" and out.idx.size > 0
