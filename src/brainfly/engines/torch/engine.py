"""Batched PyTorch engine (``--engine torch``): many trials and conditions at once, CPU or CUDA.

Units inside this package: volts (state ``v``, ``g``, weights), integer steps (time).

Every trial is a *row* of a batch, and a row carries its own condition (stimuli, rates,
silenced neurons, input), so :meth:`TorchEngine.run_many` runs a whole screen of
conditions as one batch. Two modes:

- the **exact mode** (the default: CPU, float64, sequential delivery, the shared input
  schedule) gives Brian2's spikes bit for bit;
- the **fast mode** (the default on CUDA: float32, dense delivery, a fused Triton kernel
  per block of ``delay_steps`` steps, sync-free gathers in a CUDA graph) matches Brian2
  statistically.

The package: this module (the engine, its options), :mod:`.network` (the connectome on
the device, cached by content digest), :mod:`.runner` (one batch simulated block by
block: the algorithm is described there) and :mod:`.triton_kernel` (the fused kernel).
PyTorch is imported when the engine is used, not when this module is imported: without
it, :meth:`TorchEngine.is_available` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata
import time
from typing import Any, ClassVar, Sequence

import numpy as np

from ...errors import UnsupportedFeature, ValidationError
from ...experiment import Experiment
from ...results import SpikeResult
from ..base import Engine, EngineOptions, EngineOutput, ProgressCallback, RunRecord, SimulationInput, register_engine
from .network import DeviceNetwork, NetworkKey
from .runner import BatchRunner, LearnedCapacities, Row, RunConfig

__all__ = ["TorchOptions", "TorchEngine"]

_DTYPES = ("float64", "float32")
_DELIVERIES = ("sequential", "dense")
_KICKS = ("schedule", "device")
#: Flags resolved per device when left at None.
_FLAGS = ("cuda_graph", "compile", "fused_kernel", "sync_free")


@dataclass(frozen=True)
class TorchOptions(EngineOptions):
    """Options of the torch engine; ``None`` means the default for the device.

    Parameters
    ----------
    device : str
        ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
    dtype : {"float64", "float32"}, optional
        ``float64`` is the exact mode (the default on CPU); ``float32`` the fast mode
        (the default on CUDA).
    batch_size : int, optional
        Most rows (trials) simulated together; default 32 on CPU, 256 on CUDA.
    delivery : {"sequential", "dense"}, optional
        How synaptic events reach ``g`` (see :mod:`brainfly.engines.torch.runner`).
        Default ``sequential`` on CPU in float64 (exact), else ``dense``.
    kicks : {"schedule", "device"}
        ``schedule`` (default): the shared Poisson draws / explicit schedule, identical
        for every engine. ``device``: own Bernoulli draws on the device (float32 only).
    cuda_graph : bool, optional
        Capture the steps of one block in a CUDA graph (default True on CUDA with dense
        delivery; ignored on CPU).
    compile : bool, optional
        ``torch.compile`` one step into one fused kernel (float32 dense mode only). Default
        True on CUDA in float32, else False. The first run in a process compiles (tens of
        seconds; inductor caches on disk); if compiling fails, the step runs eagerly: a
        choice recorded in the result (``meta['choices']``, ``meta['compile_error']``).
    fused_kernel : bool, optional
        The steps of a block = one hand-written Triton kernel (update, threshold,
        delivery, kicks, reset, counter, spike list; float32 dense mode only). Default
        True on CUDA in float32. It is checked against the eager step on a random state
        when a batch starts; if Triton is missing or the check fails, the step falls back
        to ``torch.compile`` (or eager kernels), recorded in ``meta['choices']`` and
        ``meta['fused_kernel_error']``. On CPU it runs only under Triton's interpreter
        (``TRITON_INTERPRET=1``, tests).
    sync_free : bool, optional
        Fixed-capacity gathers without host synchronisation inside the loop, one
        synchronisation per chunk. Default True on CUDA with dense delivery, else False.
    spike_capacity, synapse_capacity : int, optional
        Per-block capacities of the sync-free gather (spikes, synaptic events); default
        from the batch size and the mean out-degree. An overflow reruns the batch with 4x
        the capacity (``meta['capacity_restarts']``).
    chunk_steps : int
        Steps per chunk of kicks built on the host (rounded to whole blocks), default 2000.
    threads : int, optional
        ``torch.set_num_threads`` on CPU.

    Raises
    ------
    ValidationError
        For a value out of range or a combination that cannot work (``kicks='device'`` in
        float64, ``compile``/``fused_kernel`` outside the float32 dense mode,
        ``cuda_graph``/``sync_free`` without dense delivery).
    """

    engine: ClassVar[str] = "torch"

    device: str = "cpu"
    dtype: str | None = None
    batch_size: int | None = None
    delivery: str | None = None
    kicks: str = "schedule"
    cuda_graph: bool | None = None
    compile: bool | None = None
    fused_kernel: bool | None = None
    sync_free: bool | None = None
    spike_capacity: int | None = None
    synapse_capacity: int | None = None
    chunk_steps: int = 2000
    threads: int | None = None

    def __post_init__(self) -> None:
        dev = self.device
        self._check("device", isinstance(dev, str) and (dev in ("cpu", "cuda") or (
            dev.startswith("cuda:") and dev[5:].isdigit())), "'cpu', 'cuda' or 'cuda:N'")
        self._check("dtype", self.dtype is None or self.dtype in _DTYPES, f"None or one of {list(_DTYPES)}")
        self._check("delivery", self.delivery is None or self.delivery in _DELIVERIES,
                    f"None or one of {list(_DELIVERIES)}")
        self._check("kicks", self.kicks in _KICKS, f"one of {list(_KICKS)}")
        for key in ("batch_size", "spike_capacity", "synapse_capacity", "threads"):
            value = getattr(self, key)
            self._check(key, value is None or self.is_int(value, 1), "an integer >= 1 or None")
        self._check("chunk_steps", self.is_int(self.chunk_steps, 1), "an integer >= 1")
        for key in _FLAGS:
            self._check(key, getattr(self, key) in (None, True, False), "True, False or None")
        cfg = self.resolve()
        if cfg.kicks == "device" and cfg.dtype == "float64":
            self._refuse("kicks", "kicks='device' (own Poisson draws) is the float32 fast mode; float64 runs use "
                         "the shared schedule (kicks='schedule') so they stay comparable")
        fast = cfg.delivery == "dense" and cfg.dtype == "float32"
        if cfg.cuda_graph and cfg.delivery != "dense":
            self._refuse("cuda_graph", "cuda_graph=True needs delivery='dense' (static shapes)")
        if cfg.compile and not fast:
            self._refuse("compile", "compile=True is for the float32 fast mode with dense delivery (the compiler "
                         "may fuse multiply-adds, which would break the float64 exact mode)")
        if cfg.fused_kernel and not fast:
            self._refuse("fused_kernel", "fused_kernel=True is for the float32 fast mode with dense delivery (the "
                         "Triton kernel may fuse multiply-adds, which would break the float64 exact mode)")
        if cfg.sync_free and cfg.delivery != "dense":
            self._refuse("sync_free", "sync_free=True needs delivery='dense'")

    def _refuse(self, key: str, why: str) -> None:
        raise ValidationError(f"engine {self.engine!r} option {key}: {why}")

    def resolve(self) -> RunConfig:
        """These options with every ``None`` replaced by the default for the device."""
        on_cpu = self.device == "cpu"
        dtype = self.dtype if self.dtype is not None else ("float64" if on_cpu else "float32")
        delivery = self.delivery if self.delivery is not None else (
            "sequential" if on_cpu and dtype == "float64" else "dense")
        dense = delivery == "dense"
        fast = dense and dtype == "float32"

        def flag(value: bool | None, default: bool) -> bool:
            return bool(value) if value is not None else default

        return RunConfig(
            device=self.device, dtype=dtype, delivery=delivery, kicks=self.kicks,
            batch_size=int(self.batch_size) if self.batch_size is not None else (32 if on_cpu else 256),
            cuda_graph=flag(self.cuda_graph, not on_cpu and dense),
            compile=flag(self.compile, not on_cpu and fast),
            fused_kernel=flag(self.fused_kernel, not on_cpu and fast),
            sync_free=flag(self.sync_free, not on_cpu and dense),
            spike_capacity=None if self.spike_capacity is None else int(self.spike_capacity),
            synapse_capacity=None if self.synapse_capacity is None else int(self.synapse_capacity),
            chunk_steps=int(self.chunk_steps),
            threads=None if self.threads is None else int(self.threads),
        )

    def defaults_chosen(self) -> list[str]:
        """The defaults this device chose for the user (recorded as choices of every run)."""
        cfg = self.resolve()
        on_cpu = self.device == "cpu"
        out = []
        for key in ("dtype", "delivery") + _FLAGS:
            if getattr(self, key) is None and (key in ("dtype", "delivery") or not on_cpu):
                out.append(f"{key}={getattr(cfg, key)!r} (default on {self.device})")
        if out and not cfg.exact:
            out[-1] += "; not the exact mode (results match Brian2 statistically)"
        return out


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    """Installed versions of torch and Triton (from the package metadata: nothing imported)."""
    out = {}
    for lib, dists in (("torch", ("torch",)), ("triton", ("triton", "pytorch-triton"))):
        for dist in dists:
            try:
                out[lib] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _cuda_status(torch: Any, device: str) -> tuple[bool, str]:
    """(True, "") if *device* (``cuda`` or ``cuda:N``) is usable, else (False, reason)."""
    if not torch.cuda.is_available():
        build = (f"built with CUDA {torch.version.cuda}: no usable device or driver" if torch.version.cuda
                 else "a build without CUDA")
        return False, f"CUDA is not available (torch {torch.__version__}, {build}); use device='cpu'"
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        return False, f"only {torch.cuda.device_count()} CUDA device(s) are visible"
    return True, ""


@register_engine
class TorchEngine(Engine):
    """Batched LIF simulation with PyTorch on CPU or CUDA (trials and conditions as a batch).

    Parameters
    ----------
    options : TorchOptions, optional
        Or give the options as keywords (see :class:`TorchOptions`).

    Attributes
    ----------
    config : RunConfig
        The options with the defaults for the device resolved.
    exact : bool
        True when this configuration is spike-identical to Brian2 given the same input
        schedule (CPU, float64, sequential delivery, scheduled kicks): the default.

    Examples
    --------
    >>> from brainfly.engines import get_engine
    >>> eng = get_engine("torch", dtype="float64")
    >>> eng.exact, eng.config.delivery
    (True, 'sequential')
    """

    name = "torch"
    capabilities = frozenset({"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64", "batch",
                              "shared_draws"})
    exact = True  # the default configuration (CPU, float64, sequential delivery)
    description = "batched PyTorch engine (CPU/CUDA); float64 exact mode, float32 fast mode"
    Options = TorchOptions
    trials_per_chunk = 64  # one GPU batch should hold all trials of a typical run

    options: TorchOptions

    @property
    def conditions_per_chunk(self) -> int:
        """Conditions a screen hands over at once: on a GPU a whole screen of 1,024 conditions
        is one batch (its rows: ``batch_size``); on the CPU a few, as memory grows with rows."""
        return 1024 if self.config.device != "cpu" else 16

    def __init__(self, options: TorchOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.config = self.options.resolve()
        self.exact = self.config.exact  # this configuration's (the class attribute is the default's)
        self._net: DeviceNetwork | None = None  # the last network used, reused while its key holds
        self._learned: LearnedCapacities = {}

    # ------------------------------------------------------------------ contract
    def is_available(self) -> tuple[bool, str]:
        """(True, "") if PyTorch imports and the device asked for is usable, else (False, reason)."""
        try:
            import torch
        except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
            return False, f"PyTorch cannot be imported ({exc}); install it with `pip install torch`"
        if self.config.device != "cpu":
            ok, reason = _cuda_status(torch, self.config.device)
            if not ok:
                return False, f"device {self.config.device!r} asked for, but {reason}"
        return True, ""

    def devices(self) -> dict[str, tuple[bool, str]]:
        """``{"cpu": (ok, reason), "cuda": (ok, reason)}``, probed by trying."""
        try:
            import torch
        except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
            why = f"PyTorch cannot be imported ({exc}); install it with `pip install torch`"
            return {"cpu": (False, why), "cuda": (False, why)}
        return {"cpu": (True, ""), "cuda": _cuda_status(torch, "cuda")}

    def versions(self) -> dict[str, str]:
        """Versions of torch and (if installed) Triton."""
        return dict(_library_versions())

    def validate(self, sim: SimulationInput) -> None:
        """Refuse what this configuration cannot do (before any work).

        Raises
        ------
        UnsupportedFeature
            ``kicks='device'`` with an explicit input schedule, or refractory periods that do
            not fit the counter.
        """
        super().validate(sim)
        if self.config.kicks == "device" and sim.schedule is not None:
            raise UnsupportedFeature(
                "engine 'torch' with kicks='device' draws its own Poisson input and cannot replay "
                f"the input schedule {sim.experiment.input_schedule!r}; use kicks='schedule'"
            )
        if int(sim.refractory_steps.max(initial=0)) > 32000:
            raise UnsupportedFeature("engine 'torch': refractory periods above 32000 steps are not supported")

    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run the given trials of one prepared experiment (see :meth:`Engine.run`)."""
        self.check_available()
        return self.simulate_many([sim], [list(trials)], progress)[0]

    def run_many(self, connectome: Any, experiments: Sequence[Experiment], *,
                 progress: ProgressCallback | None = None) -> list[SpikeResult]:
        """Run several experiments on one connectome as one batch of rows.

        Each experiment's trials become rows of the batch (split into passes of
        ``batch_size`` rows); each row has its own stimulus sets, rates, silenced neurons
        and input. Row by row, the spikes are those of running each experiment alone.

        Parameters
        ----------
        connectome : Connectome
        experiments : sequence of Experiment
            All must have the same ``t_run`` and ``params``.
        progress : callable (done_rows, total_rows), optional

        Returns
        -------
        list of SpikeResult
            One per experiment, in order (none for none); each records the whole batch's timings
            (``meta['conditions_in_batch_run']`` says how many conditions shared them).

        Raises
        ------
        ValidationError
            If the experiments differ in ``t_run`` or ``params``.
        UnsupportedFeature
            If one of them needs something this configuration cannot do.

        Examples
        --------
        A silencing screen, one condition per candidate neuron, as one batch::

            base = builtin_experiment("sugar").with_(n_trials=1)
            screen = [base.with_(name=f"silence-{fid}", silenced=(fid,)) for fid in candidates]
            results = get_engine("torch", device="cuda", batch_size=len(screen)).run_many(net, screen)
        """
        experiments = list(experiments)
        if not experiments:  # as the base class (and every engine) does: no conditions, no results
            return []
        first = experiments[0]
        for k, e in enumerate(experiments):
            if not isinstance(e, Experiment):
                raise ValidationError(f"TorchEngine.run_many: experiments[{k}] is a {type(e).__name__}, "
                                      "not an Experiment")
            if e.params != first.params or e.n_steps != first.n_steps:
                raise ValidationError(
                    f"TorchEngine.run_many: experiments[{k}] ({e.name!r}) has t_run={e.t_run} s / params "
                    f"different from experiments[0] ({first.name!r}, t_run={first.t_run} s); one batch shares "
                    "t_run and params: run the others in another call"
                )
        return super().run_many(connectome, experiments, progress=progress)

    # ------------------------------------------------------------------ driver
    def _network(self, sim: SimulationInput) -> tuple[DeviceNetwork, bool]:
        """The connectome of *sim* on the device: the cached one if its key is unchanged (reused?)."""
        cfg = self.config
        key = NetworkKey.of(sim, cfg.device, cfg.dtype)
        if self._net is not None and self._net.key == key:
            return self._net, True
        self._net = None  # release the old one's memory before building the new one
        self._net = DeviceNetwork(sim, cfg.device, cfg.dtype)
        return self._net, False

    def simulate_many(self, sims: Sequence[SimulationInput], trial_lists: Sequence[list[int]],
                      progress: ProgressCallback | None = None) -> list[EngineOutput]:
        """Run the conditions as one batch (rows = condition x trial) on the device."""
        import torch

        cfg = self.config
        t_start = time.perf_counter()
        if cfg.threads is not None and cfg.device == "cpu":
            torch.set_num_threads(cfg.threads)
        rows = [Row(c, t) for c, tl in enumerate(trial_lists) for t in tl]
        if cfg.device != "cpu":  # streams and graphs on the asked-for GPU, not the current one
            with torch.cuda.device(torch.device(cfg.device)):
                return self._simulate_rows(torch, sims, rows, progress, t_start)
        return self._simulate_rows(torch, sims, rows, progress, t_start)

    def _simulate_rows(self, torch: Any, sims: list[SimulationInput], rows: list[Row],
                       progress: ProgressCallback | None, t_start: float) -> list[EngineOutput]:
        t0 = time.perf_counter()
        net, reused = self._network(sims[0])
        info: dict[str, Any] = {"network_reused": reused, "network_s": time.perf_counter() - t0}
        choices = self.options.defaults_chosen()
        out: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in sims]
        done = 0
        for lo in range(0, len(rows), self.config.batch_size):
            batch = rows[lo:lo + self.config.batch_size]
            runner = BatchRunner(self.config, net, sims, batch, self._learned)
            row_idx, step, neuron = runner.run()
            for key, val in runner.info.items():  # over batches: sums of times and counts, maxima
                if key.endswith("_s") or key in ("host_syncs", "capacity_restarts"):
                    info[key] = info.get(key, 0) + val
                elif key.startswith("max_"):
                    info[key] = max(info.get(key, val), val)
                else:
                    info[key] = val
            choices += [c for c in runner.choices if c not in choices]
            conds = np.array([r.cond for r in batch], dtype=np.int64)
            trial_of = np.array([r.trial for r in batch], dtype=np.int64)
            for c in np.unique(conds).tolist():
                sel = conds[row_idx] == c
                out[c].append((trial_of[row_idx[sel]], neuron[sel], step[sel]))
            done += len(batch)
            if progress is not None:
                progress(done, len(rows))
        versions: dict[str, str] = {}
        device = "cpu"
        if net.device.type == "cuda":
            index = net.device.index if net.device.index is not None else torch.cuda.current_device()
            device = f"cuda:{index}"
            versions["cuda"] = str(torch.version.cuda)
            info["device_name"] = torch.cuda.get_device_name(index)
            info["peak_gpu_mem_mb"] = float(torch.cuda.max_memory_allocated(index)) / 2**20
        # build: compiling kernels and capturing graphs; sim: the step loops; setup: the rest
        # (network upload, state, kicks, output)
        build_s = sum(float(info.get(k, 0.0)) for k in ("fused_kernel_s", "compile_s", "gather_compile_s",
                                                         "capture_s"))
        sim_s = float(info.get("loop_s", 0.0))
        details = {"resolved_options": self.config.to_dict(), "rows_in_batch_run": len(rows),
                   "conditions_in_batch_run": len(sims), "batches": -(-len(rows) // self.config.batch_size),
                   **{k: round(v, 4) if k.endswith("_s") else v for k, v in info.items()}}
        results = []
        for c in range(len(sims)):
            parts = out[c]
            trial = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int32)
            idx = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int32)
            step = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int64)
            results.append([trial.astype(np.int32), idx.astype(np.int32), step.astype(np.int64)])
        wall = time.perf_counter() - t_start
        record = RunRecord(setup_s=max(0.0, wall - build_s - sim_s), build_s=build_s, sim_s=sim_s, device=device,
                           versions=versions, choices=choices, details=details)
        return [EngineOutput(trial, idx, step, replace(record, versions=dict(versions), choices=list(choices),
                                                       details=dict(details)))
                for trial, idx, step in results]
