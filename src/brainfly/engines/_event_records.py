"""The event engine's records and buffers: what its trial kernel
(:mod:`brainfly.engines._event_kernels`) takes and returns, the per-thread workspace, and
the packing of the connections (numpy). This module does not import numba, so that a
process that runs the kernel compiled ahead of time (:mod:`brainfly.engines._event_aot`)
never imports it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Network", "Neurons", "Model", "Tables", "Span", "Drive", "Workspace", "Runaway", "new_workspace",
           "pack_synapses", "inhibitory_rows", "peak_table", "RUNAWAY_NONE", "RUNAWAY_BOUND", "RUNAWAY_SUSTAINED",
           "STATE_WIN"]

RUNAWAY_NONE = 0
RUNAWAY_BOUND = 1       #: activity of non-driven neurons exceeded the bound in a window
RUNAWAY_SUSTAINED = 2   #: spikes continued long after the last external input


# ---------------------------------------------------------------------- the kernel's records
# run_trial takes its inputs as a few records (tuples that numba passes field by field, as
# it passes separate arguments: the same machine code). Every field always has the same
# type (read-only arrays where noted), so that numba compiles one specialization.
class Network(NamedTuple):
    """The packed connections (:func:`pack_synapses`), in the internal numbering; all
    arrays read-only."""

    indptr: np.ndarray  #: int64 (n + 1,): row of internal neuron i is syn[indptr[i]:indptr[i + 1]]
    syn: np.ndarray     #: uint32 or uint64 (n_records,): ``(code << t_bits) | 2 * target``
    wtab: np.ndarray    #: float64: weight in volts of each code
    t_bits: int         #: bits of the target field
    orig: np.ndarray    #: int64 (n,): model index of internal neuron i
    inh: np.ndarray     #: bool (n,): row i is all inhibitory (delivered without queueing)
    #: int64 (n,): row i ends at row_end[i]: indptr[i + 1], or indptr[i] where neuron i is
    #: silenced (outgoing silencing empties a row without copying the records)
    row_end: np.ndarray


class Neurons(NamedTuple):
    """Per-neuron settings of a condition, internal numbering (writable arrays)."""

    rfc: np.ndarray         #: int64 (n,): refractory steps (0: driven)
    driven: np.ndarray      #: bool (n,): receives external input (not counted by runaway)
    rel_delays: np.ndarray  #: int64: the distinct max(rfc, 1), steps from spike to release
    #: bool (n,): spikes delivered to nobody (a live simulation's silencing, changed between
    #: calls; a run's silencing is in the packed rows instead and leaves this all False)
    silenced: np.ndarray


class Model(NamedTuple):
    """Constants of the step (volts, steps) and the trial's length."""

    n_steps: int
    delay: int
    v0: float
    v_th: float
    v_rst: float
    kick: float
    a: float        #: v_decay
    b: float        #: g_decay
    c: float        #: tau / (t_mbr - tau)
    v_const: float
    v_decay: float
    v_from_g: float
    g_decay: float
    rebase: int     #: steps between moves of the base step B


class Tables(NamedTuple):
    """Power tables ``a^k``, ``b^k`` (k = 0..n_steps + 1), ``a^-k``, ``b^-k`` (k = 0..rebase)
    and the peak table (:func:`peak_table`); arrays read-only."""

    apow: np.ndarray
    bpow: np.ndarray
    ainv: np.ndarray
    binv: np.ndarray
    htab: np.ndarray
    h_per_rho: float


class Span(NamedTuple):
    """The steps one call simulates: ``n_start`` to ``n_stop`` (exclusive), with
    ``model.n_steps`` the horizon of the predictions (the trial's length). ``step0``: the
    step of ``step_ptr[0]`` (a live simulation drops old steps). ``fresh``: start from the
    initial state (else from ``ws.state``, saved by the previous call); ``finish``: return
    the trial's outputs and restore the workspace to its initial state (else save the
    state for the next call and leave the spike record in slots)."""

    n_start: int
    n_stop: int
    step0: int
    fresh: bool
    finish: bool


#: Fields of ``ws.state`` (int64) that carry a simulation from one call to the next; the
#: runaway window's counts follow from STATE_WIN.
(ST_N_E, ST_FREE_E, ST_N_SP, ST_N_REACHED, ST_N_SYN2, ST_WIN_SUM, ST_SLOT, ST_RUNAWAY_KIND, ST_RUNAWAY_ONSET,
 ST_N_EVENTS, ST_N_PRED, ST_N_DETAIL, ST_N_HIT, ST_N_CHECK, ST_BASE) = range(15)
STATE_WIN = 16


class Drive(NamedTuple):
    """A trial's Poisson kicks, sorted by step: internal neuron and step (int64, writable)."""

    kick_idx: np.ndarray
    kick_step: np.ndarray


class Workspace(NamedTuple):
    """One thread's workspace (see :func:`new_workspace`); writable arrays."""

    hot: np.ndarray
    flags: np.ndarray
    meta: np.ndarray
    pred: np.ndarray
    head: np.ndarray
    e_nrn: np.ndarray
    e_step: np.ndarray
    e_next: np.ndarray
    sp_idx: np.ndarray
    sp_step: np.ndarray
    step_ptr: np.ndarray
    touched: np.ndarray
    slot_of: np.ndarray
    slot_nrn: np.ndarray
    nrn_rfc: np.ndarray
    nrn_orig: np.ndarray
    nrn_drv: np.ndarray
    nrn_inh: np.ndarray
    row: np.ndarray
    syn2: np.ndarray
    state: np.ndarray  #: int64 (STATE_WIN + runaway window,): see :class:`Span`


class Runaway(NamedTuple):
    """Runaway detection: window (steps), spike count in it, quiet steps (0: off)."""

    window: int
    count: int
    quiet: int


def new_workspace(n_neurons: int, ring: int = 1024) -> dict:
    """Arrays of one thread's workspace, in the initial state (the kernel restores it).

    The state of a trial lives in *slots*: a neuron gets the next free slot when it is
    first reached (first input), so that the records of the few thousand neurons a trial
    touches are contiguous, in the order they were reached, whatever their numbers.
    ``slot_of`` (int32, per neuron; -1: none) and ``slot_nrn`` (per slot) map between
    them. Per slot: ``hot`` (float64, (n, 2)): all that a synaptic event reads and writes,
    one 16-byte record (four to a cache line): P and Q; ``flags`` (uint8): queued for
    re-prediction in this step (bit QUEUED), a prediction pending (bit PENDING);
    ``meta`` (int32, (n, 4)): the first step free of refractoriness (0), the predicted
    spike step (-1: none), the first input step, the first spike step (-1); ``pred``
    (float64, (n, 3)): P, Q and the base step when the last prediction was made;
    ``nrn_rfc``, ``nrn_orig``, ``nrn_drv``, ``nrn_inh``: the neuron's refractory steps, model
    index, driven and inhibitory-row flags, copied at the slot's assignment; ``row``
    (int64, (n, 2)): the slot's connections in ``syn2`` (its row with targets as slots,
    built at the neuron's first spike; ``syn2`` is sized by the caller).
    """
    hot = _huge_zeros((n_neurons, 2), np.float64)  # (2 MiB-aligned: a record never straddles lines)
    meta = _huge_zeros((n_neurons, 4), np.int32, -1)
    meta[:, 0] = 0
    cap_e = 2 * n_neurons + 1024
    cap_s = n_neurons + 1024
    n = n_neurons
    return {"hot": hot, "flags": _huge_zeros(n, np.uint8), "meta": meta,
            "pred": _huge_zeros((n, 3), np.float64), "head": np.full(ring, -1, np.int64),
            # buffers of the queue entries, the spike record (both may grow), the spike
            # index per step (sized for the trial), the slots queued
            "e_nrn": _huge_zeros(cap_e, np.int64), "e_step": _huge_zeros(cap_e, np.int64),
            "e_next": _huge_zeros(cap_e, np.int64), "sp_idx": _huge_zeros(cap_s, np.int32),
            "sp_step": _huge_zeros(cap_s, np.int64), "step_ptr": np.zeros(1, np.int64),
            "touched": _huge_zeros(n, np.int64),
            "slot_of": _huge_zeros(n, np.int32, -1), "slot_nrn": _huge_zeros(n, np.int64),
            "nrn_rfc": _huge_zeros(n, np.int64), "nrn_orig": _huge_zeros(n, np.int64),
            "nrn_drv": _huge_zeros(n, np.uint8), "nrn_inh": _huge_zeros(n, np.uint8),
            "row": _huge_zeros((n, 2), np.int64), "syn2": np.zeros(0, np.uint32),
            "state": np.zeros(STATE_WIN, np.int64)}


def pack_synapses(indptr: np.ndarray, post: np.ndarray, weight: np.ndarray, w_scale: float,
                  skip_pre: np.ndarray, skip_post: np.ndarray | None,
                  order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Connections as the kernel reads them: one record ``(code << t_bits) | 2 * target``
    each, 4 bytes where target and code fit in 32 bits (the full brain does), else 8.
    The low field is the target's offset in the flat ``hot`` array (P at 2t, Q at
    2t + 1), so that an event decodes it with one mask and its weight code with one shift.

    Connections that deliver nothing (zero weight, a row in *skip_pre*, a target in
    *skip_post*) are left out. ``wtab[code]`` is the weight in volts, ``weight * w_scale``
    computed as before (bit for bit); integer counts (the canonical files) index a table
    of the integers in their range, other weights a table of their distinct values.
    With *order* (a permutation: ``order[i]`` is the model index of internal neuron i),
    rows and targets are in the internal numbering (row i holds the connections of
    ``order[i]``, in their order; targets are internal indices); *skip_pre*, *skip_post*
    stay in model indices.

    Returns ``(indptr int64, syn uint32 or uint64, wtab float64, t_bits)``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    post = np.asarray(post)
    weight = np.asarray(weight, dtype=np.float64)
    skip_pre = np.asarray(skip_pre, dtype=np.bool_)
    skip_post = np.zeros(0, np.bool_) if skip_post is None else np.asarray(skip_post, dtype=np.bool_)
    n = indptr.shape[0] - 1
    n_targets = int(post.max()) + 1 if post.size else 1
    if order is None:
        order = np.arange(n, dtype=np.int64)
        relabel = np.arange(max(n, n_targets), dtype=np.int64)
    else:
        order = np.ascontiguousarray(order, dtype=np.int64)
        relabel = np.empty(n, np.int64)
        relabel[order] = np.arange(n, dtype=np.int64)
        n_targets = n
    blocks = _row_blocks(indptr)
    lo, hi, integral = 0.0, 0.0, True  # the weights' range (from 0) and whether all are integers
    buf = np.empty(PACK_BLOCK, np.float64)
    for s0 in range(0, weight.shape[0], PACK_BLOCK):
        w = weight[s0:s0 + PACK_BLOCK]
        lo, hi = min(lo, float(np.fmin.reduce(w))), max(hi, float(np.fmax.reduce(w)))
        integral = integral and bool(np.array_equal(w, np.floor(w, out=buf[:w.shape[0]])))
    code = None
    if integral and hi - lo < 2 ** 20:
        base = float(int(lo))
        wtab = np.arange(int(lo), int(hi) + 1, dtype=np.float64) * w_scale
    else:
        vals, code = np.unique(weight, return_inverse=True)
        code = code.astype(np.uint64)
        base = 0.0
        wtab = np.ascontiguousarray(vals * w_scale, dtype=np.float64)
    code_bits = max(1, (len(wtab) - 1).bit_length())
    t_bits = max(1, (2 * n_targets - 1).bit_length())
    dtype = np.uint32 if code_bits + t_bits <= 32 else np.uint64
    if dtype is np.uint64:
        t_bits = max(t_bits, 32)
        if code_bits + t_bits > 64:
            raise ValueError("too many neurons or distinct weights for 8-byte connection records")

    # the connections that deliver, and how many per row (model order)
    counts = np.diff(indptr)
    keep = weight != 0.0
    if skip_pre.any():
        keep &= np.repeat(~skip_pre, counts)
    if skip_post.any():
        keep &= ~skip_post[post]
    dropped_rows = np.searchsorted(indptr, np.flatnonzero(~keep), side="right") - 1
    n_kept = counts - np.bincount(dropped_rows, minlength=n)
    new_ptr = np.zeros(n + 1, np.int64)
    np.cumsum(n_kept[order], out=new_ptr[1:])
    first_kept = np.zeros(n + 1, np.int64)  # index of a row's first kept connection, model order
    np.cumsum(n_kept, out=first_kept[1:])
    # a kept connection goes to its row's new start plus its rank among the row's kept ones
    shift = new_ptr[:-1][relabel[:n]] - first_kept[:-1]
    syn = np.empty(int(new_ptr[-1]), dtype)
    two_t = (relabel * 2).astype(dtype)  # the low field: 2 * internal target
    sh = dtype(t_bits)
    all_kept = bool(keep.all())
    for r0, r1 in blocks:
        a, b = indptr[r0], indptr[r1]
        k = slice(None) if all_kept else keep[a:b]
        if code is None:
            c = (weight[a:b][k] - base).astype(dtype)  # exact: integers from 0 to below 2**20
        else:
            c = code[a:b][k].astype(dtype)
        rec = (c << sh) | two_t[post[a:b][k]]
        g0 = first_kept[r0]
        syn[np.repeat(shift[r0:r1], n_kept[r0:r1]) + np.arange(g0, g0 + rec.shape[0], dtype=np.int64)] = rec
    return new_ptr, syn, wtab, t_bits


#: Connections per block of rows in :func:`pack_synapses` (bounds its temporary arrays).
PACK_BLOCK = 1 << 20


def _row_blocks(indptr: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive row ranges of about :data:`PACK_BLOCK` connections each."""
    n = indptr.shape[0] - 1
    cuts = np.searchsorted(indptr, np.arange(0, int(indptr[-1]), PACK_BLOCK), side="right") - 1
    starts = sorted(set(int(r) for r in cuts) | {0})
    ends = starts[1:] + [n]
    return [(r0, r1) for r0, r1 in zip(starts, ends) if r1 > r0]


def inhibitory_rows(indptr: np.ndarray, syn: np.ndarray, wtab: np.ndarray, t_bits: int) -> np.ndarray:
    """Rows (presynaptic neurons) whose packed connections all have negative weights
    (bool array, one per row; False for an empty row)."""
    n = indptr.shape[0] - 1
    out = np.zeros(n, np.bool_)
    nonempty = indptr[1:] > indptr[:-1]
    if not nonempty.any():
        return out
    n_neg = int(np.count_nonzero(wtab < 0.0))
    if np.all(wtab[1:] >= wtab[:-1]):
        # ascending weights (as packed): the codes of negative weights come first, so a
        # record is not negative where it is at least (n_neg << t_bits)
        if n_neg == wtab.shape[0]:
            flag = np.zeros(syn.shape[0], np.bool_)
        else:
            flag = syn >= syn.dtype.type(n_neg << t_bits)
    else:
        not_negative = ~(wtab < 0.0)  # per weight code (NaN counts as not negative)
        flag = not_negative[np.right_shift(syn, syn.dtype.type(t_bits))]
    # a segment of reduceat runs from a non-empty row's start to the next one's: the row
    # itself, as the rows between are empty
    out[nonempty] = ~np.logical_or.reduceat(flag, indptr[:-1][nonempty])
    return out


def peak_table(a: float, b: float, rho_max: float = 64.0, size: int = 16384) -> tuple[np.ndarray, float]:
    """``h(rho) = max_{t >= 0} (a^t - rho b^t)`` on a grid of rho (decreasing in rho).

    The free trajectory ``x(t) = A a^t - B b^t`` (A = x + c g, B = c g > 0) peaks at
    ``A h(B/A)``; the entry at or below ``B/A`` bounds it from above, which rejects most
    candidates of a crossing search without a logarithm. Returns the table (with a margin
    of 1e-12 relative) and the number of entries per unit of rho.
    """
    rho = np.arange(size, dtype=np.float64) * (rho_max / size)
    la, lb = np.log(a), np.log(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rho * lb / la
        t = np.where(ratio > 1.0, np.log(np.maximum(ratio, 1e-300)) / (la - lb), 0.0)
    h = np.power(a, t) - rho * np.power(b, t)
    return h * (1.0 + 1e-12) + 1e-300, size / rho_max


_HUGE_PAGE = 2 << 20


def _huge_zeros(shape: tuple[int, ...] | int, dtype: type, fill: float = 0,
                prefault: int | None = None) -> np.ndarray:
    """Array (of *fill*) at the start of a 2 MiB-aligned region that asks the kernel for
    transparent huge pages (``madvise(MADV_HUGEPAGE)``, where available): the records a
    trial touches (its slots come first) then share one TLB entry instead of hundreds.
    Its pages are written now (all, or the first *prefault* bytes), so that the page
    faults fall in the set-up, not in the first trial. Arrays under 256 KiB are ordinary
    ones."""
    import mmap

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < (256 << 10):
        return np.full(shape, fill, dtype)
    size = -(-max(nbytes, 1) // _HUGE_PAGE) * _HUGE_PAGE + _HUGE_PAGE
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            region.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages: ordinary pages
            pass
    buf = np.frombuffer(region, np.uint8)
    off = (-buf.ctypes.data) % _HUGE_PAGE
    out = buf[off:off + nbytes].view(dtype).reshape(shape)
    if fill != 0:
        out[...] = fill
    else:
        buf[off:off + (nbytes if prefault is None else min(nbytes, prefault)):4096] = 0
    return out
