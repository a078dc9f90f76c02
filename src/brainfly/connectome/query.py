"""Look neurons up by name, cell type or ID: the table a notebook wants (``brainfly.lookup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .datasets import load_connectome
from .lookup import annotation_table, neuron_labels, resolve_neurons
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
    table = annotation_table(net)
    frames = []
    for spec in specs:
        idx = resolve_neurons(net, [spec], owner="lookup")
        ids = net.flywire_ids[idx]
        frame = pd.DataFrame({"spec": str(spec), "flywire_id": ids.astype(np.int64), "idx": idx})
        labels = neuron_labels(ids, table)
        for column in labels:
            if column != "flywire_id":
                frame[column] = labels[column]
        if table is not None:
            for column in table.columns:
                if column not in frame:
                    frame[column] = table.get(column, ids)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
