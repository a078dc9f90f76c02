"""``nestgpu``: NEST GPU with brainfly's own node model ``brainfly_lif`` (statistical tier).

NEST GPU (github.com/nest/nest-gpu) is built from source with brainfly's model added
(:mod:`brainfly.nestgpu_install`). The model (``engines/nestgpu_models/brainfly_lif.cu``)
follows docs/model-spec.md: v and g in double precision, Brian2's linear update with
brainfly's step constants (handed over as three floats each, rebuilt exactly:
:func:`split_double`), strict threshold, reset v = v_rst and g = 0, refractory steps per
neuron (0 for activated ones), input arriving while refractory (or in the spike step)
dropped, delay 1.8 ms (18 steps), Poisson kicks onto v through a second port. Silencing
leaves out the silenced neurons' outgoing connections (and incoming ones with
``silence_mode="both"``).

Timing. NEST GPU step ``it`` is model step ``it - 1``: step 0 is a pad step in which the
model does nothing, so that a kick of model step s can be sent by a ``spike_generator`` at
NEST GPU step s and arrive (delay one step) in step s + 1, where it is collected after the
update, as Brian2 applies it after the threshold. A spike in NEST GPU step ``it`` is
recorded at time ``(it + 1) * dt``, so model step = ``round(t / dt) - 2``
(:data:`RECORD_STEP_OFFSET`). Connection delays: NEST GPU delivers a spike of step s with
delay d steps in step s + d, and the model applies it in the next update, as Brian2 does.

Why statistical, not exact. The weights are signed synapse counts (integers), summed on
the GPU by atomic adds: integer sums are exact in any order, so the result is
deterministic, but ``g + (c1 + c2) * w_syn`` differs in the last bits from Brian2's
``(g + c1 * w_syn) + c2 * w_syn`` when several inputs reach a neuron in one step (a single
input per step is identical). Kicks are applied one by one, as Brian2 does. So spikes may
differ from Brian2's at a rounding-level threshold crossing; the engine claims the
statistical tier. NEST GPU cannot reset its state in-process, so every trial runs in its
own process, with its own seed (:func:`trial_seeds`) and its own kicks.
"""

from __future__ import annotations

from dataclasses import dataclass
import ctypes
import importlib
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any, ClassVar

import numpy as np

from .. import nestgpu_install
from .._cuda import cuda_gpus
from ..errors import EngineUnavailable, ValidationError
from ..schedule import trial_seed_sequence
from .base import Engine, EngineOptions, EngineOutput, ProgressCallback, RunRecord, SimulationInput

__all__ = [
    "NestGpuOptions",
    "NestGpuEngine",
    "split_double",
    "join_double",
    "trial_seeds",
    "build_job",
    "reference_run",
    "RECORD_STEP_OFFSET",
    "PAD_STEPS",
]

#: NEST GPU steps before model step 0 (the pad step).
PAD_STEPS = 1
#: model step = round(recorded time / dt) - RECORD_STEP_OFFSET.
RECORD_STEP_OFFSET = PAD_STEPS + 1
#: Per-neuron double constants of the model, as NEST GPU parameter name stems.
_DOUBLE_PARAMS = ("v_const", "v_decay", "v_from_g", "g_decay", "v_th", "v_rst", "v_init", "kick", "w_syn")


# ----------------------------------------------------------------------------- helpers
def split_double(x: float) -> tuple[float, float, float]:
    """Three float32 values whose sum, added in double as ``(hi + mid) + lo``, is *x* exactly.

    >>> x = 0.0048770575499285984
    >>> join_double(*split_double(x)) == x
    True
    """
    x = float(x)
    hi = float(np.float32(x))
    r1 = x - hi
    mid = float(np.float32(r1))
    lo = float(np.float32(r1 - mid))
    if join_double(hi, mid, lo) != x:
        raise ValidationError(f"cannot hand {x!r} to NEST GPU as three floats (out of float range)")
    return hi, mid, lo


def join_double(hi: float, mid: float, lo: float) -> float:
    """The model's rebuild of a double from three floats: ``(hi + mid) + lo`` in double."""
    return (float(np.float32(hi)) + float(np.float32(mid))) + float(np.float32(lo))


def trial_seeds(seed: int, trials: list[int]) -> list[int]:
    """NEST GPU's random seed of each trial: distinct per (seed, trial).

    >>> a, b = trial_seeds(0, [0, 1]); a != b
    True
    """
    return [int(trial_seed_sequence(seed, k).generate_state(1, np.uint32)[0]) for k in trials]


def _counts(sim: SimulationInput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre, post, signed count) of the connections that remain after silencing, CSR order."""
    c = sim.connectome
    pre = np.repeat(np.arange(c.n_neurons, dtype=np.int32), np.diff(c.indptr))
    post = np.asarray(c.post_idx, dtype=np.int32)
    w = np.asarray(c.weight, dtype=np.float64)
    keep = w != 0.0
    if sim.silenced_mask.any():
        keep &= ~sim.silenced_mask[pre]
        if sim.experiment.silence_mode == "both":
            keep &= ~sim.silenced_mask[post]
    return pre[keep], post[keep], w[keep].astype(np.float32)


def build_job(sim: SimulationInput, trial: int, kick_idx: np.ndarray, kick_step: np.ndarray,
              seed: int, max_rec_spikes: int = 0) -> dict[str, np.ndarray]:
    """Everything one trial's NEST GPU process needs, as arrays (saved as ``.npz``).

    Kicks are given per (neuron, step) with their multiplicity (two schedule rows in one
    step are one generator spike of height 2, applied as two kicks). Generator spike
    times are in NEST GPU steps (= model step of the kick).
    """
    pre, post, count = _counts(sim)
    if np.any(np.abs(count) >= 2 ** 24) or np.any(count != np.round(count)):
        raise ValidationError("engine 'nestgpu': connection weights must be integer synapse counts "
                              "below 2**24 (they are summed as floats on the GPU)")
    co = sim.coeffs
    v_init = co.v_0
    params = np.array([split_double(x) for x in (co.v_const, co.v_decay, co.v_from_g, co.g_decay, co.v_th,
                                                 co.v_rst, v_init, co.kick, co.w_syn)], dtype=np.float64)
    order = np.lexsort((np.asarray(kick_step), np.asarray(kick_idx)))
    ki, ks = np.asarray(kick_idx, np.int64)[order], np.asarray(kick_step, np.int64)[order]
    if ki.size:
        new = np.ones(ki.size, bool)
        new[1:] = (ki[1:] != ki[:-1]) | (ks[1:] != ks[:-1])
        starts = np.flatnonzero(new)
        height = np.diff(np.append(starts, ki.size)).astype(np.float32)
        ki, ks = ki[starts], ks[starts]
    else:
        height = np.empty(0, np.float32)
    n_steps = int(sim.n_steps)
    if max_rec_spikes <= 0:
        max_rec_spikes = n_steps // 2 + 4  # a neuron spikes at most every second step
    return {
        "n_neurons": np.int64(sim.n_neurons), "n_steps": np.int64(n_steps), "pad_steps": np.int64(PAD_STEPS),
        "dt_ms": np.float64(sim.params.dt_s * 1e3), "delay_steps": np.int64(sim.delay_steps),
        "refractory_steps": np.asarray(sim.refractory_steps, np.int32),
        "pre": pre, "post": post, "count": count, "params": params,
        "kick_idx": ki, "kick_gen_step": ks + 0, "kick_height": height,
        "seed": np.int64(seed), "trial": np.int64(trial), "max_rec_spikes": np.int64(max_rec_spikes),
    }


# ----------------------------------------------------------------------------- CPU reference
def reference_run(job: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Run a job on the CPU the way NEST GPU runs it with ``brainfly_lif``; (idx, model step).

    Mirrors the pipeline step by step: a spike generator fires at NEST GPU step
    ``kick_gen_step`` and its spike, delay 1 step, is collected after the update of the
    next step; a neuron's spike of step ``it`` (delay d) is collected after the update of
    step ``it + d``; the model applies collected input at the start of its next update
    (dropped if it was refractory then); spikes are recorded at ``(it + 1) * dt``. Used by
    the tests to check the job layout and the model's kernel without a GPU.
    """
    n = int(job["n_neurons"])
    p = [join_double(*row) for row in job["params"]]
    v_const, v_decay, v_from_g, g_decay, v_th, v_rst, v_init, kick, w_syn = p
    pad, n_steps, d = int(job["pad_steps"]), int(job["n_steps"]), int(job["delay_steps"])
    rfc = np.asarray(job["refractory_steps"], np.int64)
    pre, post, count = job["pre"], job["post"], job["count"].astype(np.float32)
    order = np.argsort(pre, kind="stable")
    pre, post, count = pre[order], post[order], count[order]
    starts = np.searchsorted(pre, np.arange(n + 1))
    v = np.full(n, v_init)
    g = np.zeros(n)
    in_g = np.zeros(n, np.float32)
    in_v = np.zeros(n, np.float32)
    rc = np.zeros(n, np.int64)
    rprev = np.zeros(n, bool)
    kick_at: dict[int, list[tuple[int, float]]] = {}
    for i, s, h in zip(job["kick_idx"].tolist(), job["kick_gen_step"].tolist(), job["kick_height"].tolist()):
        kick_at.setdefault(int(s) + 1, []).append((int(i), float(h)))  # delivered one step after emission
    fired: dict[int, np.ndarray] = {}
    out_i, out_s = [], []
    for it in range(n_steps + pad):
        if it >= pad:
            apply = ~rprev
            g = np.where(apply & (in_g != 0), g + in_g.astype(np.float64) * w_syn, g)
            for i in np.flatnonzero(apply & (in_v > 0)).tolist():
                for _ in range(int(in_v[i])):
                    v[i] = v[i] + kick
            in_g[:] = 0
            in_v[:] = 0
            rc = np.where(rc > 0, rc - 1, rc)
            refr = rc > 0
            upd = ~refr
            g_new = np.where(upd, g_decay * g, g)
            v = np.where(upd, v_const + (v_from_g * g + v_decay * v), v)
            g = g_new
            spk = upd & (v > v_th)
            v[spk] = v_rst
            g[spk] = 0.0
            rc[spk] = rfc[spk]
            rprev = refr | spk
            if spk.any():
                fired[it] = np.flatnonzero(spk)
                t_rec = np.float32((it + 1) * float(job["dt_ms"]))
                for i in fired[it].tolist():
                    out_i.append(i)
                    out_s.append(int(round(float(t_rec) / float(job["dt_ms"]))) - RECORD_STEP_OFFSET)
        # collection after the update: synaptic spikes of step it - d, kicks emitted at it - 1
        src = fired.get(it - d)
        if src is not None:
            acc = np.zeros(n, np.float64)
            for j in src.tolist():
                np.add.at(acc, post[starts[j]:starts[j + 1]], count[starts[j]:starts[j + 1]].astype(np.float64))
            in_g = (in_g.astype(np.float64) + acc).astype(np.float32)
        for i, h in kick_at.get(it, []):
            in_v[i] = np.float32(float(in_v[i]) + h)
    return np.asarray(out_i, np.int64), np.asarray(out_s, np.int64)


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class NestGpuOptions(EngineOptions):
    """Options of the NEST GPU engine.

    Attributes
    ----------
    max_rec_spikes : int
        Spike times NEST GPU keeps per neuron (0: enough for the run, n_steps / 2).
    timeout_s : float
        Seconds one trial's process may take (0: no limit).
    """

    max_rec_spikes: int = 0
    timeout_s: float = 0.0

    def __post_init__(self) -> None:
        self._check("max_rec_spikes", self.is_int(self.max_rec_spikes, 0), "an integer >= 0")
        self._check("timeout_s", self.is_number(self.timeout_s, 0), "a number of seconds >= 0")


def _gpu_count() -> tuple[int, str]:
    """Number of CUDA devices, and why 0 if so."""
    gpus, why = cuda_gpus()
    return len(gpus), why


# ----------------------------------------------------------------------------- the engine
class NestGpuEngine(Engine):
    """NEST GPU with brainfly's node model ``brainfly_lif`` (statistical tier; see the module docstring)."""

    name: ClassVar[str] = "nestgpu"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64", "shared_draws"})
    exact: ClassVar[bool] = False
    description: ClassVar[str] = "NEST GPU (CUDA) with brainfly's node model brainfly_lif (float64 state)"
    Options: ClassVar[type[EngineOptions]] = NestGpuOptions
    trials_per_chunk: ClassVar[int] = 32
    conditions_per_chunk = 4

    def is_available(self) -> tuple[bool, str]:
        """The build with brainfly's current model files exists, and a GPU is present."""
        inst = nestgpu_install.find_install()
        if inst is None:
            return False, (f"NEST GPU with brainfly's model is not built: run `{nestgpu_install.INSTALL_COMMAND}` "
                           f"(needs the CUDA toolkit with nvcc and CMake; source from git, or a tarball "
                           f"named by ${nestgpu_install.SOURCE_ENV})")
        if inst.digest != nestgpu_install.build_digest(inst.cuda_arch):
            return False, (f"the NEST GPU build in {inst.prefix} is of other model files: rerun "
                           f"`{nestgpu_install.INSTALL_COMMAND} --cuda-arch {inst.cuda_arch}`")
        n, why = _gpu_count()
        if n < 1:
            return False, f"{why}; NEST GPU needs an NVIDIA GPU (built: {inst.prefix})"
        return True, ""

    def devices(self) -> dict[str, tuple[bool, str]]:
        """Only ``cuda``."""
        return {"cuda": self.is_available()}

    def versions(self) -> dict[str, str]:
        """The pinned NEST GPU commit and the build's CUDA arch."""
        inst = nestgpu_install.find_install()
        out = {"nestgpu": nestgpu_install.NESTGPU_COMMIT[:12]}
        if inst is not None:
            out["nestgpu_cuda_arch"] = inst.cuda_arch
        return out

    def validate(self, sim: SimulationInput) -> None:
        """The base checks, and a delay of at least one step."""
        super().validate(sim)
        if sim.delay_steps < 1:
            raise ValidationError("engine 'nestgpu': the synaptic delay must be at least one step")

    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run each trial in its own NEST GPU process (NEST GPU cannot reset in-process).

        Returns
        -------
        EngineOutput
            ``setup_s``: building the jobs; ``sim_s``: the processes' own network build and
            Simulate (``details['trials']`` has each one's ``network_s`` and ``simulate_s``).
        """
        inst = nestgpu_install.find_install()
        if inst is None:
            raise EngineUnavailable(self.is_available()[1])
        t0 = time.perf_counter()
        kicks = sim.kicks(trials)
        seeds = trial_seeds(sim.experiment.seed, trials)
        setup_s = time.perf_counter() - t0
        out_t, out_i, out_s, per_trial = [], [], [], []
        sim_s = 0.0
        with tempfile.TemporaryDirectory(prefix="brainfly-nestgpu-") as tmp:
            for j, (k, seed) in enumerate(zip(trials, seeds)):
                t1 = time.perf_counter()
                sel = kicks.trial == k
                job = build_job(sim, k, kicks.idx[sel], kicks.step[sel], seed, self.options.max_rec_spikes)
                job_path, res_path = Path(tmp) / f"job-{k}.npz", Path(tmp) / f"result-{k}.npz"
                np.savez(job_path, **job)
                setup_s += time.perf_counter() - t1
                t2 = time.perf_counter()
                self._run_worker(inst, job_path, res_path)
                sim_s += time.perf_counter() - t2
                with np.load(res_path) as res:
                    idx, step = res["idx"].astype(np.int64), res["step"].astype(np.int64)
                    per_trial.append({"trial": k, "seed": seed, "network_s": float(res["network_s"]),
                                      "simulate_s": float(res["simulate_s"])})
                keep = (step >= 0) & (step < sim.n_steps)
                out_t.append(np.full(int(keep.sum()), k, np.int64))
                out_i.append(idx[keep])
                out_s.append(step[keep])
                if progress is not None:
                    progress(j + 1, len(trials))
        cat = (lambda xs: np.concatenate(xs) if xs else np.empty(0, np.int64))
        details = {"trials": per_trial, "trial_seeds": {str(k): s for k, s in zip(trials, seeds)},
                   "nestgpu_install": str(inst.prefix),
                   "input": "schedule" if sim.schedule is not None else "shared-draws"}
        record = RunRecord(setup_s=setup_s, build_s=0.0, sim_s=sim_s, device="cuda",
                           versions=self.versions(), choices=[], details=details)
        return EngineOutput(cat(out_t), cat(out_i), cat(out_s), record)

    def _run_worker(self, inst: nestgpu_install.NestGpuInstall, job: Path, result: Path) -> None:
        env = dict(os.environ, NESTGPU_LIB=str(inst.library),
                   PYTHONPATH=os.pathsep.join([str(inst.python_dir), os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "brainfly.engines.nestgpu_engine", str(job), str(result)]
        timeout = self.options.timeout_s or None
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise EngineUnavailable(f"engine 'nestgpu': a trial took more than timeout_s={timeout} s") from exc
        if proc.returncode != 0 or not result.is_file():
            raise EngineUnavailable(f"engine 'nestgpu': the trial process failed (exit {proc.returncode}):\n"
                                    f"{(proc.stdout + proc.stderr)[-3000:]}")


# ----------------------------------------------------------------------------- the worker process
def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """In the trial's process: build the network in NEST GPU, simulate, return the spikes."""
    ngpu = importlib.import_module("nestgpu")
    t0 = time.perf_counter()
    n = int(job["n_neurons"])
    dt = float(job["dt_ms"])
    ngpu.SetRandomSeed(int(job["seed"]))
    ngpu.SetTimeResolution(dt)
    neurons = ngpu.Create(nestgpu_install.MODEL_NAME, n, 2)
    for stem, (hi, mid, lo) in zip(_DOUBLE_PARAMS, job["params"].tolist()):
        ngpu.SetStatus(neurons, {f"{stem}_hi": hi, f"{stem}_mid": mid, f"{stem}_lo": lo})
    ngpu.SetStatus(neurons, {"pad_steps": float(job["pad_steps"]), "refractory_steps": 0.0})
    rfc = np.asarray(job["refractory_steps"])
    for value in np.unique(rfc).tolist():
        if value != 0:
            ids = (neurons.i0 + np.flatnonzero(rfc == value)).tolist()
            ngpu.SetStatus(ids, {"refractory_steps": float(value)})
    pre, post, count = job["pre"], job["post"], job["count"]
    if pre.size:
        _connect_arrays(ngpu, neurons.i0 + pre.astype(np.int32), neurons.i0 + post.astype(np.int32),
                        count.astype(np.float32), int(job["delay_steps"]) * dt, receptor=0)
    ki = job["kick_idx"]
    if ki.size:
        targets = np.unique(ki)
        gens = ngpu.Create("spike_generator", int(targets.size))
        for g, i in enumerate(targets.tolist()):
            sel = ki == i
            times = (job["kick_gen_step"][sel].astype(np.float64) * dt).tolist()
            ngpu.SetStatus(ngpu.NodeSeq(gens.i0 + g, 1), {"spike_times": times,
                                                           "spike_heights": job["kick_height"][sel].tolist()})
        _connect_arrays(ngpu, gens.i0 + np.arange(targets.size, dtype=np.int32),
                        neurons.i0 + targets.astype(np.int32), np.ones(targets.size, np.float32), dt, receptor=1)
    ngpu.ActivateRecSpikeTimes(neurons, int(job["max_rec_spikes"]))
    network_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ngpu.Simulate((int(job["n_steps"]) + int(job["pad_steps"])) * dt)
    simulate_s = time.perf_counter() - t1
    times = ngpu.GetRecSpikeTimes(neurons)
    idx = np.repeat(np.arange(n, dtype=np.int64), [len(t) for t in times])
    t_all = np.fromiter((x for t in times for x in t), np.float64, count=idx.size)
    step = np.rint(t_all / dt).astype(np.int64) - RECORD_STEP_OFFSET
    order = np.lexsort((idx, step))
    return {"idx": idx[order], "step": step[order], "network_s": network_s, "simulate_s": simulate_s}


def _connect_arrays(ngpu: Any, src: np.ndarray, tgt: np.ndarray, weight: np.ndarray, delay_ms: float,
                    receptor: int) -> None:
    """One-to-one connections from numpy arrays (NEST GPU's Connect without Python lists)."""
    src = np.ascontiguousarray(src, np.int32)
    tgt = np.ascontiguousarray(tgt, np.int32)
    weight = np.ascontiguousarray(weight, np.float32)
    ngpu.ConnSpecInit()
    ngpu.SetConnSpecParam("rule", ngpu.conn_rule_name.index("one_to_one"))
    ngpu.SynSpecInit()
    ngpu.SetSynSpecIntParam("receptor", int(receptor))
    ngpu.SetSynSpecFloatParam("delay", float(delay_ms))
    ngpu.SetSynSpecFloatPtParam("weight_array", weight.ctypes.data_as(ctypes.c_void_p))
    ngpu.NESTGPU_ConnectGroupGroup(src.ctypes.data_as(ctypes.c_void_p), int(src.size),
                                   tgt.ctypes.data_as(ctypes.c_void_p), int(tgt.size))
    if ngpu.GetErrorCode() != 0:
        raise RuntimeError(ngpu.GetErrorMessage())


def _worker_main(argv: list[str]) -> int:
    job_path, result_path = argv
    with np.load(job_path) as f:
        job = {k: f[k] for k in f.files}
    res = _run_job(job)
    tmp = result_path + ".part.npz"
    np.savez(tmp, **res)
    os.replace(tmp, result_path)
    print(json.dumps({"spikes": int(res["idx"].size), "network_s": res["network_s"],
                      "simulate_s": res["simulate_s"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
