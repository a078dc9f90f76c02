"""Neuron lookup: FlyWire IDs, paper names (MN9, P9, ...), cell types and classes.

(Minimal version: IDs and the paper's aliases; annotations-based lookup is added by the
data layer.)
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..errors import UnknownNeuronError, suggest

__all__ = ["PAPER_ALIASES", "resolve_neurons"]

#: Paper names the annotations don't carry (DESIGN.md), to FlyWire IDs (v783).
PAPER_ALIASES: dict[str, tuple[int, ...]] = {
    "MN9": (720575940660219265, 720575940618238523),
    "P9": (720575940627652358, 720575940635872101),
    "aDN1": (720575940616185531,),
    "DN2": (720575940629806974,),
    "aBN1": (720575940630907434,),
}


def resolve_neurons(connectome: Any, specs: Iterable[int | str], owner: str = "neurons") -> np.ndarray:
    """Model indices (int64, in the order given, duplicates kept) of FlyWire IDs or names.

    Raises
    ------
    UnknownNeuronError
        Naming *owner*, the unknown spec, and close matches.
    """
    out: list[int] = []
    for spec in specs:
        if isinstance(spec, (int, np.integer)):
            if spec not in connectome:
                raise UnknownNeuronError(f"{owner}: FlyWire ID {spec} is not a neuron of {connectome.label}")
            out.extend(connectome.idx_of([spec]).tolist())
        elif spec in PAPER_ALIASES:
            out.extend(connectome.idx_of(PAPER_ALIASES[spec]).tolist())
        else:
            raise UnknownNeuronError(
                f"{owner}: unknown neuron name {spec!r}.{suggest(spec, PAPER_ALIASES)}"
            )
    return np.asarray(out, dtype=np.int64)
