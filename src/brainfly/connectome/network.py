"""The in-memory connectome: neuron list plus CSR connectivity.

Model index ``idx`` = row of the neuron list (the Completeness file's row order);
``flywire_id`` = FlyWire root ID (int64). Functions say which one they take.

Connectivity is stored presynaptic-major (CSR): the outgoing connections of neuron
``idx`` are ``post_idx[indptr[idx]:indptr[idx+1]]`` with signed synapse counts
``weight[...]`` (``Excitatory x Connectivity``; multiply by ``w_syn`` for volts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._io import digest_arrays, digest_text
from ..errors import DataError, UnknownNeuronError

__all__ = ["Connectome", "files_digest"]


def _over_read_only_buffer(arr: np.ndarray) -> bool:
    """Whether *arr* views memory that nothing can write to (a file mapped read-only, as
    ``np.load(mmap_mode="r")`` gives), so that it needs no private copy."""
    base: Any = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, np.ndarray):
        return False
    try:
        return memoryview(base).readonly
    except TypeError:
        return False


@dataclass(eq=False)
class Connectome:
    """A connectome ready for simulation.

    Parameters
    ----------
    flywire_ids : int64 array, shape (n_neurons,)
        FlyWire root ID of each model neuron, in model-index order.
    indptr : int64 array, shape (n_neurons + 1,)
        CSR row pointer over presynaptic neurons.
    post_idx : int32 array, shape (n_connections,)
        Postsynaptic model index of each connection.
    weight : float64 array, shape (n_connections,)
        Signed synapse count of each connection (``Excitatory x Connectivity``).
    name : str
        Dataset name: ``flywire-783``, ``flywire-630``, ``synthetic-...`` or a folder.
    synthetic : bool
        True for generated connectomes; every display of results says so.
    annotations : pandas.DataFrame or None
        Optional per-neuron table indexed by flywire_id (cell type, class, ...).
    meta : dict
        Provenance: source files and their SHA-256, generator seed, ...
    digest : str, optional
        Content digest (hex SHA-256). Loaders pass one derived from the source files'
        checksums; otherwise it is computed from the arrays on first use.

    Notes
    -----
    A Connectome is immutable: its four arrays are made read-only (an array that does not
    own its memory is copied first, unless nothing can write to that memory: a file mapped
    read-only, as the network cache is loaded) and cannot be replaced, so that :attr:`digest`, the
    key of every engine cache, always describes the network. To change weights, build a
    new Connectome (:meth:`with_weights`).
    """

    flywire_ids: np.ndarray
    indptr: np.ndarray
    post_idx: np.ndarray
    weight: np.ndarray
    name: str = "unnamed"
    synthetic: bool = False
    annotations: Any = None
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    digest: str | None = field(default=None, repr=False)
    _id_to_idx: np.ndarray | None = field(default=None, repr=False)  # argsort of flywire_ids

    _ARRAYS = ("flywire_ids", "indptr", "post_idx", "weight")

    def __post_init__(self) -> None:
        for name, dtype in zip(self._ARRAYS, (np.int64, np.int64, np.int32, np.float64)):
            arr = np.asarray(getattr(self, name))
            if arr.dtype != dtype:
                arr = arr.astype(dtype)
            if not (arr.flags.c_contiguous and (arr.flags.owndata or _over_read_only_buffer(arr))):
                arr = np.array(arr, dtype=dtype, order="C")  # a view could be changed through its base
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        self.__dict__["_frozen"] = True

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self._ARRAYS + ("digest",) and self.__dict__.get("_frozen"):
            raise AttributeError(f"Connectome.{key} cannot be replaced: a Connectome is immutable "
                                 "(build a new one, e.g. with Connectome.with_weights)")
        object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return (f"<Connectome {self.label}: {self.n_neurons:,} neurons, {self.n_connections:,} connections, "
                f"digest {self.content_digest[:12]}>")

    @property
    def content_digest(self) -> str:
        """Hex SHA-256 that identifies this network's content (computed once).

        From the source files' checksums when loaded from files, else from the arrays.
        Every engine cache keys on it.
        """
        if self.digest is None:
            self.__dict__["digest"] = digest_arrays((getattr(self, n) for n in self._ARRAYS), tag="brainfly-connectome")
        return self.digest  # type: ignore[return-value]

    def with_weights(self, weight: Any, **changes: Any) -> "Connectome":
        """A new connectome with the same neurons and connections and other signed counts.

        Parameters
        ----------
        weight : array-like of float, shape (n_connections,)
            Signed synapse counts in CSR order.
        """
        w = np.array(weight, dtype=np.float64)
        if w.shape != self.weight.shape:
            raise DataError(f"Connectome.with_weights: needs {self.n_connections} weights (got shape {w.shape})")
        kwargs = dict(name=self.name, synthetic=self.synthetic, annotations=self.annotations, meta=dict(self.meta))
        kwargs.update(changes)
        return type(self)(self.flywire_ids, self.indptr, self.post_idx, w, **kwargs)

    # ---------------------------------------------------------------- sizes
    @property
    def n_neurons(self) -> int:
        """Number of model neurons."""
        return int(self.flywire_ids.shape[0])

    @property
    def n_connections(self) -> int:
        """Number of (pre, post) connections."""
        return int(self.post_idx.shape[0])

    @property
    def n_synapses(self) -> int:
        """Total number of synapses (sum of absolute signed counts)."""
        return int(np.abs(self.weight).sum())

    @property
    def label(self) -> str:
        """Human label, marked SYNTHETIC for generated connectomes."""
        return f"{self.name} (SYNTHETIC connectome)" if self.synthetic else self.name

    @property
    def pre_idx(self) -> np.ndarray:
        """Presynaptic model index of each connection (int32, expanded from indptr)."""
        counts = np.diff(self.indptr)
        return np.repeat(np.arange(self.n_neurons, dtype=np.int32), counts)

    # ---------------------------------------------------------------- lookup
    def _id_order(self) -> np.ndarray:
        """Model indices that sort the FlyWire IDs (computed once; ~10 ms for the whole brain)."""
        if self._id_to_idx is None:
            self.__dict__["_id_to_idx"] = np.argsort(self.flywire_ids, kind="stable")
        return self._id_to_idx  # type: ignore[return-value]

    def find(self, flywire_ids: Any) -> np.ndarray:
        """Model indices (int64) of the given FlyWire IDs, -1 where an ID is not a neuron here."""
        ids = np.atleast_1d(np.asarray(flywire_ids, dtype=np.int64))
        order = self._id_order()
        if not order.size:
            return np.full(ids.shape[0], -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.flywire_ids, ids, sorter=order), order.size - 1)
        idx = order[pos].astype(np.int64)
        return np.where(self.flywire_ids[idx] == ids, idx, -1)

    def idx_of(self, flywire_ids: Any) -> np.ndarray:
        """Model indices (int64) of the given FlyWire IDs.

        Raises
        ------
        UnknownNeuronError
            If an ID is not in this connectome.
        """
        idx = self.find(flywire_ids)
        missing = np.flatnonzero(idx < 0)
        if missing.size:
            fid = int(np.atleast_1d(np.asarray(flywire_ids, dtype=np.int64))[missing[0]])
            raise UnknownNeuronError(f"FlyWire ID {fid} is not a neuron of connectome {self.label}")
        return idx

    def __contains__(self, flywire_id: object) -> bool:
        try:
            fid = int(flywire_id)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            return False
        if not -(2 ** 63) <= fid < 2 ** 63:
            return False
        return bool(self.find([fid])[0] >= 0)

    def validate_arrays(self) -> None:
        """Check CSR structure (used by loaders and the generator; raises DataError)."""
        n = self.n_neurons
        if self.indptr.shape != (n + 1,) or self.indptr[0] != 0 or self.indptr[-1] != self.post_idx.shape[0]:
            raise DataError(f"connectome {self.name}: CSR row pointer is inconsistent with {n} neurons")
        if np.any(np.diff(self.indptr) < 0):
            raise DataError(f"connectome {self.name}: CSR row pointer decreases")
        if self.post_idx.shape != self.weight.shape:
            raise DataError(f"connectome {self.name}: post_idx and weight lengths differ")
        if self.post_idx.size and (self.post_idx.min() < 0 or self.post_idx.max() >= n):
            raise DataError(f"connectome {self.name}: postsynaptic index out of range 0..{n - 1}")

    @classmethod
    def from_edges(
        cls,
        flywire_ids: Any,
        pre_idx: Any,
        post_idx: Any,
        weight: Any,
        **kwargs: Any,
    ) -> "Connectome":
        """Build from edge lists (any order; sorted stably by presynaptic index).

        Parameters
        ----------
        flywire_ids : array-like of int64, shape (n_neurons,)
        pre_idx, post_idx : array-like of int, shape (n_connections,)
            Model indices.
        weight : array-like of float, shape (n_connections,)
            Signed synapse counts.
        """
        fids = np.asarray(flywire_ids, dtype=np.int64)
        pre = np.asarray(pre_idx, dtype=np.int64)
        post = np.asarray(post_idx, dtype=np.int32)
        w = np.asarray(weight, dtype=np.float64)
        order = np.argsort(pre, kind="stable")
        counts = np.bincount(pre, minlength=fids.shape[0]) if pre.size else np.zeros(fids.shape[0], np.int64)
        indptr = np.zeros(fids.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        net = cls(fids, indptr, post[order], w[order], **kwargs)
        net.validate_arrays()
        return net


def files_digest(*sha256: str) -> str:
    """Connectome digest of a network read from source files with these SHA-256 digests."""
    return digest_text("brainfly-connectome-files", *sha256)
