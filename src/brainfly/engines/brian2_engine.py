"""The Brian2 reference engine: the paper's model exactly as its code builds it.

This is the ground truth of brainfly. The network is built as in Shiu et al.'s
``model.py`` (github.com/philshiu/Drosophila_brain_model)::

    dv/dt = (v_0 - v + g) / t_mbr : volt (unless refractory)
    dg/dt = -g / tau               : volt (unless refractory)
    rfc                            : second
    threshold 'v > v_th', reset 'v = v_rst; g = 0 * mV', refractory 'rfc', method 'linear'
    Synapses(on_pre='g += w', delay=t_dly), w = signed count * w_syn
    activated neurons: rfc = 0 and PoissonInput(target_var='v', N=1, weight=f_poi * w_syn)

Two engines are registered:

``brian2``
    Brian2 runtime mode (code generation target ``numpy`` by default, ``cython`` on
    request), trials distributed over worker processes.
``brian2-standalone``
    Brian2 C++ standalone mode: one build (code generation + compilation) per worker,
    all of its trials run inside one binary.

Several trials run *sequentially in one network*: after a trial, every neuron is held
refractory for a short flush (``delay_steps + 2`` steps, so that the synaptic queue
drains with no effect), then ``v``, ``g``, ``lastspike`` and ``rfc`` are reset and the
next trial starts with its own seed. Each trial is therefore exactly a fresh run of the
paper's network; the test suite checks this against single-trial runs.

With an input schedule (an experiment's ``input_schedule``, or the option
``use_schedule=True`` which replays :func:`brainfly.schedule.draw_poisson`), the
activated neurons are driven by a ``SpikeGeneratorGroup`` and ``Synapses(on_pre='v_post
+= kick', delay=0)``. Those kicks land in the ``synapses`` slot of their step, where
``PoissonInput`` applies its own; ``tests/test_brian2_engine.py`` proves that replaying
the recorded kicks of a ``PoissonInput`` gives identical spikes.

Units inside this module: SI (volts, seconds) as plain floats, or Brian2 quantities
where Brian2 is called; steps are integers. Brian2 is imported lazily.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
import functools
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import ValidationError
from ..params import ModelParams
from ..schedule import InputSchedule, trial_seed_sequence
from .base import Engine, EngineOptions, EngineOutput, ProgressCallback, RunRecord, SimulationInput, register_engine

__all__ = ["Brian2Engine", "Brian2StandaloneEngine", "MODEL_EQUATIONS", "THRESHOLD", "RESET",
           "STRICT_CPP_ARGS", "FAST_CPP_ARGS", "brian2_namespace", "cpp_compile_args", "trial_seed",
           "cython_rand_broken"]

log = logging.getLogger(__name__)

#: The paper's neuron model, verbatim (Brian2 equation syntax).
MODEL_EQUATIONS = """
dv/dt = (v_0 - v + g) / t_mbr : volt (unless refractory)
dg/dt = -g / tau              : volt (unless refractory)
rfc                           : second
"""
#: Spike condition (strict: ``v == v_th`` does not spike).
THRESHOLD = "v > v_th"
#: Reset of a spiking neuron.
RESET = "v = v_rst; g = 0 * mV"

_CODEGEN_TARGETS = ("numpy", "cython")
_POISSON_GROUPING = ("contiguous", "per_neuron")
_MODES = ("runtime", "standalone")
#: Refractory period used to freeze every neuron during the flush between two trials.
_FLUSH_RFC_S = 1.0e3
#: Compiler flags (gcc/clang) for cython and C++ standalone code: IEEE float64 as numpy
#: computes it. Brian2's default adds -ffast-math and -march=native, which lets the compiler
#: contract ``a*b + c`` into fused multiply-adds; the update then differs from the numpy
#: target in the last bit for about 1 value in 8 (measured here), and spikes can move.
STRICT_CPP_ARGS = ("-w", "-O3", "-fno-fast-math", "-ffp-contract=off", "-std=c++11")
#: Brian2 2.8's default flags (``fast_math=True``).
FAST_CPP_ARGS = ("-w", "-O3", "-ffast-math", "-fno-finite-math-only", "-march=native", "-std=c++11")


def cpp_compile_args(fast_math: bool = False) -> list[str]:
    """Compiler flags the engine gives Brian2 (``prefs.codegen.cpp.extra_compile_args_gcc``).

    Parameters
    ----------
    fast_math : bool
        False (default): :data:`STRICT_CPP_ARGS`, bit-identical to the numpy target.
        True: Brian2's own defaults, :data:`FAST_CPP_ARGS` (not bit-exact); the engine
        then leaves Brian2's preference as it is.
    """
    return list(FAST_CPP_ARGS if fast_math else STRICT_CPP_ARGS)


def brian2_namespace(params: ModelParams) -> dict[str, Any]:
    """Translate :class:`~brainfly.params.ModelParams` into Brian2 quantities, in one place.

    Parameters
    ----------
    params : ModelParams

    Returns
    -------
    dict
        Names of the paper's ``model.py`` -> Brian2 quantities. The keys ``v_0``,
        ``v_rst``, ``v_th``, ``t_mbr`` and ``tau`` form the NeuronGroup namespace.
    """
    import brian2 as b2

    return {
        "v_0": params.v_0_mv * b2.mV,        # resting potential, mV -> volt
        "v_rst": params.v_rst_mv * b2.mV,    # reset potential, mV -> volt
        "v_th": params.v_th_mv * b2.mV,      # threshold (strict >), mV -> volt
        "t_mbr": params.t_mbr_ms * b2.ms,    # membrane time constant, ms -> second
        "tau": params.tau_ms * b2.ms,        # synaptic (g) time constant, ms -> second
        "t_rfc": params.t_rfc_ms * b2.ms,    # refractory period, ms -> second (0 for activated)
        "t_dly": params.t_dly_ms * b2.ms,    # synaptic delay, ms -> second
        "w_syn": params.w_syn_mv * b2.mV,    # weight of one synapse, mV -> volt
        "f_poi": params.f_poi,               # Poisson kick = f_poi * w_syn (dimensionless factor)
        "dt": params.dt_ms * b2.ms,          # time step, ms -> second
    }


def trial_seed(seed: int, trial: int) -> int:
    """The Brian2 seed (uint32) of one trial, derived from the experiment seed and trial.

    Uses :func:`brainfly.schedule.trial_seed_sequence`, so it depends on (seed, trial) only.

    >>> trial_seed(0, 0) == trial_seed(0, 0) != trial_seed(0, 1)
    True
    """
    return int(trial_seed_sequence(seed, trial).generate_state(1, np.uint32)[0])


# ---------------------------------------------------------------------------- plan
@dataclass
class _Plan:
    """Everything a worker needs, as plain picklable data (no Brian2 objects)."""

    params: ModelParams
    n_neurons: int
    n_steps: int
    delay_steps: int
    pre: np.ndarray            # int32 (n_connections,)
    post: np.ndarray           # int32 (n_connections,)
    w_v: np.ndarray            # float64 volts (n_connections,), silencing applied
    refractory_mask: np.ndarray  # bool (n_neurons,): True -> rfc = t_rfc, False -> rfc = 0
    poisson_groups: list[tuple[int, int, float]]   # (start, stop, rate_hz): PoissonInput on neu[start:stop]
    activated_idx: np.ndarray  # int64, neurons driven by the schedule
    kicks: dict[int, tuple[np.ndarray, np.ndarray]]  # trial -> (idx, step), schedule mode only
    seeds: dict[int, int]
    mode: str                  # "runtime" | "standalone"
    codegen_target: str
    use_schedule: bool
    build_root: str | None
    openmp_threads: int
    keep_build: bool
    fast_math: bool

    @property
    def flush_steps(self) -> int:
        return self.delay_steps + 2


@dataclass
class _ChunkResult:
    trial: np.ndarray
    idx: np.ndarray
    step: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    build_dir: str | None = None


def _poisson_groups(idx: np.ndarray, rate: np.ndarray, grouping: str) -> list[tuple[int, int, float]]:
    """Split activated neurons into PoissonInput targets.

    ``per_neuron``: one PoissonInput per neuron, as the paper. ``contiguous``: runs of
    consecutive indices with equal rate share one PoissonInput on the subgroup
    ``neu[start:stop]``; each neuron still gets an independent Bernoulli(rate * dt) kick
    per step, so the model is the same (the random stream is consumed differently).
    """
    groups: list[tuple[int, int, float]] = []
    for i, r in zip(idx.tolist(), rate.tolist()):
        if r <= 0:
            continue
        if grouping == "contiguous" and groups and groups[-1][1] == i and groups[-1][2] == r:
            groups[-1] = (groups[-1][0], i + 1, r)
        else:
            groups.append((i, i + 1, r))
    return groups


def _layered_kicks(idx: np.ndarray, step: np.ndarray, position: dict[int, int], n_act: int
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Generator indices for kicks: repeated (neuron, step) rows go to further layers.

    Returns (generator_index, step, n_layers); generator index = layer * n_act + position.
    """
    if idx.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 1
    pos = np.array([position[int(i)] for i in idx.tolist()], dtype=np.int64)
    order = np.lexsort((pos, step))
    pos, step = pos[order], step[order]
    key = step * n_act + pos
    new = np.ones(key.size, dtype=bool)
    new[1:] = key[1:] != key[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(key.size), 0))
    layer = np.arange(key.size) - start
    return layer * n_act + pos, step, int(layer.max()) + 1


# ---------------------------------------------------------------------------- worker
def _cxx_works() -> tuple[bool, str]:
    """Try to compile and link a trivial C++ program with the compiler Brian2 would use."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return False, "no C++ compiler found (c++, g++ or clang++ on PATH)"
    if shutil.which("make") is None:
        return False, "Brian2's C++ standalone mode needs 'make' on PATH"
    with tempfile.TemporaryDirectory(prefix="brainfly-cxx-") as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as fh:
            fh.write("#include <vector>\nint main(){std::vector<double> v(3); return (int)v.size() - 3;}\n")
        try:
            proc = subprocess.run([cxx, src, "-o", os.path.join(tmp, "probe")], capture_output=True,
                                  text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"C++ compiler {cxx} failed to run ({exc})"
        if proc.returncode != 0:
            return False, f"C++ compiler {cxx} cannot build a test program: {proc.stderr.strip()[:300]}"
    return True, ""


def _run_chunk(plan: _Plan, trials: list[int], on_trial: Callable[[], None] | None = None) -> _ChunkResult:
    """Build the paper's network once and run *trials* sequentially in it.

    Brian2's global settings touched here (device, code generation target, OpenMP
    threads) are restored afterwards.
    """
    import brian2 as b2

    t_start = time.perf_counter()
    standalone = plan.mode == "standalone"
    build_dir = None
    old_target = b2.prefs.codegen.target
    old_threads = b2.prefs.devices.cpp_standalone.openmp_threads
    old_args = list(b2.prefs.codegen.cpp.extra_compile_args_gcc)
    if not plan.fast_math:
        b2.prefs.codegen.cpp.extra_compile_args_gcc = cpp_compile_args(False)
    if standalone:
        root = plan.build_root or None
        build_dir = tempfile.mkdtemp(prefix="brainfly-brian2-standalone-", dir=root)
        b2.set_device("cpp_standalone", directory=build_dir, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = plan.openmp_threads
    else:
        b2.set_device("runtime")
        b2.prefs.codegen.target = plan.codegen_target
    try:
        return _build_and_run(b2, plan, trials, t_start, build_dir, on_trial)
    finally:
        b2.prefs.codegen.target = old_target
        b2.prefs.devices.cpp_standalone.openmp_threads = old_threads
        b2.prefs.codegen.cpp.extra_compile_args_gcc = old_args
        if standalone:
            b2.device.reinit()
            b2.device.activate()
            b2.set_device("runtime")
            if build_dir is not None and not plan.keep_build:
                shutil.rmtree(build_dir, ignore_errors=True)


def _build_and_run(b2: Any, plan: _Plan, trials: list[int], t_start: float,
                   build_dir: str | None, on_trial: Callable[[], None] | None = None) -> _ChunkResult:
    ns = brian2_namespace(plan.params)
    dt = ns["dt"]
    dt_s = plan.params.dt_s
    n_steps, flush = plan.n_steps, plan.flush_steps
    standalone = plan.mode == "standalone"

    neu = b2.NeuronGroup(
        plan.n_neurons, model=MODEL_EQUATIONS, method="linear", threshold=THRESHOLD, reset=RESET,
        refractory="rfc", dt=dt, name="neurons",
        namespace={k: ns[k] for k in ("v_0", "v_rst", "v_th", "t_mbr", "tau")},
    )
    neu.v = ns["v_0"]
    neu.g = 0 * b2.mV
    rfc_s = np.where(plan.refractory_mask, float(ns["t_rfc"]), 0.0)
    neu.rfc = rfc_s * b2.second
    objects: list[Any] = [neu]
    if plan.pre.size:
        syn = b2.Synapses(neu, neu, "w : volt", on_pre="g += w", delay=ns["t_dly"], name="synapses")
        syn.connect(i=plan.pre, j=plan.post)
        syn.w = plan.w_v * b2.volt
        objects.append(syn)
    kick = ns["w_syn"] * ns["f_poi"]  # the paper's weight=params['w_syn']*params['f_poi']

    pois: list[Any] = []
    gen = None
    trial_offsets = {trial: j * (n_steps + flush) for j, trial in enumerate(trials)}
    if plan.use_schedule:
        n_act = int(plan.activated_idx.size)
        if n_act:
            position = {int(i): p for p, i in enumerate(plan.activated_idx.tolist())}
            gi, gs, layers = [], [], 1
            for trial in trials:
                idx, step = plan.kicks.get(trial, (np.empty(0, np.int64), np.empty(0, np.int64)))
                g_idx, g_step, n_layers = _layered_kicks(np.asarray(idx), np.asarray(step, np.int64),
                                                         position, n_act)
                gi.append(g_idx)
                gs.append(g_step + trial_offsets[trial])
                layers = max(layers, n_layers)
            g_idx_all = np.concatenate(gi)
            g_step_all = np.concatenate(gs)
            gen = b2.SpikeGeneratorGroup(n_act * layers, g_idx_all, g_step_all * dt, dt=dt, name="kicks")
            # Same expression as PoissonInput's 'v += binomial()*<repr(weight)>' (one kick = 1 * weight).
            kick_syn = b2.Synapses(gen, neu, on_pre=f"v_post += 1*{kick!r}", delay=0 * b2.ms, name="kick_synapses")
            kick_syn.connect(i=np.arange(n_act * layers), j=np.tile(plan.activated_idx, layers))
            objects += [gen, kick_syn]
    else:
        for start, stop, rate in plan.poisson_groups:
            pois.append(b2.PoissonInput(target=neu[start:stop], target_var="v", N=1, rate=rate * b2.Hz,
                                        weight=kick))
        if plan.mode == "runtime" and plan.codegen_target == "cython" and cython_rand_broken():
            # Brian2 2.8's cython rand() fails with numpy 2 (see cython_rand_broken); the
            # PoissonInputs alone run as numpy code objects (same model, numpy's random stream).
            from brian2.codegen.runtime.numpy_rt import NumpyCodeObject

            for p in pois:
                p.codeobj_class = NumpyCodeObject
        objects += pois
    mon = b2.SpikeMonitor(neu, name="spikes")
    objects.append(mon)
    net = b2.Network(*objects)
    t_objects = time.perf_counter()

    refractory_default = rfc_s * b2.second
    for j, trial in enumerate(trials):
        if j > 0:
            # Flush: freeze every neuron (refractory, so g += w and v += kick are dropped),
            # let the synaptic queue drain, then reset the state of a fresh network.
            t_flush = (trial_offsets[trials[j - 1]] + n_steps) * dt_s
            neu.rfc = _FLUSH_RFC_S * b2.second
            neu.lastspike = t_flush * b2.second
            for p in pois:
                p.active = False
            net.run(flush * dt)
            neu.v = ns["v_0"]
            neu.g = 0 * b2.mV
            neu.rfc = refractory_default
            neu.lastspike = -1e4 * b2.second
            neu.not_refractory = True
            for p in pois:
                p.active = True
        b2.seed(plan.seeds[trial])
        net.run(n_steps * dt)
        if on_trial is not None and not standalone:
            on_trial()

    timings: dict[str, float] = {}
    t_setup_done = time.perf_counter()
    if standalone:
        b2.device.build(directory=build_dir, compile=True, run=False, with_output=False)
        t_built = time.perf_counter()
        b2.device.run(directory=build_dir, with_output=False)
        t_ran = time.perf_counter()
        timings = {"setup_s": t_setup_done - t_start, "build_s": t_built - t_setup_done, "sim_s": t_ran - t_built}
    else:
        # Runtime mode: code generation (and cython compilation) happens inside the first
        # run, so it is counted in sim_s; setup_s is the construction of the objects.
        timings = {"setup_s": t_objects - t_start, "build_s": 0.0, "sim_s": t_setup_done - t_objects}

    # Collect spikes: step from the monitor's time, minus the trial's offset.
    t_s = np.asarray(mon.t_[:], dtype=np.float64)
    i = np.asarray(mon.i[:], dtype=np.int64)
    global_step = np.rint(t_s / dt_s).astype(np.int64)
    out_t, out_i, out_s = [], [], []
    for trial in trials:
        lo = trial_offsets[trial]
        keep = (global_step >= lo) & (global_step < lo + n_steps)
        out_t.append(np.full(int(keep.sum()), trial, np.int32))
        out_i.append(i[keep])
        out_s.append(global_step[keep] - lo)
    return _ChunkResult(np.concatenate(out_t), np.concatenate(out_i), np.concatenate(out_s), timings,
                        build_dir if plan.keep_build else None)


#: Plan handed to forked workers by inheritance (avoids pickling the connectivity).
_FORK_PLAN: _Plan | None = None


def _worker(plan: _Plan | None, trials: list[int]) -> _ChunkResult:
    """Worker entry point (top-level so that it pickles); ``plan=None``: the inherited one."""
    if plan is None:
        plan = _FORK_PLAN
        if plan is None:  # pragma: no cover - only if the fork context was not used
            raise RuntimeError("brian2 engine worker: no plan was inherited from the parent process")
    return _run_chunk(plan, trials)


# ---------------------------------------------------------------------------- engines
class Brian2Engine(Engine):
    """The Brian2 reference engine (runtime mode by default).

    Parameters
    ----------
    mode : {"runtime", "standalone"}
        Brian2 runtime mode (default) or C++ standalone mode.
    codegen_target : {"numpy", "cython"}
        Runtime code generation target. ``numpy`` (default) needs no compilation and is
        the fastest for small networks and short runs here; ``cython`` compiles each code
        object once (cached by Brian2) and pays off for large networks. With Brian2 2.8
        and numpy 2 the PoissonInputs then run as numpy code (see
        :func:`cython_rand_broken`), recorded in ``meta['poisson_codegen_target']``.
    n_jobs : int, optional
        Worker processes; trials are split among them. Default ``min(n_trials,
        os.cpu_count())`` in runtime mode, 1 in standalone mode (each worker compiles
        its own binary). ``1`` runs in the calling process.
    use_schedule : bool
        Drive the activated neurons with explicit kicks (:meth:`SimulationInput.kicks`,
        i.e. :func:`~brainfly.schedule.draw_poisson` when the experiment has no schedule
        file) instead of Brian2's ``PoissonInput``. Default False.
    poisson_grouping : {"contiguous", "per_neuron"}
        ``per_neuron``: one PoissonInput per activated neuron, as the paper.
        ``contiguous`` (default): consecutive neurons of equal rate share one
        PoissonInput on a subgroup (same model; different random stream).
    build_root : str, optional
        Folder in which standalone builds get their fresh temporary directory.
    keep_build : bool
        Keep the standalone build directory (path in ``meta['build_dirs']``).
    openmp_threads : int
        OpenMP threads of the standalone binary (default 0: single-threaded).
    fast_math : bool
        Compile cython/standalone code with Brian2's default flags (``-ffast-math
        -march=native``), which are faster but not bit-identical to the numpy target.
        Default False: strict IEEE flags (:data:`STRICT_CPP_ARGS`), so that every mode of
        the reference gives the same spikes.
    mp_context : {"fork", "spawn", "forkserver"}
        Start method of the worker processes: ``fork`` where the platform has it (no
        ``if __name__ == "__main__"`` guard needed in user scripts), else ``spawn``.
    """

    name: ClassVar[str] = "brian2"
    # runtime and standalone draw the same PoissonInput numbers for the same seed (the C++
    # generator seeded alike gives numpy's numbers; tests/test_brian2_engine.py, slow)
    input_family: ClassVar[str] = "brian2"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64"})
    exact: ClassVar[bool] = True
    description: ClassVar[str] = "Brian2 (reference; runtime mode, numpy/cython code generation)"
    _fixed_mode: ClassVar[str | None] = None
    Options: ClassVar[type[EngineOptions]] = None  # type: ignore[assignment]  # set below the class
    conditions_per_chunk = 2  # a condition costs seconds to minutes: write each few as they finish

    def __init__(self, options: EngineOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        o = self.options
        if self._fixed_mode is not None and o.mode not in (None, self._fixed_mode):
            raise ValidationError(f"engine {self.name!r}: option mode is fixed to {self._fixed_mode!r} "
                                  f"(got {o.mode!r})")
        self.mode: str = self._fixed_mode or o.mode or "runtime"
        self.codegen_target: str = o.codegen_target
        self.poisson_grouping: str = o.poisson_grouping
        self.n_jobs: int | None = o.n_jobs
        self.use_schedule: bool = bool(o.use_schedule)
        self.build_root: str | None = o.build_root
        self.keep_build: bool = bool(o.keep_build)
        self.openmp_threads: int = o.openmp_threads
        self.mp_context: str = o.mp_context or _default_mp_context()
        self.fast_math: bool = bool(o.fast_math)

    def _run_chunk_here(self, plan: _Plan, trials: list[int], on_trial: Callable[[], None] | None) -> _ChunkResult:
        """Run one chunk of trials in this process (hook: Brian2CUDA runs it on its own device)."""
        return _run_chunk(plan, trials, on_trial)

    # ------------------------------------------------------------ contract
    def is_available(self) -> tuple[bool, str]:
        """Probe by importing brian2 (and, in standalone mode, by compiling a C++ test program)."""
        ok, reason = _brian2_importable()
        if ok and self.mode == "standalone":
            return _cxx_works_cached()
        return ok, reason

    def versions(self) -> dict[str, str]:
        """Brian2's version (when it imports)."""
        try:
            import brian2
        except Exception:  # noqa: BLE001 - unavailable: nothing to record
            return {}
        return {"brian2": str(brian2.__version__)}

    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run *trials* of *sim* in Brian2 and return their spikes.

        Parameters
        ----------
        sim : SimulationInput
        trials : list of int
        progress : callable, optional
            Called as ``progress(done, total)`` when a group of trials finishes.

        Returns
        -------
        EngineOutput
            The record's ``details`` hold the code generation target, the timings summed
            over workers (``timings_cpu``; the record's own timings are the wall time of
            the slowest worker), the Brian2 seed of each trial and how trials were grouped.
        """
        import brian2

        use_schedule = self.use_schedule or sim.schedule is not None
        seeds = {int(k): trial_seed(sim.experiment.seed, int(k)) for k in trials}
        kicks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if use_schedule:
            sched: InputSchedule = sim.kicks(trials)
            bounds = np.searchsorted(sched.trial, [[k, k + 1] for k in trials])
            for k, (lo, hi) in zip(trials, bounds):
                kicks[int(k)] = (sched.idx[lo:hi].astype(np.int64), sched.step[lo:hi].astype(np.int64))
        c = sim.connectome
        plan = _Plan(
            params=sim.params,
            n_neurons=sim.n_neurons,
            n_steps=sim.n_steps,
            delay_steps=sim.delay_steps,
            pre=c.pre_idx.astype(np.int32),
            post=np.asarray(c.post_idx, dtype=np.int32),
            w_v=np.asarray(sim.weight_v(), dtype=np.float64),
            refractory_mask=np.asarray(sim.refractory_steps) > 0,
            poisson_groups=[] if use_schedule else _poisson_groups(sim.activated_idx, sim.activated_rate_hz,
                                                                   self.poisson_grouping),
            activated_idx=np.asarray(sim.activated_idx, dtype=np.int64),
            kicks=kicks,
            seeds=seeds,
            mode=self.mode,
            codegen_target=self.codegen_target,
            use_schedule=use_schedule,
            build_root=self.build_root,
            openmp_threads=self.openmp_threads,
            keep_build=self.keep_build,
            fast_math=self.fast_math,
        )
        if self.n_jobs is not None:
            n_jobs = self.n_jobs
        elif self.mode == "standalone":
            n_jobs = 1
        else:
            n_jobs = min(len(trials), os.cpu_count() or 1)
        n_jobs = max(1, min(n_jobs, len(trials))) if trials else 1
        chunks = [trials[j::n_jobs] for j in range(n_jobs)] if trials else []
        t0 = time.perf_counter()
        parts: list[_ChunkResult] = []
        if n_jobs == 1:
            done = 0

            def on_trial() -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, len(trials))

            for chunk in chunks:
                parts.append(self._run_chunk_here(plan, chunk, on_trial))
                if done != len(trials) and progress is not None:  # standalone: all at the end
                    done = len(trials)
                    progress(done, len(trials))
        else:
            global _FORK_PLAN
            ctx = multiprocessing.get_context(self.mp_context)
            inherit = self.mp_context == "fork"
            _FORK_PLAN = plan if inherit else None
            try:
                with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
                    futures = [pool.submit(_worker, None if inherit else plan, chunk) for chunk in chunks]
                    done = 0
                    for fut, chunk in zip(futures, chunks):
                        parts.append(fut.result())
                        done += len(chunk)
                        if progress is not None:
                            progress(done, len(trials))
            finally:
                _FORK_PLAN = None
        wall = time.perf_counter() - t0
        # workers run side by side: each phase costs the wall time of its slowest worker
        # (the sum over workers, i.e. CPU time, is kept as *_cpu_s)
        timings = {key: float(max((p.timings.get(key, 0.0) for p in parts), default=0.0))
                   for key in ("setup_s", "build_s", "sim_s")}
        timings.update({key.replace("_s", "_cpu_s"): float(sum(p.timings.get(key, 0.0) for p in parts))
                        for key in ("setup_s", "build_s", "sim_s")})
        timings["wall_s"] = wall
        details: dict[str, Any] = {
            "n_jobs": n_jobs,
            "cpp_compile_args": (cpp_compile_args(self.fast_math)
                                 if self.mode == "standalone" or self.codegen_target == "cython" else None),
            "codegen_target": self.codegen_target if self.mode == "runtime" else "cpp_standalone",
            "timings_cpu": {k: v for k, v in timings.items() if k.endswith("_cpu_s")},
            "timings_wall_s": wall,
            "seeds": {str(k): v for k, v in seeds.items()},
            "input": "schedule" if use_schedule else "PoissonInput",
            "n_poisson_inputs": len(plan.poisson_groups),
            "poisson_codegen_target": (None if use_schedule else
                                       "cpp_standalone" if self.mode == "standalone" else
                                       "numpy" if self.codegen_target == "numpy" or cython_rand_broken()
                                       else "cython"),
            "trial_chunks": chunks,
            "flush_steps_between_trials": plan.flush_steps,
        }
        choices = []
        if details["poisson_codegen_target"] == "numpy" and self.codegen_target == "cython":
            choices.append("PoissonInputs run as numpy code: Brian2 2.8's cython rand() fails with numpy 2")
        if self.keep_build:
            details["build_dirs"] = [p.build_dir for p in parts]
        if parts:
            trial_a = np.concatenate([p.trial for p in parts])
            idx_a = np.concatenate([p.idx for p in parts])
            step_a = np.concatenate([p.step for p in parts])
        else:
            trial_a = idx_a = step_a = np.empty(0, np.int64)
        record = RunRecord(setup_s=timings["setup_s"], build_s=timings["build_s"], sim_s=timings["sim_s"],
                           device="cpu", versions={"brian2": str(brian2.__version__)}, choices=choices,
                           details=details)
        return EngineOutput(trial_a, idx_a, step_a, record)

class Brian2StandaloneEngine(Brian2Engine):
    """The Brian2 reference engine in C++ standalone mode (``Brian2Engine(mode="standalone")``).

    One build (code generation and compilation in a fresh temporary directory) per
    worker process; all trials of a worker run inside one binary. ``meta['timings']``
    separates ``setup_s`` (building the Python objects), ``build_s`` (code generation
    and compilation) and ``sim_s`` (running the binary).
    """

    name: ClassVar[str] = "brian2-standalone"
    description: ClassVar[str] = "Brian2 (reference; C++ standalone mode)"
    _fixed_mode: ClassVar[str | None] = "standalone"


@dataclass(frozen=True)
class Brian2Options(EngineOptions):
    """Options of the Brian2 engines (see :class:`Brian2Engine`)."""

    mode: str | None = None
    codegen_target: str = "numpy"
    n_jobs: int | None = None
    use_schedule: bool = False
    poisson_grouping: str = "contiguous"
    build_root: str | None = None
    keep_build: bool = False
    openmp_threads: int = 0
    mp_context: str | None = None
    fast_math: bool = False

    def __post_init__(self) -> None:
        self._check("mode", self.mode is None or self.mode in _MODES, f"one of {_MODES}")
        self._check("codegen_target", self.codegen_target in _CODEGEN_TARGETS, f"one of {_CODEGEN_TARGETS}")
        self._check("poisson_grouping", self.poisson_grouping in _POISSON_GROUPING, f"one of {_POISSON_GROUPING}")
        self._check("n_jobs", self.n_jobs is None or self.is_int(self.n_jobs, 1), "an integer >= 1")
        self._check("openmp_threads", self.is_int(self.openmp_threads, 0), "an integer >= 0")
        methods = multiprocessing.get_all_start_methods()
        self._check("mp_context", self.mp_context is None or self.mp_context in methods, f"one of {methods}")
        for key in ("use_schedule", "keep_build", "fast_math"):
            self._check(key, isinstance(getattr(self, key), bool), "true or false")


class Brian2StandaloneOptions(Brian2Options):
    """Options of ``brian2-standalone`` (the same as Brian2's; ``mode`` is fixed)."""


Brian2Engine.Options = Brian2Options
Brian2StandaloneEngine.Options = Brian2StandaloneOptions
register_engine(Brian2Engine)
register_engine(Brian2StandaloneEngine)


def _default_mp_context() -> str:
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@functools.lru_cache(maxsize=1)
def cython_rand_broken() -> bool:
    """True if Brian2's cython ``rand()`` cannot run with this numpy.

    Brian2 2.8's cython implementation of ``rand()`` (used by PoissonInput's binomial
    draw) refers to ``numpy.NPY_OWNDATA``, which numpy 2 removed: the first random number
    raises ``AttributeError: module 'numpy' has no attribute 'NPY_OWNDATA'``. The engine
    then runs the PoissonInputs alone as numpy code objects and records that in
    ``meta['poisson_codegen_target']``.
    """
    try:
        from brian2.codegen.generators import cython_generator
    except Exception:  # noqa: BLE001 - no cython generator, nothing to work around
        return False
    return "_numpy.NPY_OWNDATA" in getattr(cython_generator, "rand_code", "") and not hasattr(np, "NPY_OWNDATA")


@functools.lru_cache(maxsize=1)
def _brian2_importable() -> tuple[bool, str]:
    try:
        import brian2  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
        return False, f"brian2 cannot be imported ({type(exc).__name__}: {exc}); pip install brian2==2.8.0"
    return True, ""


@functools.lru_cache(maxsize=1)
def _cxx_works_cached() -> tuple[bool, str]:
    return _cxx_works()
