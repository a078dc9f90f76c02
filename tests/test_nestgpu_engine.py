"""The NEST GPU engine (brainfly.engines.nestgpu_engine) and its installer (brainfly.nestgpu_install).

Without a GPU: the availability reasons, the installer's source verification and patch (on
the vendor tarball, when it is present), a compile of brainfly's model translation unit
(where nvcc, CMake and cuRAND headers are), the model's semantics through
:func:`reference_run` (a CPU rendering of the kernel and of NEST GPU's delivery timing,
run on exactly the job the GPU process gets) against the event engine, and the
seed-per-trial guard. ``@pytest.mark.gpu`` tests run the real thing (``--run-gpu``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import tarfile

import numpy as np
import pytest

from brainfly import nestgpu_install as ni
from brainfly.engines import nestgpu_engine as ng
from brainfly.engines.base import get_engine, prepare, register_engine
from brainfly.errors import ChecksumError, DataError, EngineUnavailable, ValidationError
from brainfly.experiment import Experiment, StimulusSet
from brainfly.testing import conformance as conf
from brainfly.testing.networks import _net, random_network

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "nest-gpu-d3be46f99a54.tar.gz"
TARBALL = Path(os.environ.get(ni.SOURCE_ENV, VENDOR))
needs_tarball = pytest.mark.skipif(not TARBALL.is_file(), reason=f"NEST GPU source tarball not at {TARBALL}")

register_engine(ng.NestGpuEngine)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAINFLY_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_install(cache: Path, digest: str | None = None) -> ni.NestGpuInstall:
    prefix = cache / "nestgpu" / "x"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "libnestgpukernel.so").write_bytes(b"")
    (prefix / "py").mkdir()
    (prefix / "py" / "nestgpu.py").write_text("")
    inst = ni.NestGpuInstall(prefix, prefix / "lib" / "libnestgpukernel.so", prefix / "py",
                             digest or ni.build_digest("90"), ni.NESTGPU_COMMIT, "90")
    (cache / "nestgpu" / "current.json").write_text(json.dumps(inst.to_dict()))
    return inst


# ----------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("x", [0.0, -0.052, -0.045, 0.000275, 0.06875, 0.9950124791926823,
                               0.004877057549928598, 1e-30, -3.3e-3])
def test_split_double_rebuilds_exactly(x: float) -> None:
    hi, mid, lo = ng.split_double(x)
    assert all(float(np.float32(p)) == p for p in (hi, mid, lo))
    assert ng.join_double(hi, mid, lo) == x


def test_split_double_random() -> None:
    rng = np.random.default_rng(0)
    for x in rng.standard_normal(2000) * 10.0 ** rng.integers(-8, 3, 2000):
        assert ng.join_double(*ng.split_double(float(x))) == float(x)


# ----------------------------------------------------------------------------- availability
def test_unavailable_without_build_names_the_install_command(cache: Path) -> None:
    ok, why = ng.NestGpuEngine().is_available()
    assert not ok and ni.INSTALL_COMMAND in why and ni.SOURCE_ENV in why
    with pytest.raises(EngineUnavailable, match="brainfly install nestgpu"):
        ng.NestGpuEngine().check_available()


def test_unavailable_without_gpu(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_install(cache)
    monkeypatch.setattr(ng, "_gpu_count", lambda: (0, "no CUDA driver (libcuda.so.1) on this machine"))
    ok, why = ng.NestGpuEngine().is_available()
    assert not ok and "GPU" in why and "libcuda" in why
    monkeypatch.setattr(ng, "_gpu_count", lambda: (1, ""))
    assert ng.NestGpuEngine().is_available() == (True, "")
    assert ng.NestGpuEngine().devices() == {"cuda": (True, "")}


def test_stale_build_is_reported(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_install(cache, digest="0000000000000000")
    monkeypatch.setattr(ng, "_gpu_count", lambda: (1, ""))
    ok, why = ng.NestGpuEngine().is_available()
    assert not ok and "--cuda-arch 90" in why and "other model files" in why


def test_install_record_needs_its_files(cache: Path) -> None:
    inst = _fake_install(cache)
    assert ni.find_install() == inst
    inst.library.unlink()
    assert ni.find_install() is None


def test_options_validated() -> None:
    with pytest.raises(ValidationError, match="max_rec_spikes"):
        ng.NestGpuEngine(max_rec_spikes=-1)
    with pytest.raises(ValidationError, match="valid options"):
        ng.NestGpuEngine(threads=2)
    assert ng.NestGpuEngine.exact is False


def test_digest_depends_on_arch_and_checks_it() -> None:
    assert ni.build_digest("90") != ni.build_digest("80")
    with pytest.raises(ValidationError, match="compute capability"):
        ni.install(cuda_arch="9.0")


# ----------------------------------------------------------------------------- installer
def test_source_checksum_is_verified(tmp_path: Path) -> None:
    bogus = tmp_path / "nest-gpu.tar.gz"
    with tarfile.open(bogus, "w:gz") as tf:
        tf.add(__file__, arcname="nest-gpu/src/neuron_models.h")
    with pytest.raises(ChecksumError, match="SHA-256"):
        ni.fetch_source(tmp_path / "src", bogus)
    with pytest.raises(DataError, match="does not exist"):
        ni.fetch_source(tmp_path / "src", tmp_path / "missing.tar.gz")


def test_tarball_without_nest_gpu_tree_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tf:
        tf.add(__file__, arcname="x/readme.txt")
    with pytest.raises(DataError, match="not a NEST GPU source tree"):
        ni.fetch_source(tmp_path / "src", other, sha256=ni.sha256_file(other))


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not TARBALL.is_file():
        pytest.skip(f"NEST GPU source tarball not at {TARBALL}")
    return ni.fetch_source(tmp_path_factory.mktemp("ngpu"), TARBALL)


@needs_tarball
def test_patch_registers_the_model_once(source_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(source_tree, root)
    changed = ni.patch_source(root)
    assert set(changed) == {"src/brainfly_lif.cu", "src/brainfly_lif.h", "src/neuron_models.h",
                            "src/neuron_models.cu", "src/CMakeLists.txt"}
    h = (root / "src" / "neuron_models.h").read_text()
    assert h.index("i_brainfly_lif_model") < h.index("N_NEURON_MODELS\n")
    names = h[h.index("neuron_model_name[N_NEURON_MODELS]"):]
    assert names.count('"brainfly_lif"') == 1 and names.index('"user_m2"') < names.index('"brainfly_lif"')
    cu = (root / "src" / "neuron_models.cu").read_text()
    assert '#include "brainfly_lif.h"' in cu and "new brainfly_lif;" in cu
    cm = (root / "src" / "CMakeLists.txt").read_text()
    assert "\tbrainfly_lif.cu\n" in cm and "\tbrainfly_lif.h\n" in cm
    snapshot = {p: (root / p).read_text() for p in changed}
    assert set(ni.patch_source(root)) == {"src/brainfly_lif.cu", "src/brainfly_lif.h"}  # copies only
    assert {p: (root / p).read_text() for p in changed} == snapshot


@needs_tarball
def test_patch_refuses_an_unknown_tree(source_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(source_tree, root)
    h = root / "src" / "neuron_models.h"
    h.write_text(h.read_text().replace("  N_NEURON_MODELS", "  N_MODELS"))
    with pytest.raises(DataError, match="lacks"):
        ni.patch_source(root)


@needs_tarball
@pytest.mark.skipif(not (shutil.which("nvcc") and shutil.which("cmake") and shutil.which("make")),
                    reason="nvcc, cmake and make are needed to compile the model")
def test_model_compiles_in_nest_gpu(source_tree: Path, tmp_path: Path) -> None:
    """Configure NEST GPU with the patch and compile brainfly_lif.cu and neuron_models.cu (no GPU needed)."""
    if ni.curand() is None:
        pytest.skip("cuRAND not found (neither in nvcc's toolkit nor pip's nvidia-curand); the test extra installs it")
    args: list[str] = []
    root = tmp_path / "tree"
    shutil.copytree(source_tree, root)
    ni.patch_source(root)
    ni.configure(root, tmp_path / "build", tmp_path / "prefix", cuda_arch="90", cmake_args=args)
    secs = ni._compile_model_only(tmp_path / "build", 2)
    assert (tmp_path / "build" / "src" / "CMakeFiles" / "nestgpukernel.dir" / "brainfly_lif.cu.o").is_file()
    assert secs > 0


# ----------------------------------------------------------------------------- model semantics (CPU)
def _reference_spikes(sim, trial: int = 0) -> set[tuple[int, int]]:
    kicks = sim.kicks([trial])
    sel = kicks.trial == trial
    job = ng.build_job(sim, trial, kicks.idx[sel], kicks.step[sel], seed=1)
    idx, step = ng.reference_run(job)
    keep = (step >= 0) & (step < sim.n_steps)
    return set(zip(idx[keep].tolist(), step[keep].tolist()))


def _event_spikes(net, exp, trial: int = 0) -> set[tuple[int, int]]:
    res = get_engine("event").run(net, exp)
    sel = res.trial == trial
    return set(zip(res.idx[sel].tolist(), res.step[sel].tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_rendering_matches_event_engine_on_random_networks(seed: int) -> None:
    """The kernel's semantics, NEST GPU's delivery timing and the job layout give the event engine's spikes."""
    net, driven = random_network(60, 6, seed=seed)
    exp = Experiment(name="r", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 250.0),),
                     t_run=0.06, n_trials=1, seed=seed)
    sim = prepare(net, exp)
    got = _reference_spikes(sim)
    assert len(got) > 20
    assert got == _event_spikes(net, exp)


def test_reference_timing_single_kick_refractory_and_dense_drive() -> None:
    """A kick fires its neuron next step; a synapse acts on the target no sooner than 19 steps later;
    a kick every step fires a driven neuron every second step (the spike step's kick is lost)."""
    net = _net("k", 3, [(0, 1, 1000.0), (2, 1, 1000.0)])
    exp = Experiment(name="k", stimuli=(StimulusSet((int(net.flywire_ids[0]),), 1e4),), t_run=0.01, seed=3)
    sim = prepare(net, exp)
    got = _reference_spikes(sim)
    ev = _event_spikes(net, exp)
    assert got == ev
    s0 = sorted(s for i, s in got if i == 0)
    assert s0[0] == 1 and set(np.diff(s0).tolist()) == {2}
    s1 = sorted(s for i, s in got if i == 1)
    assert s1 and s1[0] >= s0[0] + 19
    assert min(np.diff(s1).tolist()) >= 23  # refractory 22 steps, input meanwhile dropped


def test_silencing_leaves_out_outgoing_connections() -> None:
    net, driven = random_network(40, 4, seed=4)
    out_degree = np.diff(net.indptr)
    out_degree[driven] = -1
    silenced = int(np.argmax(out_degree))
    target = int(net.flywire_ids[silenced])
    for mode in ("outgoing", "both"):
        exp = Experiment(name="x", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                         silence=(target,), silence_mode=mode, t_run=0.04, seed=5)
        sim = prepare(net, exp)
        job = ng.build_job(sim, 0, np.empty(0, np.int64), np.empty(0, np.int64), seed=1)
        assert silenced not in set(job["pre"].tolist())
        assert (silenced in set(job["post"].tolist())) == (mode == "outgoing")
        assert _reference_spikes(sim) == _event_spikes(net, exp)


def test_repeated_kicks_in_one_step_become_one_spike_of_height_two() -> None:
    net = _net("h", 2, [(0, 1, 10.0)])
    exp = Experiment(name="h", stimuli=(StimulusSet((int(net.flywire_ids[0]),), 100.0),), t_run=0.01, seed=0)
    sim = prepare(net, exp)
    job = ng.build_job(sim, 0, np.array([0, 0, 0, 1]), np.array([5, 5, 9, 9]), seed=1)
    assert job["kick_idx"].tolist() == [0, 0, 1] and job["kick_gen_step"].tolist() == [5, 9, 9]
    assert job["kick_height"].tolist() == [2.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- trials: one process each, own seed
def _fake_worker(self, inst, job_path: Path, res_path: Path) -> None:
    with np.load(job_path) as f:
        job = {k: f[k] for k in f.files}
    idx, step = ng.reference_run(job)
    np.savez(res_path, idx=idx, step=step, network_s=0.0, simulate_s=0.0, seed=job["seed"])
    _fake_worker.seeds.append(int(job["seed"]))
    _fake_worker.kicks.append(job["kick_idx"].tolist() + job["kick_gen_step"].tolist())


def test_each_trial_gets_its_own_seed_and_input(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against the old runner's identical trials: one process per trial, distinct seeds
    and kicks, and the engine's spikes equal the event engine's on every trial."""
    _fake_install(cache)
    monkeypatch.setattr(ng, "_gpu_count", lambda: (1, ""))
    monkeypatch.setattr(ng.NestGpuEngine, "_run_worker", _fake_worker)
    _fake_worker.seeds, _fake_worker.kicks = [], []
    net, driven = random_network(50, 5, seed=7)
    exp = Experiment(name="t", stimuli=(StimulusSet(tuple(net.flywire_ids[driven].tolist()), 200.0),),
                     t_run=0.03, n_trials=4, seed=9)
    res = ng.NestGpuEngine().run(net, exp)
    assert len(set(_fake_worker.seeds)) == 4
    assert _fake_worker.seeds == ng.trial_seeds(9, [0, 1, 2, 3])
    assert len({tuple(k) for k in _fake_worker.kicks}) == 4
    assert res.meta["trial_seeds"] == {str(k): s for k, s in zip(range(4), _fake_worker.seeds)}
    ref = get_engine("event").run(net, exp)
    assert conf.spike_set(res) == conf.spike_set(ref)
    assert res.meta["exact"] is False and res.meta["device"] == "cuda"
    assert res.meta["input"] == ref.meta["input"]


def test_trial_seeds_are_distinct_and_stable() -> None:
    seeds = ng.trial_seeds(0, list(range(64)))
    assert len(set(seeds)) == 64 and seeds == ng.trial_seeds(0, list(range(64)))
    assert ng.trial_seeds(1, [0]) != ng.trial_seeds(0, [0])


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_gpu_matches_event_engine_on_small_networks() -> None:
    eng = ng.NestGpuEngine()
    ok, why = eng.is_available()
    if not ok:
        pytest.skip(why)
    net = _net("k", 3, [(0, 1, 1000.0), (2, 1, 1000.0)])
    exp = Experiment(name="k", stimuli=(StimulusSet((int(net.flywire_ids[0]),), 1e4),), t_run=0.01, seed=3)
    assert conf.spike_set(eng.run(net, exp)) == conf.spike_set(get_engine("event").run(net, exp))
    for seed in range(3):
        rnet, driven = random_network(200, 12, seed=seed)
        rexp = Experiment(name="r", stimuli=(StimulusSet(tuple(rnet.flywire_ids[driven].tolist()), 200.0),),
                          t_run=0.2, n_trials=2, seed=seed)
        got = eng.run(rnet, rexp)
        assert got.n_spikes > 100
        assert conf.spike_set(got) == conf.spike_set(get_engine("event").run(rnet, rexp))
