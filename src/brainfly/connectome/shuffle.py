"""Degree-preserving shuffled connectomes: the null model of a screen's controls."""

from __future__ import annotations

import numpy as np

from .network import Connectome

__all__ = ["shuffled_connectome"]


def shuffled_connectome(connectome: Connectome, seed: int) -> Connectome:
    """A shuffled copy of *connectome* that keeps every neuron's in- and out-degree.

    The postsynaptic partners of all connections are permuted at random (a configuration
    model): each neuron keeps its outgoing connections with their signed synapse counts
    (so its sign, Dale's law, and its total output) and receives as many connections as
    before, from other presynaptic neurons. Multiple connections between one pair and
    self-connections may appear, as in the configuration model; the simulators all accept
    them. Whatever the process, the same (connectome, seed) gives the same network.

    Parameters
    ----------
    connectome : Connectome
    seed : int
        Seed of the permutation (numpy's PCG64, seeded with ``[seed, 0x5EED]``).

    Returns
    -------
    Connectome
        Named ``<name>+shuffle<seed>``; ``meta`` records the original's digest and the seed.
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    post = rng.permutation(np.asarray(connectome.post_idx))
    meta = dict(connectome.meta)
    meta.update({"shuffled_from": connectome.content_digest, "shuffle_seed": int(seed),
                 "null_model": "configuration model (post-synaptic partners permuted; degrees kept)"})
    return Connectome(connectome.flywire_ids, connectome.indptr, post, connectome.weight,
                      name=f"{connectome.name}+shuffle{int(seed)}", synthetic=connectome.synthetic,
                      annotations=connectome.annotations, meta=meta)
