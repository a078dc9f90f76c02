"""Kernels of the event-driven engine (:mod:`brainfly.engines.event`), in numba; their
records, the workspace and the packing of the connections are in
:mod:`brainfly.engines._event_records` (re-exported here).

Units: volts, integer steps. One call of :func:`run_trial` simulates one trial from a
per-thread workspace; it holds no Python objects and releases the GIL, so trials run in
parallel threads. The same source is also compiled ahead of time
(:mod:`brainfly.engines._event_aot`). The algorithm and its exactness:
``docs/engines/event.md``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._event_records import (  # noqa: F401 - the records are part of this module's interface
    RUNAWAY_BOUND, RUNAWAY_NONE, RUNAWAY_SUSTAINED, ST_BASE, ST_FREE_E, ST_N_CHECK, ST_N_DETAIL, ST_N_E,
    ST_N_EVENTS, ST_N_HIT, ST_N_PRED, ST_N_REACHED, ST_N_SP, ST_N_SYN2, ST_RUNAWAY_KIND, ST_RUNAWAY_ONSET, ST_SLOT,
    ST_WIN_SUM, STATE_WIN, Drive, Model, Network, Neurons, Runaway, Span, Tables, Workspace, new_workspace,
    pack_synapses)

__all__ = ["run_trial", "new_workspace", "pack_synapses", "Network", "Neurons", "Model", "Tables", "Drive",
           "Workspace", "Runaway", "Span", "RUNAWAY_NONE", "RUNAWAY_BOUND", "RUNAWAY_SUSTAINED"]


#: Connections ahead in a presynaptic row whose target record is prefetched.
PREFETCH_AHEAD = 16
#: Prefetch only once a trial has reached more neurons than this: fewer slot records fit
#: in a core's L2 cache, and there the prefetch instructions cost more than they save.
PREFETCH_ABOVE_SLOTS = 65536
#: Steps of Brian2's update a crossing search iterates before it bisects.
SCAN_STEPS = 32
#: P of a refractory neuron (its input is discarded at the release anyway); any P below
#: REFRACTORY_BELOW (rebasing scales it) marks the neuron refractory.
REFRACTORY_P = -1e300
REFRACTORY_BELOW = -1e200
#: Bits of ``flags``: queued for re-prediction in this step; a prediction is pending.
QUEUED = 1
PENDING = 2
CHECK = 4  #: the pending entry is a check (no crossing before it), not a predicted spike
SEEN = 8  #: re-predicted in this step already (a neuron may be queued twice)
#: A crossing search is put off (a check queued instead) when the bound puts the first
#: possible crossing at least this many steps ahead.
LAZY_MIN = 4

#: numba options of the kernels. ``error_model="numpy"``: no zero-division checks (no
#: division in the kernels has a zero divisor; the results are the same bit for bit) and
#: less code to compile. The helpers are only called from other kernels: no Python or C
#: wrappers are compiled for them.
_KERNEL = dict(cache=True, nogil=True, error_model="numpy")
_HELPER = dict(_KERNEL, no_cpython_wrapper=True, no_cfunc_wrapper=True)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch the cache line of ``arr[idx, 0]`` (a hint; no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        inds = [i] + [ir.Constant(ir.IntType(64), 0)] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _add_pair(typingctx, arr, idx, w, ca, cb):
    """``arr[idx] += w * ca``, ``arr[idx + 1] += w * cb`` (a record's P and Q) with one
    16-byte load and store (the same rounding as two scalar updates); returns both."""
    sig = types.UniTuple(types.float64, 2)(arr, idx, w, ca, cb)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [i], wraparound=False, boundscheck=False)
        v2 = ir.VectorType(ir.DoubleType(), 2)
        i32 = ir.IntType(32)
        vptr = builder.bitcast(ptr, v2.as_pointer())
        wv = builder.insert_element(ir.Constant(v2, ir.Undefined), args[2], ir.Constant(i32, 0))
        wv = builder.insert_element(wv, args[2], ir.Constant(i32, 1))
        cv = builder.insert_element(ir.Constant(v2, ir.Undefined), args[3], ir.Constant(i32, 0))
        cv = builder.insert_element(cv, args[4], ir.Constant(i32, 1))
        new = builder.fadd(builder.load(vptr, align=8), builder.fmul(wv, cv))
        builder.store(new, vptr, align=8)
        p = builder.extract_element(new, ir.Constant(i32, 0))
        q = builder.extract_element(new, ir.Constant(i32, 1))
        return context.make_tuple(builder, signature.return_type, [p, q])

    return sig, codegen


@intrinsic
def _queue8(typingctx, touched, nt, syn, kk, tmask, p_th, p0, p1, p2, p3, p4, p5, p6, p7):
    """The queue step of eight events at once: the record offsets (``syn[kk:kk + 8] &
    tmask``) of those whose P (*p0*..*p7*) exceeds *p_th* are appended to ``touched`` at
    *nt*, in order (a compress-store: one AVX-512 instruction where the CPU has it);
    returns the new length."""
    sig = types.uint64(touched, nt, syn, kk, tmask, p_th, *([types.float64] * 8))

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
        v8d, v8b, v8q = ir.VectorType(ir.DoubleType(), 8), ir.VectorType(i1, 8), ir.VectorType(i64, 8)
        pv = ir.Constant(v8d, ir.Undefined)
        th = ir.Constant(v8d, ir.Undefined)
        for lane in range(8):
            pv = builder.insert_element(pv, args[6 + lane], ir.Constant(i32, lane))
            th = builder.insert_element(th, args[5], ir.Constant(i32, lane))
        mask = builder.fcmp_ordered(">", pv, th)
        synty = signature.args[2]
        syn_ary = context.make_array(synty)(context, builder, args[2])
        k = context.cast(builder, args[3], signature.args[3], types.intp)
        rptr = cgutils.get_item_pointer(context, builder, synty, syn_ary, [k], wraparound=False, boundscheck=False)
        rec_bits = context.get_data_type(synty.dtype).width
        vrec = ir.VectorType(ir.IntType(rec_bits), 8)
        recs = builder.load(builder.bitcast(rptr, vrec.as_pointer()), align=rec_bits // 8)
        if rec_bits < 64:
            recs = builder.zext(recs, v8q)
        tm = ir.Constant(v8q, ir.Undefined)
        for lane in range(8):
            tm = builder.insert_element(tm, args[4], ir.Constant(i32, lane))
        offs = builder.and_(recs, tm)
        tty = signature.args[0]
        t_ary = context.make_array(tty)(context, builder, args[0])
        n0 = context.cast(builder, args[1], signature.args[1], types.intp)
        dst = cgutils.get_item_pointer(context, builder, tty, t_ary, [n0], wraparound=False, boundscheck=False)
        fnty = ir.FunctionType(ir.VoidType(), [v8q, i64.as_pointer(), v8b])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.compressstore.v8i64")
        builder.call(fn, [offs, builder.bitcast(dst, i64.as_pointer()), mask])
        bits = builder.bitcast(mask, i8)
        pop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i8, [i8]), "llvm.ctpop.i8")
        cnt = builder.zext(builder.call(pop, [bits]), i64)
        return builder.add(args[1], cnt)

    return sig, codegen


@njit(**_HELPER)
def _grow_i64(arr, n_keep):
    out = np.empty(2 * arr.shape[0] + 1024, np.int64)
    for k in range(n_keep):  # (a loop: a slice assignment compiles numba's shape-mismatch error)
        out[k] = arr[k]
    return out


@njit(**_HELPER)
def _grow_i32(arr, n_keep):
    out = np.empty(2 * arr.shape[0] + 1024, np.int32)
    for k in range(n_keep):  # (a loop: a slice assignment compiles numba's shape-mismatch error)
        out[k] = arr[k]
    return out


@njit(**_HELPER)
def _pow(tab, base_log, k):
    if k < tab.shape[0]:
        return tab[k]
    return math.exp(base_log * k)


@njit(**_HELPER, inline="always")
def _below_threshold(big_a, cg, x_th, htab, h_per_rho):
    """True where a free trajectory with g > 0 (``big_a = x + c g``, ``cg = c g``) stays
    at or below ``x_th``: A is its sup (x(t) < A for all t > 0), and its continuous peak
    is ``A h(B/A)`` with h decreasing, bounded from above by the table's entry at or below
    B/A (:func:`peak_table`)."""
    if big_a <= x_th:
        return True
    j = int((cg / big_a) * h_per_rho)
    if j >= htab.shape[0]:
        j = htab.shape[0] - 1
    return big_a * htab[j] < x_th


@njit(**_HELPER)
def _scan_crossing(v, g, v_th, v_const, v_decay, v_from_g, g_decay, k_end):
    """Brian2's own update ``v' = v_const + (v_from_g*g + v_decay*v)`` iterated from (v, g)
    for up to *k_end* steps: the first k with v(k) > v_th; -1 once v falls (a free
    trajectory rises at most once, so it cannot come back up to a threshold above rest);
    0 when still rising after k_end steps. A crossing is rarely more than a few steps
    away when a search is made (farther ones are put off, see run_trial), and these few
    steps cost less than a bisection."""
    vv = v
    gg = g
    for k in range(1, k_end + 1):
        vn = v_const + (v_from_g * gg + v_decay * vv)
        gg = g_decay * gg
        if vn > v_th:
            return k
        if vn < vv:
            return -1
        vv = vn
    return 0


@njit(**_HELPER, inline="always")
def _first_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                    v_const, v_decay, v_from_g, g_decay, k_max, htab, h_per_rho):
    """First k in 1..k_max with v(k) > v_th for the free trajectory from (v, g), or -1.

    Closed form x(k) = x a^k + c (a^k - b^k) g (x = v - v0). An analytic bound rejects
    almost every call without transcendental functions (:func:`_below_threshold`); the
    rest is :func:`_search_crossing`, which callers that applied the bound call directly.
    """
    if g > 0.0 and _below_threshold((v - v0) + c * g, c * g, v_th - v0, htab, h_per_rho):
        return -1
    return _search_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow, v_const, v_decay, v_from_g, g_decay,
                            k_max)


@njit(**_HELPER)
def _search_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow, v_const, v_decay, v_from_g, g_decay, k_max):
    """:func:`_first_crossing` after its bound: Brian2's own update is iterated for up to
    SCAN_STEPS steps (:func:`_scan_crossing`); a crossing farther away is found from the
    discrete peak by bisection on the rising part, and confirmed by iterating Brian2's
    update from just before it."""
    if k_max < 1:
        return -1
    x = v - v0
    x_th = v_th - v0
    k = _scan_crossing(v, g, v_th, v_const, v_decay, v_from_g, g_decay, min(k_max, SCAN_STEPS))
    if k != 0:
        return k
    if k_max <= SCAN_STEPS:
        return -1
    if g > 0.0:
        big_a = x + c * g
        big_b = c * g
        # continuous peak t* (steps): a^t A log a = b^t B log b
        ratio = (big_b * log_b) / (big_a * log_a)
        if ratio <= 1.0:
            kp = 1
        else:
            t_star = math.log(ratio) / (log_a - log_b)
            kp = int(t_star)
            if kp < 1:
                kp = 1
            elif kp + 1 <= k_max:
                ak = _pow(apow, log_a, kp)
                bk = _pow(bpow, log_b, kp)
                ak1 = _pow(apow, log_a, kp + 1)
                bk1 = _pow(bpow, log_b, kp + 1)
                if x * ak1 + c * (ak1 - bk1) * g > x * ak + c * (ak - bk) * g:
                    kp = kp + 1
        if kp > k_max:
            kp = k_max
    else:
        # g <= 0: the trajectory from k=1 on is non-increasing while above 0
        if x <= x_th:
            return -1
        kp = 1
    return _bisect_confirm(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow, v_const, v_decay, v_from_g, g_decay,
                           k_max, kp)


@njit(**_HELPER)
def _crossing_by(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                 v_const, v_decay, v_from_g, g_decay, k_max, k_by, htab, h_per_rho):
    """:func:`_first_crossing` where the trajectory is known to lie above ``v_th`` at
    k_by (a pending prediction that input since can only have advanced): the free
    trajectory is unimodal, so the steps in 1..k_by above threshold are those from the
    first crossing on, and bisection on them needs neither the bound nor the peak. Falls
    back to :func:`_first_crossing` where the closed form at k_by says otherwise."""
    if k_by < 1 or k_by > k_max:
        return _first_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                               v_const, v_decay, v_from_g, g_decay, k_max, htab, h_per_rho)
    if k_by <= SCAN_STEPS:
        k = _scan_crossing(v, g, v_th, v_const, v_decay, v_from_g, g_decay, k_by)
        if k > 0:
            return k
    ak = _pow(apow, log_a, k_by)
    bk = _pow(bpow, log_b, k_by)
    if not (v0 + ((v - v0) * ak + c * (ak - bk) * g) > v_th):
        return _first_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                               v_const, v_decay, v_from_g, g_decay, k_max, htab, h_per_rho)
    return _bisect_confirm(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow, v_const, v_decay, v_from_g, g_decay,
                           k_max, k_by)


@njit(**_HELPER)
def _bisect_confirm(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow, v_const, v_decay, v_from_g, g_decay,
                    k_max, kp):
    """The end of :func:`_first_crossing`: the first k in 1..kp above threshold by
    bisection where the closed form is above it at kp (the rising part up to the peak kp,
    or up to a step known above), then Brian2's own update iterated from two steps
    before to confirm it."""
    x = v - v0
    ak = _pow(apow, log_a, kp)
    bk = _pow(bpow, log_b, kp)
    if not (v0 + (x * ak + c * (ak - bk) * g) > v_th):
        # the closed form says no; confirm near the peak with Brian2's iteration below
        lo_k = kp
        found = -1
    else:
        # bisection for the first k in [1, kp] above threshold (rising part)
        lo = 1
        hi = kp
        while lo < hi:
            mid = (lo + hi) // 2
            am = _pow(apow, log_a, mid)
            bm = _pow(bpow, log_b, mid)
            if v0 + (x * am + c * (am - bm) * g) > v_th:
                hi = mid
            else:
                lo = mid + 1
        lo_k = lo
        found = lo
    # Exact stepping with Brian2's update near the crossing: start from the closed form
    # a few steps before and iterate v' = v_const + (v_from_g*g + v_decay*v).
    k0 = lo_k - 2
    if k0 < 0:
        k0 = 0
    if k0 == 0:
        vv = v
        gg = g
    else:
        a0 = _pow(apow, log_a, k0)
        b0 = _pow(bpow, log_b, k0)
        vv = v0 + (x * a0 + c * (a0 - b0) * g)
        gg = g * b0
    k_end = lo_k + 1
    if k_end > k_max:
        k_end = k_max
    k = k0
    while k < k_end:
        vn = v_const + (v_from_g * gg + v_decay * vv)
        gg = g_decay * gg
        vv = vn
        k += 1
        if vv > v_th:
            return k
    return found


@njit(**_HELPER, boundscheck=False, inline="always")
def _update(syn, wtab, hot, k, tmask, tb, ca, cb):
    """One event, record ``syn[k]``, without its queue step: the target's P and Q move
    by its weight times (*ca*, *cb*); returns the target's new P and its record offset.
    (Inlined by numba: as a call it cost the event engine ~10%, like
    :func:`_below_threshold`.)"""
    v = np.uint64(syn[k])
    i0 = v & tmask
    pp, qq = _add_pair(hot, i0, wtab[v >> tb], ca, cb)
    return pp, i0


@njit(**_HELPER, boundscheck=False, inline="never")
def _deliver(k0, k1, syn, wtab, t_bits, hot, touched, n_touched, ca, cb, p_th, prefetch):
    """Deliver the connections k0..k1-1 (one presynaptic row) of step n: P += w c a^-(n-B),
    Q += w c b^-(n-B) on ``hot`` (flat: P of slot t at 2t, Q at 2t+1), and queue the
    targets whose ``A = P a^(n-B)`` exceeds ``x_th`` (``P > p_th = x_th a^-(n-B)``, rounded
    down) for re-prediction, by their record offset 2t. A bounds the free trajectory where
    g > 0; where g <= 0 a neuron at or below threshold (as every neuron that did not spike
    is) cannot cross, and A <= x does not matter. A refractory target's far negative P
    never queues it. Returns the new length of ``touched``, which needs room for k1 - k0
    more entries. Branch-free: every target is written and the length advances where the
    bound says so (a branch taken for one event in twenty, at random, cost more than all
    the rest); a neuron may so be queued twice in a step (by two rows), which re-prediction
    skips. In blocks of eight events the queue step is one compress-store
    (:func:`_queue8`). A record's low t_bits bits are 2t (one mask, no shift), the rest the
    weight code. Every instruction here counts (each costs ~0.1-0.2 ms per 2M events). (Unsigned
    indices: numba then emits no negative-index wraparound.)"""
    one = np.uint64(1)
    tb = np.uint64(t_bits)
    tmask = (one << tb) - one
    ahead = np.uint64(PREFETCH_AHEAD)
    kk = np.uint64(k0)
    hi = np.uint64(k1)
    mid = np.uint64(max(k0, k1 - PREFETCH_AHEAD) if prefetch else k0)
    nt = np.uint64(n_touched)  # (unsigned: no negative-index wraparound per event)
    # the same loop twice: with a prefetch of the target record PREFETCH_AHEAD connections
    # ahead, then for the last ones of the row
    while kk < mid:
        _prefetch(hot, np.uint64(syn[kk + ahead]) & tmask)
        pp, i0 = _update(syn, wtab, hot, kk, tmask, tb, ca, cb)
        kk += one
        touched[nt] = np.int64(i0)
        nt += np.uint64(pp > p_th)
    # blocks of eight: the updates one by one (a target may repeat), the queue step at once
    eight = np.uint64(8)
    while kk + eight <= hi:
        p0, _ = _update(syn, wtab, hot, kk, tmask, tb, ca, cb)
        p1, _ = _update(syn, wtab, hot, kk + np.uint64(1), tmask, tb, ca, cb)
        p2, _ = _update(syn, wtab, hot, kk + np.uint64(2), tmask, tb, ca, cb)
        p3, _ = _update(syn, wtab, hot, kk + np.uint64(3), tmask, tb, ca, cb)
        p4, _ = _update(syn, wtab, hot, kk + np.uint64(4), tmask, tb, ca, cb)
        p5, _ = _update(syn, wtab, hot, kk + np.uint64(5), tmask, tb, ca, cb)
        p6, _ = _update(syn, wtab, hot, kk + np.uint64(6), tmask, tb, ca, cb)
        p7, _ = _update(syn, wtab, hot, kk + np.uint64(7), tmask, tb, ca, cb)
        nt = _queue8(touched, nt, syn, kk, tmask, p_th, p0, p1, p2, p3, p4, p5, p6, p7)
        kk += eight
    while kk < hi:
        pp, i0 = _update(syn, wtab, hot, kk, tmask, tb, ca, cb)
        kk += one
        touched[nt] = np.int64(i0)
        nt += np.uint64(pp > p_th)
    return np.int64(nt)


@njit(**_HELPER, boundscheck=False)
def _dedupe(touched, n_touched, flags):
    """Drop repeated entries of ``touched[:n_touched]`` (record offsets 2t; first ones
    kept, in order); returns the new length. Uses and clears the QUEUED bit."""
    m = 0
    for q in range(n_touched):
        t = touched[q] >> 1
        if not (flags[t] & QUEUED):
            flags[t] |= QUEUED
            touched[m] = 2 * t
            m += 1
    for q in range(m):
        flags[touched[q] >> 1] &= ~QUEUED
    return m


@njit(**_HELPER, boundscheck=False, inline="never")
def _deliver_inhibitory(k0, k1, syn, wtab, t_bits, hot, ca, cb, prefetch):
    """:func:`_deliver` for a row of negative weights: it queues nothing. Inhibition only
    lowers a free trajectory from the step of the input on (and does not raise the bound
    ``P a^(n-B) - min(Q, 0) b^(n-B)``), so a neuron that had no crossing ahead still has
    none, and a pending prediction can only be late: it is checked when due."""
    one = np.uint64(1)
    tb = np.uint64(t_bits)
    tmask = (one << tb) - one
    ahead = np.uint64(PREFETCH_AHEAD)
    kk = np.uint64(k0)
    hi = np.uint64(k1)
    mid = np.uint64(max(k0, k1 - PREFETCH_AHEAD) if prefetch else k0)
    while kk < mid:
        _prefetch(hot, np.uint64(syn[kk + ahead]) & tmask)
        _update(syn, wtab, hot, kk, tmask, tb, ca, cb)
        kk += one
    while kk < hi:
        _update(syn, wtab, hot, kk, tmask, tb, ca, cb)
        kk += one


@njit(**_HELPER)
def _steps_before_crossing(x, cg, x_th, slope, k_max):
    """k such that the free trajectory from (x, c g = cg > 0) stays at or below ``x_th``
    for steps 1..k + 1: from ``x(k) <= max(x, 0) + c g k ln(a/b)`` (*slope* = ln(a/b), rounded
    up), less one step of margin; k_max when that reaches k_max (the end of the trial); -1
    when x is at threshold already."""
    need = x_th - (x if x > 0.0 else 0.0)
    if not (need > 0.0):
        return -1
    if need >= cg * slope * k_max:
        return k_max
    return int(need / (cg * slope)) - 1


@njit(**_HELPER, boundscheck=False)
def _bound_ahead(big_a, cg, x_th, htab, h_per_rho, slope, k_max):
    """For a state with g > 0 (``big_a = x + c g``, ``cg = c g``): -1 where no crossing can
    come (``big_a``, the sup of the free trajectory, or its tabulated peak (see
    :func:`_first_crossing`) at or below threshold); k >= LAZY_MIN where none can come in
    the next k + 1 steps (:func:`_steps_before_crossing`): a check may wait k steps; else 0
    (search now)."""
    if _below_threshold(big_a, cg, x_th, htab, h_per_rho):
        return -1
    kl = _steps_before_crossing(big_a - cg, cg, x_th, slope, k_max)
    return kl if kl >= LAZY_MIN else 0


@njit(**_HELPER, boundscheck=False)
def _take_slot(t, st, n, slot_of, slot_nrn, meta, rfc, orig, is_driven, inh, nrn_rfc, nrn_orig, nrn_drv, nrn_inh):
    """Neuron t (internal index), first reached in step n, takes slot st."""
    slot_of[t] = st
    slot_nrn[st] = t
    meta[st, 2] = n
    nrn_rfc[st] = rfc[t]
    nrn_orig[st] = orig[t]
    nrn_drv[st] = is_driven[t]
    nrn_inh[st] = inh[t]


@njit(**_KERNEL, boundscheck=False)
def run_trial(network, neurons, model, tables, drive, ws, runaway, span):
    """Simulate one trial (or the steps of *span*, see :class:`Span`); returns spikes, the
    propagation front and the runaway verdict.

    State of neuron i (free trajectory; steps n counted from the current base step B):
    ``x(n) = P a^(n-B) - Q b^(n-B)``, ``g(n) = Q b^(n-B) / c``, with ``(P, Q) = hot[i]``.
    Input at step m adds ``w c a^-(m-B)`` to P and ``w c b^-(m-B)`` to Q (a kick adds
    ``kick a^-(m-B)`` to P): no per-event advance, one 16-byte record per event (its cache
    line prefetched a few connections ahead). ``A = P a^(n-B) = x + c g`` bounds the free
    trajectory, so only a neuron whose A (or, with g <= 0, x) lies above threshold is queued
    for re-prediction (a refractory neuron's P is far negative until its release, so its
    input never queues it). A neuron is first reached by the first spike of some
    presynaptic neuron (or a kick): the targets of a first spike take their slots as its
    row is copied, just before its delivery. A search is put off where the slope bound
    ``x(k) <= max(x, 0) + c g k ln(a/b)`` puts the first possible crossing at least
    LAZY_MIN steps ahead: a *check* (flag CHECK) is queued two steps before that bound
    instead, and more input before then (the usual case for a neuron that is charging)
    only moves the check; a check that comes due bounds again or searches. A prediction
    is never invalidated eagerly: inhibition can only delay
    or cancel a crossing, so a popped prediction whose neuron had input since (its (P, Q)
    differ from those the prediction was made from, kept in ``pred``) is checked (x at that
    step above threshold: spike; else predicted again from there). Input during the
    refractory period is added too and discarded: at the release step (spike step +
    max(rfc, 1)) P and Q are set to the reset state. B moves forward every ``rebase`` steps
    (P *= a^rebase, Q *= b^rebase for the neurons reached) so that ``a^-k``, ``b^-k`` stay
    far from overflow.

    Synapses come packed by :func:`pack_synapses`: row j (``indptr[j]`` to ``row_end[j]``) holds the records
    ``syn[k] = (code << t_bits) | 2 * target`` (``wtab[code]``: the weight in volts) of the
    connections of neuron j that deliver anything; ``inh[j]``: they are all inhibitory
    (delivered without queueing, see :func:`_deliver_inhibitory`). Neurons are numbered internally (the
    per-neuron arguments, targets and the returned indices); ``orig[i]`` is the model index
    of internal neuron i, which orders the spikes within a step (and so their delivery).

    Inside, the state is kept per slot (see :func:`new_workspace`): a neuron takes the next
    slot when first reached (by the first spike of a presynaptic neuron, or a kick), and at
    its own first spike its row is copied into ``syn2`` with the targets as slots, so that
    delivery writes to the contiguous records of the neurons this trial reached. The order
    of the slots is the order in which the neurons were reached.

    Returns
    -------
    sp_idx : int32 array, sp_step : int64 array, n_spikes : int
        Spikes (sorted by step, then neuron) in the first n_spikes entries.
    reached : int64 array, first_in, first_sp : int64 arrays, n_reached : int
        Neurons that received input (first n_reached entries, in the order reached), with
        the step of their first input and first spike (-1: none).
    runaway_kind : int, runaway_onset : int
        RUNAWAY_* code and the onset step (-1 when none).
    counters : int64 array (5,)
        Synaptic events, neurons queued for re-prediction, crossing searches, predictions,
        checks queued instead of a search.
    """
    indptr, syn, wtab, t_bits, orig, inh, row_end = network
    rfc, is_driven, rel_delays, silenced = neurons
    n_start, n_stop, step0, fresh, finish = span
    (n_steps, delay, v0, v_th, v_rst, kick, a, b, c, v_const, v_decay, v_from_g, g_decay,
     rebase) = model
    apow, bpow, ainv, binv, htab, h_per_rho = tables
    kick_idx, kick_step = drive
    (hot, flags, meta, pred, head, e_nrn, e_step, e_next, sp_idx, sp_step, step_ptr, touched,
     slot_of, slot_nrn, nrn_rfc, nrn_orig, nrn_drv, nrn_inh, row, syn2, state) = ws
    runaway_window, runaway_count, runaway_quiet = runaway
    log_a = math.log(a)
    log_b = math.log(b)
    x_th = v_th - v0
    x_rst = v_rst - v0
    ring = head.shape[0]
    ring_mask = ring - 1
    t_mask = (np.uint64(1) << np.uint64(t_bits)) - np.uint64(1)
    if fresh:
        for r in range(ring):
            head[r] = -1
    # Buffers are sized so that no array is reassigned inside an inner loop (numba then
    # reloads it on every iteration, several times slower): a neuron enters ``touched``
    # at most once per step, takes a slot at most once per trial; the spike record and the prediction
    # entries grow, if needed, only at the top of a step, by at least n_neurons.
    # (the buffers come from the workspace, which keeps them between trials: fresh pages
    # would be zeroed by the system on first touch, on every trial)
    n_neurons = hot.shape[0]
    hot_flat = hot.reshape(2 * n_neurons)
    # (counters start as np.int64(0), not 0: numba's first pass of type inference would
    # type a literal 0 as Literal[int](0) and compile the helpers it is passed to twice)
    n_e = np.int64(0)
    free_e = -1
    n_sp = np.int64(0)
    n_reached = np.int64(0)  # slots taken
    n_syn2 = np.int64(0)
    n_kicks = kick_idx.shape[0]
    kp = 0
    last_kick = -1
    if n_kicks > 0:
        last_kick = kick_step[n_kicks - 1]
    win = np.zeros(max(runaway_window, 1), np.int64)
    win_sum = 0
    slot = 0  # n % runaway_window
    runaway_kind = 0
    runaway_onset = -1
    counters = np.zeros(5, np.int64)
    n_events = 0
    n_pred = 0
    n_detail = 0
    n_hit = 0
    n_check = 0
    base = 0
    if fresh:
        step_ptr[n_start - step0] = 0
    else:  # the state the previous call saved
        n_e = state[ST_N_E]
        free_e = state[ST_FREE_E]
        n_sp = state[ST_N_SP]
        n_reached = state[ST_N_REACHED]
        n_syn2 = state[ST_N_SYN2]
        win_sum = state[ST_WIN_SUM]
        slot = state[ST_SLOT]
        runaway_kind = state[ST_RUNAWAY_KIND]
        runaway_onset = state[ST_RUNAWAY_ONSET]
        n_events = state[ST_N_EVENTS]
        n_pred = state[ST_N_PRED]
        n_detail = state[ST_N_DETAIL]
        n_hit = state[ST_N_HIT]
        n_check = state[ST_N_CHECK]
        base = state[ST_BASE]
        for q in range(runaway_window):
            win[q] = state[STATE_WIN + q]
    # slope bound of the free trajectory: x(k) - max(x, 0) <= c g k ln(a/b) (rounded up)
    slope = math.log(a / b) * (1.0 + 1e-9) if a > b else math.inf

    n_lo = n_start
    while n_lo < n_stop:
        # the buffers grow here, outside the loop over steps: an array reassigned inside
        # it costs reference counting in every step
        if n_sp + n_neurons > sp_idx.shape[0]:
            sp_idx = _grow_i32(sp_idx, n_sp)
            sp_step = _grow_i64(sp_step, n_sp)
        if n_e + 2 * n_neurons > e_nrn.shape[0]:
            e_nrn = _grow_i64(e_nrn, n_e)
            e_step = _grow_i64(e_step, n_e)
            e_next = _grow_i64(e_next, n_e)
        cap_sp = sp_idx.shape[0]
        cap_e = e_nrn.shape[0]
        n_first = n_lo
        n_lo = n_stop
        for n in range(n_first, n_stop):
            # ---------------------------------------------------------------- 0. rebase
            if n - base >= rebase:
                shift = n - base
                fa = apow[shift]
                fb = bpow[shift]
                for q in range(n_reached):
                    hot[q, 0] *= fa
                    hot[q, 1] *= fb
                base = n
            kb = n - base
            ca = c * ainv[kb]
            cb = c * binv[kb]
            ak_n = apow[kb]
            bk_n = bpow[kb]
            p_th = x_th * ainv[kb] * (1.0 - 1e-12)  # A > x_th <=> P > x_th a^-(n-B) (rounded down)
            if n_sp + n_neurons > cap_sp or n_e + 2 * n_neurons > cap_e:
                n_lo = n  # the buffers grow in the outer loop
                break

            # ---------------------------------------------------------------- 1. spikes
            start = n_sp
            bkt = n & ring_mask
            e = head[bkt]
            head[bkt] = -1
            while e >= 0:
                nxt = e_next[e]
                if e_step[e] == n:
                    i = e_nrn[e]
                    e_next[e] = free_e
                    free_e = e
                    if meta[i, 1] == n:
                        spike = True
                        pp = hot[i, 0]
                        qq = hot[i, 1]
                        changed = True
                        is_check = (flags[i] & CHECK) != 0
                        if is_check:
                            # a check: no crossing before n; check the crossing, else bound or
                            # search on
                            flags[i] &= ~CHECK
                        else:
                            # (P, Q) of the prediction, rebased as hot was since then
                            p_pr = pred[i, 0]
                            q_pr = pred[i, 1]
                            b_pr = int(pred[i, 2])
                            while b_pr < base:
                                p_pr *= apow[rebase]
                                q_pr *= bpow[rebase]
                                b_pr += rebase
                            changed = pp != p_pr or qq != q_pr
                        if changed:
                            # input since the prediction (inhibition, or too little to matter):
                            # check the crossing, else predict again from step n - 1
                            if not (pp * ak_n - qq * bk_n > x_th):
                                spike = False
                                if kb >= 1:
                                    a1 = apow[kb - 1]
                                    b1 = bpow[kb - 1]
                                else:  # just rebased: step n - 1 lies before the base
                                    a1 = ainv[1]
                                    b1 = binv[1]
                                qb = qq * b1
                                m = -2
                                lazy = False
                                if is_check and qq > 0.0:
                                    # the bounds of step 4 again, from step n - 1: most checks
                                    # move on without a search
                                    kl = _bound_ahead(pp * a1, qb, x_th, htab, h_per_rho, slope, n_steps - n + 1)
                                    if kl < 0:
                                        m = -1
                                    elif kl > 0:
                                        lazy = True
                                        m = n - 1 + kl
                                        if m >= n_steps:
                                            m = -1
                                if m == -2:
                                    n_detail += 1
                                    k = _first_crossing(v0 + (pp * a1 - qb), qb / c, v0, v_th, a, b, c, log_a, log_b,
                                                        apow, bpow, v_const, v_decay, v_from_g, g_decay, n_steps - n,
                                                        htab, h_per_rho)
                                    m = n - 1 + k if k > 0 else -1
                                if m == n:
                                    spike = True
                                elif m > n:
                                    if lazy:
                                        n_check += 1
                                        flags[i] |= CHECK
                                    else:
                                        n_hit += 1
                                        pred[i, 0] = pp
                                        pred[i, 1] = qq
                                        pred[i, 2] = base
                                    meta[i, 1] = m
                                    f2 = free_e  # the entry just freed
                                    free_e = e_next[f2]
                                    e_nrn[f2] = i
                                    e_step[f2] = m
                                    b2 = m & ring_mask
                                    e_next[f2] = head[b2]
                                    head[b2] = f2
                                else:
                                    meta[i, 1] = -1
                                    flags[i] &= ~PENDING
                        if spike:
                            meta[i, 1] = -1
                            flags[i] &= ~PENDING
                            sp_idx[n_sp] = i
                            sp_step[n_sp] = n
                            n_sp += 1
                else:  # a later lap of the ring: keep
                    e_next[e] = head[bkt]
                    head[bkt] = e
                e = nxt
            for p in range(start + 1, n_sp):  # canonical order within a step (model index)
                val = sp_idx[p]
                key = nrn_orig[val]
                q = p - 1
                while q >= start and nrn_orig[sp_idx[q]] > key:
                    sp_idx[q + 1] = sp_idx[q]
                    q -= 1
                sp_idx[q + 1] = val
            n_new = 0
            for p in range(start, n_sp):
                i = sp_idx[p]
                r = nrn_rfc[i]
                meta[i, 0] = n + (r if r > 1 else 1)
                if meta[i, 3] < 0:
                    meta[i, 3] = n
                # until its release the neuron's input is dropped: a far negative P keeps the
                # bound below threshold, so that the input does not queue it for re-prediction
                hot[i, 0] = REFRACTORY_P
                hot[i, 1] = 0.0
                if not nrn_drv[i]:
                    n_new += 1
            step_ptr[n + 1 - step0] = n_sp
            if runaway_window > 0:
                win_sum += n_new - win[slot]
                win[slot] = n_new
                slot += 1
                if slot == runaway_window:
                    slot = 0
                if runaway_kind == 0 and win_sum > runaway_count:
                    runaway_kind = 1
                    runaway_onset = n - runaway_window + 1
                    if runaway_onset < 0:
                        runaway_onset = 0
            if runaway_kind == 0 and runaway_quiet > 0 and n_new > 0 and n > last_kick + runaway_quiet:
                runaway_kind = 2
                runaway_onset = last_kick + 1

            # ---------------------------------------------------------------- 2. releases
            # neurons whose refractory period ends now restart from the reset state at n - 1
            # (whatever reached them meanwhile is discarded, as Brian2 drops it)
            kr = kb - 1
            if kr >= 0:
                p_rst = x_rst * ainv[kr]
            else:
                p_rst = x_rst * apow[-kr]
            for d in range(rel_delays.shape[0]):
                rd = rel_delays[d]
                src = n - rd
                if src < step0:
                    continue
                for p in range(step_ptr[src - step0], step_ptr[src + 1 - step0]):
                    i = sp_idx[p]
                    r = nrn_rfc[i]
                    if (r if r > 1 else 1) == rd:
                        hot[i, 0] = p_rst
                        hot[i, 1] = 0.0

            # ---------------------------------------------------------------- 3. input
            # Queue a neuron for re-prediction (once per step) where a crossing is possible
            # (A, or x when g <= 0, above threshold).
            n_touched = np.int64(0)
            src = n - delay
            if src >= step0:
                for p in range(step_ptr[src - step0], step_ptr[src + 1 - step0]):
                    j = sp_idx[p]
                    if meta[j, 3] == src:
                        # the first spike of j: its row, with the targets as slots; the
                        # targets not reached before take the next slots, in the row's order
                        # (no earlier spike of j reached them)
                        nj = slot_nrn[j]
                        row[j, 0] = n_syn2
                        for k in range(indptr[nj], row_end[nj]):
                            v = np.uint64(syn[k])
                            t = np.int64((v & t_mask) >> np.uint64(1))
                            st = slot_of[t]
                            if st < 0:
                                st = n_reached
                                n_reached += 1
                                _take_slot(t, st, n, slot_of, slot_nrn, meta, rfc, orig, is_driven, inh,
                                           nrn_rfc, nrn_orig, nrn_drv, nrn_inh)
                            syn2[n_syn2] = (v & ~t_mask) | (np.uint64(st) << np.uint64(1))
                            n_syn2 += 1
                        row[j, 1] = n_syn2
                    if silenced[slot_nrn[j]]:
                        continue  # silenced (live): its spikes reach nobody
                    k0 = row[j, 0]
                    k1 = row[j, 1]
                    n_events += k1 - k0
                    if nrn_inh[j]:
                        _deliver_inhibitory(k0, k1, syn2, wtab, t_bits, hot_flat, ca, cb,
                                            n_reached > PREFETCH_ABOVE_SLOTS)
                    else:
                        if n_touched + (k1 - k0) >= touched.shape[0]:
                            n_touched = _dedupe(touched, n_touched, flags)
                        n_touched = _deliver(k0, k1, syn2, wtab, t_bits, hot_flat, touched, n_touched,
                                             ca, cb, p_th, n_reached > PREFETCH_ABOVE_SLOTS)
            pk = kick * ainv[kb]
            if kp < n_kicks and kick_step[kp] == n and n_touched > n_neurons:
                n_touched = _dedupe(touched, n_touched, flags)  # room for the kicks (one each)
            while kp < n_kicks and kick_step[kp] == n:
                t = slot_of[kick_idx[kp]]
                if t < 0:
                    t = n_reached
                    n_reached += 1
                    _take_slot(kick_idx[kp], t, n, slot_of, slot_nrn, meta, rfc, orig, is_driven, inh,
                               nrn_rfc, nrn_orig, nrn_drv, nrn_inh)
                kp += 1
                f = flags[t]
                p0 = hot[t, 0]
                if p0 < REFRACTORY_BELOW:
                    continue  # refractory: the kick is dropped
                hot[t, 0] = p0 + pk
                if not (f & QUEUED):
                    flags[t] = f | QUEUED
                    touched[n_touched] = 2 * t
                    n_touched += 1

            # ---------------------------------------------------------------- 4. re-predict
            for q in range(n_touched):
                t = touched[q] >> 1
                # (refractory neurons are never queued: their input is dropped at release)
                f = flags[t]
                if f & SEEN:
                    continue  # queued twice in this step (by two rows)
                f = (f & ~QUEUED) | SEEN  # (kept by the writes of flags below)
                flags[t] = f
                n_pred += 1
                pp = hot[t, 0]
                qq = hot[t, 1]
                val = pp * ak_n - min(qq, 0.0) * bk_n
                if not (val > x_th):
                    if f & PENDING:
                        meta[t, 1] = -1
                        flags[t] = f & ~(PENDING | CHECK)
                    continue
                qb = qq * bk_n
                m_old = meta[t, 1] if f & PENDING else -1  # (meta read only where needed)
                m = -2  # -2: a check or a prediction to queue at m_new; -1: none
                if qq > 0.0:
                    # no crossing at all (peak bound), or none before step n + kl + 2: then
                    # a check for n + kl is queued instead of searching now; more input before
                    # then (the usual case) only moves the check
                    kl = _bound_ahead(pp * ak_n, qb, x_th, htab, h_per_rho, slope, n_steps - n)
                    if kl < 0:
                        m = -1
                    elif kl > 0:
                        m_new = n + kl
                        if m_new >= n_steps:
                            m = -1
                        elif m_old > 0 and m_old <= m_new:
                            continue  # the entry queued at m_old comes first and re-checks
                        else:
                            m = -3
                if m == -2:
                    if m_old > n:
                        # a pending entry: most input since has advanced the crossing, and x
                        # above threshold at m_old bounds the search to the steps before it
                        ko = m_old - base
                        if pp * _pow(apow, log_a, ko) - qq * _pow(bpow, log_b, ko) > x_th:
                            n_detail += 1
                            k = _crossing_by(v0 + (pp * ak_n - qb), qb / c, v0, v_th, a, b, c, log_a, log_b,
                                             apow, bpow, v_const, v_decay, v_from_g, g_decay, n_steps - 1 - n,
                                             m_old - n, htab, h_per_rho)
                            m = n + k if k > 0 else -1
                            if m == m_old:
                                # the queued entry stands (now an exact prediction)
                                n_hit += 1
                                flags[t] = f & ~CHECK
                                pred[t, 0] = pp
                                pred[t, 1] = qq
                                pred[t, 2] = base
                                continue
                    if m == -2:
                        n_detail += 1
                        k = _search_crossing(v0 + (pp * ak_n - qb), qb / c, v0, v_th, a, b, c, log_a, log_b,
                                             apow, bpow, v_const, v_decay, v_from_g, g_decay, n_steps - 1 - n)
                        m = n + k if k > 0 else -1
                if m == -1:
                    if f & PENDING:
                        meta[t, 1] = -1
                        flags[t] = f & ~(PENDING | CHECK)
                    continue
                if m == -3:  # a check
                    m = m_new
                    n_check += 1
                    flags[t] = f | PENDING | CHECK
                else:
                    n_hit += 1
                    flags[t] = (f | PENDING) & ~CHECK
                    pred[t, 0] = pp
                    pred[t, 1] = qq
                    pred[t, 2] = base
                meta[t, 1] = m
                if free_e >= 0:
                    e = free_e
                    free_e = e_next[e]
                else:
                    e = n_e
                    n_e += 1
                e_nrn[e] = t
                e_step[e] = m
                bkt = m & ring_mask
                e_next[e] = head[bkt]
                head[bkt] = e
            for q in range(n_touched):
                flags[touched[q] >> 1] &= ~SEEN

    if not finish:
        # save the state for the next call; the spike record stays in slots (the steps to
        # come deliver and release from it)
        state[ST_N_E] = n_e
        state[ST_FREE_E] = free_e
        state[ST_N_SP] = n_sp
        state[ST_N_REACHED] = n_reached
        state[ST_N_SYN2] = n_syn2
        state[ST_WIN_SUM] = win_sum
        state[ST_SLOT] = slot
        state[ST_RUNAWAY_KIND] = runaway_kind
        state[ST_RUNAWAY_ONSET] = runaway_onset
        state[ST_N_EVENTS] = n_events
        state[ST_N_PRED] = n_pred
        state[ST_N_DETAIL] = n_detail
        state[ST_N_HIT] = n_hit
        state[ST_N_CHECK] = n_check
        state[ST_BASE] = base
        for q in range(runaway_window):
            state[STATE_WIN + q] = win[q]
        counters[0] = n_events
        counters[1] = n_pred
        counters[2] = n_detail
        counters[3] = n_hit
        counters[4] = n_check
        return (sp_idx, sp_step, n_sp, slot_nrn, np.empty(0, np.int64), np.empty(0, np.int64), n_reached,
                runaway_kind, runaway_onset, counters, e_nrn, e_step, e_next)
    # outputs, then restore the workspace to the initial state for the next trial
    for p in range(n_sp):  # slots -> neurons
        sp_idx[p] = slot_nrn[sp_idx[p]]
    first_in = np.empty(n_reached, np.int64)
    first_sp = np.empty(n_reached, np.int64)
    for q in range(n_reached):
        first_in[q] = meta[q, 2]
        first_sp[q] = meta[q, 3]
        hot[q, 0] = 0.0
        hot[q, 1] = 0.0
        flags[q] = 0
        meta[q, 0] = 0
        meta[q, 1] = -1
        meta[q, 2] = -1
        meta[q, 3] = -1
        slot_of[slot_nrn[q]] = -1
    counters[0] = n_events
    counters[1] = n_pred
    counters[2] = n_detail
    counters[3] = n_hit
    counters[4] = n_check
    return (sp_idx, sp_step, n_sp, slot_nrn, first_in, first_sp, n_reached,
            runaway_kind, runaway_onset, counters, e_nrn, e_step, e_next)
