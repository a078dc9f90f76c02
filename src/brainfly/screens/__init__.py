"""Screens: many conditions of one experiment (silencing, activation, rate and parameter
sweeps, shuffled-connectome controls), run in chunks on one machine or a Dask cluster,
with readout rates and effects against the base.

>>> import brainfly
>>> result = brainfly.screen("sugar-silencing.toml", data="synthetic")   # doctest: +SKIP
>>> result.top(10)                                                          # doctest: +SKIP
"""

from .execute import ScreenResult, resolve_screen, screen
from .spec import KINDS, Condition, Controls, Screen, Vary, load_screen

__all__ = ["KINDS", "Condition", "Controls", "Screen", "ScreenResult", "Vary", "load_screen", "resolve_screen",
           "screen"]
