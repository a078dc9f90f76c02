"""brainfly: whole-brain LIF simulation of the adult fruit fly (FlyWire), after Shiu et al. 2024.

Data flows one way: files -> :class:`~brainfly.connectome.Connectome` ->
:class:`~brainfly.experiment.Experiment` -> engine -> :class:`~brainfly.results.SpikeResult`
-> analysis. ``import brainfly`` is light: engines import their libraries lazily.
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
