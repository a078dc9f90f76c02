"""Paths through the connectome: how many connections from a set of neurons to the others."""

from __future__ import annotations

from typing import Any

import numpy as np

from .network import Connectome

__all__ = ["hop_distances"]


def hop_distances(connectome: Connectome, sources: Any, *, upstream: bool = False, max_hops: int | None = None,
                  keep: np.ndarray | None = None) -> np.ndarray:
    """Shortest path, in connections, from the nearest of *sources* to every neuron.

    Breadth first, one pass over the connections per hop.

    Parameters
    ----------
    connectome : Connectome
    sources : int array-like
        Model indices (distance 0).
    upstream : bool
        Follow connections backwards (from post- to presynaptic neurons): the distance of a
        neuron is then the length of its shortest path *onto* a source.
    max_hops : int, optional
        Stop after this many hops (farther neurons stay -1).
    keep : bool array (n_connections,), optional
        The connections that count as paths (e.g. not those of silenced neurons).

    Returns
    -------
    int64 array, shape (n_neurons,)
        Distance; -1 where no path (of at most *max_hops*) leads.
    """
    n = connectome.n_neurons
    dist = np.full(n, -1, dtype=np.int64)
    src = np.unique(np.asarray(sources, dtype=np.int64))
    if not src.size:
        return dist
    dist[src] = 0
    pre, post = connectome.pre_idx, connectome.post_idx
    frm, to = (post, pre) if upstream else (pre, post)
    if keep is not None:
        frm, to = frm[keep], to[keep]
    frontier = np.zeros(n, dtype=bool)
    frontier[src] = True
    hop = 0
    while max_hops is None or hop < max_hops:
        nxt = np.unique(to[frontier[frm]])
        nxt = nxt[dist[nxt] < 0]
        if not nxt.size:
            break
        hop += 1
        dist[nxt] = hop
        frontier[:] = False
        frontier[nxt] = True
    return dist
