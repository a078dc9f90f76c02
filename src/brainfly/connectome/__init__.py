"""Connectome stage: load, verify, download, cache, generate, look up neurons.

>>> from brainfly.connectome import load_connectome       # doctest: +SKIP
>>> net = load_connectome("flywire-783")                   # doctest: +SKIP

``load_connectome(data)`` takes a folder holding the canonical files or a dataset name
(``flywire-783``, ``flywire-630``, ``synthetic``); see :mod:`brainfly.connectome.datasets`.
Environment variables: ``BRAINFLY_DATA`` (data folder), ``BRAINFLY_CACHE_DIR`` (cache
folder), ``BRAINFLY_DATA_URL`` (download mirror).
"""

from .cache import cache_dir
from .datasets import DATASET_NAMES, best_available_dataset, load_connectome, load_folder
from .download import download_dataset
from .lookup import PAPER_ALIASES, neuron_names, resolve_neurons
from .network import Connectome

__all__ = [
    "Connectome",
    "DATASET_NAMES",
    "PAPER_ALIASES",
    "best_available_dataset",
    "cache_dir",
    "download_dataset",
    "load_connectome",
    "load_folder",
    "neuron_names",
    "resolve_neurons",
]
