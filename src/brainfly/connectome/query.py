"""Look neurons up by name, cell type or ID: the table a notebook wants (``brainfly.lookup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .datasets import load_connectome
from .lookup import neuron_names, resolve_neurons
from .network import Connectome

__all__ = ["lookup"]


def lookup(neurons: Iterable[int | str] | int | str, data: Connectome | str | Path | None = None, *,
           progress: bool = True) -> Any:
    """The neurons that IDs or names stand for, with their names and annotations.

    Parameters
    ----------
    neurons : int, str or iterable of them
        FlyWire IDs, paper names (``MN9``, ``P9``), cell types (``LB3``, ``type:LB3``),
        annotation selectors (``class:...``, ``side:left``) or ``&``-joined intersections.
    data : Connectome, str or Path, optional
        A loaded connectome, a folder or a dataset name (default: as :func:`brainfly.run`).

    Returns
    -------
    pandas.DataFrame
        One row per neuron and spec: ``spec``, ``flywire_id`` (int64), ``idx`` (model
        index), ``name`` (paper name or cell type, "" if none), and the annotation columns
        the connectome has (cell type, class, side, ...).

    Raises
    ------
    UnknownNeuronError
        For an unknown name or ID, with close matches.
    """
    import pandas as pd

    net = data if isinstance(data, Connectome) else load_connectome(data, progress=progress)
    specs = [neurons] if isinstance(neurons, (int, str, np.integer)) else list(neurons)
    names = neuron_names(net)
    ann = net.annotations
    rows = []
    for spec in specs:
        for i in resolve_neurons(net, [spec], owner="lookup").tolist():
            fid = int(net.flywire_ids[i])
            row: dict[str, Any] = {"spec": str(spec), "flywire_id": fid, "idx": int(i), "name": names.get(fid, "")}
            if ann is not None and fid in ann.index:
                row.update({str(k): v for k, v in ann.loc[fid].items()})
            rows.append(row)
    return pd.DataFrame(rows)
