"""The fused Triton kernel of the torch engine: all steps of one block in one launch (float32).

Units: volts (``v``, ``g``, increments, kicks), integer steps (time).

Within a block of ``K = delay_steps`` steps the neurons are independent: a spike of this
block reaches ``g`` in the next block at the earliest, and this block's increments
``inc[k]`` were all gathered before it started. So one program takes ``BLOCK`` neurons of
one row, loads ``v``, ``g`` and the refractory counter once, runs ``n_steps`` steps in
registers (state update, threshold, the increment ``inc[k]`` dropped while refractory,
the Poisson kicks: a masked gather from the kick table through a per-neuron column index
``slot`` read once per block, reset, counter) and stores the state once. Spikes: the mask
``spk[k]`` (``WRITE_SPK``) and/or an append to the block's spike list, one atomic per
program and step with spikes (``COMPACT``, the sync-free path; the list is unordered, the
host sorts, and the counter keeps counting past the capacity so that an overflow is seen).

Memory traffic per neuron and block of 18 steps (int8 counter): v, g, cnt read and
written once, 2 x 9 B, + inc 18 x 4 B (+ rfc 1 B and slot 4 B, shared by all rows: one
(N,) row each, L2-resident) = 90 B, i.e. **5 B per neuron-step** (6 B with the spike
mask), in ONE launch per block. Before: the torch.compile step, 3-4 launches per step
moving about 36 B per neuron-step (profile of 32 trials on an H100: 54.6 + 13.5 + 7.3 +
1.7 us per step for 4.4M neurons); a one-step fused kernel would still move 22 B.

Triton is imported on the first call of :func:`fused_step_kernel` only, so that this
module imports without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FUSED_BLOCK", "fused_step_kernel"]

#: Neurons per program of the fused step kernel.
FUSED_BLOCK = 1024

_KERNEL: Any = None


def fused_step_kernel() -> Any:
    """The Triton kernel that runs the steps of one block (built on first use, then reused).

    Returns
    -------
    triton.JITFunction
        ``lif_block[grid](v, g, cnt, rfc, rfc_stride, inc, spk, BN, n_steps, kick,
        kick_kstride, kick_stride, slot, N, gd, vd, vg, vc, vth, vrst, ev, ev_count, ev_cap,
        BLOCK=, HAS_KICKS=, COMPACT=, WRITE_SPK=)`` over the grid ``(ceil(N / BLOCK), B)``.

    Raises
    ------
    ImportError
        If Triton is not installed (the engine then falls back and records why).
    """
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["n_steps", "ev_cap"])  # one binary for every block length / capacity
    def lif_block(v_ptr, g_ptr, cnt_ptr, rfc_ptr, rfc_stride, inc_ptr, spk_ptr, BN, n_steps,
                  kick_ptr, kick_kstride, kick_stride, slot_ptr, N,
                  gd, vd, vg, vc, vth, vrst, ev_ptr, ev_count_ptr, ev_cap,
                  BLOCK: tl.constexpr, HAS_KICKS: tl.constexpr, COMPACT: tl.constexpr,
                  WRITE_SPK: tl.constexpr):
        col = tl.program_id(0)
        row = tl.program_id(1).to(tl.int64)
        n = col * BLOCK + tl.arange(0, BLOCK)
        m = n < N
        off = row * N + n
        v = tl.load(v_ptr + off, mask=m, other=0.0)
        g = tl.load(g_ptr + off, mask=m, other=0.0)
        cnt = tl.load(cnt_ptr + off, mask=m, other=1).to(tl.int32)
        rfc = tl.load(rfc_ptr + row * rfc_stride + n, mask=m, other=0).to(tl.int32)
        if HAS_KICKS:  # column of each neuron in the kick table, -1 if never kicked
            slot = tl.load(slot_ptr + n, mask=m, other=-1, eviction_policy="evict_last")
            kicked = slot >= 0
            kick_row = kick_ptr + row * kick_stride + tl.maximum(slot, 0)
        kofs = row * 0  # k * B * N in int64, carried through the loop
        for k in range(n_steps):
            inc = tl.load(inc_ptr + kofs + off, mask=m, other=0.0, eviction_policy="evict_first")
            nr = cnt == 0
            vn = tl.where(nr, vc + (vg * g + vd * v), v)
            gn = tl.where(nr, gd * g + inc, g)
            spk = (vn > vth) & nr & m  # (lanes past N: never, whatever their dummy state does)
            if HAS_KICKS:  # a masked gather: no memory traffic for the neurons never kicked
                kv = tl.load(kick_row + k * kick_kstride, mask=m & kicked, other=0.0)
                vn = tl.where(kicked, vn + kv, vn)
            v = tl.where(spk, vrst, vn)
            g = tl.where(spk, 0.0, gn)
            cnt = tl.where(spk, rfc, tl.maximum(cnt - 1, 0))
            if WRITE_SPK:
                tl.store(spk_ptr + kofs + off, spk, mask=m)
            if COMPACT:
                s32 = spk.to(tl.int32)
                n_spk = tl.sum(s32, 0)
                if n_spk > 0:
                    base = tl.atomic_add(ev_count_ptr, n_spk)
                    pos = base + tl.cumsum(s32, 0) - 1
                    tl.store(ev_ptr + pos, kofs + off, mask=spk & (pos < ev_cap))
            kofs += BN
        tl.store(v_ptr + off, v, mask=m)
        tl.store(g_ptr + off, g, mask=m)
        tl.store(cnt_ptr + off, cnt.to(cnt_ptr.dtype.element_ty), mask=m)

    _KERNEL = lif_block
    return lif_block
