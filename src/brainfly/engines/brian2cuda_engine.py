"""The Brian2CUDA engine: the reference network on Brian2CUDA's ``cuda_standalone`` device.

The network is the reference engine's (:mod:`brainfly.engines.brian2_engine`): the same
``NeuronGroup``/``Synapses``/``PoissonInput`` or ``SpikeGeneratorGroup`` objects, the same
flush between trials and the same collection of spikes; only the Brian2 device differs.
:class:`Brian2CUDAEngine` subclasses the C++ standalone engine and replaces the one hook
that runs a chunk of trials (``_run_chunk_here``): it sets the ``cuda_standalone`` device
and its preferences, then calls the reference's own builder.

Input. By default (``use_schedule=True``) the activated neurons are driven by brainfly's
shared input schedule (:meth:`SimulationInput.kicks`: the experiment's schedule file, or
:func:`~brainfly.schedule.draw_poisson`), replayed through a ``SpikeGeneratorGroup`` as in
the reference; the kicks are then identical to every other engine's, and the spikes can be
Brian2's exactly. With ``use_schedule=False`` Brian2CUDA's ``PoissonInput`` draws its own
numbers with cuRAND: the same model, a different random stream (statistically equal only).

Floating point. Device code is compiled by nvcc with :data:`STRICT_NVCC_ARGS`
(``--fmad=false``: no fused multiply-add contraction, ``-prec-div=true -prec-sqrt=true
-ftz=false``: IEEE division, square root and denormals; no ``-use_fast_math``, which is
Brian2CUDA's default); host code with the reference's :data:`STRICT_CPP_ARGS`. Double
precision is kept (Brian2CUDA's default ``float64``).

Build cache. The project lives in ``<cache>/brian2cuda/<digest>/`` (or under
``build_root``), where the digest covers the network, the experiment's shape (neurons,
weights after silencing, refractory mask, activated neurons and rates, steps, trials per
binary, input mode), the model's parameters, the compiler flags, the compute capability
and the versions of Brian2, Brian2CUDA and nvcc. Brian2 rewrites only the source files
whose content changed and ``make`` recompiles only those, so a second run of the same
shape with other seeds or kicks recompiles one or two files (``main.cu`` for seeds,
``objects.cu`` for the kick arrays) instead of the whole project. A lock file serialises
processes that share one project folder.

Why not ``device.run(run_args=...)`` for the kicks: Brian2 2.8's run arguments set
writable state variables (array sizes unchanged) and ``TimedArray`` values only; a
``SpikeGeneratorGroup``'s ``neuron_index``/``spike_time`` are read-only and variable in
length, and ``seed()`` is a line of generated code. See ``docs/engines/brian2cuda.md`` for
the ``TimedArray`` design that would make trials rebuild-free.

brian2 and brian2cuda are imported lazily (importing brian2cuda registers the device).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
import functools
import json
import logging
import os
from pathlib import Path
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from .._cuda import cuda_gpus, curand_dirs, curand_env, nvcc_path
from .._io import digest_arrays, digest_text
from ..connectome.cache import cache_dir
from ..errors import EngineUnavailable
from . import brian2_engine as _b2e
from .base import EngineOutput, ProgressCallback, SimulationInput, register_engine

__all__ = ["Brian2CUDAEngine", "Brian2CUDAOptions", "BRIAN2CUDA_PIN", "STRICT_NVCC_ARGS", "FAST_NVCC_ARGS",
           "INSTALL_HINT", "nvcc_compile_args", "generate_project", "ProjectInfo", "cuda_gpus", "nvcc_path"]

log = logging.getLogger(__name__)

#: The Brian2CUDA release the engine is written and tested against (needs brian2 2.8.0).
BRIAN2CUDA_PIN = "1.0a7"
#: How to install it.
INSTALL_HINT = f"pip install --pre brian2cuda=={BRIAN2CUDA_PIN} (or pip install 'brainfly[cuda]')"
#: nvcc flags for device code: IEEE float64 as numpy computes it. No fused multiply-add
#: (``--fmad=false``; nvcc contracts ``a*b + c`` by default), IEEE-rounded division and
#: square root, denormals kept; no ``-use_fast_math`` (Brian2CUDA's default).
#: ``-std=c++17`` (after the template's ``-std=c++11``, which it overrides): CUDA 13's CUB
#: and Thrust refuse older standards; measured here: without it nvcc 13.0 stops at
#: "CUB requires at least C++17", with it the generated project compiles.
STRICT_NVCC_ARGS = ("-w", "--fmad=false", "-prec-div=true", "-prec-sqrt=true", "-ftz=false", "-std=c++17")
#: Brian2CUDA 1.0a7's default nvcc flags (``fast_math=True``), with the C++ standard CUDA 13 needs.
FAST_NVCC_ARGS = ("-w", "-use_fast_math", "-std=c++17")


def nvcc_compile_args(fast_math: bool = False) -> list[str]:
    """nvcc flags the engine gives Brian2CUDA (``cuda_backend.extra_compile_args_nvcc``).

    Parameters
    ----------
    fast_math : bool
        False (default): :data:`STRICT_NVCC_ARGS`. True: Brian2CUDA's defaults,
        :data:`FAST_NVCC_ARGS` (faster, not bit-exact).

    Returns
    -------
    list of str
    """
    return list(FAST_NVCC_ARGS if fast_math else STRICT_NVCC_ARGS)


# ---------------------------------------------------------------------------- probes
@functools.lru_cache(maxsize=1)
def _brian2cuda_version() -> tuple[str | None, str]:
    """(version, "") if brian2cuda imports, else (None, reason)."""
    ok, reason = _b2e._brian2_importable()
    if not ok:
        return None, reason
    try:
        import brian2cuda
    except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
        return None, f"brian2cuda cannot be imported ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    return str(getattr(brian2cuda, "__version__", "unknown")), ""


def curand() -> tuple[str, str] | None:
    """cuRAND's include and library folders (the toolkit's, else pip's ``nvidia-curand``)."""
    return curand_dirs(cache_dir() / "cuda")


@functools.lru_cache(maxsize=4)
def _nvcc_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[-1].strip() if lines else "unknown"


@functools.lru_cache(maxsize=1)
# ---------------------------------------------------------------------------- builds
@dataclass
class ProjectInfo:
    """A generated (and perhaps compiled) Brian2CUDA project.

    Attributes
    ----------
    directory : Path
        The project folder (sources, ``makefile``, ``main`` once compiled).
    digest : str
        The build digest (name of the cached folder).
    codegen_s : float
        Seconds building the Brian2 objects and generating the sources.
    compile_s : float
        Seconds compiling (0 when not compiled).
    compiled : bool
    """

    directory: Path
    digest: str
    codegen_s: float
    compile_s: float
    compiled: bool


class _BuiltOnly(Exception):
    """Raised instead of running the binary when only code generation/compilation is asked."""


def _build_digest(plan: Any, n_trials: int, settings: dict[str, Any]) -> str:
    """Digest of what the generated project depends on, apart from seeds and kicks."""
    arrays = [a for a in (plan.pre, plan.post, plan.w_v, plan.refractory_mask, plan.activated_idx) if a.size]
    shape = {"n_neurons": plan.n_neurons, "n_steps": plan.n_steps, "delay_steps": plan.delay_steps,
             "n_trials": n_trials, "use_schedule": plan.use_schedule, "params": repr(plan.params),
             "poisson_groups": [list(g) for g in plan.poisson_groups],
             **settings}
    return digest_text("brainfly-brian2cuda", digest_arrays(arrays), json.dumps(shape, sort_keys=True, default=str))


@contextmanager
def _cuda_device(b2: Any, directory: str, settings: dict[str, Any]) -> Iterator[None]:
    """Select ``cuda_standalone`` with the engine's preferences; restore Brian2 afterwards."""
    import brian2cuda  # noqa: F401 - registers the cuda_standalone device

    backend = b2.prefs.devices.cuda_standalone.cuda_backend
    saved = {"nvcc": list(backend.extra_compile_args_nvcc), "detect": backend.detect_gpus,
             "gpu_id": backend.gpu_id, "cc": backend.compute_capability,
             "gcc": list(b2.prefs.codegen.cpp.extra_compile_args_gcc),
             "atomics": b2.prefs.devices.cuda_standalone.use_atomics}
    b2.prefs.devices.cuda_standalone.use_atomics = bool(settings["use_atomics"])
    backend.extra_compile_args_nvcc = list(settings["nvcc_args"])
    if not settings["fast_math"]:
        b2.prefs.codegen.cpp.extra_compile_args_gcc = list(settings["cpp_args"])
    if settings["compute_capability"] is not None:
        backend.detect_gpus = False
        backend.compute_capability = float(settings["compute_capability"])
        backend.gpu_id = int(settings["gpu_id"] or 0)
    elif settings["gpu_id"] is not None:
        backend.gpu_id = int(settings["gpu_id"])
    b2.set_device("cuda_standalone", directory=directory, build_on_run=False)
    # cuRAND for make (headers, linking) and for the binary (loading), wherever it is
    saved_env = {k: os.environ.get(k) for k in ("CPATH", "LIBRARY_PATH", "LD_LIBRARY_PATH")}
    os.environ.update({k: v for k, v in curand_env(curand()).items() if k in saved_env})
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        backend.extra_compile_args_nvcc = saved["nvcc"]
        backend.detect_gpus = saved["detect"]
        backend.gpu_id = saved["gpu_id"]
        backend.compute_capability = saved["cc"]
        b2.prefs.codegen.cpp.extra_compile_args_gcc = saved["gcc"]
        b2.prefs.devices.cuda_standalone.use_atomics = saved["atomics"]
        b2.device.reinit()
        b2.device.activate()
        b2.set_device("runtime")


@contextmanager
def _stop_before_run(device: Any, compile: bool) -> Iterator[None]:
    """Make the device build (compiling or not) and stop where the binary would run."""
    build = device.build

    def build_only(*args: Any, **kwargs: Any) -> Any:
        kwargs["compile"] = compile
        kwargs["run"] = False
        return build(*args, **kwargs)

    def no_run(*args: Any, **kwargs: Any) -> None:
        raise _BuiltOnly()

    device.build, device.run = build_only, no_run
    try:
        yield
    finally:
        del device.build, device.run  # back to the class's methods


def _project_dir(root: str | None, digest: str) -> Path:
    base = Path(root) if root else cache_dir() / "brian2cuda"
    return base / digest


def _cuda_chunk(plan: Any, trials: list[int], settings: dict[str, Any], *, directory: Path,
                on_trial: Callable[[], None] | None = None, stop: str | None = None) -> Any:
    """Build (incrementally, in *directory*) and run *trials* of *plan* on ``cuda_standalone``.

    ``stop``: None runs the binary; ``"codegen"`` / ``"compile"`` stop before running.
    Returns the reference's chunk result, or the timings dict when stopped.
    """
    import brian2 as b2
    from filelock import FileLock  # a dependency of brian2

    directory.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with FileLock(str(directory) + ".lock"):
        with _cuda_device(b2, str(directory), settings):
            if stop is None:
                return _b2e._build_and_run(b2, plan, trials, t_start, str(directory), on_trial)
            t0 = time.perf_counter()
            with _stop_before_run(b2.device, compile=stop == "compile"):
                try:
                    _b2e._build_and_run(b2, plan, trials, t_start, str(directory), on_trial)
                except _BuiltOnly:
                    pass
            return {"total_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class Brian2CUDAOptions(_b2e.Brian2Options):
    """Options of ``brian2cuda`` (see :class:`Brian2CUDAEngine`).

    Inherits the Brian2 engines' options; ``use_schedule`` defaults to True here, ``n_jobs``
    must be 1 (one GPU, one binary), ``codegen_target``/``openmp_threads``/``mp_context``
    do not apply.
    """

    use_schedule: bool = True
    compute_capability: float | None = None
    gpu_id: int | None = None
    cache: bool = True
    use_atomics: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check("n_jobs", self.n_jobs in (None, 1), "1 (one binary on one GPU)")
        self._check("compute_capability", self.compute_capability is None
                    or self.is_number(self.compute_capability, 5.0), "a number >= 5.0 (e.g. 9.0 for H100)")
        self._check("gpu_id", self.gpu_id is None or self.is_int(self.gpu_id, 0), "an integer >= 0")
        for key in ("cache", "use_atomics"):
            self._check(key, isinstance(getattr(self, key), bool), "true or false")


class Brian2CUDAEngine(_b2e.Brian2StandaloneEngine):
    """The reference network on Brian2CUDA (``cuda_standalone``), compiled with strict nvcc flags.

    Parameters (options, besides the Brian2 engines')
    -------------------------------------------------
    use_schedule : bool
        Default True: the shared input schedule through a ``SpikeGeneratorGroup`` (exact,
        the same kicks as every engine). False: Brian2CUDA's ``PoissonInput`` (cuRAND;
        statistically equal only).
    compute_capability : float, optional
        Compile for this compute capability without asking the GPU (e.g. 9.0 for H100);
        default: Brian2CUDA detects the GPU.
    gpu_id : int, optional
        The GPU to use (default: Brian2CUDA's choice, the least busy one).
    cache : bool
        Keep the project in ``<cache>/brian2cuda/<digest>`` (or ``build_root``) and build
        incrementally there (default True); False builds in a temporary folder.
    use_atomics : bool
        Brian2CUDA's atomic synaptic effect application (default True, its default).
        Atomic adds onto one ``g`` in one step run in no fixed order, so the float sum can
        differ from Brian2's presynaptic order in the last bit; False asks Brian2CUDA to
        serialise the effect application instead (slower).
    fast_math : bool
        Brian2CUDA's default flags (``-use_fast_math``, and Brian2's host flags): faster,
        not bit-exact. Default False.
    """

    name: ClassVar[str] = "brian2cuda"
    description: ClassVar[str] = "Brian2CUDA (the reference network on cuda_standalone, strict nvcc flags)"
    input_family: ClassVar[str] = ""
    Options: ClassVar[type] = Brian2CUDAOptions  # type: ignore[assignment]
    trials_per_chunk: ClassVar[int] = 64

    # ------------------------------------------------------------ contract
    def is_available(self) -> tuple[bool, str]:
        """Needs brian2cuda, nvcc, a C++ compiler and a CUDA GPU; the reason names what is missing."""
        version, reason = _brian2cuda_version()
        if version is None:
            return False, reason
        if nvcc_path() is None:
            return False, "nvcc (the CUDA compiler) not found: install the CUDA toolkit or set CUDA_PATH"
        if curand() is None:
            return False, ("cuRAND (curand.h, libcurand) not found with nvcc's toolkit: install it with the toolkit "
                           "or `pip install nvidia-curand`")
        ok, reason = _b2e._cxx_works_cached()
        if not ok:
            return False, reason
        gpus, why = cuda_gpus()
        if not gpus:
            return False, why
        return True, ""

    def devices(self) -> dict[str, tuple[bool, str]]:
        """``{"cuda": is_available()}`` (Brian2CUDA runs on CUDA GPUs only)."""
        return {"cuda": self.is_available()}

    def versions(self) -> dict[str, str]:
        """Versions of Brian2, Brian2CUDA and nvcc (when found)."""
        out = super().versions()
        version, _ = _brian2cuda_version()
        if version is not None:
            out["brian2cuda"] = version
        nvcc = nvcc_path()
        if nvcc is not None:
            out["nvcc"] = _nvcc_version(nvcc)
        return out

    # ------------------------------------------------------------ build settings
    def build_settings(self) -> dict[str, Any]:
        """Compiler flags, compute capability and versions that key the build cache.

        Returns
        -------
        dict
            ``nvcc_args``, ``cpp_args``, ``fast_math``, ``compute_capability``, ``gpu_id``
            and ``versions``.
        """
        o = self.options
        # host code beside device code: the C++ standard nvcc compiles with (see STRICT_NVCC_ARGS)
        cpp = ["-std=c++17" if a == "-std=c++11" else a for a in _b2e.cpp_compile_args(self.fast_math)]
        return {"nvcc_args": nvcc_compile_args(self.fast_math),
                "cpp_args": cpp,
                "fast_math": self.fast_math,
                "compute_capability": o.compute_capability,
                "gpu_id": o.gpu_id,
                "use_atomics": o.use_atomics,
                "versions": self.versions()}

    def _run_chunk_here(self, plan: Any, trials: list[int], on_trial: Callable[[], None] | None) -> Any:
        settings = self.build_settings()
        digest = _build_digest(plan, len(trials), settings)
        if self.options.cache:
            directory = _project_dir(self.build_root, digest)
            existed = (directory / "main").exists()
            part = _cuda_chunk(plan, trials, settings, directory=directory, on_trial=on_trial)
        else:
            directory = Path(tempfile.mkdtemp(prefix="brainfly-brian2cuda-", dir=self.build_root))
            existed = False
            try:
                part = _cuda_chunk(plan, trials, settings, directory=directory, on_trial=on_trial)
            finally:
                if not self.keep_build:
                    shutil.rmtree(directory, ignore_errors=True)
        part.timings["cache_hit"] = float(existed)
        part.build_dir = str(directory)
        self._last_builds.append((digest, str(directory), existed))
        return part

    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run *trials* of *sim* in one Brian2CUDA binary (built or found in the cache).

        Returns
        -------
        EngineOutput
            ``record.build_s``: code generation and (incremental) compilation;
            ``record.sim_s``: running the binary; ``details`` hold the nvcc flags, the
            build digest and folder and whether the compiled project was found.
        """
        self._last_builds: list[tuple[str, str, bool]] = []
        out = super().simulate(sim, trials, progress)
        rec = out.record
        rec.device = f"cuda:{self.options.gpu_id or 0}"
        rec.versions = self.versions()
        rec.details.update({
            "codegen_target": "cuda_standalone",
            "nvcc_compile_args": nvcc_compile_args(self.fast_math),
            "cpp_compile_args": _b2e.cpp_compile_args(self.fast_math),
            "poisson_codegen_target": None if rec.details.get("input") == "schedule" else "cuda_standalone",
            "builds": [{"digest": d, "directory": p, "cached_project": hit} for d, p, hit in self._last_builds],
        })
        rec.details.pop("build_dirs", None)
        return out


def generate_project(sim: SimulationInput, trials: list[int], directory: str | Path, *,
                     compile: bool = False, compute_capability: float = 9.0, **options: Any) -> ProjectInfo:
    """Generate (and optionally compile) the Brian2CUDA project of *sim* without a GPU.

    GPU detection is switched off (``detect_gpus = False``) and the project is generated
    for *compute_capability*; nothing is run. Used by the tests on machines without a GPU.

    Parameters
    ----------
    sim : SimulationInput
    trials : list of int
    directory : str or Path
        Where the project is written (created).
    compile : bool
        Also run ``make`` (nvcc) in the project.
    compute_capability : float
        Target architecture (9.0: H100).
    **options
        Engine options (``use_schedule``, ``fast_math``, ...).

    Returns
    -------
    ProjectInfo
    """
    engine = Brian2CUDAEngine(compute_capability=compute_capability, **options)
    version, reason = _brian2cuda_version()
    if version is None:
        raise EngineUnavailable(f"engine 'brian2cuda' cannot generate code: {reason}")
    settings = engine.build_settings()
    built: dict[str, Any] = {}

    def capture(plan: Any, chunk: list[int], on_trial: Any) -> Any:
        built["digest"] = _build_digest(plan, len(chunk), settings)
        t0 = time.perf_counter()
        _cuda_chunk(plan, chunk, settings, directory=Path(directory), stop="codegen")
        built["codegen_s"] = time.perf_counter() - t0
        if compile:
            t1 = time.perf_counter()
            proc = subprocess.run(["make", f"-j{os.cpu_count() or 1}"], cwd=directory, capture_output=True, text=True,
                                  env=curand_env(curand()))
            built["compile_s"] = time.perf_counter() - t1
            if proc.returncode != 0:
                raise RuntimeError(f"make failed in {directory}: {proc.stderr[-2000:]}")
        return _b2e._ChunkResult(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64))

    engine._run_chunk_here = capture  # type: ignore[method-assign]  # this instance only
    _b2e.Brian2Engine.simulate(engine, sim, trials)
    return ProjectInfo(Path(directory), built["digest"], built["codegen_s"], built.get("compile_s", 0.0), compile)


Brian2CUDAOptions.engine = "brian2cuda"
register_engine(Brian2CUDAEngine)
