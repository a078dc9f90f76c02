"""A live event-engine simulation: the exact kernel advanced step range by step range.

:class:`EventStepper` keeps one trial's whole state (the kernel's workspace and the
scalars :class:`~brainfly.engines._event_kernels.Span` saves) between calls, in a numba
jitclass, so that advancing by a millisecond costs a call of about a microsecond plus the
simulation itself (passing the kernel's ~50 arrays from Python would cost ~10 us a call).
Predictions look ahead to a horizon of :data:`HORIZON_STEPS` instead of a trial's end;
spikes before any step are those a run of that length gives (a prediction is the exact
first crossing, whatever the horizon). The spike record keeps only the last steps that
deliveries and releases still read (it is compacted after every call).

Silencing is a per-neuron mask that the kernel reads at delivery (outgoing: the neuron's
spikes reach nobody from the step it is set), so it can change between calls; a neuron's
refractory period can change between calls too (see :meth:`EventStepper.activate`).
"""

from __future__ import annotations

from typing import Any

import numba
from numba import njit, typeof
from numba.experimental import jitclass
import numpy as np

from ..errors import ValidationError
from . import _event_kernels as K
from . import _event_records as R
from .event import EventEngine, packed_network

__all__ = ["EventStepper", "HORIZON_STEPS", "count_window"]

#: How far ahead predictions look (steps): the kernel keeps steps in int32. A live
#: simulation can run this long (2**31 - 1025 steps: 59 hours at dt = 0.1 ms).
HORIZON_STEPS = 2 ** 31 - 1025

_CLASSES: dict[tuple, Any] = {}


def _live_class(network: Any, neurons: Any, model: Any, tables: Any, ws: Any, runaway: Any, order: Any) -> Any:
    """The jitclass holding one live simulation, typed for these records (one per record
    width, made on first use in a process)."""
    spec = [("network", typeof(network)), ("neurons", typeof(neurons)), ("model", typeof(model)),
            ("tables", typeof(tables)), ("ws", typeof(ws)), ("runaway", typeof(runaway)),
            ("order", typeof(order)), ("n", numba.int64), ("step0", numba.int64), ("window", numba.int64),
            ("started", numba.boolean),
            # the kicks to come (internal index, step; sorted) and the next one to deliver
            ("kick_idx", numba.int64[::1]), ("kick_step", numba.int64[::1]), ("kp", numba.int64),
            # spikes out: FlyWire ID per internal index; readout counts over a sliding window
            ("fid", numba.int64[::1]), ("pos_of", numba.int64[::1]), ("ring", numba.int64[:, ::1]),
            ("counts", numba.int64[::1])]
    key = tuple(str(t) for _, t in spec)
    cls = _CLASSES.get(key)
    if cls is None:
        class LiveState:
            def __init__(self, network, neurons, model, tables, ws, runaway, order, window, fid, pos_of, ring):
                self.network = network
                self.neurons = neurons
                self.model = model
                self.tables = tables
                self.ws = ws
                self.runaway = runaway
                self.order = order
                self.n = 0
                self.step0 = 0
                self.window = window
                self.started = False
                self.kick_idx = np.empty(0, np.int64)
                self.kick_step = np.empty(0, np.int64)
                self.kp = 0
                self.fid = fid
                self.pos_of = pos_of
                self.ring = ring
                self.counts = np.zeros(ring.shape[1], np.int64)

        cls = _CLASSES[key] = jitclass(spec)(LiveState)
    return cls


@njit(cache=True)
def count_window(pos_of, idx, steps, n0, n_stop, ring, counts):
    """Spikes of the readout neurons in a sliding window of ``ring.shape[0]`` steps: *ring*
    holds each step's counts (row ``step % rows``), *counts* their sum; advanced over steps
    n0 .. n_stop - 1 with these spikes (model index *idx*, *steps*; ``pos_of[i]``: the
    readout position of neuron i, -1 if none)."""
    rows = ring.shape[0]
    p = 0
    for s in range(max(n0, n_stop - rows), n_stop):
        r = s % rows
        for q in range(ring.shape[1]):
            counts[q] -= ring[r, q]
            ring[r, q] = 0
        while p < idx.shape[0] and steps[p] < s:
            p += 1
        while p < idx.shape[0] and steps[p] == s:
            k = pos_of[idx[p]]
            if k >= 0:
                ring[r, k] += 1
                counts[k] += 1
            p += 1


@njit(cache=False)
def _with_buffers(ws, step_ptr, sp_idx, sp_step, e_nrn, e_step, e_next):
    return R.Workspace(ws.hot, ws.flags, ws.meta, ws.pred, ws.head, e_nrn, e_step, e_next, sp_idx, sp_step,
                       step_ptr, ws.touched, ws.slot_of, ws.slot_nrn, ws.nrn_rfc, ws.nrn_orig, ws.nrn_drv,
                       ws.nrn_inh, ws.row, ws.syn2, ws.state)


@njit(cache=False)  # (numba cannot cache a function of a jitclass: compiled once per process)
def _advance(live, n_stop, dt):
    """Simulate steps live.n .. n_stop - 1 with the kicks to come before n_stop; return the
    spikes (FlyWire ID, step) and the readout's rates (Hz over the window; *dt* in s), and
    compact the spike record."""
    kp = live.kp
    hi = kp
    while hi < live.kick_step.shape[0] and live.kick_step[hi] < n_stop:
        hi += 1
    kick_idx = live.kick_idx[kp:hi]
    kick_step = live.kick_step[kp:hi]
    live.kp = hi
    n0 = live.n
    ws = live.ws
    need = n_stop - live.step0 + 1
    step_ptr = ws.step_ptr
    if step_ptr.shape[0] < need:
        step_ptr = np.zeros(max(need, 2 * step_ptr.shape[0]), np.int64)
        step_ptr[:ws.step_ptr.shape[0]] = ws.step_ptr
        ws = _with_buffers(ws, step_ptr, ws.sp_idx, ws.sp_step, ws.e_nrn, ws.e_step, ws.e_next)
    fresh = not live.started
    finish = live.n < 0  # never (a typed False: a literal would make another kernel signature)
    sp_first = 0 if fresh else ws.state[R.ST_N_SP]
    span = R.Span(live.n, n_stop, live.step0, fresh, finish)
    out = K.run_trial(live.network, live.neurons, live.model, live.tables, R.Drive(kick_idx, kick_step), ws,
                      live.runaway, span)
    sp_idx = out[0]
    sp_step = out[1]
    n_sp = out[2]
    if (sp_idx.shape[0] != ws.sp_idx.shape[0] or sp_step.shape[0] != ws.sp_step.shape[0]
            or out[10].shape[0] != ws.e_nrn.shape[0]):
        ws = _with_buffers(ws, step_ptr, sp_idx, sp_step, out[10], out[11], out[12])  # they grew
    k = n_sp - sp_first
    fids = np.empty(k, np.int64)
    idx = np.empty(k, np.int64)
    steps = np.empty(k, np.int64)
    for p in range(k):
        i = ws.slot_nrn[sp_idx[sp_first + p]]
        idx[p] = live.order[i]
        fids[p] = live.fid[i]
        steps[p] = sp_step[sp_first + p]
    rates = np.empty(live.counts.shape[0], np.float64)
    if rates.shape[0]:
        count_window(live.pos_of, idx, steps, n0, n_stop, live.ring, live.counts)
        window_s = min(live.ring.shape[0], max(n_stop, 1)) * dt
        for q in range(rates.shape[0]):
            rates[q] = live.counts[q] / window_s
    # keep the spikes of the last `window` steps only (deliveries and releases read no further back)
    new0 = n_stop - live.window
    if new0 > live.step0:
        shift = new0 - live.step0
        p0 = step_ptr[shift]
        m = n_sp - p0
        for p in range(m):
            sp_idx[p] = sp_idx[p0 + p]
            sp_step[p] = sp_step[p0 + p]
        for q in range(n_stop - new0 + 1):
            step_ptr[q] = step_ptr[q + shift] - p0
        ws.state[R.ST_N_SP] = m
        live.step0 = new0
    live.ws = ws
    live.n = n_stop
    live.started = True
    return fids, steps, rates, ws.state[R.ST_RUNAWAY_KIND]


class EventStepper:
    """One live trial of the event engine on a connectome (see the module docstring).

    Parameters
    ----------
    engine : EventEngine
    connectome : Connectome
    params : ModelParams
    activated : int array
        Model indices of neurons activated from step 0 (refractory period 0).
    """

    def __init__(self, engine: EventEngine, connectome: Any, params: Any, activated: np.ndarray,
                 readout: np.ndarray, window_steps: int) -> None:
        co = params.step_coefficients()
        self.params = params
        self.packed = packed_network(connectome, co.w_syn)  # unsilenced: silencing is a mask here
        n = connectome.n_neurons
        self.n_neurons = n
        order, relabel = self.packed.order, self.packed.relabel
        self.order, self.relabel = order, relabel
        r = int(params.refractory_steps)
        rfc = np.full(n, r, np.int64)
        driven = np.zeros(n, np.bool_)
        act = relabel[np.asarray(activated, np.int64)]
        rfc[act] = 0
        driven[act] = True
        # releases at max(rfc, 1) steps after a spike: both kinds always (a neuron may be
        # activated later)
        rel = np.unique(np.array([1, max(r, 1)], np.int64))
        self.neurons = R.Neurons(rfc, driven, rel, np.zeros(n, np.bool_))
        self.model, self.tables = engine.model_and_tables(co, params, int(params.delay_steps), HORIZON_STEPS)
        self.runaway = engine.runaway(params, quiet=False)  # (the quiet criterion needs the whole input)
        # the steps a delivery or a release reads back, and a margin
        self.window = int(max(params.delay_steps, r, 1)) + 2
        self._ring = int(engine.options.ring_steps)
        ws = self._fresh_ws()
        network = self.packed.network
        cls = _live_class(network, self.neurons, self.model, self.tables, R.Workspace(**ws), self.runaway, order)
        self._cls = cls
        self.fid = np.ascontiguousarray(connectome.flywire_ids[order], np.int64)
        self.readout = np.asarray(readout, np.int64)
        self.window_steps = int(window_steps)
        self.live = cls(network, self.neurons, self.model, self.tables, R.Workspace(**ws), self.runaway, order,
                        self.window, self.fid, *self._readout_arrays())
        self.dt = float(params.dt_s)
        self._pending: set[int] = set()  # internal indices to activate when not refractory
        self.n = 0  # the next step (live.n, kept here too: reading a jitclass field from Python costs)

    def _readout_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        pos_of = np.full(self.n_neurons, -1, np.int64)
        pos_of[self.readout] = np.arange(self.readout.shape[0])
        return pos_of, np.zeros((self.window_steps, self.readout.shape[0]), np.int64)

    def _fresh_ws(self) -> dict:
        n = self.n_neurons
        ws = R.new_workspace(n, self._ring)
        net = self.packed.network
        ws["touched"] = R._huge_zeros(2 * n + 2 + self.packed.max_row, np.int64)
        ws["syn2"] = R._huge_zeros(net.syn.shape[0], net.syn.dtype, prefault=2 << 20)
        ws["step_ptr"] = np.zeros(self.window + 1024, np.int64)
        ws["state"] = np.zeros(R.STATE_WIN + max(self.runaway.window, 1), np.int64)
        return ws

    # ------------------------------------------------------------------ stepping
    @property
    def step(self) -> int:
        """The next step to simulate."""
        return self.n

    def set_kicks(self, kick_idx: np.ndarray, kick_step: np.ndarray) -> None:
        """The kicks to come (model indices; absolute steps from the next step on, sorted)."""
        self.live.kick_idx = np.ascontiguousarray(self.relabel[kick_idx], np.int64)
        self.live.kick_step = np.ascontiguousarray(kick_step, np.int64)
        self.live.kp = 0

    def advance(self, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Simulate *n_steps* steps with the kicks of :meth:`set_kicks` that fall in them.
        Returns the spikes (FlyWire ID, step), the readout's rates (Hz) and the runaway
        detection's verdict so far (0: none)."""
        if self._pending:
            self._apply_pending()
        n_stop = self.n + n_steps
        if n_stop > HORIZON_STEPS:
            raise ValidationError(f"a live simulation runs at most {HORIZON_STEPS} steps")
        out = _advance(self.live, n_stop, self.dt)
        self.n = n_stop
        return out

    def runaway_state(self) -> tuple[int, int]:
        """(kind, onset step) of the runaway detection so far (0, -1: none)."""
        st = self.live.ws.state
        return int(st[R.ST_RUNAWAY_KIND]), int(st[R.ST_RUNAWAY_ONSET])

    # ------------------------------------------------------------------ changes between calls
    def silence(self, idx: np.ndarray, on: bool) -> None:
        """Silence (or unsilence) neurons (model indices) from the next step on."""
        self.live.neurons.silenced[self.relabel[np.asarray(idx, np.int64)]] = on

    def activate(self, idx: np.ndarray) -> None:
        """Make neurons (model indices) activated (refractory period 0, driven) from the
        next step at which they are not refractory (a neuron in its refractory period keeps
        it, and becomes activated at the first call after its release)."""
        self._pending.update(self.relabel[np.asarray(idx, np.int64)].tolist())
        self._apply_pending()

    def _apply_pending(self) -> None:
        ws = self.live.ws
        nr = self.live.neurons
        now = self.n
        done = []
        for i in self._pending:
            s = int(ws.slot_of[i])
            if s >= 0 and int(ws.meta[s, 0]) >= now:
                continue  # refractory now (its release is at or after this step): later
            nr.rfc[i] = 0
            nr.driven[i] = True
            if s >= 0:
                ws.nrn_rfc[s] = 0
                ws.nrn_drv[s] = 1
            done.append(i)
        self._pending.difference_update(done)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> dict[str, Any]:
        """A copy of the whole state (workspace, neurons' settings, step)."""
        ws = self.live.ws
        n_syn2 = int(ws.state[R.ST_N_SYN2]) if self.live.started else 0
        arrays = {name: np.array(getattr(ws, name)) for name in R.Workspace._fields if name != "syn2"}
        arrays["syn2"] = np.array(ws.syn2[:n_syn2])
        nr = self.live.neurons
        return {"ws": arrays, "syn2_len": int(ws.syn2.shape[0]), "rfc": nr.rfc.copy(), "driven": nr.driven.copy(),
                "silenced": nr.silenced.copy(), "n": int(self.live.n), "step0": int(self.live.step0),
                "started": bool(self.live.started), "pending": set(self._pending),
                "ring": np.array(self.live.ring), "counts": np.array(self.live.counts)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Continue from a :meth:`save` (which stays usable)."""
        ws = {name: np.array(a) for name, a in snap["ws"].items() if name != "syn2"}
        syn2 = R._huge_zeros(snap["syn2_len"], self.packed.network.syn.dtype)
        syn2[:snap["ws"]["syn2"].shape[0]] = snap["ws"]["syn2"]
        ws["syn2"] = syn2
        nr = self.live.neurons
        nr.rfc[:] = snap["rfc"]
        nr.driven[:] = snap["driven"]
        nr.silenced[:] = snap["silenced"]
        self.live.ws = R.Workspace(**ws)
        self.live.n = snap["n"]
        self.n = snap["n"]
        self.live.step0 = snap["step0"]
        self.live.started = snap["started"]
        self.live.ring = snap["ring"].copy()
        self.live.counts = snap["counts"].copy()
        self._pending = set(snap["pending"])

    def reset(self, activated: np.ndarray) -> None:
        """Back to step 0, no activity, nothing silenced; *activated* as at construction."""
        nr = self.live.neurons
        r = int(self.params.refractory_steps)
        nr.rfc[:] = r
        nr.driven[:] = False
        nr.silenced[:] = False
        act = self.relabel[np.asarray(activated, np.int64)]
        nr.rfc[act] = 0
        nr.driven[act] = True
        self.live.ws = R.Workspace(**self._fresh_ws())
        _, ring = self._readout_arrays()
        self.live.ring = ring
        self.live.counts = np.zeros(ring.shape[1], np.int64)
        self.live.n = 0
        self.n = 0
        self.live.step0 = 0
        self.live.started = False
        self._pending = set()
