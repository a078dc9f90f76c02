"""NEST engines (CPU): the paper's model on the NEST simulator (``nest-simulator`` 3.10).

Two engines are defined; ``nest`` is registered:

``nest`` (exact)
    A NEST extension module of brainfly's own, ``brainflymodule`` with the node model
    ``brainfly_lif`` (source: ``brainfly/engines/nest_models/brainflymodule.cpp``), which
    runs Brian2's update statements with Brian2's constants
    (:meth:`~brainfly.params.ModelParams.step_coefficients`), Brian2's order of a step,
    the strict threshold, the reset of v and g, refractoriness that drops input, and the
    Poisson kicks onto v; synaptic inputs of one step are added one at a time in
    ascending presynaptic index, as Brian2 adds them. It gives Brian2's spikes exactly
    for the same input schedule. The module is compiled on first use by
    :func:`build_nest_model` (g++, NEST's headers from the wheel, Boost headers) and cached
    by the digest of its source, the compiler, the flags and the NEST version.
``nest-stock`` (:class:`NestStockEngine`, approximate, not registered)
    NEST's stock ``iaf_psc_exp`` with the parameters mapped by :func:`iaf_psc_exp_params`;
    no compilation. Not spike-for-spike: NEST's threshold is ``V >= V_th``, its synaptic
    current is neither reset at a spike nor frozen during refractoriness, and a Poisson
    kick is a one-step current pulse. The first difference makes neurons that receive
    strong input fire about three times as often as Brian2's (they fire again as soon as
    their refractory period ends), so it does not pass the conformance suite's
    statistical tier and is not in the registry (``docs/engines/nest.md``).

Both build the network from the connectome's CSR arrays with one array-based
``nest.Connect(pre, post, "one_to_one", syn_spec={"weight": w, "delay": t_dly})`` and drive
the activated neurons with the shared input schedule (:meth:`SimulationInput.kicks`:
the experiment's schedule file, or brainfly's own Poisson draws): one generator per
activated neuron. The trials of one call run one after another in one network (no
``ResetKernel`` between trials): each trial starts after a gap in which the spikes still in
flight from the previous trial are dropped, with every neuron reset.

Time: NEST's update of the interval ``[k h, (k+1) h]`` is brainfly step ``k - A`` of a
trial that starts at absolute step ``A``; a spike in it carries NEST's time stamp
``(k + 1) h``. NEST is imported lazily (it prints a banner and takes a while to import);
``PYNEST_QUIET`` is set before the import. Units: volts and steps for ``brainfly_lif``;
mV, ms, pF and pA for ``iaf_psc_exp``.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import importlib.util
import logging
import math
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, ClassVar

import numpy as np

from .._io import atomic_write, digest_text
from ..connectome.cache import cache_dir
from ..errors import EngineUnavailable, ValidationError
from ..params import ModelParams
from .base import Engine, EngineOptions, EngineOutput, ProgressCallback, RunRecord, SimulationInput, register_engine

__all__ = ["NestEngine", "NestStockEngine", "NestOptions", "build_nest_model", "iaf_psc_exp_params",
           "brainfly_lif_params", "kick_current_pa", "MODEL_SOURCE", "NODE_MODEL", "MODULE_NAME",
           "COMPILE_FLAGS", "NEST_PIN"]

log = logging.getLogger(__name__)

#: The NEST release the engines are written and tested against (PyPI ``nest-simulator``).
NEST_PIN = "3.10.0"
#: Source of brainfly's NEST extension module.
MODEL_SOURCE = Path(__file__).with_name("nest_models") / "brainflymodule.cpp"
#: Name of the module (its library is ``<MODULE_NAME>.so``; NEST finds ``<MODULE_NAME>_LTX_module`` in it).
MODULE_NAME = "brainflymodule"
#: The node model the module registers.
NODE_MODEL = "brainfly_lif"
#: Compiler flags: IEEE double arithmetic as numpy does it (no fast-math, no fused
#: multiply-add contraction), so that the update is bit-identical to Brian2's numpy target.
COMPILE_FLAGS = ("-O2", "-std=c++20", "-fPIC", "-shared", "-fopenmp", "-fno-fast-math", "-ffp-contract=off",
                 "-DNDEBUG", "-w")
#: libltdl's header is included by NEST's module_manager.h for its handle type only; where
#: it is not installed (libltdl-dev), this declaration of the opaque handle stands in.
_LTDL_SHIM = ("/* brainfly: stand-in for libltdl's ltdl.h; NEST's module_manager.h needs the handle type only */\n"
              "#ifndef LTDL_H\n#define LTDL_H\ntypedef struct lt__handle* lt_dlhandle;\n#endif\n")

#: ``nest-stock``: time constants (tau) between two trials, for iaf_psc_exp's synaptic
#: current (which NEST does not let one set) to decay from one trial to the next.
STOCK_DECAY_TAUS = 30
_LOCK = threading.RLock()  # one NEST kernel per process: one simulation at a time
_INSTALLED: dict[str, str] = {}  # module path installed in this process -> digest


# ----------------------------------------------------------------------------- NEST itself
def _nest() -> Any:
    """Import NEST quietly (banner off, messages at error level) and return the module."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest

    try:
        nest.verbosity = nest.VerbosityLevel.ERROR
    except AttributeError:  # pragma: no cover - NEST before 3.10
        nest.set_verbosity("M_ERROR")
    return nest


@functools.lru_cache(maxsize=1)
def _nest_importable() -> tuple[bool, str]:
    try:
        found = importlib.util.find_spec("nest") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return False, f"NEST is not installed; pip install nest-simulator=={NEST_PIN} (or brainfly[nest])"
    try:
        nest = _nest()
    except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
        return False, f"NEST cannot be imported ({type(exc).__name__}: {exc}); pip install nest-simulator=={NEST_PIN}"
    if not hasattr(nest, "Connect"):
        return False, "the module 'nest' found is not NEST Simulator's PyNEST; pip install nest-simulator"
    return True, ""


def _nest_version() -> str:
    try:
        from importlib.metadata import version

        return version("nest-simulator")
    except Exception:  # noqa: BLE001 - a NEST built from source has no distribution metadata
        try:
            return str(_nest().__version__)
        except Exception:  # noqa: BLE001
            return ""


def _build_info(nest: Any) -> dict[str, Any]:
    """NEST's build information (``have_mpi``, ``threads_model``, ...)."""
    try:
        return dict(nest.GetKernelStatus("build_info"))
    except Exception:  # noqa: BLE001 - older kernels: no build info
        return {}


# ----------------------------------------------------------------------------- parameters
def brainfly_lif_params(params: ModelParams) -> dict[str, float]:
    """Parameters of the ``brainfly_lif`` node model (volts, plain floats), from *params*.

    The constants are :meth:`ModelParams.step_coefficients`, Brian2's own, unchanged.
    ``frozen_steps`` (steps without update after a spike) is set per neuron by the engine:
    ``max(refractory_steps - 1, 0)``.
    """
    co = params.step_coefficients()
    return {"v_const": co.v_const, "v_decay": co.v_decay, "v_from_g": co.v_from_g, "g_decay": co.g_decay,
            "v_th": co.v_th, "v_rst": co.v_rst, "kick": co.kick, "v": co.v_0, "g": 0.0}


def iaf_psc_exp_params(params: ModelParams) -> dict[str, float]:
    """Parameters of NEST's ``iaf_psc_exp`` (mV, ms, pF) that make it the paper's model.

    Brian2's ``dv/dt = (v_0 - v + g) / t_mbr`` is NEST's ``dV/dt = -(V - E_L)/tau_m +
    I/C_m`` with ``I = g * C_m / t_mbr``: with ``C_m`` = t_mbr in pF (20 pF), a synaptic
    current of 1 pA is a g of 1 mV, so a connection's weight in pA is its w in mV
    (signed count x 0.275). ``tau_syn_ex = tau_syn_in = tau``. ``t_ref`` (steps without
    update, NEST's count) is set per neuron by the engine: (refractory_steps - 1) * dt,
    i.e. 2.1 ms for the paper's 2.2 ms (Brian2 integrates again in step s + 22 after a
    spike in step s, NEST after t_ref/dt frozen steps) and 0 for activated neurons.
    """
    return {"C_m": float(params.t_mbr_ms), "tau_m": float(params.t_mbr_ms), "tau_syn_ex": float(params.tau_ms),
            "tau_syn_in": float(params.tau_ms), "E_L": float(params.v_0_mv), "V_reset": float(params.v_rst_mv),
            "V_th": float(params.v_th_mv), "V_m": float(params.v_0_mv), "I_e": 0.0}


def kick_current_pa(params: ModelParams) -> float:
    """Amplitude (pA) of the one-step current pulse that stands for one Poisson kick in ``iaf_psc_exp``.

    Brian2 adds the kick to v after the threshold test of step s; the next update makes
    it ``kick * v_decay``. NEST's exact propagator adds ``I * P20`` in one step with
    ``P20 = tau_m / C_m * (1 - exp(-dt / tau_m))``; the pulse in the update of step s + 1
    therefore has ``I = kick * v_decay / P20``.
    """
    co = params.step_coefficients()
    p20 = 1.0 - math.exp(-params.dt_ms / params.t_mbr_ms)  # mV / pA, with C_m = tau_m numerically
    return co.kick * 1e3 * co.v_decay / p20


# ----------------------------------------------------------------------------- building the module
def _nest_include_dir() -> Path:
    spec = importlib.util.find_spec("nest")
    if spec is None or spec.origin is None:
        raise EngineUnavailable(f"NEST is not installed; pip install nest-simulator=={NEST_PIN}")
    candidates = [Path(spec.origin).parent / "include" / "nest"]
    prefix = Path(sys.prefix)
    candidates += [prefix / "include" / "nest", Path("/usr/local/include/nest"), Path("/usr/include/nest")]
    for c in candidates:
        if (c / "nest_extension_interface.h").is_file():
            return c
    raise EngineUnavailable("NEST's C++ headers (nest_extension_interface.h) were not found next to the nest "
                            f"package or under {prefix}/include/nest; install a NEST that ships them "
                            f"(pip install nest-simulator=={NEST_PIN})")


def _boost_include_dir() -> Path | None:
    """Folder holding ``boost/`` (NEST 3.10's headers include boost/type_index.hpp)."""
    try:
        import boost_headers  # PyPI boost-headers

        return Path(boost_headers.get_include())
    except Exception:  # noqa: BLE001 - fall back to the system's headers
        pass
    for c in (Path(sys.prefix) / "include", Path("/usr/local/include"), Path("/usr/include")):
        if (c / "boost" / "type_index.hpp").is_file():
            return c
    return None


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@functools.lru_cache(maxsize=4)
def _old_cxx_abi(library: str) -> bool:
    """True if NEST's kernel library was built with the pre-C++11 std::string ABI.

    The PyPI wheels (manylinux2014, devtoolset) are: their symbols spell std::string
    ``Ss``, not ``NSt7__cxx1112basic_string``. A module must be compiled the same way.
    """
    with open(library, "rb") as f:
        data = f.read()
    # a kernel function that takes a std::string, spelled in the old or the new ABI
    probe = b"_ZNK4nest24StructuralPlasticityNode21get_synaptic_elementsE"
    at = data.find(probe + b"Ss")
    if at >= 0:
        return True
    if data.find(probe + b"NSt7__cxx11") >= 0:
        return False
    return b"NSt7__cxx1112basic_string" not in data


def _nest_library() -> Path:
    spec = importlib.util.find_spec("nest")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent
    libs = sorted(folder.glob("nestkernel_api*.so")) + sorted(folder.glob("pynestkernel*.so"))
    if not libs:
        raise EngineUnavailable(f"NEST's kernel library was not found in {folder}")
    return libs[0]


def _build_inputs() -> tuple[list[str], list[str], str]:
    """(compiler command prefix, include flags, description) or raise EngineUnavailable naming the fix."""
    cxx = _compiler()
    if cxx is None:
        raise EngineUnavailable("engine 'nest' compiles its NEST module and needs a C++ compiler (g++ or clang++ on "
                                "PATH, or $CXX); use engine 'nest-stock' (no compilation) otherwise")
    nest_inc = _nest_include_dir()
    boost = _boost_include_dir()
    if boost is None:
        raise EngineUnavailable("NEST's headers include Boost headers, which were not found; "
                                "pip install boost-headers==1.85.0.post1 (or apt install libboost-dev)")
    flags = list(COMPILE_FLAGS)
    if _old_cxx_abi(str(_nest_library())):
        flags.append("-D_GLIBCXX_USE_CXX11_ABI=0")
    includes = [f"-I{nest_inc}", f"-I{boost}"]
    return [cxx, *flags], includes, str(nest_inc)


@functools.lru_cache(maxsize=1)
def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def model_digest() -> str:
    """Digest of everything the module's library depends on (source, compiler, flags, NEST version)."""
    command, includes, _ = _build_inputs()
    return digest_text("brainfly-nest-module", MODEL_SOURCE.read_text(encoding="utf-8"), " ".join(command),
                       _compiler_version(command[0]), _nest_version(), str(sys.version_info[:2]))[:16]


def build_nest_model(force: bool = False) -> tuple[Path, float]:
    """Compile brainfly's NEST module (``brainflymodule``), or find it in the cache.

    The library goes to ``<cache>/nest/<digest>/brainflymodule.so``, keyed by
    :func:`model_digest`; a second call (in any process) finds it there.

    Parameters
    ----------
    force : bool
        Compile again even when the cache holds the library.

    Returns
    -------
    (Path, float)
        The library's path and the seconds spent compiling (0 when cached).

    Raises
    ------
    EngineUnavailable
        Naming what is missing (compiler, NEST's headers, Boost headers) or the compiler's error.
    """
    command, includes, _ = _build_inputs()
    target = cache_dir() / "nest" / model_digest() / f"{MODULE_NAME}.so"
    if target.is_file() and not force:
        return target, 0.0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brainfly-nest-build-") as tmp:
        shim = Path(tmp) / "shim"
        shim.mkdir()
        have_ltdl = any((Path(p) / "ltdl.h").is_file() for p in ("/usr/include", "/usr/local/include",
                                                                  str(Path(sys.prefix) / "include")))
        if not have_ltdl:
            (shim / "ltdl.h").write_text(_LTDL_SHIM, encoding="utf-8")
        out = Path(tmp) / f"{MODULE_NAME}.so"
        cmd = [*command, *includes, f"-I{shim}", str(MODEL_SOURCE), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise EngineUnavailable(f"compiling brainfly's NEST module failed ({' '.join(cmd)}):\n"
                                    f"{proc.stderr.strip()[-2000:]}")
        atomic_write(target, lambda p: shutil.copyfile(out, p))
    return target, time.perf_counter() - t0


def _install_module(nest: Any, library: Path) -> None:
    """Load the module into this process's NEST (once; it survives ResetKernel)."""
    if NODE_MODEL in nest.node_models:
        loaded = next(iter(_INSTALLED), None)
        if loaded is not None and loaded != str(library):
            raise EngineUnavailable(f"another build of {MODULE_NAME} ({loaded}) is already loaded in this process; "
                                    "start a new Python process to use the rebuilt one")
        return
    nest.Install(str(library.with_suffix("")))
    _INSTALLED[str(library)] = library.parent.name


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class NestOptions(EngineOptions):
    """Options of the NEST engines.

    Attributes
    ----------
    n_threads : int
        NEST's ``local_num_threads`` (default 1). The spikes do not depend on it.
    drop_zero_weights : bool
        Leave out connections of weight 0 (silenced ones): they change nothing (``g + 0.0
        == g``) and cost memory and time. Default True.
    """

    n_threads: int = 1
    drop_zero_weights: bool = True

    def __post_init__(self) -> None:
        self._check("n_threads", self.is_int(self.n_threads, 1), "an integer >= 1")
        self._check("drop_zero_weights", isinstance(self.drop_zero_weights, bool), "true or false")


# ----------------------------------------------------------------------------- the engines
class NestEngine(Engine):
    """NEST with brainfly's own node model ``brainfly_lif``: exact (see the module docstring)."""

    name: ClassVar[str] = "nest"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64", "shared_draws"})
    exact: ClassVar[bool] = True
    description: ClassVar[str] = "NEST 3.10 (CPU) with brainfly's compiled node model brainfly_lif (exact)"
    Options: ClassVar[type[EngineOptions]] = NestOptions
    trials_per_chunk: ClassVar[int] = 8
    conditions_per_chunk = 4
    _stock: ClassVar[bool] = False

    def is_available(self) -> tuple[bool, str]:
        """NEST imports; for ``nest``, the module is built or can be (compiler and headers present)."""
        ok, reason = _nest_importable()
        if not ok or self._stock:
            return ok, reason
        version = _nest_version()
        parts = version.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() and (int(parts[0]), int(parts[1])) < (3, 10):
            return False, (f"brainfly's NEST module is written for NEST 3.10's C++ API (found NEST {version}); "
                           f"pip install nest-simulator=={NEST_PIN}, or use nest-stock")
        try:
            _build_inputs()
        except EngineUnavailable as exc:
            return False, str(exc)
        return True, ""

    def versions(self) -> dict[str, str]:
        """NEST's version (when it imports)."""
        ok, _ = _nest_importable()
        return {"nest": _nest_version()} if ok else {}

    def validate(self, sim: SimulationInput) -> None:
        """The base checks, and a synaptic delay NEST can represent (a positive number of steps)."""
        super().validate(sim)
        if sim.delay_steps < 1:
            raise ValidationError(f"engine {self.name!r}: the synaptic delay must be at least one step")

    # ------------------------------------------------------------------ simulate
    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Build the network in NEST once and run *trials* one after another in it.

        Returns
        -------
        EngineOutput
            ``record.build_s``: compiling the module (0 when cached); ``setup_s``: the
            network construction (``details['network_s']``, ``details['connect_s']``) and
            the schedule; ``sim_s``: NEST's Simulate calls.
        """
        t_setup = time.perf_counter()
        build_s, library = 0.0, None
        if not self._stock:
            library, build_s = build_nest_model()
        kicks = sim.kicks(trials)
        with _LOCK:
            nest = _nest()
            t_net = time.perf_counter()
            net = _Network(nest, sim, self.options, library, self._stock)
            network_s = time.perf_counter() - t_net
            setup_s = time.perf_counter() - t_setup - build_s
            out_t, out_i, out_s = [], [], []
            sim_s = 0.0
            net.schedule(kicks, trials)
            for j, k in enumerate(trials):
                idx, step, t_run = net.run_trial(j)
                sim_s += t_run
                out_t.append(np.full(idx.size, k, np.int64))
                out_i.append(idx)
                out_s.append(step)
                if progress is not None:
                    progress(j + 1, len(trials))
            details = net.details()
        details.update({"network_s": network_s, "module": str(library) if library else None,
                        "input": "schedule" if sim.schedule is not None else "shared-draws"})
        trial_a = np.concatenate(out_t) if out_t else np.empty(0, np.int64)
        idx_a = np.concatenate(out_i) if out_i else np.empty(0, np.int64)
        step_a = np.concatenate(out_s) if out_s else np.empty(0, np.int64)
        record = RunRecord(setup_s=setup_s, build_s=build_s, sim_s=sim_s, device="cpu",
                           versions={"nest": _nest_version()}, choices=[], details=details)
        return EngineOutput(trial_a, idx_a, step_a, record)


class NestStockEngine(NestEngine):
    """NEST's stock ``iaf_psc_exp`` with the paper's parameters (approximate; not registered).

    For comparison only: it fails the statistical tier (see the module docstring). Run it
    directly (``NestStockEngine().run(connectome, experiment)``) or register it with
    :func:`~brainfly.engines.base.register_engine`.
    """

    name: ClassVar[str] = "nest-stock"
    exact: ClassVar[bool] = False
    description: ClassVar[str] = "NEST 3.10 (CPU) with the stock iaf_psc_exp (approximate: fails the statistical tier)"
    # no "schedule": it cannot replay a schedule exactly (kicks in a spike step are not dropped)
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poisson", "silencing", "silencing_both", "multi_rate", "float64", "shared_draws"})
    _stock: ClassVar[bool] = True


class NestStockOptions(NestOptions):
    """Options of ``nest-stock`` (the same as ``nest``'s)."""


NestStockEngine.Options = NestStockOptions
NestStockOptions.engine = NestStockEngine.name
register_engine(NestEngine)
# nest-stock is not registered: it fails the conformance suite's statistical tier (its
# synaptic current is not reset at a spike; docs/engines/nest.md). Use it directly, or
# register_engine(NestStockEngine) to compare.


# ----------------------------------------------------------------------------- the network
def _set_by_value(neurons: Any, key: str, values: np.ndarray, convert: Any) -> None:
    """Set a per-neuron integer parameter: one call per distinct value (most neurons share one)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    for j, value in enumerate(uniq.tolist()):
        members = np.flatnonzero(inverse == j)
        target = neurons if uniq.size == 1 else neurons[members.tolist()]
        target.set({key: convert(value)})

class _Network:
    """One NEST network for one SimulationInput; trials run back to back in it."""

    def __init__(self, nest: Any, sim: SimulationInput, options: NestOptions, library: Path | None,
                 stock: bool) -> None:
        self.nest, self.sim, self.stock = nest, sim, stock
        p = sim.params
        self.dt_ms = float(p.dt_ms)
        self.delay = int(sim.delay_steps)
        frozen = np.maximum(np.asarray(sim.refractory_steps, np.int64) - 1, 0)
        self.gap = self.delay
        if stock:
            # iaf_psc_exp's synaptic currents cannot be set: between trials they decay for
            # STOCK_DECAY_TAUS time constants (to below 1e-13 of their value)
            decay = int(math.ceil(STOCK_DECAY_TAUS * p.tau_ms / p.dt_ms))
            self.gap += int(frozen.max() if frozen.size else 0) + 1 + decay
        nest.ResetKernel()
        nest.set(resolution=self.dt_ms, local_num_threads=int(options.n_threads), print_time=False)
        n = sim.n_neurons
        t0 = time.perf_counter()
        if stock:
            self.reset_state = {"V_m": float(p.v_0_mv)}
            self.neurons = nest.Create("iaf_psc_exp", n, params=iaf_psc_exp_params(p))
            _set_by_value(self.neurons, "t_ref", frozen, lambda k: k * self.dt_ms)
            self.v_th_mv = float(p.v_th_mv)
        else:
            assert library is not None
            _install_module(nest, library)
            base = brainfly_lif_params(p)
            self.reset_state = {"v": base["v"], "g": 0.0, "frozen_left": 0}
            self.neurons = nest.Create(NODE_MODEL, n, params=base)
            _set_by_value(self.neurons, "frozen_steps", frozen, int)
        first = int(self.neurons[:1].tolist()[0]) if n else 1  # node ids are contiguous from here
        create_s = time.perf_counter() - t0
        c = sim.connectome
        w = np.asarray(sim.weight_v(), dtype=np.float64)
        pre = np.asarray(c.pre_idx, dtype=np.int64)
        post = np.asarray(c.post_idx, dtype=np.int64)
        if options.drop_zero_weights:
            keep = w != 0.0
            pre, post, w = pre[keep], post[keep], w[keep]
        t1 = time.perf_counter()
        if w.size:
            weight = w * 1e3 if stock else w  # iaf_psc_exp: pA = mV; brainfly_lif: volts
            nest.Connect(pre + first, post + first, "one_to_one",
                         syn_spec={"weight": weight, "delay": np.full(w.size, self.delay * self.dt_ms)})
        connect_s = time.perf_counter() - t1
        act = np.asarray(sim.activated_idx, dtype=np.int64)
        self.position = {int(i): j for j, i in enumerate(act.tolist())}
        self.generators = None
        if act.size:
            if stock:
                self.generators = nest.Create("step_current_generator", act.size)
                nest.Connect(self.generators, self.neurons[act.tolist()], "one_to_one",
                             syn_spec={"delay": self.delay * self.dt_ms})
                self.kick_pa = kick_current_pa(p)
            else:
                self.generators = nest.Create("spike_generator", act.size)
                nest.Connect(self.generators, self.neurons[act.tolist()], "one_to_one",
                             syn_spec={"receptor_type": 1, "weight": 1.0, "delay": self.delay * self.dt_ms})
        t1 = time.perf_counter()
        self.recorder = nest.Create("spike_recorder")
        nest.Connect(self.neurons, self.recorder)
        record_s = time.perf_counter() - t1
        self.first = first
        self.n_connections = int(w.size)
        self.threads = int(options.n_threads)
        self.timings = {"create_s": create_s, "connect_s": connect_s, "connect_recorder_s": record_s}
        self.now = 0  # absolute steps simulated so far

    def details(self) -> dict[str, Any]:
        return {"model": "iaf_psc_exp" if self.stock else NODE_MODEL, "n_connections": self.n_connections,
                "n_threads": self.threads, "gap_steps_between_trials": self.gap,
                "trials_in_one_network": True, **self.timings,
                "mpi": bool(_build_info(self.nest).get("have_mpi", False))}

    def schedule(self, kicks: Any, trials: list[int]) -> None:
        """Fix the start of each trial and give each generator the kicks of its neuron in all
        of them (absolute times), once, before the first trial runs."""
        self.starts = [self.gap + j * (self.sim.n_steps + self.gap) for j in range(len(trials))]
        if self.generators is None:
            return
        n_gen = len(self.generators)
        start_of = dict(zip(trials, self.starts))
        pos = np.array([self.position[int(i)] for i in kicks.idx.tolist()], dtype=np.int64)
        start = np.array([start_of[int(k)] for k in kicks.trial.tolist()], dtype=np.int64)
        # a kick in trial step s lands in NEST's update A + s; sent with the delay D it leaves
        # the generator at stamp A + s + 1 - D (>= 1 as A >= D)
        stamp = start + np.asarray(kicks.step, np.int64) + 1 - self.delay
        order = np.lexsort((stamp, pos))
        pos, stamp = pos[order], stamp[order]
        cuts = np.searchsorted(pos, np.arange(n_gen + 1))
        values = []
        for g in range(n_gen):
            s = stamp[cuts[g]:cuts[g + 1]]
            if self.stock:
                values.append(self._pulses(s))
            else:
                values.append({"spike_times": (s * self.dt_ms).tolist()})
        self.generators.set(values)

    def _pulses(self, stamps: np.ndarray) -> dict[str, list[float]]:
        """Amplitude times/values of one step_current_generator: one pulse per kicked step."""
        if stamps.size == 0:
            return {"amplitude_times": [], "amplitude_values": []}
        uniq, count = np.unique(stamps, return_counts=True)
        times, values = [], []
        for j, (s, k) in enumerate(zip(uniq.tolist(), count.tolist())):
            times.append(s)
            values.append(k * self.kick_pa)
            if j + 1 == uniq.size or uniq[j + 1] != s + 1:
                times.append(s + 1)
                values.append(0.0)
        return {"amplitude_times": (np.asarray(times) * self.dt_ms).tolist(), "amplitude_values": values}

    def run_trial(self, j: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Run the *j*-th trial (of :meth:`schedule`); returns (neuron idx, step) of its spikes
        and the seconds simulated."""
        nest, n_steps = self.nest, self.sim.n_steps
        start = self.starts[j]
        if self.stock and self.now:
            # let the previous trial's spikes in flight arrive and refractoriness end, with no
            # spike in the gap (threshold out of reach), then reset the state
            self.neurons.set(V_th=1e30)
            t0 = time.perf_counter()
            nest.Simulate((start - self.now) * self.dt_ms)
            gap_s = time.perf_counter() - t0
            self.now = start
            self.neurons.set({**self.reset_state, "V_th": self.v_th_mv})
        else:
            gap_s = 0.0
            if not self.stock:
                self.neurons.set({**self.reset_state, "start_step": start})
        self.recorder.n_events = 0
        t0 = time.perf_counter()
        nest.Simulate((start + n_steps - self.now) * self.dt_ms)
        sim_s = time.perf_counter() - t0 + gap_s
        self.now = start + n_steps
        ev = self.recorder.get("events")
        senders = np.asarray(ev["senders"], dtype=np.int64)
        stamps = np.rint(np.asarray(ev["times"], dtype=np.float64) / self.dt_ms).astype(np.int64)
        s = stamps - 1 - start
        keep = (s >= 0) & (s < n_steps)
        out_i, out_s = senders[keep] - self.first, s[keep]
        order = np.lexsort((out_i, out_s))
        return out_i[order], out_s[order], sim_s
