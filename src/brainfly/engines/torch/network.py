"""The connectome on the device: its CSR arrays as tensors, identified by content.

Units: volts (weights = signed synapse count x ``w_syn``, as Brian2 computes them).

A :class:`DeviceNetwork` holds what every batch on one connectome shares: the row starts
and lengths, the postsynaptic indices and the weights, plus one empty dummy row (index
``N``) that the events of silenced neurons are sent to. Silencing is a per-row mask of
the batch (:mod:`.runner`), not part of the network, so one network serves every
condition. The engine keeps one network and reuses it while its :class:`NetworkKey`
(the connectome's content digest, device, dtype, ``w_syn``) is unchanged: a network with
other weights has another digest and is uploaded anew.

PyTorch is imported when a network is built, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base import SimulationInput

__all__ = ["NetworkKey", "DeviceNetwork"]


@dataclass(frozen=True)
class NetworkKey:
    """Everything a :class:`DeviceNetwork` is computed from (the key of the engine's cache).

    Attributes
    ----------
    connectome : str
        ``Connectome.content_digest`` (hex SHA-256 of the network's content).
    device : str
        ``cpu``, ``cuda`` or ``cuda:N``, as the engine's options give it.
    dtype : str
        ``float64`` or ``float32``: the dtype of the weights on the device.
    w_syn : float
        Volts per synapse (``ModelParams``), which scales the weights.
    """

    connectome: str
    device: str
    dtype: str
    w_syn: float

    @classmethod
    def of(cls, sim: SimulationInput, device: str, dtype: str) -> "NetworkKey":
        """The key of the network that *sim* needs on *device* in *dtype*."""
        return cls(str(sim.connectome.content_digest), str(device), str(dtype), float(sim.coeffs.w_syn))


class DeviceNetwork:
    """The connectome's CSR arrays on the device, plus one empty dummy row (index N).

    Parameters
    ----------
    sim : SimulationInput
        Gives the connectome and ``w_syn``.
    device : str
    dtype : {"float64", "float32"}

    Attributes
    ----------
    key : NetworkKey
    n : int
        Number of neurons (the dummy row is ``n``).
    start, deg : int64 tensors, shape (n + 1,)
        First connection and number of connections of each presynaptic neuron.
    post : int64 tensor, shape (n_connections,)
        Postsynaptic index of each connection.
    weight : tensor of *dtype*, shape (n_connections,)
        Weight of each connection in volts (``count * w_syn`` computed in float64).
    n_edges : int
    device : torch.device
    """

    def __init__(self, sim: SimulationInput, device: str, dtype: str) -> None:
        import torch

        c = sim.connectome
        self.key = NetworkKey.of(sim, device, dtype)
        self.n = c.n_neurons
        dev = torch.device(device)
        indptr = np.asarray(c.indptr, dtype=np.int64)
        deg = np.diff(indptr)
        # Brian2 computes w = count * w_syn in float64 (SimulationInput.weight_v, unsilenced)
        w = np.asarray(c.weight, dtype=np.float64) * sim.coeffs.w_syn
        self.start: Any = torch.from_numpy(np.concatenate([indptr[:-1], [0]])).to(dev)
        self.deg: Any = torch.from_numpy(np.concatenate([deg, [0]])).to(dev)
        # (a copy: the connectome's arrays are read-only, which torch.from_numpy warns about)
        self.post: Any = torch.from_numpy(np.array(c.post_idx, dtype=np.int64)).to(dev)
        self.weight: Any = torch.from_numpy(w).to(device=dev, dtype=getattr(torch, dtype))
        self.n_edges = int(c.n_connections)
        self.device = dev
