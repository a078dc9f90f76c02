"""Numba kernels of the event-driven engine (imported lazily by :mod:`brainfly.engines.event`).

Units: volts, integer steps. One call of :func:`run_trial` simulates one trial from a
per-thread workspace; it holds no Python objects and releases the GIL, so trials run in
parallel threads. See :mod:`brainfly.engines.event` for the algorithm and its exactness.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["run_trial", "new_workspace", "RUNAWAY_NONE", "RUNAWAY_BOUND", "RUNAWAY_SUSTAINED"]

RUNAWAY_NONE = 0
RUNAWAY_BOUND = 1       #: activity of non-driven neurons exceeded the bound in a window
RUNAWAY_SUSTAINED = 2   #: spikes continued long after the last external input

# Workspace slots (one workspace per thread, reused across trials; entries are
# initialised lazily per trial through the epoch stamp, so untouched neurons cost nothing).
_WS_FIELDS = ("v", "g", "t_last", "free_from", "pred", "stamp", "first_in", "first_sp", "mark", "last_spike")


def new_workspace(n_neurons: int, ring: int = 1024) -> dict:
    """Arrays of one thread's workspace (numpy; handed to :func:`run_trial`)."""
    ws = {
        "v": np.zeros(n_neurons, np.float64),
        "g": np.zeros(n_neurons, np.float64),
        "t_last": np.zeros(n_neurons, np.int64),
        "free_from": np.zeros(n_neurons, np.int64),
        "pred": np.zeros(n_neurons, np.int64),
        "stamp": np.zeros(n_neurons, np.int64),
        "first_in": np.zeros(n_neurons, np.int64),
        "first_sp": np.zeros(n_neurons, np.int64),
        "mark": np.zeros(n_neurons, np.int64),
        "last_spike": np.zeros(n_neurons, np.int64),
        "head": np.full(ring, -1, np.int64),
        "epoch": 0,
    }
    return ws


@njit(cache=True, nogil=True)
def _grow_i64(arr, n_keep):
    out = np.empty(max(2 * arr.shape[0], 16), np.int64)
    out[:n_keep] = arr[:n_keep]
    return out


@njit(cache=True, nogil=True)
def _grow_i32(arr, n_keep):
    out = np.empty(max(2 * arr.shape[0], 16), np.int32)
    out[:n_keep] = arr[:n_keep]
    return out


@njit(cache=True, nogil=True)
def _pow(tab, base_log, k):
    if k < tab.shape[0]:
        return tab[k]
    return math.exp(base_log * k)


@njit(cache=True, nogil=True)
def _first_crossing(v, g, v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                    v_const, v_decay, v_from_g, g_decay, k_max):
    """First k in 1..k_max with v(k) > v_th for the free trajectory from (v, g), or -1.

    Closed form x(k) = x a^k + c (a^k - b^k) g (x = v - v0). An analytic bound rejects
    almost every call without transcendental functions; when a crossing is possible the
    discrete peak is located, the first crossing found by bisection on the rising part,
    and confirmed by iterating Brian2's own update from just before it.
    """
    if k_max < 1:
        return -1
    x = v - v0
    x_th = v_th - v0
    if g > 0.0:
        big_a = x + c * g  # sup of the trajectory (x(t) < A for all t > 0)
        if big_a <= x_th:
            return -1
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
    k0 = lo_k - 3
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
    k_end = lo_k + 3
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


@njit(cache=True, nogil=True)
def run_trial(indptr, post, weight, rfc, is_driven,
              kick_idx, kick_step,
              n_steps, delay, v0, v_th, v_rst, kick,
              a, b, c, v_const, v_decay, v_from_g, g_decay, apow, bpow,
              w_v, w_g, w_tlast, w_free, w_pred, w_stamp, w_fin, w_fsp, w_mark, w_lsp, head,
              epoch, runaway_window, runaway_count, runaway_quiet):
    """Simulate one trial; returns spikes, reached neurons and the runaway verdict.

    Returns
    -------
    sp_idx : int32 array, sp_step : int64 array, n_spikes : int
        Spikes (sorted by step, then neuron) in the first n_spikes entries.
    reached : int64 array, n_reached : int
        Neurons that received input or spiked in this trial (first n_reached entries);
        their first input / first spike steps are in the workspace (w_fin, w_fsp).
    runaway_kind : int, runaway_onset : int
        RUNAWAY_* code and the onset step (-1 when none).
    n_events : int
        Synaptic events delivered (non-zero weights).
    """
    log_a = math.log(a)
    log_b = math.log(b)
    ring = head.shape[0]
    ring_mask = ring - 1
    for r in range(ring):
        head[r] = -1
    # prediction entries (linked lists per calendar bucket, with a free list)
    cap_e = 1024
    e_nrn = np.empty(cap_e, np.int64)
    e_step = np.empty(cap_e, np.int64)
    e_next = np.empty(cap_e, np.int64)
    n_e = 0
    free_e = -1
    # spike record; step_ptr[n] = first spike of step n (so the record is the delay buffer)
    cap_s = 1024
    sp_idx = np.empty(cap_s, np.int32)
    sp_step = np.empty(cap_s, np.int64)
    n_sp = 0
    step_ptr = np.zeros(n_steps + 1, np.int64)
    reached = np.empty(1024, np.int64)
    n_reached = 0
    touched = np.empty(1024, np.int64)
    n_kicks = kick_idx.shape[0]
    kp = 0
    last_kick = -1
    if n_kicks > 0:
        last_kick = kick_step[n_kicks - 1]
    win = np.zeros(max(runaway_window, 1), np.int64)
    win_sum = 0
    runaway_kind = 0
    runaway_onset = -1
    n_events = 0

    for n in range(n_steps):
        # ---------------------------------------------------------------- 1. spikes
        start = n_sp
        bkt = n & ring_mask
        e = head[bkt]
        head[bkt] = -1
        while e >= 0:
            nxt = e_next[e]
            if e_step[e] == n:
                i = e_nrn[e]
                if w_pred[i] == n:
                    w_pred[i] = -1
                    if n_sp >= sp_idx.shape[0]:
                        sp_idx = _grow_i32(sp_idx, n_sp)
                        sp_step = _grow_i64(sp_step, n_sp)
                    sp_idx[n_sp] = i
                    sp_step[n_sp] = n
                    n_sp += 1
                e_next[e] = free_e
                free_e = e
            else:  # a later lap of the ring: keep
                e_next[e] = head[bkt]
                head[bkt] = e
            e = nxt
        # canonical order within a step (insertion sort; the lists are short)
        for p in range(start + 1, n_sp):
            val = sp_idx[p]
            q = p - 1
            while q >= start and sp_idx[q] > val:
                sp_idx[q + 1] = sp_idx[q]
                q -= 1
            sp_idx[q + 1] = val
        n_new = 0
        for p in range(start, n_sp):
            i = sp_idx[p]
            # reset (applied now; input arriving in this step is wiped, see below)
            w_v[i] = v_rst
            w_g[i] = 0.0
            w_tlast[i] = n
            r = rfc[i]
            w_free[i] = n + (r if r > 1 else 1)
            w_lsp[i] = n
            if w_fsp[i] < 0:
                w_fsp[i] = n
            if not is_driven[i]:
                n_new += 1
        step_ptr[n + 1] = n_sp
        # runaway: bound on non-driven spikes within a sliding window
        if runaway_window > 0:
            slot = n % runaway_window
            win_sum += n_new - win[slot]
            win[slot] = n_new
            if runaway_kind == 0 and win_sum > runaway_count:
                runaway_kind = 1
                runaway_onset = n - runaway_window + 1
                if runaway_onset < 0:
                    runaway_onset = 0
        if runaway_kind == 0 and runaway_quiet > 0 and n_new > 0 and n > last_kick + runaway_quiet:
            runaway_kind = 2
            runaway_onset = last_kick + 1

        # ---------------------------------------------------------------- 2. input
        n_touched = 0
        src = n - delay
        if src >= 0:
            for p in range(step_ptr[src], step_ptr[src + 1]):
                j = sp_idx[p]
                for k in range(indptr[j], indptr[j + 1]):
                    w = weight[k]
                    if w == 0.0:
                        continue
                    t = post[k]
                    n_events += 1
                    if w_stamp[t] != epoch:
                        w_stamp[t] = epoch
                        w_v[t] = v0
                        w_g[t] = 0.0
                        w_tlast[t] = -1
                        w_free[t] = 0
                        w_pred[t] = -1
                        w_fin[t] = n
                        w_fsp[t] = -1
                        w_mark[t] = -1
                        w_lsp[t] = -1
                        if n_reached >= reached.shape[0]:
                            reached = _grow_i64(reached, n_reached)
                        reached[n_reached] = t
                        n_reached += 1
                    elif w_fin[t] < 0:
                        w_fin[t] = n
                    if n < w_free[t]:
                        continue  # refractory (or spiking in this step): Brian2 drops it
                    # advance lazily to step n (updates only where not refractory)
                    s0 = w_tlast[t]
                    f0 = w_free[t] - 1
                    if f0 > s0:
                        s0 = f0
                    dk = n - s0
                    if dk > 0:
                        ak = apow[dk]
                        bk = bpow[dk]
                        gt = w_g[t]
                        w_v[t] = v0 + ((w_v[t] - v0) * ak + c * (ak - bk) * gt)
                        w_g[t] = gt * bk
                    w_tlast[t] = n
                    w_g[t] += w
                    if w_mark[t] != n:
                        w_mark[t] = n
                        if n_touched >= touched.shape[0]:
                            touched = _grow_i64(touched, n_touched)
                        touched[n_touched] = t
                        n_touched += 1
        while kp < n_kicks and kick_step[kp] == n:
            t = kick_idx[kp]
            kp += 1
            if w_stamp[t] != epoch:
                w_stamp[t] = epoch
                w_v[t] = v0
                w_g[t] = 0.0
                w_tlast[t] = -1
                w_free[t] = 0
                w_pred[t] = -1
                w_fin[t] = n
                w_fsp[t] = -1
                w_mark[t] = -1
                w_lsp[t] = -1
                if n_reached >= reached.shape[0]:
                    reached = _grow_i64(reached, n_reached)
                reached[n_reached] = t
                n_reached += 1
            elif w_fin[t] < 0:
                w_fin[t] = n
            if n < w_free[t]:
                continue
            s0 = w_tlast[t]
            f0 = w_free[t] - 1
            if f0 > s0:
                s0 = f0
            dk = n - s0
            if dk > 0:
                ak = apow[dk]
                bk = bpow[dk]
                gt = w_g[t]
                w_v[t] = v0 + ((w_v[t] - v0) * ak + c * (ak - bk) * gt)
                w_g[t] = gt * bk
            w_tlast[t] = n
            w_v[t] += kick
            if w_mark[t] != n:
                w_mark[t] = n
                if n_touched >= touched.shape[0]:
                    touched = _grow_i64(touched, n_touched)
                touched[n_touched] = t
                n_touched += 1

        # ---------------------------------------------------------------- 3. re-predict
        for q in range(n_touched):
            t = touched[q]
            s0 = n
            f0 = w_free[t] - 1
            if f0 > s0:
                s0 = f0
            k = _first_crossing(w_v[t], w_g[t], v0, v_th, a, b, c, log_a, log_b, apow, bpow,
                                v_const, v_decay, v_from_g, g_decay, n_steps - 1 - s0)
            if k < 0:
                w_pred[t] = -1
                continue
            m = s0 + k
            w_pred[t] = m
            if free_e >= 0:
                e = free_e
                free_e = e_next[e]
            else:
                if n_e >= e_nrn.shape[0]:
                    e_nrn = _grow_i64(e_nrn, n_e)
                    e_step = _grow_i64(e_step, n_e)
                    e_next = _grow_i64(e_next, n_e)
                e = n_e
                n_e += 1
            e_nrn[e] = t
            e_step[e] = m
            bkt = m & ring_mask
            e_next[e] = head[bkt]
            head[bkt] = e

    return sp_idx, sp_step, n_sp, reached, n_reached, runaway_kind, runaway_onset, n_events
