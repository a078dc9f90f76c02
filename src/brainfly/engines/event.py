"""The exact event-driven CPU engine (``--engine event``).

It computes the discrete-time model of the Brian2 reference spike for spike (state
update -> threshold -> synaptic and Poisson input -> reset within each step, strict
threshold, the 18-step delay, 22 refractory steps or 0 for driven neurons), but its cost
grows with the number of synaptic events, not with neurons x steps. Units inside: volts
and integer steps.

Input that reaches a neuron while it is refractory, or in its spike step, is dropped:
Brian2 2.8 gates both ``g += w`` and the Poisson ``v += kick`` by the target's
``not_refractory`` flag (its generated numpy code is
``add.at(g, post[not_refractory], w[not_refractory])``), because ``v`` and ``g`` are
declared ``(unless refractory)``. The tiny networks of :mod:`brainfly.testing.networks`
check this against Brian2 itself.

Algorithm
---------
Between two inputs a neuron's trajectory is closed form. With ``x = v - v_0``,
``a = v_decay``, ``b = g_decay`` and ``c = tau / (t_mbr - tau)``::

    x(n) = x a^n + c (a^n - b^n) g,      g(n) = g b^n

(the exact solution that Brian2's ``method='linear'`` iterates; ``v_from_g = c (a - b)``,
checked against :class:`~brainfly.params.StepCoefficients` by the tests). Equivalently,
in absolute steps and relative to a base step B, every free trajectory is
``x(n) = P a^(n-B) - Q b^(n-B)`` with ``g(n) = Q b^(n-B) / c``. The engine keeps ``(P, Q)``
per neuron: an input ``w`` onto g in step m adds ``w c a^-(m-B)`` to P and ``w c b^-(m-B)``
to Q (a kick adds ``kick a^-(m-B)`` to P) with per-step constants from precomputed power
tables, so an event costs one 16-byte load, multiply, add and store (P and Q side by side,
four records to a cache line) and no ``exp``; a neuron that receives no input is never
touched. The connections are packed once per connectome and silencing into 8-byte
records ``(code << t_bits) | 2 target`` (4 bytes where they fit: code indexes a small
table of weights in volts, ``count * w_syn`` bit for bit; the low field is the offset of
the target's record, so an event decodes it with one mask); connections that deliver
nothing (zero weight, silenced) are left out. Inside the kernel the neurons are numbered
by decreasing in-degree (the records of the neurons that receive most events share cache
lines); spikes are ordered, delivered and returned by model index, so the numbering
changes no result, not even round-off. B moves every few thousand steps (P, Q of the
neurons reached are rescaled), which keeps ``a^-k``, ``b^-k`` below ~1e61.

After a step's input, ``A = x + c g = P a^(n-B)`` bounds the neuron's free trajectory
(``x(t) < A``) where g > 0; where g <= 0 a neuron at or below threshold (every neuron that
did not spike) cannot cross. So an event queues its target for re-prediction where
``P > x_th a^-(n-B)`` (one compare against a per-step constant), and without a branch:
the target is always written to the queue, whose length advances by the comparison (a
branch taken for one event in twenty, at random, cost more than the rest of the event).
Re-prediction: a tabulated continuous peak ``A h(c g / A)`` rejects most candidates;
Brian2's own update ``v' = v_const + (v_from_g*g + v_decay*v)`` is then iterated for up
to ``SCAN_STEPS`` steps, to the first step above ``v_th`` or until v turns down (a free
trajectory rises at most once); a crossing farther away is found from the discrete peak
(from the continuous one) by bisection on the rising part, confirmed by Brian2's update
iterated from two steps before it. A crossing goes into a calendar queue (a ring of buckets, one
per step). Predictions are not invalidated eagerly: inhibition can only delay or cancel a
crossing, so when a prediction is due and its neuron had input since, x at that step is
checked (above threshold: spike; else predicted again). For the same reason the rows of
inhibitory neurons (all weights negative; Dale's law makes that nearly every row of the
fly's) queue nothing. A neuron re-predicted while its prediction m is pending and still
above threshold at m has its first crossing at or before m (the free trajectory is
unimodal): bisection on the steps up to m, without bound or peak. The spike record itself
is the 18-step delay buffer. Per step:

1. pop this step's predicted crossings -> spikes (sorted by model index), and mark the
   spikers refractory;
2. release the neurons whose refractory period ends: (P, Q) := the reset state at the
   previous step (input that reached them meanwhile, added to P and Q like any other,
   is discarded here: Brian2 drops input to a refractory or spiking neuron);
3. deliver the synaptic events of the spikes of ``step - delay`` and the Poisson kicks;
4. re-predict the neurons queued in step 3.

What an event does not do, to stay cheap: it does not look at refractoriness (a spiking
neuron's P is set far negative until its release, so its input never queues it, and the
release overwrites it), nor at whether its target was reached before, nor at pending
predictions (a prediction keeps the (P, Q) it was made from; at its step, different values
mean input since; input that cancels exactly leaves the state, and so the prediction, as it
was). Per-neuron bookkeeping that re-prediction needs lives in a one-byte flag per neuron
(queued by a kick, prediction pending, pending entry is a check, re-predicted in this
step), small enough to stay in cache.

The state of a trial is kept in *slots*, not by neuron number: a neuron takes the next slot
when it is first reached, and when a neuron first spikes its row of connections is copied
(before its delivery) with the targets as slots. The records that a trial's events write
are then contiguous and in the order the neurons were reached (the few tens of thousands
reached by the sugar experiment fit in a core's L2 cache), whatever their numbers; the
order of the slots is the propagation front itself. The workspace arrays sit on
transparent huge pages (2 MiB, ``madvise``) where the system has them, so that these
records share a few TLB entries; the target records are prefetched a few connections
ahead only once a trial has reached more neurons than fit in L2 (where they pay).

A crossing search (~0.1 us) is put off where a cheap bound shows that no crossing can come
soon: with ``x(k) <= max(x, 0) + c g k ln(a/b)`` (``a^k - b^k <= k ln(a/b)``), a neuron
whose first possible crossing lies at least ``LAZY_MIN`` steps ahead gets a *check* queued
two steps before that bound instead of a prediction. A neuron that is charging up gets
more input before its check comes due, and that input only moves the check (or leaves an
earlier entry in place); a check that comes due applies the bound again from there, or
searches (a check whose neuron is above threshold at its step spikes there, as a
prediction whose state changed does: no crossing was possible before it). Only the work
changes, not the spikes: the tests compare both with Brian2.

The kernels (:mod:`brainfly.engines._event_kernels`) are numba ``njit(cache=True,
nogil=True)`` functions with no per-step Python; trials run in parallel threads, one
workspace per thread. Each trial depends only on its own input, so the same seed gives the
same spikes whatever the number of threads. Poisson input comes from
:meth:`~brainfly.engines.base.SimulationInput.kicks` (the shared draws of
:func:`brainfly.schedule.draw_poisson`, or the explicit input schedule).

Exactness
---------
Closed-form jumps differ from Brian2's step-by-step iteration by floating-point
round-off only (a few ulp of ``v``; Brian2's own C++ standalone build with
``-ffast-math`` differs from its numpy target by as much). Spike identity, the
criterion of the conformance suite, holds unless a membrane potential lands within
round-off (~1e-17 V) of ``v_th``; on a continuous-valued trajectory that has probability
of order 1e-14 per input. Near a crossing the engine iterates Brian2's own update, so
the decision is taken with Brian2's arithmetic from a state that differs from Brian2's
by round-off only.

Beyond the reference
--------------------
``result.meta`` also holds

- ``runaway``: a list with one dict ``{"trial", "runaway": True, "onset_s", "criterion"}``
  per trial that entered a self-sustaining state: non-driven neurons firing more than
  ``runaway_spikes_per_s`` (default 100,000 spikes/s, measured over a sliding
  ``runaway_window_ms`` window; the sugar experiment gives ~17k/s on v783, the
  self-sustaining olfactory state ~450k/s), onset = start of that window; or spikes
  continuing ``runaway_quiet_ms`` (100 ms) after the last external input, onset = the
  step after that input. ``runaway_by_trial``: list of bool, in trial order;
- ``first_spike_step``: the propagation front, a compact table (dict of equal-length
  numpy arrays ``trial``, ``idx``, ``first_input_step``, ``first_spike_step`` (-1: never
  spiked), ``latency_steps`` (from the trial's first kick; -1: never spiked)) with one
  row per neuron reached (received non-zero input) per trial, in the order reached;
  ``stimulus_onset_step`` (list per trial);
- ``n_events`` (synaptic events delivered), ``timings_s``, ``n_threads``;
- ``timings`` (the engine contract): ``setup_s`` (inputs, tables, packing, assembling the
  result), ``build_s`` (numba's compilation or cache load, when it happened in this run,
  else 0), ``sim_s`` (wall time of the trial kernels).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import hashlib
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..results import SpikeResult
from .base import Engine, ProgressCallback, SimulationInput, register_engine

__all__ = ["EventEngine"]

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "n_threads": None,            # default: min(n_trials, os.cpu_count())
    "runaway_window_ms": 20.0,    # sliding window of the activity bound
    "runaway_spikes_per_s": 1e5,  # non-driven spikes per second (in the window) = runaway
    "runaway_quiet_ms": 100.0,    # spikes this long after the last external input: runaway
    "ring_steps": 1024,           # buckets of the calendar queue (power of two)
}


#: The last packed connectome (see :meth:`EventEngine._packed`), shared by all instances.
_PACK_CACHE: dict[str, tuple] = {}
_PACK_LOCK = threading.Lock()
#: ln of the largest factor a^-k, b^-k that moves (P, Q) from the base step (~1e61).
_REBASE_LOG = 140.0
#: Number the neurons internally by decreasing in-degree (see :meth:`EventEngine._packed`).
_RENUMBER = True


@register_engine
class EventEngine(Engine):
    """Exact event-driven CPU engine (numba); cost grows with synaptic events.

    Parameters
    ----------
    n_threads : int, optional
        Threads that run trials in parallel (default: min(n_trials, CPU count)). The
        spikes do not depend on it.
    runaway_window_ms, runaway_spikes_per_s, runaway_quiet_ms : float
        Runaway (self-sustaining activity) detection, see the module docstring.
    ring_steps : int
        Buckets of the calendar queue (a power of two; any value is correct).
    """

    name = "event"
    exact = True
    capabilities = frozenset({"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64"})
    description = "exact event-driven CPU engine (numba); cost grows with synaptic events"
    trials_per_chunk = 32  # a trial-second costs milliseconds: keep all threads busy per chunk

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(_DEFAULTS)
        if unknown:
            raise ValidationError(
                f"engine 'event': unknown option(s) {sorted(unknown)}; valid options are {sorted(_DEFAULTS)}"
            )
        merged = {**_DEFAULTS, **options}
        nt = merged["n_threads"]
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, (int, np.integer)) or nt < 1):
            raise ValidationError(f"engine 'event' option n_threads: must be an integer >= 1 (got {nt!r})")
        ring = merged["ring_steps"]
        if isinstance(ring, bool) or not isinstance(ring, (int, np.integer)) or ring < 1 or ring & (ring - 1):
            raise ValidationError(f"engine 'event' option ring_steps: must be a power of two >= 1 (got {ring!r})")
        for key in ("runaway_window_ms", "runaway_spikes_per_s", "runaway_quiet_ms"):
            val = merged[key]
            if isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating)) or val < 0:
                raise ValidationError(f"engine 'event' option {key}: must be a number >= 0 (got {val!r})")
        super().__init__(**merged)
        self._pool_lock = threading.Lock()

    def _packed(self, sim: SimulationInput) -> tuple:
        """The connections packed for the kernel (:func:`_event_kernels.pack_synapses`),
        kept for the last connectome and silencing seen, by all instances (packing costs
        more than a trial; one copy, 8 bytes per connection)."""
        from . import _event_kernels as K

        net = sim.connectome
        both = bool(sim.silenced_mask.any() and sim.experiment.silence_mode == "both")
        # identity of the arrays, plus a sample of their contents (an array changed in place)
        digest = hashlib.sha1(np.packbits(sim.silenced_mask).tobytes())
        for arr in (net.indptr, net.post_idx, net.weight):
            digest.update(np.ascontiguousarray(arr[::997]).tobytes())
        key = (id(net.indptr), id(net.post_idx), id(net.weight), len(net.post_idx), float(sim.coeffs.w_syn), both, _RENUMBER,
               digest.hexdigest())
        with _PACK_LOCK:
            cached = _PACK_CACHE.get("last")
            if cached is not None and cached[0] == key:
                return cached[2]
            _PACK_CACHE.clear()  # the old copy goes before the new one is made
            # w = count * w_syn per event, as weight_v() computes it (bit for bit); outgoing
            # silencing drops the rows of silenced neurons, "both" also the connections onto them
            mask = np.ascontiguousarray(sim.silenced_mask, dtype=np.bool_)
            post = np.ascontiguousarray(net.post_idx, dtype=np.int32)
            n = net.n_neurons
            if _RENUMBER:
                # internal numbering: by decreasing in-degree, so that the records of the
                # neurons that receive most events share cache lines
                order = np.argsort(-np.bincount(post, minlength=n), kind="stable").astype(np.int64)
            else:
                order = np.arange(n, dtype=np.int64)
            relabel = np.empty(n, np.int64)
            relabel[order] = np.arange(n, dtype=np.int64)
            packed = K.pack_synapses(
                np.ascontiguousarray(net.indptr, dtype=np.int64), post,
                np.ascontiguousarray(net.weight, dtype=np.float64), float(sim.coeffs.w_syn),
                mask, mask if both else None, order,
            )
            packed = packed + (order, relabel, K.inhibitory_rows(*packed))
            # the source arrays are held so that their ids are not reused by other arrays
            _PACK_CACHE["last"] = (key, (net.indptr, net.post_idx, net.weight), packed)
        return packed

    def _tables(self, a: float, b: float, n_steps: int, rebase: int) -> tuple:
        """Power tables and the peak table for (a, b, n_steps), kept for the last ones asked."""
        from . import _event_kernels as K

        key = (a, b, n_steps, rebase)
        cached = getattr(self, "_table_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        ks = np.arange(n_steps + 2, dtype=np.float64)
        kinv = -np.arange(rebase + 1, dtype=np.float64)
        htab, h_per_rho = K.peak_table(a, b)
        tables = (np.power(a, ks), np.power(b, ks), np.power(a, kinv), np.power(b, kinv), htab, h_per_rho)
        self._table_cache = (key, tables)
        return tables

    def _workspaces(self, n_neurons: int, ring: int) -> list:
        """The pool of per-thread workspaces for networks of *n_neurons* (kept between
        runs: the kernel leaves a workspace in its initial state)."""
        if getattr(self, "_pool_key", None) != (n_neurons, ring):
            self._pool_key = (n_neurons, ring)
            self._pool: list = []
        return self._pool

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Available where numba imports."""
        try:
            import numba  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
            return False, f"numba cannot be imported ({exc})"
        return True, ""

    # ------------------------------------------------------------------ run
    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> SpikeResult:
        """Run the given trials of *sim*; see the module docstring."""
        from . import _event_kernels as K

        t0 = time.perf_counter()
        opts = self.options
        co = sim.coeffs
        p = sim.params
        net = sim.connectome
        n = net.n_neurons
        n_steps = int(sim.n_steps)
        trials = [int(k) for k in trials]
        if n_steps >= 2 ** 31 - 1024:
            raise ValidationError(f"engine 'event': n_steps must be below 2**31 - 1024 (got {n_steps})")
        indptr, syn, wtab, code_bits, order, relabel, inh = self._packed(sim)
        # per-neuron arrays in the internal numbering (order[i]: model index of neuron i)
        rfc = np.ascontiguousarray(np.asarray(sim.refractory_steps, dtype=np.int64)[order])
        lo_r, hi_r = int(rfc.min(initial=0)), int(rfc.max(initial=0))
        if ((rfc == lo_r) | (rfc == hi_r)).all():  # the usual case: 0 (driven) and 22
            rel_delays = np.unique(np.maximum(np.array([lo_r, hi_r], np.int64), 1))
        else:
            rel_delays = np.unique(np.maximum(rfc, 1)).astype(np.int64)
        driven = np.zeros(n, dtype=np.bool_)
        # one translation of the model constants (volts, steps)
        tau = p.tau_ms * 1e-3
        t_mbr = p.t_mbr_ms * 1e-3
        a, b = co.v_decay, co.g_decay
        c = tau / (t_mbr - tau)
        # B moves every `rebase` steps: as seldom as keeps a^-k, b^-k below ~1e61
        rebase = int(max(1, min(n_steps + 1, _REBASE_LOG / -np.log(min(a, b)))))
        apow, bpow, ainv, binv, htab, h_per_rho = self._tables(a, b, n_steps, rebase)

        kicks = sim.kicks(trials)
        driven[kicks.idx] = True
        driven[sim.activated_idx] = True
        driven = np.ascontiguousarray(driven[order])
        t_draw = time.perf_counter()
        # kicks of trial trials[j] are kicks[lo_j:hi_j] (the schedule is sorted by trial)
        lo_hi = [(int(np.searchsorted(kicks.trial, k, "left")), int(np.searchsorted(kicks.trial, k, "right")))
                 for k in trials]

        window = int(round(opts["runaway_window_ms"] / p.dt_ms))
        count = int(opts["runaway_spikes_per_s"] * window * p.dt_s)
        quiet = int(round(opts["runaway_quiet_ms"] / p.dt_ms))

        n_threads = opts["n_threads"] or min(len(trials), os.cpu_count() or 1)
        n_threads = max(1, min(int(n_threads), max(len(trials), 1)))
        pool = self._workspaces(n, int(opts["ring_steps"]))
        pool_lock = self._pool_lock
        done = [0]
        done_lock = threading.Lock()

        # the neurons queued in a step, repeats included: up to a row more than all neurons
        # (the kernel drops repeats when it must), and one per kick
        room_touched = 2 * n + 2 + int(np.diff(indptr).max(initial=0))

        def ready(ws: dict) -> dict:
            """The workspace with its buffers sized for this run."""
            if ws["step_ptr"].shape[0] < n_steps + 1:
                ws["step_ptr"] = K._huge_zeros(n_steps + 1, np.int64)
            if ws["touched"].shape[0] < room_touched:
                ws["touched"] = K._huge_zeros(room_touched, np.int64)
            if ws["syn2"].dtype != syn.dtype or ws["syn2"].shape[0] < syn.shape[0]:
                # the rows of the neurons that spike, targets as slots: at most all of them
                # (pages never touched cost nothing)
                ws["syn2"] = K._huge_zeros(syn.shape[0], syn.dtype, prefault=2 << 20)
            return ws

        def take_ws() -> dict:
            with pool_lock:
                if pool:
                    return pool.pop()
            return ready(K.new_workspace(n, int(opts["ring_steps"])))

        # a workspace per thread, sized for this run, before the simulation's clock starts
        with pool_lock:
            while len(pool) < n_threads:
                pool.append(K.new_workspace(n, int(opts["ring_steps"])))
            for ws in pool:
                ready(ws)

        kick_idx = np.ascontiguousarray(relabel[kicks.idx], dtype=np.int64)
        kick_step = np.ascontiguousarray(kicks.step, dtype=np.int64)

        def kernel(ws: dict, lo: int, hi: int, steps: int) -> tuple:
            out = K.run_trial(
                indptr, syn, wtab, code_bits, rfc, driven, rel_delays, order, inh, kick_idx[lo:hi], kick_step[lo:hi],
                steps, int(sim.delay_steps), co.v_0, co.v_th, co.v_rst, co.kick,
                a, b, c, co.v_const, co.v_decay, co.v_from_g, co.g_decay, apow, bpow, ainv, binv, rebase,
                htab, h_per_rho,
                ws["hot"], ws["flags"], ws["meta"], ws["pred"], ws["head"],
                ws["e_nrn"], ws["e_step"], ws["e_next"], ws["sp_idx"], ws["sp_step"], ws["step_ptr"],
                ws["touched"], ws["slot_of"], ws["slot_nrn"], ws["nrn_rfc"], ws["nrn_orig"], ws["nrn_drv"],
                ws["nrn_inh"], ws["row"], ws["syn2"],
                window, count, quiet,
            )
            # the buffers that grew stay with the workspace
            ws["sp_idx"], ws["sp_step"], ws["e_nrn"], ws["e_step"], ws["e_next"] = out[0], out[1], out[10], out[11], out[12]
            return out[:10]

        # numba compiles (or loads from its cache) on the first call in a process: do it
        # on an empty trial so that build_s and sim_s are told apart
        t_build0 = time.perf_counter()
        build_s = 0.0
        if getattr(K.run_trial, "overloads", None) == {}:
            ws = take_ws()
            try:
                kernel(ws, 0, 0, 0)
            finally:
                with pool_lock:
                    pool.append(ws)
            build_s = time.perf_counter() - t_build0
        t_setup = time.perf_counter()

        def one(j: int) -> tuple:
            ws = take_ws()
            try:
                lo, hi = lo_hi[j]
                out = kernel(ws, lo, hi, n_steps)
                sp_idx, sp_step, n_sp, reached, first_in, first_sp, n_reached, kind, onset, counters = out
                # neurons in the order they were reached (first input step, then event order)
                front = (order[reached[:n_reached]], first_in, first_sp)
                onset_kick = int(kicks.step[lo]) if hi > lo else -1
                res = (order[sp_idx[:n_sp]], sp_step[:n_sp].copy(), front, int(kind), int(onset),
                       counters.copy(), onset_kick)
            finally:
                with pool_lock:
                    pool.append(ws)
            if progress is not None:
                with done_lock:
                    done[0] += 1
                    progress(done[0], len(trials))
            return res

        if n_threads == 1 or len(trials) <= 1:
            outs = [one(j) for j in range(len(trials))]
        else:
            with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="brainfly-event") as ex:
                outs = list(ex.map(one, range(len(trials))))
        t_sim = time.perf_counter()

        # ------------------------------------------------------------ assemble
        tr_parts, idx_parts, step_parts = [], [], []
        f_tr, f_idx, f_in, f_sp, f_lat = [], [], [], [], []
        runaway, runaway_by_trial, onsets = [], [], []
        counters = np.zeros(5, np.int64)
        names = {1: "activity bound", 2: "sustained without input"}
        for k, (si, ss, front, kind, onset, cnt, onset_kick) in zip(trials, outs):
            tr_parts.append(np.full(si.shape[0], k, np.int32))
            idx_parts.append(si)
            step_parts.append(ss)
            r_idx, r_in, r_sp = front
            f_tr.append(np.full(r_idx.shape[0], k, np.int32))
            f_idx.append(r_idx.astype(np.int32))
            f_in.append(r_in)
            f_sp.append(r_sp)
            f_lat.append(np.where(r_sp >= 0, r_sp - max(onset_kick, 0), -1))
            onsets.append(onset_kick)
            counters += cnt
            runaway_by_trial.append(bool(kind))
            if kind:
                runaway.append({"trial": k, "runaway": True, "onset_s": onset * p.dt_s,
                                "criterion": names.get(kind, str(kind))})
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.empty(0, dt))
        meta = {
            "n_threads": n_threads,
            "n_events": int(counters[0]),
            "n_predictions": {"touched": int(counters[1]), "searched": int(counters[2]), "crossing": int(counters[3]),
                              "checks": int(counters[4])},
            "runaway": runaway,
            "runaway_by_trial": runaway_by_trial,
            "stimulus_onset_step": onsets,
            "first_spike_step": {
                "trial": cat(f_tr, np.int32),
                "idx": cat(f_idx, np.int32),
                "first_input_step": cat(f_in, np.int64),
                "first_spike_step": cat(f_sp, np.int64),
                "latency_steps": cat(f_lat, np.int64),
            },
            "timings_s": {"inputs": t_draw - t0, "simulate": t_sim - t_setup,
                          "total": time.perf_counter() - t0},
            "timings": {"setup_s": (t_build0 - t0) + (time.perf_counter() - t_sim), "build_s": build_s,
                        "sim_s": t_sim - t_setup},
        }
        for r in runaway:
            log.info("event engine: trial %d entered a self-sustaining state at %.4f s (%s)",
                     r["trial"], r["onset_s"], r["criterion"])
        return SpikeResult(
            cat(tr_parts, np.int32), cat(idx_parts, np.int32), cat(step_parts, np.int64),
            np.asarray(net.flywire_ids, dtype=np.int64), trials, n_steps, p.dt_s, sim.experiment.name,
            engine=self.name, connectome_label=net.label, synthetic=bool(net.synthetic), meta=meta,
        )
