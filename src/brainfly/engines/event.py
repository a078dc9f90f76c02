"""The exact event-driven CPU engine (``engine="event"``).

It gives the Brian2 reference's spikes, spike for spike, but its cost grows with the number
of synaptic events, not with neurons x steps: between inputs a neuron's trajectory is in
closed form, so only the neurons that receive input are touched, and a crossing of the
threshold is predicted, not stepped to. Trials run in parallel threads (a kernel that
releases the GIL: :mod:`brainfly.engines._event_kernels`, compiled ahead of time by
:mod:`brainfly.engines._event_aot` or just in time by numba); the same seed gives the same
spikes whatever the number of threads. Units inside: volts and integer steps.

The algorithm, why it is exact, and what ``result.meta`` holds beyond the common layout
(runaway detection, the propagation front, event counts) are described in
``docs/engines/event.md``.

The connections are packed once per connectome (:func:`packed_network`): kept in memory
for the last few networks and on disk beside the CSR cache (``<cache>/event/<key>/``,
loaded by memory map), keyed by the connectome's content digest, :data:`LAYOUT_VERSION`,
``w_syn`` and the silencing; a silenced network is derived from the unsilenced one.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import shutil
import threading
import time
from typing import Any, Sequence

import numpy as np

from .._io import atomic_write, digest_text
from ..connectome.cache import cache_dir
from ..connectome.network import Connectome
from ..errors import ValidationError
from ..experiment import Experiment, StimulusSet
from ..schedule import InputSchedule
from . import _event_records as R
from ._event_aot import TrialKernel, installed_version, trial_kernel
from .base import (Engine, EngineOptions, EngineOutput, ProgressCallback, RunRecord, SimulationInput, prepare,
                   register_engine)

__all__ = ["EventEngine", "EventOptions", "LAYOUT_VERSION", "PackedNetwork", "packed_network"]

log = logging.getLogger(__name__)

#: Version of the packed-connection layout (records, numbering, files): part of every key of
#: the packed-connection caches, so that a change of layout never reads an old entry.
LAYOUT_VERSION = 1
#: ln of the largest factor a^-k, b^-k that moves (P, Q) from the base step (~1e61).
_REBASE_LOG = 140.0
#: Number the neurons internally by decreasing in-degree (see :func:`packed_network`).
_RENUMBER = True
#: Packed networks kept in memory (the unsilenced one of a connectome and silenced ones).
_MEMORY_ENTRIES = 3
#: Networks with fewer connections are not written to disk (packing them costs less).
DISK_MIN_CONNECTIONS = 200_000
#: Entries kept on disk (one per connectome and w_syn; least recently used go first).
DISK_MAX_ENTRIES = 4
_DISK_FILES = ("indptr", "syn", "wtab", "order", "inh")


# ---------------------------------------------------------------------- options
@dataclass(frozen=True)
class EventOptions(EngineOptions):
    """Options of the event engine.

    Parameters
    ----------
    n_threads : int, optional
        Threads that run trials in parallel (default: min(number of trials, CPU count)).
        The spikes do not depend on it.
    runaway_window_ms : float
        Sliding window (ms) of the activity bound of the runaway detection.
    runaway_spikes_per_s : float
        Spikes per second of non-driven neurons, within the window, above which a trial is
        called runaway (default 100,000; the sugar experiment gives ~17k/s on v783).
    runaway_quiet_ms : float
        Spikes this long (ms) after the last external input also mean runaway (0: off).
    ring_steps : int
        Buckets of the calendar queue (a power of two; any value gives the same spikes).
    """

    n_threads: int | None = None
    runaway_window_ms: float = 20.0
    runaway_spikes_per_s: float = 1e5
    runaway_quiet_ms: float = 100.0
    ring_steps: int = 1024

    def __post_init__(self) -> None:
        self._check("n_threads", self.n_threads is None or self.is_int(self.n_threads, 1), "an integer >= 1")
        ring = self.ring_steps
        self._check("ring_steps", self.is_int(ring, 1) and not ring & (ring - 1), "a power of two >= 1")
        for key in ("runaway_window_ms", "runaway_spikes_per_s", "runaway_quiet_ms"):
            self._check(key, self.is_number(getattr(self, key), 0), "a number >= 0")


# ---------------------------------------------------------------------- packed connections
@dataclass(frozen=True)
class PackedNetwork:
    """A connectome's connections as the kernel reads them (read-only arrays).

    Attributes
    ----------
    network : _event_kernels.Network
        Rows and targets in the internal numbering (see :func:`packed_network`).
    order : int64 array (n_neurons,)
        ``order[i]``: model index of internal neuron i.
    relabel : int64 array (n_neurons,)
        Inverse of *order*: internal index of each model index.
    key : str
        Content key (connectome digest, layout version, w_syn, silencing).
    source : str
        Where it came from: ``packed``, ``disk`` or ``derived`` (silencing applied to the
        unsilenced network).
    order_key : str
        Key of the unsilenced network (the numbering's content).
    max_row : int
        Records in the longest row.
    """

    network: R.Network
    order: np.ndarray
    relabel: np.ndarray
    key: str
    source: str = "packed"
    #: Key of the unsilenced network, whose numbering (``order``) every silencing shares.
    order_key: str = ""
    #: Length of the longest row.
    max_row: int = 0


_MEMORY: "OrderedDict[str, PackedNetwork]" = OrderedDict()
_PACK_LOCK = threading.Lock()


#: Length of the a^k, b^k tables (see :meth:`EventEngine._tables`).
_POW_TABLE_STEPS = 1 << 16


def _readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view (base ndarray class) of *arr*: the one array type the kernel gets."""
    out = np.asarray(arr).view(np.ndarray)
    out.setflags(write=False)
    return out


def _full_key(connectome: Any, w_syn: float) -> str:
    return digest_text("brainfly-event-packed", f"layout={LAYOUT_VERSION}", f"renumber={_RENUMBER}",
                       connectome.content_digest, float(w_syn).hex())


def packed_network(connectome: Any, w_syn: float, silenced_mask: np.ndarray | None = None,
                   silence_mode: str = "outgoing") -> PackedNetwork:
    """The connections of *connectome* packed for the kernel, from the caches where possible.

    Each connection becomes one record ``(code << t_bits) | 2 * target`` (4 bytes where the
    target and the weight code fit in 32 bits, else 8; ``wtab[code]`` is ``count * w_syn``
    in volts, bit for bit as :meth:`~brainfly.engines.base.SimulationInput.weight_v`
    computes it). Connections that deliver nothing (zero weight; with ``silence_mode="both"``
    connections onto silenced neurons) are left out; the rows of silenced neurons are empty
    (``row_end``, no records copied for outgoing silencing). Neurons are
    numbered internally by decreasing in-degree, so that the records of the neurons that
    receive most events share cache lines; spikes are ordered, delivered and returned by
    model index, so the numbering changes no result.

    Caches, all keyed by content (``connectome.content_digest``, :data:`LAYOUT_VERSION`,
    ``w_syn``, and a digest of the silenced set and its mode), never by object identity:
    the last few networks in memory; the unsilenced network of a connectome with at least
    :data:`DISK_MIN_CONNECTIONS` connections on disk (``<cache>/event/<key>/``, loaded by
    memory map, at most :data:`DISK_MAX_ENTRIES` entries). A silenced network is derived
    from the unsilenced one (the same records as packing it directly: the tests check it).

    Parameters
    ----------
    connectome : Connectome
    w_syn : float
        Weight of one synapse, volts.
    silenced_mask : bool array (n_neurons,), optional
        Silenced neurons (model indices).
    silence_mode : {"outgoing", "both"}
    """
    full_key = _full_key(connectome, w_syn)
    mask = None
    key = full_key
    if silenced_mask is not None and np.any(silenced_mask):
        mask = np.ascontiguousarray(silenced_mask, dtype=np.bool_)
        both = silence_mode == "both"
        key = digest_text(full_key, "silenced", digest_text(np.packbits(mask).tobytes().hex()),
                          "both" if both else "outgoing")
    with _PACK_LOCK:
        hit = _MEMORY.get(key)
        if hit is not None:
            _MEMORY.move_to_end(key)
            return hit
        full = _MEMORY.get(full_key)
        if full is None:
            full = _load_disk(full_key, connectome)
            if full is None:
                full = _pack(connectome, w_syn, full_key)
                if connectome.n_connections >= DISK_MIN_CONNECTIONS:
                    _save_disk(full, connectome, w_syn)
            _remember(full)
        else:
            _MEMORY.move_to_end(full_key)
        if mask is None:
            return full
        packed = _silence(full, mask, silence_mode == "both", key)
        _remember(packed)
        return packed


def _remember(packed: PackedNetwork) -> None:
    _MEMORY[packed.key] = packed
    _MEMORY.move_to_end(packed.key)
    while len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)


def _pack(connectome: Any, w_syn: float, key: str) -> PackedNetwork:
    """Pack the unsilenced network (:func:`_event_kernels.pack_synapses`)."""
    n = connectome.n_neurons
    post = connectome.post_idx
    if _RENUMBER:
        # internal numbering: by decreasing in-degree (stable: ties keep the model order)
        order = np.argsort(-np.bincount(post, minlength=n), kind="stable").astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    indptr, syn, wtab, t_bits = R.pack_synapses(connectome.indptr, post, connectome.weight, float(w_syn),
                                                np.zeros(n, np.bool_), None, order)
    inh = R.inhibitory_rows(indptr, syn, wtab, t_bits)
    return _packed(indptr, syn, wtab, t_bits, order, inh, key, "packed")


def _packed(indptr: np.ndarray, syn: np.ndarray, wtab: np.ndarray, t_bits: int, order: np.ndarray,
            inh: np.ndarray, key: str, source: str, row_end: np.ndarray | None = None,
            full: PackedNetwork | None = None) -> PackedNetwork:
    """A PackedNetwork of these arrays (*full*: the unsilenced network it derives from)."""
    order = _readonly(order)
    if full is None:
        relabel = np.empty(order.shape[0], np.int64)
        relabel[order] = np.arange(order.shape[0], dtype=np.int64)
    else:
        relabel = full.relabel
    indptr = _readonly(indptr)
    row_end = indptr[1:] if row_end is None else _readonly(row_end)
    net = R.Network(indptr, _readonly(syn), _readonly(wtab), int(t_bits), order, _readonly(inh), row_end)
    max_row = full.max_row if full is not None else int(np.diff(indptr).max(initial=0))
    return PackedNetwork(net, order, _readonly(relabel), key, source,
                         order_key=full.order_key if full is not None else key, max_row=max_row)


def _silence(full: PackedNetwork, mask: np.ndarray, both: bool, key: str) -> PackedNetwork:
    """The unsilenced network with the silenced neurons' rows (*mask*, model indices) empty
    and, with *both*, without the connections onto them: the records that
    :func:`_event_kernels.pack_synapses` gives with the silencing, in a fraction of its time.

    Outgoing silencing (the usual case, and a screen's thousand conditions) copies no
    record: the rows of the silenced neurons end where they start (``row_end``), and the
    records are those of the unsilenced network, shared. ``both`` must drop records from
    every row, so it copies them."""
    net = full.network
    mask_int = mask[full.order]  # internal numbering
    if not both:
        row_end = np.array(net.row_end, dtype=np.int64)
        row_end[mask_int] = net.indptr[:-1][mask_int]
        inh = np.array(net.inh, dtype=np.bool_)
        inh[mask_int] = False  # an empty row is not inhibitory (inhibitory_rows' convention)
        return _packed(net.indptr, net.syn, net.wtab, net.t_bits, full.order, inh, key, "derived", row_end, full)
    counts = np.diff(net.indptr)
    keep = np.repeat(~mask_int, counts)
    one = net.syn.dtype.type(1)
    tmask = net.syn.dtype.type((1 << net.t_bits) - 1)
    keep &= ~mask_int[(net.syn & tmask) >> one]
    dropped = np.flatnonzero(~keep)
    rows = np.searchsorted(net.indptr, dropped, side="right") - 1
    new_counts = counts - np.bincount(rows, minlength=counts.shape[0])
    indptr = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(new_counts, out=indptr[1:])
    syn = net.syn[keep]
    inh = R.inhibitory_rows(indptr, syn, net.wtab, net.t_bits)
    return _packed(indptr, syn, net.wtab, net.t_bits, full.order, inh, key, "derived", full=full)


def _disk_folder(key: str) -> Path:
    return cache_dir() / "event" / key[:32]


def _checksum(arr: np.ndarray) -> int:
    """Sum of an array's bytes as little-endian 4-byte words (mod 2^64): a cheap check
    (~7 ms for the full brain's records) that a cache file was not truncated or damaged."""
    b = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    m = b.shape[0] - b.shape[0] % 4
    total = np.add.reduce(b[:m].view("<u4"), dtype=np.uint64) + np.add.reduce(b[m:], dtype=np.uint64)
    return int(total)


def _save_disk(packed: PackedNetwork, connectome: Any, w_syn: float) -> None:
    """Write an entry (arrays first, ``meta.json`` last, each atomically), then drop the
    least recently used entries beyond :data:`DISK_MAX_ENTRIES`. Failures are logged only."""
    folder = _disk_folder(packed.key)
    net = packed.network
    arrays = {"indptr": net.indptr, "syn": net.syn, "wtab": net.wtab, "order": packed.order, "inh": net.inh}
    meta = {
        "key": packed.key, "layout": LAYOUT_VERSION, "connectome": connectome.content_digest,
        "connectome_name": connectome.name, "w_syn": float(w_syn).hex(), "renumber": _RENUMBER,
        "n_neurons": int(packed.order.shape[0]), "n_records": int(net.syn.shape[0]), "t_bits": int(net.t_bits),
        "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape), "checksum": _checksum(a)}
                   for name, a in arrays.items()},
    }
    try:
        for name, arr in arrays.items():
            def write(tmp: Path, arr: np.ndarray = arr) -> None:
                with open(tmp, "wb") as f:
                    np.save(f, arr, allow_pickle=False)

            atomic_write(folder / f"{name}.npy", write)
        atomic_write(folder / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8"))
    except OSError as exc:
        log.warning("cannot write the event engine's connection cache %s (%s); it is packed again next time",
                    folder, exc)
        return
    _evict(keep=folder)


def _evict(keep: Path) -> None:
    """Remove the least recently used entries beyond :data:`DISK_MAX_ENTRIES` (by the
    modification time of their ``meta.json``, touched at each load)."""
    root = keep.parent
    try:
        entries = [(p.stat().st_mtime, p.parent) for p in root.glob("*/meta.json") if p.parent != keep]
    except OSError:
        return
    entries.sort()
    for _, folder in entries[:max(0, len(entries) - (DISK_MAX_ENTRIES - 1))]:
        try:
            (folder / "meta.json").unlink()  # first: a reader never sees a half-removed entry as valid
            shutil.rmtree(folder, ignore_errors=True)
        except OSError as exc:
            log.debug("cannot remove the cache entry %s: %s", folder, exc)


def _load_disk(key: str, connectome: Any) -> PackedNetwork | None:
    """The entry *key* by memory map, or None when absent or not valid (then it is packed
    and written again). Validated: metadata (key, layout, sizes, dtypes), the arrays'
    shapes and checksums, and the structure of the row pointer and the numbering."""
    folder = _disk_folder(key)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or meta.get("layout") != LAYOUT_VERSION:
            raise ValueError("the entry belongs to another key or layout")
        arrays = {}
        for name in _DISK_FILES:
            spec = meta["arrays"][name]
            arr = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if arr.dtype.str != spec["dtype"] or list(arr.shape) != spec["shape"] or arr.ndim != 1:
                raise ValueError(f"{name}.npy: dtype {arr.dtype.str} shape {arr.shape}, metadata says "
                                 f"{spec['dtype']} {spec['shape']}")
            if _checksum(arr) != spec["checksum"]:
                raise ValueError(f"{name}.npy: checksum differs")
            arrays[name] = arr
        n, m = connectome.n_neurons, int(meta["n_records"])
        indptr, syn, order = arrays["indptr"], arrays["syn"], arrays["order"]
        if (meta["n_neurons"] != n or indptr.shape[0] != n + 1 or indptr[0] != 0 or indptr[-1] != m
                or syn.shape[0] != m or syn.dtype not in (np.uint32, np.uint64) or arrays["inh"].shape[0] != n
                or arrays["inh"].dtype != np.bool_ or arrays["wtab"].dtype != np.float64
                or order.dtype != np.int64 or np.any(np.diff(indptr) < 0)
                or not np.array_equal(np.bincount(order, minlength=n), np.ones(n, np.int64))):
            raise ValueError("sizes or structure disagree with the network")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the event engine's connection cache %s (%s); packing the connections again",
                    folder, exc)
        return None
    try:
        os.utime(meta_path)  # most recently used
    except OSError:
        pass
    return _packed(arrays["indptr"], arrays["syn"], arrays["wtab"], int(meta["t_bits"]), arrays["order"],
                   arrays["inh"], key, "disk")


# ---------------------------------------------------------------------- the engine
def _kernel_cached(kernel: TrialKernel) -> bool:
    """Whether numba's on-disk cache has an entry for the JIT trial kernel (a guess: an
    entry of an older source is recompiled all the same)."""
    try:
        return any(Path(kernel.jit.stats.cache_path).glob("*.run_trial-*.nbi"))
    except (OSError, TypeError, AttributeError):
        return True  # unknown: say nothing


@dataclass
class _Plan:
    """One condition made ready for the kernel: its records and its trials' kicks."""

    sim: SimulationInput
    trials: list[int]
    packed: PackedNetwork
    neurons: R.Neurons
    model: R.Model
    tables: R.Tables
    runaway: R.Runaway
    kicks: InputSchedule
    kick_idx: np.ndarray
    kick_step: np.ndarray
    lo_hi: list[tuple[int, int]]
    room_touched: int
    inputs_s: float = 0.0
    setup_s: float = 0.0
    kernel_s: list[float] = field(default_factory=list)


@register_engine
class EventEngine(Engine):
    """Exact event-driven CPU engine (numba); cost grows with synaptic events.

    Parameters
    ----------
    options : EventOptions, optional
    **kwargs
        The options by name (see :class:`EventOptions`).
    """

    name = "event"
    exact = True
    capabilities = frozenset({"poisson", "schedule", "silencing", "silencing_both", "multi_rate", "float64", "batch",
                              "shared_draws"})
    description = "exact event-driven CPU engine (numba); cost grows with synaptic events"
    Options = EventOptions
    trials_per_chunk = 32  # a trial-second costs milliseconds: keep all threads busy per chunk

    def __init__(self, options: EventOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._pool_lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._pool: list[dict] = []
        self._pool_key: tuple[int, int] | None = None
        self._table_cache: "OrderedDict[tuple, R.Tables]" = OrderedDict()
        self._neuron_cache: "OrderedDict[tuple, R.Neurons]" = OrderedDict()

    def is_available(self) -> tuple[bool, str]:
        """Available wherever this module imports (numba and numpy)."""
        return True, ""

    def versions(self) -> dict[str, str]:
        """numba's and numpy's versions (numba read from its installed files, not imported)."""
        return {"numba": installed_version("numba"), "numpy": np.__version__}

    def validate(self, sim: SimulationInput) -> None:
        """The base checks, and a trial shorter than 2**31 - 1024 steps."""
        super().validate(sim)
        if sim.n_steps >= 2 ** 31 - 1024:
            raise ValidationError(f"engine 'event': n_steps must be below 2**31 - 1024 (got {sim.n_steps})")

    # ------------------------------------------------------------------ preparation
    def _tables(self, a: float, b: float, n_steps: int, rebase: int) -> R.Tables:
        """Power tables and the peak table for (a, b, n_steps, rebase), kept for the last few."""
        key = (a, b, n_steps, rebase)
        hit = self._table_cache.get(key)
        if hit is not None:
            return hit
        # a^k, b^k tabulated up to 2**16 steps (6.5 s): the main loop indexes k <= rebase only, and
        # every farther power goes through the kernel's _pow (exp(k ln a) beyond the table, where
        # a^k < 1e-140 and no crossing can lie)
        ks = np.arange(min(n_steps + 2, max(rebase + 2, _POW_TABLE_STEPS)), dtype=np.float64)
        kinv = -np.arange(rebase + 1, dtype=np.float64)
        htab, h_per_rho = R.peak_table(a, b)
        tables = R.Tables(_readonly(np.power(a, ks)), _readonly(np.power(b, ks)), _readonly(np.power(a, kinv)),
                          _readonly(np.power(b, kinv)), _readonly(htab), float(h_per_rho))
        self._table_cache[key] = tables
        while len(self._table_cache) > 4:
            self._table_cache.popitem(last=False)
        return tables

    def _plan(self, sim: SimulationInput, trials: list[int], packed: PackedNetwork | None = None) -> _Plan:
        """Records of one condition (packed network, neurons, constants, tables, kicks)."""
        t0 = time.perf_counter()
        co = sim.coeffs
        p = sim.params
        n = sim.n_neurons
        n_steps = int(sim.n_steps)
        if packed is None:
            packed = packed_network(sim.connectome, co.w_syn, sim.silenced_mask, sim.experiment.silence_mode)
        kicks = sim.kicks(trials)
        neurons = self._neurons(sim, packed)
        model, tables = self.model_and_tables(co, p, int(sim.delay_steps), n_steps)

        t_draw = time.perf_counter()
        # kicks of trial trials[j] are kicks[lo_j:hi_j] (the schedule is sorted by trial)
        lo_hi = [(int(np.searchsorted(kicks.trial, k, "left")), int(np.searchsorted(kicks.trial, k, "right")))
                 for k in trials]
        # the neurons queued in a step, repeats included: up to a row more than all neurons
        # (the kernel drops repeats when it must), and one per kick
        room_touched = 2 * n + 2 + packed.max_row
        return _Plan(sim, trials, packed, neurons, model, tables, self.runaway(p), kicks,
                     np.ascontiguousarray(packed.relabel[kicks.idx], dtype=np.int64),
                     np.ascontiguousarray(kicks.step, dtype=np.int64), lo_hi, room_touched,
                     inputs_s=t_draw - t0, setup_s=time.perf_counter() - t0)

    def model_and_tables(self, co: Any, p: Any, delay_steps: int, n_steps: int) -> tuple[R.Model, R.Tables]:
        """The kernel's constants (volts, steps; *n_steps*: the horizon of predictions) and
        power tables, from the step coefficients *co* and parameters *p*."""
        tau = p.tau_ms * 1e-3
        t_mbr = p.t_mbr_ms * 1e-3
        a, b = float(co.v_decay), float(co.g_decay)
        c = tau / (t_mbr - tau)
        # B moves every `rebase` steps: as seldom as keeps a^-k, b^-k below ~1e61
        rebase = int(max(1, min(n_steps + 1, _REBASE_LOG / -np.log(min(a, b)))))
        model = R.Model(int(n_steps), int(delay_steps), float(co.v_0), float(co.v_th), float(co.v_rst),
                        float(co.kick), a, b, float(c), float(co.v_const), float(co.v_decay), float(co.v_from_g),
                        float(co.g_decay), rebase)
        return model, self._tables(a, b, int(n_steps), rebase)

    def runaway(self, p: Any, quiet: bool = True) -> R.Runaway:
        """The runaway detection's settings in steps (*quiet*: also the criterion of spikes
        long after the last input, which needs all the input known in advance)."""
        opts = self.options
        window = int(round(opts.runaway_window_ms / p.dt_ms))
        count = int(opts.runaway_spikes_per_s * window * p.dt_s)
        return R.Runaway(window, count, int(round(opts.runaway_quiet_ms / p.dt_ms)) if quiet else 0)

    def _neurons(self, sim: SimulationInput, packed: PackedNetwork) -> R.Neurons:
        """Per-neuron settings in the internal numbering (``order[i]``: model index of
        neuron i), kept for the last few (conditions of a screen share them): keyed by the
        content of the settings and of the numbering. The driven neurons are the activated
        ones: :func:`~brainfly.engines.base.prepare` activates every neuron an input
        schedule kicks, and Poisson kicks go to activated neurons only."""
        key = (packed.order_key, sim.neurons_key)
        hit = self._neuron_cache.get(key) if sim.neurons_key else None
        if hit is not None:
            return hit
        order = packed.order
        rfc = np.ascontiguousarray(np.asarray(sim.refractory_steps, dtype=np.int64)[order])
        lo_r, hi_r = int(rfc.min(initial=0)), int(rfc.max(initial=0))
        if ((rfc == lo_r) | (rfc == hi_r)).all():  # the usual case: 0 (driven) and 22
            rel_delays = np.unique(np.maximum(np.array([lo_r, hi_r], np.int64), 1))
        else:
            rel_delays = np.unique(np.maximum(rfc, 1)).astype(np.int64)
        driven = np.zeros(sim.n_neurons, dtype=np.bool_)
        driven[sim.activated_idx] = True
        neurons = R.Neurons(rfc, np.ascontiguousarray(driven[order]), rel_delays, np.zeros(sim.n_neurons, np.bool_))
        if sim.neurons_key:
            self._neuron_cache[key] = neurons
            while len(self._neuron_cache) > 8:
                self._neuron_cache.popitem(last=False)
        return neurons

    def _workspaces(self, n_neurons: int, ring: int) -> list[dict]:
        """The pool of per-thread workspaces for networks of *n_neurons* (kept between
        runs: the kernel leaves a workspace in its initial state)."""
        if self._pool_key != (n_neurons, ring):
            self._pool_key = (n_neurons, ring)
            self._pool = []
        return self._pool

    @staticmethod
    def _ready(ws: dict, plans: Sequence[_Plan]) -> dict:
        """The workspace with its buffers sized for *plans*."""
        n_steps = max(pl.model.n_steps for pl in plans)
        room = max(pl.room_touched for pl in plans)
        syn = max((pl.packed.network.syn for pl in plans), key=lambda s: s.shape[0])
        if ws["step_ptr"].shape[0] < n_steps + 1:
            ws["step_ptr"] = R._huge_zeros(n_steps + 1, np.int64)
        if ws["touched"].shape[0] < room:
            ws["touched"] = R._huge_zeros(room, np.int64)
        if ws["syn2"].dtype != syn.dtype or ws["syn2"].shape[0] < syn.shape[0]:
            # the rows of the neurons that spike, targets as slots: at most all of them
            # (pages never touched cost nothing)
            ws["syn2"] = R._huge_zeros(syn.shape[0], syn.dtype, prefault=2 << 20)
        return ws

    # ------------------------------------------------------------------ run
    def warm_up(self) -> bool:
        """Make the trial kernel ready now rather than in the first run.

        The kernel compiled ahead of time (:mod:`brainfly.engines._event_aot`) loads in
        milliseconds. Until it is built (the first run on a machine starts its build in the
        background), or where it cannot be built, numba's JIT kernel is compiled (about 6 s,
        said once in an INFO log line) or loaded from numba's cache (~0.9 s in every new
        process, numba's import and set-up included). A run does this itself when it needs
        to; a caller may do it first, to tell the user what happens. (Compiling in a
        background thread while the connectome loads gains nothing: numba's compiler holds
        the GIL most of the time, measured on two cores.)

        Returns
        -------
        bool
            True when something was compiled in this process (not loaded).
        """
        kernel = trial_kernel()
        if kernel.kind == "aot":
            return kernel.take_built()
        if kernel.ready:
            return False
        return self._build(kernel, self.warm_up_args())

    def start_warm_up(self) -> threading.Thread | None:
        """Make the trial kernel ready in a background thread, unless its compiled module
        just loads (milliseconds): loading numba's JIT kernel (~0.9 s, much of it in LLVM
        with the GIL released) overlaps loading the connectome. A failure is left to the
        run itself, which tries again."""
        if trial_kernel().kind == "aot":
            return None

        def load() -> None:
            try:
                self.warm_up()
            except Exception as exc:  # noqa: BLE001 - the run reports it when it builds the kernel
                log.debug("event engine: background warm-up failed: %s", exc)

        thread = threading.Thread(target=load, name="brainfly-event-warm-up", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _build(kernel: TrialKernel, args: tuple) -> bool:
        """Call the JIT kernel on an empty trial (*args*); True when numba compiled it."""
        jit = kernel.jit
        misses = sum(jit.stats.cache_misses.values())
        if not _kernel_cached(kernel):
            log.info("event engine: compiling its numba kernels (the first use in this environment: "
                     "several seconds; later runs load them from numba's cache)")
        jit(*args)
        return sum(jit.stats.cache_misses.values()) > misses

    def warm_up_args(self) -> tuple:
        """The kernel's arguments for an empty trial on a two-neuron network: of the types
        of any run's (4-byte records); the kernel compiled ahead of time is built for them."""
        net = Connectome.from_edges(np.array([1, 2], np.int64), [0], [1], [1.0], name="warm-up")
        exp = Experiment(name="warm-up", stimuli=(StimulusSet((1,), 100.0),), t_run=0.001, n_trials=1)
        sim = prepare(net, exp)
        plan = self._plan(sim, [0], _pack(net, sim.coeffs.w_syn, "warm-up"))
        ws = self._ready(R.new_workspace(net.n_neurons, int(self.options.ring_steps)), [plan])
        return self._args(plan, ws, 0, 0, 0)

    def simulate(self, sim: SimulationInput, trials: list[int],
                 progress: ProgressCallback | None = None) -> EngineOutput:
        """Run the given trials of *sim* (see ``docs/engines/event.md``)."""
        return self.simulate_many([sim], [[int(k) for k in trials]], progress)[0]

    @staticmethod
    def _args(plan: _Plan, ws: dict, lo: int, hi: int, n_steps: int) -> tuple:
        """The records :func:`_event_kernels.run_trial` takes, for kicks lo..hi-1 of *plan*."""
        model = plan.model if n_steps == plan.model.n_steps else plan.model._replace(n_steps=n_steps)
        return (plan.packed.network, plan.neurons, model, plan.tables,
                R.Drive(plan.kick_idx[lo:hi], plan.kick_step[lo:hi]), R.Workspace(**ws), plan.runaway,
                R.Span(0, int(n_steps), 0, True, True))

    def _kernel(self, kernel: TrialKernel, plan: _Plan, ws: dict, lo: int, hi: int, n_steps: int) -> tuple:
        out = kernel(*self._args(plan, ws, lo, hi, n_steps))
        # the buffers that grew stay with the workspace
        ws["sp_idx"], ws["sp_step"], ws["e_nrn"], ws["e_step"], ws["e_next"] = out[0], out[1], out[10], out[11], out[12]
        return out[:10]

    def simulate_many(self, sims: Sequence[SimulationInput], trial_lists: Sequence[list[int]],
                      progress: ProgressCallback | None = None) -> list[EngineOutput]:
        """Run several conditions together: the trials of all of them are spread over one
        pool of threads, and conditions with the same silencing share one packed network;
        the spikes of each are those it gives alone.

        Each output's ``sim_s`` is its share of the batch's simulation wall time (in
        proportion to its trials' kernel time); ``details["batch"]`` gives the batch's size
        and wall time.
        """
        if not sims:
            return []
        t0 = time.perf_counter()
        with self._plan_lock:  # the caches of plans are shared by concurrent batches (a screen's chunks)
            plans = [self._plan(sim, trials) for sim, trials in zip(sims, trial_lists)]
        n = sims[0].n_neurons
        if any(sim.n_neurons != n for sim in sims):
            raise ValidationError("engine 'event': the conditions of one batch must share one connectome")
        ring = int(self.options.ring_steps)
        jobs = [(pl, j) for pl in plans for j in range(len(pl.trials))]
        n_threads = self.options.n_threads or min(len(jobs), os.cpu_count() or 1)
        n_threads = max(1, min(int(n_threads), max(len(jobs), 1)))
        pool = self._workspaces(n, ring)
        pool_lock = self._pool_lock

        def take_ws() -> dict:
            with pool_lock:
                if pool:
                    return pool.pop()
            return self._ready(R.new_workspace(n, ring), plans)

        # a workspace per thread, sized for this run, before the simulation's clock starts
        with pool_lock:
            while len(pool) < n_threads:
                pool.append(R.new_workspace(n, ring))
            for ws in pool:
                self._ready(ws, plans)

        # the kernel is loaded (or built, or numba compiles it) on the first call in a
        # process: do it before the clock of the simulation starts, so that build_s and
        # sim_s are told apart
        t_build0 = time.perf_counter()
        kernel = trial_kernel()
        compiled = kernel.take_built()
        ws = take_ws()
        try:
            args = self._args(plans[0], ws, 0, 0, 0)
            kind = kernel.kind if kernel.fits(args) else "jit"  # 8-byte records: the JIT kernel
            if kind == "jit" and not kernel.jit.overloads:
                compiled = self._build(kernel, args)
        finally:
            with pool_lock:
                pool.append(ws)
        build_s = time.perf_counter() - t_build0
        t_start = time.perf_counter()

        done = [0]
        done_lock = threading.Lock()

        def one(job: tuple[_Plan, int]) -> tuple:
            plan, j = job
            ws = take_ws()
            try:
                lo, hi = plan.lo_hi[j]
                t = time.perf_counter()
                out = self._kernel(kernel, plan, ws, lo, hi, plan.model.n_steps)
                kernel_s = time.perf_counter() - t
                sp_idx, sp_step, n_sp, reached, first_in, first_sp, n_reached, kind, onset, counters = out
                order = plan.packed.order
                # neurons in the order they were reached (first input step, then event order)
                front = (order[reached[:n_reached]], first_in, first_sp)
                onset_kick = int(plan.kicks.step[lo]) if hi > lo else -1
                res = (order[sp_idx[:n_sp]], sp_step[:n_sp].copy(), front, int(kind), int(onset),
                       counters.copy(), onset_kick, kernel_s)
            finally:
                with pool_lock:
                    pool.append(ws)
            if progress is not None:
                with done_lock:
                    done[0] += 1
                    progress(done[0], len(jobs))
            return res

        if n_threads == 1 or len(jobs) <= 1:
            outs = [one(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="brainfly-event") as ex:
                outs = list(ex.map(one, jobs))
        t_end = time.perf_counter()
        wall = t_end - t_start
        pool_s = t_build0 - t0 - sum(pl.setup_s for pl in plans)  # workspaces, shared

        results = []
        kernel_total = sum(o[-1] for o in outs) or 1.0
        pos = 0
        for i, plan in enumerate(plans):
            mine = outs[pos:pos + len(plan.trials)]
            pos += len(plan.trials)
            t_a = time.perf_counter()
            share = sum(o[-1] for o in mine) / kernel_total if len(plans) > 1 else 1.0
            sim_s = wall * share
            details = self._details(plan, mine, n_threads)
            details["compiled"] = compiled and i == 0
            details["kernel"] = kind
            if len(plans) > 1:
                details["batch"] = {"n_conditions": len(plans), "index": i, "sim_s": wall, "n_threads": n_threads}
            trial, idx, step = self._spikes(plan, mine)
            setup_s = plan.setup_s + pool_s / len(plans) + (time.perf_counter() - t_a)
            details["timings_s"] = {"inputs": plan.inputs_s, "simulate": sim_s,
                                    "total": setup_s + sim_s + (build_s if i == 0 else 0.0)}
            record = RunRecord(setup_s=setup_s, build_s=build_s if i == 0 else 0.0, sim_s=sim_s, device="cpu",
                               details=details, choices=[f"numba's JIT kernel: {kernel.note}"] if kernel.note else [])
            results.append(EngineOutput(trial, idx, step, record))
        return results

    @staticmethod
    def _spikes(plan: _Plan, outs: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tr = [np.full(o[0].shape[0], k, np.int32) for k, o in zip(plan.trials, outs)]
        return (_cat(tr, np.int32), _cat([o[0] for o in outs], np.int32), _cat([o[1] for o in outs], np.int64))

    @staticmethod
    def _details(plan: _Plan, outs: list[tuple], n_threads: int) -> dict[str, Any]:
        """The engine's own facts (``docs/engines/event.md``): runaway, front, counts."""
        dt_s = plan.sim.params.dt_s
        f_tr, f_idx, f_in, f_sp, f_lat = [], [], [], [], []
        runaway, runaway_by_trial, onsets = [], [], []
        counters = np.zeros(5, np.int64)
        names = {R.RUNAWAY_BOUND: "activity bound", R.RUNAWAY_SUSTAINED: "sustained without input"}
        for k, (_, _, front, kind, onset, cnt, onset_kick, _) in zip(plan.trials, outs):
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
                runaway.append({"trial": k, "runaway": True, "onset_s": onset * dt_s,
                                "criterion": names.get(kind, str(kind))})
        for r in runaway:
            log.info("event engine: trial %d entered a self-sustaining state at %.4f s (%s)",
                     r["trial"], r["onset_s"], r["criterion"])
        return {
            "n_threads": n_threads,
            "n_events": int(counters[0]),
            "n_predictions": {"touched": int(counters[1]), "searched": int(counters[2]), "crossing": int(counters[3]),
                              "checks": int(counters[4])},
            "runaway": runaway,
            "runaway_by_trial": runaway_by_trial,
            "stimulus_onset_step": onsets,
            "first_spike_step": {
                "trial": _cat(f_tr, np.int32),
                "idx": _cat(f_idx, np.int32),
                "first_input_step": _cat(f_in, np.int64),
                "first_spike_step": _cat(f_sp, np.int64),
                "latency_steps": _cat(f_lat, np.int64),
            },
        }


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if len(parts) == 1:
        return parts[0].astype(dtype, copy=False)  # (one trial: no copy)
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
