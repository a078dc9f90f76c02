"""brainfly: whole-brain LIF simulation of the adult fruit fly (FlyWire), after Shiu et al. 2024.

Data flows one way: files -> :class:`Connectome` -> :class:`Experiment` -> engine ->
:class:`SpikeResult` -> analysis. The Python API is the first interface::

    import brainfly
    exp = brainfly.Experiment(name="p9", stimulate={"P9": 100}, silence=["MN9"], n_trials=30)
    res = brainfly.run(exp, data="synthetic", engine="event", out="p9.parquet")
    res.rates(names=True); res.plot_raster()

Top-level names (imported on first use, so that ``import brainfly`` stays light):

- :class:`Experiment`, :class:`StimulusSet`, :class:`ModelParams`, :func:`load_experiment`;
- :func:`run` (the one way to run: chunks, resume, provenance, files) and :func:`run_many`;
- :func:`load_connectome`, :class:`Connectome`, :func:`lookup` (names, cell types, IDs);
- :class:`SpikeResult` (``SpikeResult.read_parquet`` reads a saved spike file);
- :func:`contrast` (two runs neuron by neuron: difference, CI, p and q);
- :func:`screen`, :class:`Screen`, :func:`load_screen`, :class:`ScreenResult` (many
  conditions: silencing, activation, rate and parameter sweeps, on one machine or Dask);
- :class:`Simulation` (a live, steppable brain for closed loops: input in, spikes out);
- :mod:`brainfly.engines` (``available_engines()``, ``get_engine()``) and
  :mod:`brainfly.compare` (``compare_results(reference, candidate)``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

#: name -> (module, attribute); attribute None: the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Experiment": ("brainfly.experiment", "Experiment"),
    "StimulusSet": ("brainfly.experiment", "StimulusSet"),
    "load_experiment": ("brainfly.experiment", "load_experiment"),
    "ModelParams": ("brainfly.params", "ModelParams"),
    "run": ("brainfly.runner", "run"),
    "run_many": ("brainfly.runner", "run_many"),
    "load_connectome": ("brainfly.connectome", "load_connectome"),
    "Connectome": ("brainfly.connectome", "Connectome"),
    "lookup": ("brainfly.connectome.query", "lookup"),
    "SpikeResult": ("brainfly.results", "SpikeResult"),
    "engines": ("brainfly.engines", None),
    "compare": ("brainfly.compare", None),
    "contrast": ("brainfly.effects", "contrast"),
    "Screen": ("brainfly.screens", "Screen"),
    "ScreenResult": ("brainfly.screens", "ScreenResult"),
    "screen": ("brainfly.screens", "screen"),
    "load_screen": ("brainfly.screens", "load_screen"),
    "Simulation": ("brainfly.simulation", "Simulation"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'brainfly' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
