"""Batch runners of the torch engine: one batch of rows simulated block by block.

Units inside this module: volts (state ``v``, ``g``, weights), integer steps (time).

Layout
------
The state is a set of dense ``(B, N)`` tensors, one *row* per simulated trial: ``v``,
``g`` (``float64`` or ``float32``) and ``cnt`` (int8/int16, refractory steps still to
sit out). A row carries its own condition: stimulated neurons (Poisson kicks,
refractory period 0), silenced neurons (a per-row mask on the *outgoing* events, not a
rebuilt weight matrix; ``silence_mode="both"`` adds a per-row mask on the incoming
ones) and input. So a batch may mix trials of different experiments
(:meth:`TorchEngine.run_many`): a screen of 100 silencing conditions is one pass.

Step loop: blocks of ``delay_steps`` (18) steps
----------------------------------------------
A spike in step ``s`` reaches ``g`` in step ``s + D`` (``D = delay_steps``). So the
spikes of one block of ``K = D`` steps are needed, at the earliest, in the first step
of the *next* block: the delay is a window in which the spikes of a whole block can be
gathered at once. Each block:

1. **Gather** the spikes of the previous block, ``spk_buf`` (bool ``(K, B, N)``): compact
   them to flat indices ``(k, row, neuron)`` (this list is also the recorded output,
   copied to the host in chunks), look up the CSR rows of exactly these neurons and
   expand them (work proportional to the synapses of the neurons that spiked, never to
   all ``nnz``, never a sparse-matrix product over all neurons). Events of silenced
   neurons go to an empty dummy row. The events land at ``step + D``, i.e. in slot
   ``k`` of *this* block.
2. **Run** ``K`` steps with static shapes: state update, threshold, delivery, kicks,
   reset; step ``k`` writes its spike mask into ``spk_buf[k]`` (or, with the fused
   kernel on the sync-free path, appends its spikes to the block's list directly).

Two ways to run this loop:

sync-free (``sync_free=True``, the default on CUDA)
    The gather has fixed shapes: at most ``spike_capacity`` spikes per block
    (``torch.nonzero_static``, or a cumulative-sum scatter where that is missing) and
    ``synapse_capacity`` synaptic events (``searchsorted`` over the cumulative row
    lengths; padding goes to a dummy slot with weight 0). Gather + ``K`` steps are
    captured once in a CUDA graph (``cuda_graph=True``) and replayed block after block
    with no host synchronisation at all; the host synchronises once per chunk of
    ``chunk_steps`` steps to fetch the spikes and an overflow flag. If a capacity was
    exceeded, the batch is rerun from the start with 4x that capacity (recorded in
    ``meta['capacity_restarts']``; the capacities are chosen so that this is rare; the
    most spikes and synaptic events seen in one block are recorded in
    ``meta['max_spikes_per_block']`` / ``meta['max_events_per_block']``). Padding slots
    of the expansion aim at distinct entries of a never-read region of ``inc``, so that
    the ``index_add_`` of a block costs one coalesced pass over ``synapse_capacity``
    slots (one shared dummy entry serialised ~1M atomics on one address: 1.7 ms per
    block on an H100, half of the GPU time).
    The steps: one hand-written Triton kernel per *block* (``fused_kernel``, default on
    CUDA in float32; see :mod:`.triton_kernel`): about 5 bytes of memory traffic per
    neuron and step, against ~36 bytes in 3-4 launches per step for the
    ``torch.compile`` step; per block: 1 step kernel + ~12 small gather kernels, all in
    one CUDA graph.
    Without Triton (or if the kernel disagrees with the eager step on a random state,
    checked when a batch starts) ``torch.compile`` fuses one step into one elementwise
    kernel plus a small kick kernel (``compile``, default on CUDA in float32; a failure
    falls back to eager kernels, recorded as a choice). The gather is compiled too.
synced (``sync_free=False``, the default on CPU)
    ``nonzero`` over ``spk_buf`` and ``repeat_interleave`` over the row lengths, with
    exact sizes: one or two host synchronisations per block of 18 steps (free on the
    CPU). On CUDA the ``K`` steps of a block can still be a CUDA graph.

Delivery of the gathered events, two modes:

``"dense"`` (default on CUDA and in float32)
    The events are summed with ``index_add_`` into an increment buffer ``inc`` of
    shape ``(K, B, N)`` indexed by step within the block (a ring of one block: the
    entries set by the previous gather are cleared and it is refilled for the next
    block, never rolled); step ``k`` adds ``inc[k]`` to ``g``. Static shapes, so the
    block can be captured in a CUDA graph.
    Floating point: ``g + (w1 + w2)`` instead of Brian2's ``(g + w1) + w2`` when a
    neuron gets several inputs in one step (and atomics on CUDA), so last-bit
    differences are possible.
``"sequential"`` (default on CPU in float64: the *exact* mode)
    The events of step ``k`` (a contiguous slice, since the list is sorted by step, row,
    presynaptic neuron, synapse) are added straight into ``g`` with a 1-D ``index_add_``
    in that order, which is Brian2's ``numpy.add.at`` order: bit-identical state, so
    spike-identical results with a shared input schedule.

Poisson kicks
-------------
``kicks="schedule"`` (default): the shared draws of :func:`brainfly.schedule.draw_poisson`
or the experiment's explicit input schedule (``SimulationInput.kicks``), scattered into a
dense ``(steps, B, A)`` tensor per chunk of steps (``A`` = stimulated neurons of the
batch). ``kicks="device"`` (fast mode, float32 only): Bernoulli(rate * dt) drawn on the
device with torch's generator seeded from the experiment seed; statistically the same
input as Brian2's ``PoissonInput``, not the same draws as the other engines.

Per step, the order is Brian2's (established in ``tests/test_brian2_semantics.py``):
state update (not refractory only) -> threshold (``v > v_th`` and not refractory) ->
synaptic increments to ``g`` and kicks to ``v``, applied only to neurons that are not
refractory in this step (Brian2 drops input during the refractory period) -> reset
(``v = v_rst``, ``g = 0``) of the neurons that spiked. Activated neurons have a
refractory period of 0, so their kicks are never dropped (except in their spike step,
where the reset wipes them anyway).

Fallbacks (no Triton, a failed compilation or graph capture, no ``nonzero_static``) are
not silent: each is listed in :attr:`BatchRunner.choices` (the engine records them in
the run record) with the error in :attr:`BatchRunner.info`. PyTorch is imported when a
runner is built, not with this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import logging
import time
from typing import Any, Callable

import numpy as np

from ..base import SimulationInput
from . import triton_kernel
from .network import DeviceNetwork, NetworkKey

__all__ = ["RunConfig", "Row", "Overflow", "BatchRunner", "LearnedCapacities"]

log = logging.getLogger(__name__)

#: Per-block capacities that sync-free batches had to grow to, kept by the engine for its next
#: batches: (network, rows, block length) -> (spike capacity, synapse capacity).
LearnedCapacities = dict[tuple[NetworkKey, int, int], tuple[int, int]]


@dataclass(frozen=True)
class RunConfig:
    """The engine's options with every default resolved for the device (what a runner reads).

    Attributes
    ----------
    device : str
        ``cpu``, ``cuda`` or ``cuda:N``.
    dtype : {"float64", "float32"}
    delivery : {"sequential", "dense"}
    kicks : {"schedule", "device"}
    batch_size : int
        Most rows simulated together.
    cuda_graph, compile, fused_kernel, sync_free : bool
    spike_capacity, synapse_capacity : int or None
        Per-block capacities of the sync-free gather (None: derived from the batch).
    chunk_steps : int
        Steps per chunk of kicks built on the host.
    threads : int or None
        ``torch.set_num_threads`` on the CPU.
    """

    device: str
    dtype: str
    delivery: str
    kicks: str
    batch_size: int
    cuda_graph: bool
    compile: bool
    fused_kernel: bool
    sync_free: bool
    spike_capacity: int | None
    synapse_capacity: int | None
    chunk_steps: int
    threads: int | None

    @property
    def exact(self) -> bool:
        """Spike-identical to Brian2 given the same input (CPU, float64, sequential, scheduled kicks)."""
        return (self.device == "cpu" and self.dtype == "float64" and self.delivery == "sequential"
                and self.kicks == "schedule")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (kept in the result's ``meta['resolved_options']``)."""
        return asdict(self)


@dataclass
class Row:
    """One batch row: trial ``trial`` of condition ``cond``."""

    cond: int
    trial: int


class Overflow(Exception):
    """A fixed capacity of the sync-free gather was exceeded (the batch is rerun larger)."""


class BatchRunner:
    """Simulates one batch of rows (see the module docstring for the loop).

    Neurons are padded to a multiple of 64 (``self.N``, the row stride) so that every
    row and block slice is aligned; pad neurons have no synapses, no input and stay at
    rest. ``self.n_real`` is the connectome's neuron count.

    Parameters
    ----------
    config : RunConfig
        The engine's resolved options.
    net : DeviceNetwork
        The connectome on the device.
    sims : list of SimulationInput
        The conditions; all share ``n_steps``, ``delay_steps`` and the step coefficients.
    rows : list of Row
        The rows of this batch (condition and trial of each).
    learned : dict, optional
        Capacities grown by earlier sync-free batches (read and updated; see
        :data:`LearnedCapacities`).

    Attributes
    ----------
    info : dict
        Facts about the run (timings of its phases in seconds, host synchronisations,
        what was compiled, capacities, errors of fallbacks), filled by :meth:`run`.
    choices : list of str
        Fallbacks made for the user (a kernel that could not be used, and what ran instead).
    """

    PAD = 64

    def __init__(self, config: RunConfig, net: DeviceNetwork, sims: list[SimulationInput],
                 rows: list[Row], learned: LearnedCapacities | None = None) -> None:
        import torch

        self.torch = torch
        self.config = config
        self.learned: LearnedCapacities = {} if learned is None else learned
        self.net = net
        self.sims = sims
        self.rows = rows
        self.info: dict[str, Any] = {}
        self.choices: list[str] = []
        sim0 = sims[0]
        self.n_steps = sim0.n_steps
        self.K = int(sim0.delay_steps)  # block length = the synaptic delay
        c = sim0.coeffs
        self.c = c
        dev = net.device
        self.dev = dev
        self.fdtype = getattr(torch, config.dtype)
        B, n_real = len(rows), net.n
        N = -(-n_real // self.PAD) * self.PAD
        self.B, self.N, self.n_real = B, N, n_real
        self.BN = B * N

        def padded(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((a.shape[0], N), fill, dtype=a.dtype)
            out[:, :n_real] = a
            return out

        # ---- per-row condition arrays (host, then device)
        rfc = np.stack([sims[r.cond].refractory_steps for r in rows]).astype(np.int64)
        rfc_set = padded(np.maximum(rfc - 1, 0), 0)  # steps still frozen after the spike step
        cnt_dtype = torch.int8 if rfc_set.max(initial=0) < 127 else torch.int16
        self.rfc_set = torch.from_numpy(rfc_set).to(device=dev, dtype=cnt_dtype)
        sil = padded(np.stack([sims[r.cond].silenced_mask for r in rows]), False)
        self.sil_out = torch.from_numpy(sil).to(dev)
        both = np.array([sims[r.cond].experiment.silence_mode == "both" for r in rows])
        sil_in = sil & both[:, None]
        self.sil_in = torch.from_numpy(sil_in).to(dev) if sil_in.any() else None
        self.any_silenced = bool(sil.any())
        # stimulated neurons of the batch (union over rows)
        act = [sims[r.cond].activated_idx for r in rows]
        self.act = np.unique(np.concatenate(act)) if act else np.empty(0, np.int64)
        self.A = int(self.act.size)
        self.act_t = torch.from_numpy(self.act).to(dev)
        # ---- state
        f = self.fdtype
        self.v = torch.full((B, N), c.v_0, dtype=f, device=dev)
        self.g = torch.zeros((B, N), dtype=f, device=dev)
        self.cnt = torch.zeros((B, N), dtype=cnt_dtype, device=dev)
        self.spk_buf = torch.zeros((self.K, B, N), dtype=torch.bool, device=dev)
        self.dense = config.delivery == "dense"
        self.dummy = self.K * self.BN  # start of the region of inc_flat that absorbs padding (sync-free)
        if self.dense:
            self.inc_flat = torch.zeros(self.K * self.BN + 1, dtype=f, device=dev)
            self.inc = self.inc_flat[:-1].view(self.K, B, N)
        # (K, B, A) view of a buffer whose rows are padded to 16 bytes, so that every
        # kick_buf[k] is aligned (compiled kernels assume aligned inputs)
        a_pad = -(-max(self.A, 1) // 4) * 4
        self.kick_buf = torch.zeros((self.K, B, a_pad), dtype=f, device=dev)[:, :, :max(self.A, 1)]
        # temporaries of the eager step
        self.t1 = torch.empty((B, N), dtype=f, device=dev)
        self.t2 = torch.empty((B, N), dtype=f, device=dev)
        self.nr = torch.empty((B, N), dtype=torch.bool, device=dev)
        self.cnt_tmp = torch.empty((B, N), dtype=cnt_dtype, device=dev)
        self.ones_i = torch.ones((), dtype=cnt_dtype, device=dev)
        self.v_rst_t = torch.tensor(c.v_rst, dtype=f, device=dev)
        self.zero_t = torch.zeros((), dtype=f, device=dev)
        # events of the current block for sequential delivery / the synced dense path
        self.seq_flat: Any = None
        self.seq_w: Any = None
        self.seq_bounds: list[int] = [0] * (self.K + 1)
        self._prev_flat: Any = None
        self._step_fn: Callable[[int], None] = self._step_eager
        self._block_fn: Callable[[int], None] | None = None  # fused kernel: n steps of a block at once
        self._expand: Callable[[Any], tuple[Any, Any, Any, Any]] = self._expand_eager
        self._graph: Any = None
        self._kernel_compacts = False  # the fused kernel appends spikes to ev_list (sync-free)
        self._compact_ok = False  # that variant of the kernel passed its check (_check_fused)
        self._kicks_prepare()

    # ------------------------------------------------------------------ kicks
    def _kicks_prepare(self) -> None:
        torch = self.torch
        cfg = self.config
        if cfg.kicks == "device":
            p = np.zeros((self.B, max(self.A, 1)))
            for b, r in enumerate(self.rows):
                sim = self.sims[r.cond]
                pos = np.searchsorted(self.act, sim.activated_idx)
                p[b, pos] = sim.activated_rate_hz * sim.params.dt_s
            self.kick_p = torch.from_numpy(p).to(device=self.dev, dtype=torch.float32)
            r0 = self.rows[0]
            seed = int(self.sims[r0.cond].experiment.seed)
            # one generator per batch, seeded from the experiment seed and the first row
            self.gen = torch.Generator(device=self.dev)
            self.gen.manual_seed((seed * 1_000_003 + r0.cond * 7919 + r0.trial) & 0x7FFFFFFFFFFF)
            return
        by_cond: dict[int, list[int]] = {}
        for b, r in enumerate(self.rows):
            by_cond.setdefault(r.cond, []).append(b)
        empty = (np.empty(0, np.int64), np.empty(0, np.int64))
        per_row: list[tuple[np.ndarray, np.ndarray]] = [empty] * self.B
        for cond, bs in by_cond.items():
            sim = self.sims[cond]
            sched = sim.kicks([self.rows[b].trial for b in bs])
            for b in bs:
                sel = sched.trial == self.rows[b].trial
                steps = sched.step[sel].astype(np.int64)
                pos = np.searchsorted(self.act, sched.idx[sel].astype(np.int64))
                order = np.argsort(steps, kind="stable")
                per_row[b] = (steps[order], pos[order])
        self.kick_rows = per_row

    def _kick_chunk(self, s0: int, s1: int) -> Any:
        """Kick values (volts) of steps s0..s1-1: tensor (s1-s0, B, A) on the device."""
        torch = self.torch
        L = s1 - s0
        A = max(self.A, 1)
        if self.config.kicks == "device":
            u = torch.rand((L, self.B, A), generator=self.gen, device=self.dev, dtype=torch.float32)
            return (u < self.kick_p).to(self.fdtype) * self.c.kick
        arr = np.zeros((L, self.B, A), dtype=np.float64)
        for b, (steps, pos) in enumerate(self.kick_rows):
            lo, hi = np.searchsorted(steps, [s0, s1])
            if hi > lo:
                # several kicks of one neuron in one step add up (v += kick, twice)
                np.add.at(arr, (steps[lo:hi] - s0, b, pos[lo:hi]), self.c.kick)
        return torch.from_numpy(arr).to(device=self.dev, dtype=self.fdtype)

    # ------------------------------------------------------------------ one step
    def _step_eager(self, k: int) -> None:
        """Step k of the block, in place (no allocation, no host synchronisation)."""
        torch = self.torch
        c = self.c
        v, g, cnt, nr, t1, t2 = self.v, self.g, self.cnt, self.nr, self.t1, self.t2
        spk = self.spk_buf[k]
        torch.eq(cnt, 0, out=nr)  # not refractory
        # state update, Brian2's expression order: v' = v_const + (v_from_g*g + v_decay*v)
        torch.mul(g, c.v_from_g, out=t1)
        torch.mul(v, c.v_decay, out=t2)
        t1.add_(t2)
        t1.add_(c.v_const)
        torch.where(nr, t1, v, out=v)
        torch.mul(g, c.g_decay, out=t2)
        torch.where(nr, t2, g, out=g)
        # threshold
        torch.gt(v, c.v_th, out=spk)
        spk.logical_and_(nr)
        # synapses slot: delayed increments to g, Poisson kicks to v. Brian2 drops input
        # that reaches a neuron while it is refractory (the variables are "unless
        # refractory"); in the spike step the reset wipes it anyway.
        if self.dense:
            torch.mul(self.inc[k], nr, out=t2)
            g.add_(t2)
        else:
            lo, hi = self.seq_bounds[k], self.seq_bounds[k + 1]
            if hi > lo:
                flat = self.seq_flat[lo:hi]
                w = self.seq_w[lo:hi] * nr.view(-1)[flat]
                g.view(-1).index_add_(0, flat, w)
        if self.A:
            v.index_add_(1, self.act_t, self.kick_buf[k])
        # reset and refractory counter (where() with 0-dim constants: masked_fill_ is slow on CPU)
        torch.where(spk, self.v_rst_t, v, out=v)
        torch.where(spk, self.zero_t, g, out=g)
        torch.sub(cnt, self.ones_i, out=self.cnt_tmp)
        self.cnt_tmp.clamp_(min=0)
        torch.where(spk, self.rfc_set, self.cnt_tmp, out=cnt)

    def _make_compiled(self) -> Callable[[int], None]:
        """One dense step fused by ``torch.compile`` (float32 fast mode)."""
        torch = self.torch
        c = self.c
        gd, vd, vg, vc, vth, vrst = c.g_decay, c.v_decay, c.v_from_g, c.v_const, c.v_th, c.v_rst
        has_kicks = self.A > 0

        def step(v: Any, g: Any, cnt: Any, rfc_set: Any, inc_k: Any, kick_k: Any, act: Any, spk_k: Any) -> None:
            nr = cnt == 0
            vn = torch.where(nr, vc + (vg * g + vd * v), v)
            gn = torch.where(nr, gd * g, g)
            spk = (vn > vth) & nr
            gn = gn + torch.where(nr, inc_k, 0.0)
            # one elementwise kernel over (B, N) ...
            v.copy_(torch.where(spk, vrst, vn))
            g.copy_(torch.where(spk, 0.0, gn))
            cnt.copy_(torch.where(spk, rfc_set, (cnt - 1).clamp_min(0)))
            spk_k.copy_(spk)
            if has_kicks:
                # ... and a small one over (B, A): the kick lands before the reset, so a
                # neuron that spiked keeps v_rst; the others get v + kick (same rounding)
                v.index_add_(1, act, torch.where(spk[:, act], 0.0, kick_k))

        compiled = torch.compile(step, dynamic=True, fullgraph=True)
        # compile now, on scratch copies of the state (same shapes, dtypes, alignment)
        scratch = [t.clone() for t in (self.v, self.g, self.cnt)]
        compiled(*scratch, self.rfc_set, self.inc[0], self.kick_buf[0], self.act_t, self.spk_buf[0].clone())
        del scratch

        def run(k: int) -> None:
            compiled(self.v, self.g, self.cnt, self.rfc_set, self.inc[k], self.kick_buf[k], self.act_t,
                     self.spk_buf[k])

        return run

    def _make_fused(self) -> Callable[[int], None]:
        """The steps of a block = one Triton kernel (float32 fast mode); checked against the eager step.

        Raises if Triton is missing, the kernel does not build, or its result on a random
        state differs from :meth:`_step_eager` (beyond float32 rounding): the caller then
        falls back to ``torch.compile`` or eager kernels and records why.
        """
        torch = self.torch
        kern = triton_kernel.fused_step_kernel()
        c = self.c
        B, N = self.B, self.N
        BLOCK = triton_kernel.FUSED_BLOCK
        n_col = -(-N // BLOCK)
        # rows that share the refractory periods (the usual case) read one (N,) row
        if bool((self.rfc_set == self.rfc_set[:1]).all()):
            rfc, rfc_stride = self.rfc_set[0].contiguous(), 0
        else:
            rfc, rfc_stride = self.rfc_set, N
        slot_np = np.full(N, -1, dtype=np.int32)
        slot_np[self.act] = np.arange(self.A, dtype=np.int32)
        slot = torch.from_numpy(slot_np).to(self.dev)
        dummy_i32 = torch.zeros(1, dtype=torch.int32, device=self.dev)
        has_kicks = self.A > 0
        consts = (float(c.g_decay), float(c.v_decay), float(c.v_from_g), float(c.v_const), float(c.v_th),
                  float(c.v_rst))
        grid = (n_col, B)
        kstride = self.kick_buf.stride(1)

        BN = self.BN
        kkstride = self.kick_buf.stride(0)

        def run_block(nb: int) -> None:
            compact = self._kernel_compacts
            ev, ev_count, ev_cap = (self.ev_list, self.ev_count, self.e_cap) if compact else (dummy_i32, dummy_i32, 0)
            kern[grid](self.v, self.g, self.cnt, rfc, rfc_stride, self.inc, self.spk_buf, BN, nb,
                       self.kick_buf, kkstride, kstride, slot, N, *consts,
                       ev, ev_count, ev_cap,
                       BLOCK=BLOCK, HAS_KICKS=has_kicks, COMPACT=compact, WRITE_SPK=not compact, num_warps=4)

        self._check_fused(run_block)
        return run_block

    def _check_fused(self, run: Callable[[int], None]) -> None:
        """Compare a few steps of the fused kernel with the eager step on a random state.

        The state (v, g, counter, spike masks, increments, kicks of those steps) is
        restored afterwards. Also checks the variant that lists the spikes (sync-free
        path); if only that one fails, the sync-free path compacts with nonzero_static.
        """
        torch = self.torch
        c = self.c
        dev = self.dev
        gen = torch.Generator(device=dev).manual_seed(12345)
        nk = min(3, self.K)
        shape = (self.B, self.N)
        f = self.fdtype
        tensors = [self.v, self.g, self.cnt, self.spk_buf[:nk], self.inc[:nk], self.kick_buf[:nk]]
        saved = [t.clone() for t in tensors]
        span = c.v_th - c.v_rst
        v0 = (c.v_rst + 1.3 * span * torch.rand(shape, generator=gen, device=dev, dtype=torch.float64)).to(f)
        g0 = (0.2 * span * torch.randn(shape, generator=gen, device=dev, dtype=torch.float64)).to(f)
        cnt0 = torch.randint(-8, 4, shape, generator=gen, device=dev).clamp_min(0).to(self.cnt.dtype)
        inc0 = (0.1 * span * torch.randn((nk,) + shape, generator=gen, device=dev, dtype=torch.float64)).to(f)
        kick0 = (c.kick * (torch.rand(self.kick_buf[:nk].shape, generator=gen, device=dev) < 0.5)).to(f)
        no_spk = torch.zeros((nk,) + shape, dtype=torch.bool, device=dev)

        def start() -> None:
            for t, val in zip(tensors, (v0, g0, cnt0, no_spk, inc0, kick0)):
                t.copy_(val)

        def eager(n: int) -> None:
            for k in range(n):
                self._step_eager(k)

        outs = []
        try:
            for fn in (eager, run):
                start()
                fn(nk)
                outs.append([t.clone() for t in tensors[:4]])
            (ve, ge, ce, se), (vf, gf, cf, sf) = outs
            # the kernel may contract multiply-adds (last-bit differences), so a neuron within
            # an ulp of the threshold may differ: compare the others
            same = (se == sf).all(0)
            n_diff = int((~same).sum())
            ok = (n_diff <= max(2, same.numel() // 100000)
                  and bool(torch.equal(ce[same], cf[same]))
                  and bool(torch.allclose(ve[same], vf[same], rtol=1e-5, atol=1e-8))
                  and bool(torch.allclose(ge[same], gf[same], rtol=1e-5, atol=1e-8)))
            if not ok:
                raise RuntimeError(f"fused kernel disagrees with the eager step on a random state "
                                   f"({n_diff} neurons spike differently, max |dv| "
                                   f"{float((ve - vf).abs().max()):.3g} V)")
            self._compact_ok = False
            try:
                n_exp = int(sf.sum())
                cap = n_exp + 7
                start()
                self.ev_list = torch.full((cap,), -1, dtype=torch.int64, device=dev)
                self.ev_count = torch.zeros(1, dtype=torch.int32, device=dev)
                self.e_cap, self._kernel_compacts = cap, True
                run(nk)
                got = torch.sort(self.ev_list[self.ev_list >= 0]).values
                want = torch.nonzero(sf.reshape(-1)).squeeze(1)
                if int(self.ev_count[0]) != n_exp or not torch.equal(got, want):
                    raise RuntimeError(f"spike list of the fused kernel: {int(self.ev_count[0])} entries "
                                       f"counted, {got.numel()} listed, {want.numel()} spikes")
                self._compact_ok = True
            except Exception as exc:  # noqa: BLE001 - record the fallback, never silent
                self._fall_back("kernel_compaction_error", exc, "the fused kernel's spike list failed its check; "
                                "spikes compacted with nonzero_static")
            finally:
                self._kernel_compacts = False
        finally:
            for t, old in zip(tensors, saved):
                t.copy_(old)

    def _build(self, make: Callable[[], Any], name: str, fallback: str, done: str | None = None) -> Any:
        """``make()``, timed in ``info[name + '_s']``; None if it fails (a fallback, recorded).

        ``info[done]`` (default ``info[name]``) says whether it worked; a failure's error goes
        to ``info[name + '_error']`` and *fallback* to the choices.
        """
        t0 = time.perf_counter()
        try:
            built = make()
        except Exception as exc:  # noqa: BLE001 - record the fallback, never silent
            self._fall_back(f"{name}_error", exc, fallback)
            built = None
        self.info[done or name] = built is not None
        self.info[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        return built

    def _fall_back(self, key: str, exc: BaseException, choice: str) -> None:
        """Record a fallback: the error in ``info[key]``, the choice (with the error's type) in ``choices``."""
        self.info[key] = f"{type(exc).__name__}: {str(exc)[:500]}"
        self.choices.append(f"{choice} ({type(exc).__name__}; meta['{key}'])")

    def _run_steps(self, n: int) -> None:
        if self._block_fn is not None:  # the fused kernel: the n steps in one launch
            self._block_fn(n)
            return
        for k in range(n):
            self._step_fn(k)

    def _decode(self, flat_all: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, step, neuron) from flat indices ``step * B*N + row * N + neuron``."""
        step = flat_all // self.BN
        rem = flat_all - step * self.BN
        row = rem // self.N
        neuron = rem - row * self.N
        return row.astype(np.int64), step.astype(np.int64), neuron.astype(np.int64)

    def run(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Simulate all steps; returns (row, step, neuron) of every spike (host arrays)."""
        cfg = self.config
        self.info["compiled"] = False
        self.info["fused_kernel"] = False
        if cfg.fused_kernel and self.dense and self.fdtype == self.torch.float32:
            self._block_fn = self._build(
                self._make_fused, "fused_kernel", "the fused Triton step kernel is unavailable; the step runs "
                f"{'compiled by torch.compile' if cfg.compile else 'as eager kernels'}")
        if cfg.compile and not self.info["fused_kernel"]:
            self._step_fn = self._build(self._make_compiled, "compile", "torch.compile of the step failed; the "
                                        "step runs as eager kernels", done="compiled") or self._step_eager
        self.info["block_steps"] = self.K
        self.info["sync_free"] = bool(cfg.sync_free and self.dense)
        if cfg.sync_free and self.dense:
            return self._run_sync_free()
        return self._run_synced()

    # ------------------------------------------------------------------ synced path
    def _gather(self, ev: Any) -> tuple[Any, Any, Any]:
        """Outgoing events of the spikes ``ev`` (flat indices into spk_buf), for the next block.

        Returns (k, flat target b*N + post, weight) per synaptic event, sorted by
        (k, row, presynaptic neuron, synapse). Synchronises once (the output size).
        """
        torch = self.torch
        net = self.net
        k = ev // self.BN
        rem = ev - k * self.BN
        b = rem // self.N
        n = rem - b * self.N
        if self.any_silenced:
            n = torch.where(self.sil_out[b, n], net.n, n)  # dummy empty row
        cnt = net.deg[n]
        start = net.start[n]
        total = int(cnt.sum())  # host synchronisation (size of the output)
        e_of = torch.repeat_interleave(torch.arange(n.shape[0], device=self.dev), cnt, output_size=total)
        first = torch.cumsum(cnt, 0) - cnt
        syn = start[e_of] + (torch.arange(total, device=self.dev) - first[e_of])
        post = net.post[syn]
        w = net.weight[syn]
        be = b[e_of]
        if self.sil_in is not None:
            w = torch.where(self.sil_in[be, post], self.zero_t, w)
        return k[e_of], be * self.N + post, w

    def _run_synced(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One host synchronisation per block (``nonzero``); CPU default, CUDA fallback."""
        torch = self.torch
        cfg = self.config
        K, n_steps, BN = self.K, self.n_steps, self.BN
        info = self.info
        use_graph = cfg.cuda_graph and self.dev.type == "cuda" and self.dense
        info["cuda_graph_used"] = False
        t0 = time.perf_counter()
        if use_graph and n_steps >= K:
            self._graph = self._capture(lambda: self._run_steps(K))
        info["capture_s"] = round(time.perf_counter() - t0, 4)
        t_loop = time.perf_counter()
        chunk = max(K, (cfg.chunk_steps // K) * K)
        rec: list[Any] = []
        rec_host: list[np.ndarray] = []
        kicks = None
        kick_lo = 0
        n_syncs = 0
        for s0 in range(0, n_steps, K):
            nb = min(K, n_steps - s0)
            if s0 % chunk == 0:
                kicks = self._kick_chunk(s0, min(s0 + chunk, n_steps))
                kick_lo = s0
            if self.A:
                self.kick_buf[:nb].copy_(kicks[s0 - kick_lo:s0 - kick_lo + nb])
            if self._graph is not None and nb == K:
                self._graph.replay()
            else:
                self._run_steps(nb)
            # ---- once per block: spikes of this block -> events of the next block
            spk = self.spk_buf if nb == K else self.spk_buf[:nb]
            ev = torch.nonzero(spk.reshape(-1)).squeeze(1)  # host synchronisation
            n_syncs += 1
            if self.dense and self._prev_flat is not None:
                self.inc_flat.index_fill_(0, self._prev_flat, 0.0)  # consumed: clear what was set
                self._prev_flat = None
            if ev.numel():
                rec.append(ev + s0 * BN)
                kk, flat, w = self._gather(ev)
                n_syncs += 1
                if self.dense:
                    full = kk * BN + flat
                    self.inc_flat.index_add_(0, full, w)
                    self._prev_flat = full
                else:
                    self.seq_flat, self.seq_w = flat, w
                    self.seq_bounds = torch.searchsorted(kk, torch.arange(K + 1, device=self.dev)).tolist()
            elif not self.dense:
                self.seq_bounds = [0] * (K + 1)
            if len(rec) >= 64:
                rec_host.append(torch.cat(rec).cpu().numpy())
                rec = []
        if rec:
            rec_host.append(torch.cat(rec).cpu().numpy())
        info["loop_s"] = round(time.perf_counter() - t_loop, 4)
        info["host_syncs"] = n_syncs
        return self._decode(np.concatenate(rec_host) if rec_host else np.empty(0, np.int64))

    # ------------------------------------------------------------------ CUDA graph
    def _capture(self, fn: Callable[[], None]) -> Any:
        """Capture ``fn`` in a CUDA graph (state restored afterwards); None if capture fails."""
        torch = self.torch
        state = [self.v, self.g, self.cnt, self.spk_buf]
        if self.dense:
            state.append(self.inc_flat)
        if getattr(self, "prev_tgt", None) is not None:
            state += [self.prev_tgt, self.ev_static, self.flags, self.maxima]
        if self._kernel_compacts:
            state += [self.ev_list, self.ev_count]
        saved = [t.clone() for t in state]
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            self.info["cuda_graph_used"] = True
        except Exception as exc:  # noqa: BLE001 - record the fallback, never silent
            self._fall_back("cuda_graph_error", exc, "CUDA graph capture failed; kernels launched one by one")
            graph = None
        torch.cuda.synchronize()
        for t, old in zip(state, saved):
            t.copy_(old)
        torch.cuda.synchronize()
        return graph

    # ------------------------------------------------------------------ sync-free path
    def _compact(self, mask_flat: Any, size: int) -> Any:
        """Flat indices of the True entries of *mask_flat* (in order), padded with -1 to *size*.

        No host synchronisation: ``torch.nonzero_static`` where the device supports it,
        else a cumulative-sum scatter.
        """
        torch = self.torch
        if self._nonzero_static:
            return torch.nonzero_static(mask_flat, size=size, fill_value=-1).squeeze(1)
        pos = torch.cumsum(mask_flat, 0)  # 1-based rank of each True entry
        slot = torch.where(mask_flat & (pos <= size), pos - 1, size)
        out = torch.full((size + 1,), -1, dtype=torch.int64, device=self.dev)
        out.scatter_(0, slot, torch.arange(mask_flat.shape[0], device=self.dev))
        out[size] = -1
        return out[:size]

    def _alloc_sync_free(self, e_cap: int, s_cap: int) -> None:
        torch = self.torch
        dev = self.dev
        self.e_cap, self.s_cap = e_cap, s_cap
        # Padding slots aim at a dummy region of inc_flat, one distinct entry per slot
        # (``K*B*N + slot``), never read. One shared dummy entry made every padding slot an
        # atomic add on the same address: the atomics serialise (measured on an H100: 1.7 ms
        # per block of 18 steps for 1M slots, ~1.7 ns per padding slot); distinct,
        # consecutive addresses are coalesced and cost about as much as a copy.
        self.inc_flat = torch.zeros(self.K * self.BN + s_cap, dtype=self.fdtype, device=dev)
        self.inc = self.inc_flat[:self.K * self.BN].view(self.K, self.B, self.N)
        self.pos_s = torch.arange(s_cap, device=dev)
        self.pad_tgt = self.pos_s + self.dummy
        self.prev_tgt = self.pad_tgt.clone()
        self.ev_static = torch.full((e_cap,), -1, dtype=torch.int64, device=dev)
        self.flags = torch.zeros(2, dtype=torch.bool, device=dev)  # [spike overflow, synapse overflow]
        self.maxima = torch.zeros(2, dtype=torch.int64, device=dev)  # most spikes / events in one block
        if self._kernel_compacts:  # spike list filled by the fused step kernel (no nonzero_static)
            self.ev_list = torch.full((e_cap,), -1, dtype=torch.int64, device=dev)
            self.ev_count = torch.zeros(1, dtype=torch.int32, device=dev)

    def _gather_static(self) -> None:
        """Sync-free, fixed-shape gather: spikes in spk_buf -> increments in inc (next block).

        Clears the increments of the previous gather (which have been consumed), compacts
        the spikes into ``ev_static`` (at most ``e_cap``), expands their CSR rows into
        ``s_cap`` slots (padding goes to the dummy slot with weight 0) and sets ``flags``
        when a capacity was too small.
        """
        torch = self.torch
        self.inc_flat.index_fill_(0, self.prev_tgt, 0.0)
        if self._kernel_compacts:
            # the fused kernel appended the block's spikes (unordered; the list is full,
            # ev[-1] >= 0, exactly when they may not all fit: same overflow test)
            self.ev_static.copy_(self.ev_list)
            self.ev_list.fill_(-1)
            self.ev_count.zero_()
        else:
            self.ev_static.copy_(self._compact(self.spk_buf.view(-1), self.e_cap))
        tgt, w, overflow, load = self._expand(self.ev_static)
        self.inc_flat.index_add_(0, tgt, w)
        self.prev_tgt.copy_(tgt)
        self.flags.logical_or_(overflow)
        torch.maximum(self.maxima, load, out=self.maxima)

    def _expand_eager(self, ev: Any) -> tuple[Any, Any, Any, Any]:
        """Flat spike indices (-1 = padding) -> (targets in inc_flat, weights, overflow flags, load).

        Pure function of its input and the batch's constant tensors (so that
        ``torch.compile`` can fuse it): ``s_cap`` synaptic slots, the unused ones aimed at
        the dummy slot with weight 0. ``overflow`` is bool ``(2,)``: the spike list is full
        (spikes may be missing), the synaptic events exceed ``s_cap``.
        """
        torch = self.torch
        net = self.net
        BN, N = self.BN, self.N
        valid_e = ev >= 0
        evc = ev.clamp_min(0)
        k = evc // BN
        rem = evc - k * BN
        b = rem // N
        n = rem - b * N
        keep = valid_e & ~self.sil_out[b, n] if self.any_silenced else valid_e
        n = torch.where(keep, n, net.n)  # dropped and padding: the empty dummy row
        cnt = net.deg[n]
        cum = torch.cumsum(cnt, 0)
        total = cum[-1]
        e_of = torch.searchsorted(cum, self.pos_s, right=True).clamp_max(self.e_cap - 1)
        valid = self.pos_s < total
        syn = net.start[n][e_of] + (self.pos_s - (cum - cnt)[e_of])
        syn = torch.where(valid, syn, 0)
        post = net.post[syn]
        w = net.weight[syn]
        be = b[e_of]
        if self.sil_in is not None:
            valid = valid & ~self.sil_in[be, post]
        tgt = torch.where(valid, k[e_of] * BN + be * N + post, self.pad_tgt)
        w = torch.where(valid, w, self.zero_t)
        overflow = torch.stack([ev[-1] >= 0, total > self.s_cap])
        load = torch.stack([valid_e.sum(), total])  # spikes and synaptic events of this block
        return tgt, w, overflow, load

    def _make_compiled_expand(self) -> Callable[[Any], tuple[Any, Any, Any, Any]]:
        """``torch.compile`` of :meth:`_expand_eager` (some 40 small kernels -> a few)."""
        torch = self.torch
        compiled = torch.compile(self._expand_eager, dynamic=False)
        compiled(torch.full((self.e_cap,), -1, dtype=torch.int64, device=self.dev))  # compile now
        return compiled

    def _last_spikes(self, nb: int) -> np.ndarray:
        """Flat indices (step within the block) of the spikes of the block just run (host sync)."""
        torch = self.torch
        if self._kernel_compacts:  # listed by the fused kernel, which did not write spk_buf
            count = int(self.ev_count[0])
            if count > self.e_cap:
                raise Overflow("spikes")
            ev = self.ev_list[:count]
            return ev[ev >= 0].cpu().numpy()
        return torch.nonzero(self.spk_buf[:nb].reshape(-1)).squeeze(1).cpu().numpy()

    def _block_sync_free(self) -> None:
        self._gather_static()
        self._run_steps(self.K)

    def _reset_state(self) -> None:
        self.v.fill_(self.c.v_0)
        self.g.zero_()
        self.cnt.zero_()
        self.spk_buf.zero_()
        self.inc_flat.zero_()
        self.prev_tgt.copy_(self.pad_tgt)
        self.ev_static.fill_(-1)
        self.flags.zero_()
        self.maxima.zero_()
        if self._kernel_compacts:
            self.ev_list.fill_(-1)
            self.ev_count.zero_()

    def _run_sync_free(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """No host synchronisation inside the loop: fixed-capacity gathers, one sync per chunk.

        A capacity overflow (seen at the end of a chunk) restarts the batch with 4x that
        capacity; the number of restarts is recorded in the result's metadata.
        """
        torch = self.torch
        try:
            torch.nonzero_static(torch.zeros(4, dtype=torch.bool, device=self.dev), size=2, fill_value=-1)
            self._nonzero_static = True
        except Exception:  # noqa: BLE001 - older torch or device without it
            self._nonzero_static = False
            self.choices.append("torch.nonzero_static is unavailable here: spikes compacted by a cumulative-sum "
                                "scatter")
        self.info["nonzero_static"] = self._nonzero_static
        self._kernel_compacts = bool(self.info.get("fused_kernel")) and self._compact_ok
        self.info["spikes_compacted_in_kernel"] = self._kernel_compacts
        mean_deg = max(1.0, float(self.net.n_edges) / max(self.n_real, 1))
        e_cap = self.config.spike_capacity or max(256, 8 * self.B * self.K)
        # synaptic events: room for 2 * e_cap spikes of mean out-degree, rounded up to a power
        # of two (B=1: 65536, B=32: 1048576; each slot costs ~40 bytes of gather traffic per
        # block, about what the fused step kernel moves per neuron of a row). Sugar on the
        # synthetic brain needs ~30 spikes (~3k-10k events) per trial and block, but the
        # trials of a batch start in step and their first waves coincide; an overflow reruns
        # the batch (and recompiles the gather), while unused slots now cost one coalesced
        # pass. The load actually seen is recorded (meta['max_events_per_block']) to tune this.
        s_cap = self.config.synapse_capacity or max(1 << 16,
                                                     1 << max(0, int(2 * e_cap * mean_deg) - 1).bit_length())
        # capacities that a previous batch of this engine had to grow to (same network and
        # batch size): start there instead of overflowing and rerunning again
        learned = self.learned
        key = (self.net.key, self.B, self.K)
        if key in learned and self.config.spike_capacity is None and self.config.synapse_capacity is None:
            e_cap, s_cap = (max(a, b) for a, b in zip((e_cap, s_cap), learned[key]))
        restarts = 0
        while True:
            self._alloc_sync_free(e_cap, s_cap)
            try:
                out = self._attempt_sync_free()
            except Overflow as exc:
                restarts += 1
                which = str(exc)
                if which == "spikes":
                    e_cap *= 4
                    s_cap = max(s_cap, int(e_cap * mean_deg))
                else:
                    s_cap *= 4
                log.info("torch engine: %s capacity exceeded; rerunning the batch with %d spikes / %d synapses "
                         "per block", which, e_cap, s_cap)
                continue
            self.info["capacity_restarts"] = restarts
            self.info["spike_capacity"] = e_cap
            self.info["synapse_capacity"] = s_cap
            if restarts:
                learned[key] = (e_cap, s_cap)
            return out

    def _attempt_sync_free(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self.torch
        cfg = self.config
        K, n_steps, BN = self.K, self.n_steps, self.BN
        info = self.info
        n_full = n_steps // K
        info["cuda_graph_used"] = False
        t0 = time.perf_counter()
        self._expand = self._expand_eager
        if cfg.compile and not info.get("compile_error"):
            self._expand = self._build(self._make_compiled_expand, "gather_compile", "torch.compile of the "
                                       "gather failed; it runs as eager kernels",
                                       done="gather_compiled") or self._expand_eager
            t0 = time.perf_counter()
        self._graph = None
        if cfg.cuda_graph and self.dev.type == "cuda" and n_full > 0:
            self._graph = self._capture(self._block_sync_free)
            if self._graph is None and self._nonzero_static:
                # nonzero_static may not be capturable on this build: compact by cumsum instead
                self.choices.append("CUDA graph capture retried without nonzero_static (spikes compacted by a "
                                    "cumulative-sum scatter)")
                self._nonzero_static = False
                self.info["nonzero_static"] = False
                self._graph = self._capture(self._block_sync_free)
        self._reset_state()
        info["capture_s"] = round(time.perf_counter() - t0, 4)
        t_loop = time.perf_counter()
        chunk_blocks = max(1, cfg.chunk_steps // K)
        raw: list[tuple[int, Any]] = []  # (block whose spikes these are, device ev copy)
        host: list[np.ndarray] = []
        n_syncs = 0

        def flush() -> None:
            nonlocal raw, n_syncs
            # the one synchronisation per chunk: overflow flags and the load seen so far
            fl = torch.cat([self.flags.to(torch.int64), self.maxima]).cpu().numpy()
            flags = fl[:2].astype(bool)
            info["max_spikes_per_block"], info["max_events_per_block"] = int(fl[2]), int(fl[3])
            n_syncs += 1
            if flags[0]:
                raise Overflow("spikes")
            if flags[1]:
                raise Overflow("synapses")
            if raw:
                blocks = np.array([j for j, _ in raw], dtype=np.int64)
                arr = torch.stack([e for _, e in raw]).cpu().numpy()
                ok = arr >= 0
                host.append((arr + (blocks * K * BN)[:, None])[ok])
            raw = []

        for c0 in range(0, n_full, chunk_blocks):
            c1 = min(c0 + chunk_blocks, n_full)
            kicks = self._kick_chunk(c0 * K, c1 * K) if self.A else None
            for j in range(c0, c1):
                if self.A:
                    self.kick_buf.copy_(kicks[(j - c0) * K:(j - c0 + 1) * K])
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._block_sync_free()
                if j > 0:  # this block's gather compacted the spikes of block j - 1
                    raw.append((j - 1, self.ev_static.clone()))
            flush()
        # the remainder (n_steps not a multiple of K): eager, with ordinary syncs
        nb = n_steps - n_full * K
        if n_full > 0 and nb > 0:
            self._gather_static()
            raw.append((n_full - 1, self.ev_static.clone()))
            flush()
        if nb > 0:
            if self.A:
                self.kick_buf[:nb].copy_(self._kick_chunk(n_full * K, n_steps))
            self._run_steps(nb)
            host.append(self._last_spikes(nb) + n_full * K * BN)
        elif n_full > 0:
            host.append(self._last_spikes(K) + (n_full - 1) * K * BN)
        n_syncs += 1
        info["loop_s"] = round(time.perf_counter() - t_loop, 4)
        info["host_syncs"] = n_syncs
        flat_all = np.concatenate(host) if host else np.empty(0, np.int64)
        return self._decode(np.sort(flat_all))
